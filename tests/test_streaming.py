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
