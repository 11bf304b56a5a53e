"""Streaming through a real uvicorn gateway in front of a real uvicorn upstream."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from routeiq.gateway.embedded_upstream import create_embedded_upstream

from support import eventually, plugin


def chat(prompt: str, stream: bool) -> dict[str, object]:
    return {"model": "routeiq-mock", "stream": stream, "messages": [{"role": "user", "content": prompt}]}


def test_sse_chunks_arrive_before_the_upstream_finishes(make_app, live, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    upstream = live(create_embedded_upstream())
    app = make_app(
        [plugin("tagger", guests["tagger"]), plugin("chunk_counter", guests["chunk_counter"], fail_open=True)],
        upstream={"url": upstream},
    )
    gateway = live(app)
    arrivals: list[float] = []
    events: list[bytes] = []
    began = time.monotonic()
    with httpx.Client(timeout=30, trust_env=False) as client:
        with client.stream(
            "POST",
            f"{gateway}/v1/chat/completions",
            json=chat("one two three four five", True),
            headers={"x-mock-chunk-delay-ms": "150"},
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["x-routeiq-plugin"] == "tagger"
            buffer = b""
            for chunk in response.iter_raw():
                buffer += chunk
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    events.append(event)
                    arrivals.append(time.monotonic() - began)
    # "You said: one two three four five" is 7 words -> 7 deltas + final + [DONE]
    assert len(events) == 9 and events[-1] == b"data: [DONE]"
    text = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == "You said: one two three four five"
    # The upstream needs >= 7 * 150 ms; the first event must reach the client long before.
    assert arrivals[-1] >= 1.0
    assert arrivals[0] < arrivals[-1] - 0.7
    # and the chunk filter saw every SSE event as it passed, logging at proxy_on_log.
    logs = app.state.gateway.logs.messages
    assert eventually(lambda: [m for m in logs("chunk_counter") if m.startswith("chunk_counter: ") and m.endswith("events=9")]), logs("chunk_counter")


def _arrival_recorder() -> Starlette:
    async def record(request: Request) -> JSONResponse:
        began = time.monotonic()
        chunks = []
        async for chunk in request.stream():
            if chunk:
                chunks.append({"at": time.monotonic() - began, "size": len(chunk), "text": chunk.decode(errors="replace")})
        return JSONResponse({"chunks": chunks, "content_length": request.headers.get("content-length")})

    return Starlette(routes=[Route("/record", record, methods=["POST"])])


def _slow_body() -> Iterator[bytes]:
    for part in (b'{"messages": [', b'{"role": "user", "content": "mail bob@example.com"}', b"]}"):
        yield part
        time.sleep(0.3)


def test_request_body_streams_when_no_plugin_buffers_it(make_app, live, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    upstream = live(_arrival_recorder())
    gateway = live(make_app([plugin("tagger", guests["tagger"]), plugin("chunk_counter", guests["chunk_counter"])], upstream={"url": upstream}))
    with httpx.Client(timeout=30, trust_env=False) as client:
        response = client.post(f"{gateway}/record", content=_slow_body())
    assert response.status_code == 200
    chunks = response.json()["chunks"]
    assert len(chunks) >= 2, chunks  # arrived in pieces, not as one buffered body
    assert chunks[-1]["at"] - chunks[0]["at"] > 0.4


def test_request_body_is_buffered_when_a_plugin_reads_it_whole(make_app, live, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    upstream = live(_arrival_recorder())
    gateway = live(make_app([plugin("redactor", guests["redactor"])], upstream={"url": upstream}))
    with httpx.Client(timeout=30, trust_env=False) as client:
        response = client.post(f"{gateway}/record", content=_slow_body())
    assert response.status_code == 200
    chunks = response.json()["chunks"]
    body = "".join(c["text"] for c in chunks)
    assert "bob@example.com" not in body and "[REDACTED_EMAIL]" in body
    assert json.loads(body)["messages"][0]["content"] == "mail [REDACTED_EMAIL]"
    assert response.headers["x-routeiq-redactions"] == "1"


def test_upstream_unreachable_is_a_502_in_openai_shape(make_app, live, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    from support import free_port

    gateway = live(make_app([plugin("tagger", guests["tagger"])], upstream={"url": f"http://127.0.0.1:{free_port()}"}))
    with httpx.Client(timeout=30, trust_env=False) as client:
        response = client.get(f"{gateway}/v1/models")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unreachable"


def test_a_client_leaving_mid_stream_is_not_an_error(make_app, live, guests: dict[str, Path], caplog) -> None:  # type: ignore[no-untyped-def]
    """A client that reads one event and hangs up: the gateway logs no exception (the
    stream stopped for the client's reason), the plugins' on_log still runs, and the next
    request is served."""
    import logging
    import socket

    app = make_app([plugin("chunk_counter", guests["chunk_counter"], fail_open=True)])
    base = live(app)
    host, port = base.removeprefix("http://").split(":")
    body = json.dumps(chat("one two three four five", True)).encode()
    with caplog.at_level(logging.INFO):
        client = socket.create_connection((host, int(port)))
        client.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"x-mock-chunk-delay-ms: 200\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        assert b"data:" in client.recv(65536) or b"data:" in client.recv(65536)  # the first event
        client.close()
        logs = app.state.gateway.logs.messages
        assert eventually(lambda: any("chunk_counter" in m for m in logs("chunk_counter")), timeout=15)
    with httpx.Client(timeout=30, trust_env=False) as http:
        assert http.post(f"{base}/v1/chat/completions", json=chat("hi", False)).status_code == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    assert any("client disconnected before the response ended" in r.getMessage() for r in caplog.records)
