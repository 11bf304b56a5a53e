"""py_chunk_counter: observe a (streaming) response body without changing it (the Rust
chunk_counter in Python).

* on_response_body: every call with bytes counts one chunk and its size, and feeds an
  SSE event counter (an event ends at a blank line and counts if one of its lines
  starts with `data:`; `\\r` is ignored; state carries across chunks). Never buffers.
* on_log: logs at INFO `py_chunk_counter: chunks=<N> bytes=<B> events=<E>`.

Needs the `response_body` capability. Config: none.
"""

import routeiq_guest as rg


class ChunkCounter(rg.HttpFilter):
    def __init__(self):
        self.chunks = 0
        self.bytes = 0
        self.events = 0
        self.line = b""  # the start of the current, unfinished line (at most 5 bytes)
        self.line_len = 0
        self.has_data = False

    def feed(self, chunk):
        lines = chunk.replace(b"\r", b"").split(b"\n")
        for i, piece in enumerate(lines):
            if self.line_len < 5:
                self.line += piece[: 5 - self.line_len]
            self.line_len += len(piece)
            if i == len(lines) - 1:
                break  # no newline after the last piece: the line goes on
            if self.line_len == 0:
                if self.has_data:
                    self.events += 1
                self.has_data = False
            elif self.line == b"data:":
                self.has_data = True
            self.line, self.line_len = b"", 0

    def on_response_body(self, body, end_of_stream):
        if body.size:
            self.chunks += 1
            self.bytes += body.size
            self.feed(body.read())
        return rg.CONTINUE

    def on_log(self):
        rg.log.info(f"py_chunk_counter: chunks={self.chunks} bytes={self.bytes} events={self.events}")
