"""Incremental parsing of upstream `text/event-stream` bodies, framed as the WHATWG
EventSource spec says (html.spec.whatwg.org, "Parsing an event stream"): a line ends in
CRLF, LF or CR; a blank line ends an event; `data:` lines are joined with LF; lines
starting with `:` are comments; an event still open when the stream ends is dropped.

Linear in the input: each chunk is scanned once, and only the unfinished last line is
carried over to the next chunk (a CR at a chunk's end ends its line at once; an LF
starting the next chunk is then the second half of that CRLF, not a blank line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_EOL = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SseEvent:
    data: bytes  # the `data:` lines joined with LF (UTF-8, as sent)
    event: str = "message"
    id: str = ""  # the last event ID seen so far (it carries over events, as in the spec)
    retry_ms: int | None = None  # the latest `retry:` seen so far

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


class SseParser:
    """Feed it the body's chunks as they come; each `feed` returns the events they ended."""

    def __init__(self) -> None:
        self._tail = bytearray()  # the current line so far (never holds a line end)
        self._after_cr = False  # the last chunk ended in CR: a leading LF is its pair
        self._first_line = True  # one leading BOM is ignored
        self._data: list[bytes] = []
        self._event = b""
        self._id = b""
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[SseEvent]:
        events: list[SseEvent] = []
        if not chunk:  # must not forget a pending CR
            return events
        start = 0
        if self._after_cr:
            self._after_cr = False
            if chunk[:1] == b"\n":
                start = 1
        for end in _EOL.finditer(chunk, start):
            piece = chunk[start : end.start()]
            if self._tail:
                self._tail += piece
                piece = bytes(self._tail)
                self._tail.clear()
            self._line(piece, events)
            start = end.end()
        if chunk.endswith(b"\r"):
            self._after_cr = True
        self._tail += chunk[start:]
        return events

    def _line(self, line: bytes, events: list[SseEvent]) -> None:
        if self._first_line:
            self._first_line = False
            if line.startswith(_BOM):
                line = line[len(_BOM) :]
        if not line:
            self._dispatch(events)
            return
        if line[0] == 0x3A:  # ":" a comment
            return
        field, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            self._data.append(value)
        elif field == b"event":
            self._event = value
        elif field == b"id":
            if b"\0" not in value:
                self._id = value
        elif field == b"retry":
            if value.isdigit():
                self._retry = int(value)
        # any other field is ignored, as the spec says

    def _dispatch(self, events: list[SseEvent]) -> None:
        if self._data:
            events.append(
                SseEvent(
                    data=b"\n".join(self._data),
                    event=self._event.decode("utf-8", "replace") or "message",
                    id=self._id.decode("utf-8", "replace"),
                    retry_ms=self._retry,
                )
            )
            self._data = []
        self._event = b""
