"""Local replies as Envoy handles them (issue #13 items 3 and 5), through a real uvicorn:
a reply sent while the request is decoded runs the response callbacks of the sender and
the plugins before it; one sent from a response callback goes straight to the client; a
reply while the request body streams to the upstream resets the upstream request."""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path
from typing import Iterator

import httpx
import wasmtime

from support import eventually, plugin

HEADERS, BODY = 1, 2  # which callback sends the local reply


def filter_module(
    tmp_path: Path, name: str, reply_in: int = 0, on_response: int = 0, reply_on_body_call: int = 0, rewrite: str = "", reply_on_response_body: int = 0
) -> Path:
    """A WAT filter: every response headers callback adds `x-seen: <name>`; `reply_in`
    sends a 403 local reply from request headers; `on_response` a 502 from response
    headers; `reply_on_body_call` a 403 from the request body callback of that number
    (counted per VM); `rewrite` replaces the whole response body; `reply_on_response_body`
    sends a 500 from the response body callback (the response head is out by then) and
    continues."""
    headers = struct.pack("<III", 1, 7, len(name)) + b"x-reply\0" + name.encode() + b"\0"  # a serialized map
    wat = f"""
(module
  (import "env" "proxy_send_local_response" (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes" (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "x-seen")
  (data (i32.const 272) "{name}")
  (data (i32.const 320) "blocked by {name}")
  (data (i32.const 384) "{rewrite}")
  (data (i32.const 512) "{_escaped(headers)}")
  (global $body_calls (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func $block (param $status i32) (result i32)
    (drop (call $reply (local.get $status) (i32.const 0) (i32.const 0) (i32.const 320) (i32.const {11 + len(name)}) (i32.const 512) (i32.const {len(headers)}) (i32.const -1)))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.const {int(reply_in == HEADERS)}) (then (return (call $block (i32.const 403)))))
    (i32.const 0))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (global.set $body_calls (i32.add (global.get $body_calls) (i32.const 1)))
    (if (i32.eq (global.get $body_calls) (i32.const {reply_on_body_call})) (then (return (call $block (i32.const 403)))))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 2) (i32.const 256) (i32.const 6) (i32.const 272) (i32.const {len(name)})))
    (if (i32.const {on_response}) (then (return (call $block (i32.const 502)))))
    (i32.const 0))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
    (if (i32.const {reply_on_response_body}) (then (drop (call $block (i32.const 500))) (return (i32.const 0))))
    (if (i32.and (i32.const {int(bool(rewrite))}) (local.get 2))
      (then (drop (call $set (i32.const 1) (i32.const 0) (local.get 1) (i32.const 384) (i32.const {len(rewrite)})))))
    (i32.const 0)))
"""
    path = tmp_path / f"{name}.wasm"
    path.write_bytes(wasmtime.wat2wasm(wat))
    return path


def _escaped(data: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in data)


def test_a_local_reply_runs_the_response_callbacks_of_the_sender_and_the_plugins_before_it(make_app, live, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    chain = [
        plugin("outer", filter_module(tmp_path, "outer", rewrite="rewritten by outer")),
        plugin("gate", filter_module(tmp_path, "gate", reply_in=HEADERS)),
        plugin("inner", filter_module(tmp_path, "inner")),  # after the sender: never sees the request nor the reply
    ]
    response = httpx.get(live(make_app(chain)) + "/echo", timeout=30)
    assert response.status_code == 403
    assert response.headers.get_list("x-seen") == ["gate", "outer"]  # response order: the sender first
    assert response.headers["x-reply"] == "gate"  # the sender's own headers are kept
    assert response.text == "rewritten by outer"
    assert response.headers["content-length"] == str(len("rewritten by outer"))


def test_the_tagger_marks_its_own_403_and_a_later_plugin_does_not(make_app, live, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    chain = [plugin("tagger", guests["tagger"]), plugin("second", guests["tagger"], config={"tag": "second"})]
    response = httpx.get(live(make_app(chain)) + "/echo", headers={"x-block": "1"}, timeout=30)
    assert response.status_code == 403
    assert response.json() == {"error": {"message": "blocked by tagger", "type": "forbidden"}}
    assert response.headers.get_list("x-routeiq-plugin") == ["tagger"]  # the sender's on_response_headers ran; "second" never saw the request


def test_a_local_reply_from_a_response_callback_replaces_the_reply_without_looping(make_app, live, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # "both" answers 403 from its request headers, then 502 when that reply reaches its
    # response headers: the second reply goes to the client as is, through no callback.
    chain = [plugin("tagger", filter_module(tmp_path, "tagger")), plugin("both", filter_module(tmp_path, "both", reply_in=HEADERS, on_response=1))]
    response = httpx.get(live(make_app(chain)) + "/echo", timeout=30)
    assert response.status_code == 502
    assert response.text == "blocked by both"
    assert "x-seen" not in response.headers

    # From the upstream's response, likewise: the reply is sent once, unfiltered.
    upstream_reply = [plugin("tagger", filter_module(tmp_path, "tagger")), plugin("late", filter_module(tmp_path, "late", on_response=1))]
    response = httpx.get(live(make_app(upstream_reply)) + "/echo", timeout=30)
    assert response.status_code == 502
    assert response.text == "blocked by late"
    assert "x-seen" not in response.headers


class RecordingUpstream:
    """A loopback HTTP/1.1 server that records the raw bytes of the one request it reads,
    and whether that request was complete (chunked: the terminating 0-size chunk)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.received = bytearray()
        self.first_chunk = threading.Event()
        self.ended = threading.Event()  # the gateway closed (or finished) the request
        self.complete = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(30)
            try:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    self.received.extend(data)
                    if b"first-" in self.received:
                        self.first_chunk.set()
                    if self.received.endswith(b"\r\n0\r\n\r\n"):
                        self.complete = True
                        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        break
            except OSError:
                pass  # a reset is an abort, as it should be
            finally:
                self.ended.set()

    def close(self) -> None:
        self.sock.close()


def test_a_local_reply_while_the_request_body_streams_resets_the_upstream_request(make_app, live, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    upstream = RecordingUpstream()
    try:
        chain = [plugin("gate", filter_module(tmp_path, "gate", reply_on_body_call=2))]
        gateway = live(make_app(chain, upstream={"url": f"http://127.0.0.1:{upstream.port}"}))

        def body() -> Iterator[bytes]:
            yield b"first-chunk;"
            # The second chunk leaves only once the first reached the upstream.
            upstream.first_chunk.wait(30)
            yield b"second-chunk;"

        response = httpx.post(gateway + "/upload", content=body(), timeout=30)
        assert response.status_code == 403
        assert response.text == "blocked by gate"
        assert eventually(upstream.ended.is_set, timeout=30)
        assert b"first-chunk;" in upstream.received  # it was streaming when the filter answered
        assert b"second-chunk;" not in upstream.received
        assert not upstream.complete  # the connection closed without the final chunk
    finally:
        upstream.close()


def test_a_local_reply_after_the_response_head_went_out_resets_the_stream(make_app, live, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Envoy answers the call OK, then resets the stream: the head (200) is already with the
    # client, so the reply cannot replace it; the body never completes.
    app = make_app([plugin("late", filter_module(tmp_path, "late", reply_on_response_body=1))])
    base = live(app)
    with httpx.Client(timeout=30) as client:
        with client.stream("GET", base + "/echo") as response:
            assert response.status_code == 200
            try:
                body = response.read()
            except httpx.HTTPError:
                body = None  # the connection was reset mid-body
        assert body is None  # reset: no final chunk
        assert client.get(base + "/health").status_code == 200  # the gateway keeps serving
