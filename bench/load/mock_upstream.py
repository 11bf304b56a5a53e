"""A lean OpenAI-compatible upstream for load tests (pure ASGI, run under uvicorn).

routeiq.gateway.embedded_upstream is not reused: it builds every reply per request
(json.dumps per chunk, token counting, Starlette routing) and its chunk count follows
the prompt's words. Here every response is precomputed at start-up, so the upstream's
own cost stays small and fixed, and chunk count / reply size are CLI arguments.

Standalone (no sibling imports) so it can be started as `python mock_upstream.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
# A regex instead of json.loads: parsing a 256 KiB body would make the upstream the bottleneck
# of the body-size curve. Both `"stream": true` (json.dumps) and `"stream":true` match.
STREAM_RE = re.compile(rb'"stream"\s*:\s*true')
CREATED = 1_700_000_000
WORDS = ("gateway latency stays low when filters are compiled ahead of time and "
         "requests stream through without copies ").split()


def reply_pieces(chunks: int, reply_bytes: int) -> list[str]:
    """`reply_bytes` of text split into `chunks` nearly equal pieces (at least 1 byte each)."""
    text, i = "", 0
    while len(text) < max(reply_bytes, chunks):
        text += (" " if text else "") + WORDS[i % len(WORDS)]
        i += 1
    text = text[: max(reply_bytes, chunks)]
    size, extra = divmod(len(text), chunks)
    pieces, start = [], 0
    for n in range(chunks):
        end = start + size + (1 if n < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def precompute(chunks: int, reply_bytes: int, model: str) -> tuple[bytes, list[bytes]]:
    """(non-streaming JSON body, SSE events: `chunks` content events, a final one, [DONE])."""
    pieces = reply_pieces(chunks, reply_bytes)
    content = "".join(pieces)
    usage = {"prompt_tokens": 60, "completion_tokens": chunks, "total_tokens": 60 + chunks}
    cid = "chatcmpl-bench"
    full = {
        "id": cid, "object": "chat.completion", "created": CREATED, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": usage,
    }
    events = []
    for n, piece in enumerate(pieces):
        delta = {"role": "assistant", "content": piece} if n == 0 else {"content": piece}
        chunk = {"id": cid, "object": "chat.completion.chunk", "created": CREATED, "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        events.append(b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n")
    final = {"id": cid, "object": "chat.completion.chunk", "created": CREATED, "model": model,
             "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage}
    events.append(b"data: " + json.dumps(final, separators=(",", ":")).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return json.dumps(full, separators=(",", ":")).encode(), events


def make_app(chunks: int, reply_bytes: int, model: str = "bench-mock", chunk_gap_ms: float = 0.0) -> App:
    completion, events = precompute(chunks, reply_bytes, model)
    models = json.dumps({"object": "list", "data": [{"id": model, "object": "model", "created": CREATED, "owned_by": "bench"}]}).encode()
    json_headers = [(b"content-type", b"application/json")]
    sse_headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    gap_s = chunk_gap_ms / 1000.0

    async def respond(send: Send, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": json_headers + [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if method == "GET" and path in ("/v1/models", "/models"):
            await respond(send, 200, models)
            return
        if method != "POST" or path not in CHAT_PATHS:
            await respond(send, 404, b'{"error":{"message":"not found","type":"invalid_request_error"}}')
            return
        parts, more = [], True
        while more:  # the whole body is read, as a real upstream must
            message = await receive()
            parts.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(parts)
        if b'"messages"' not in body:
            await respond(send, 400, b'{"error":{"message":"\'messages\' must be a list","type":"invalid_request_error"}}')
            return
        if not STREAM_RE.search(body):
            await respond(send, 200, completion)
            return
        await send({"type": "http.response.start", "status": 200, "headers": sse_headers})
        for n, event in enumerate(events):  # one write per event, as an LLM emits them
            if gap_s and n:
                # Without a gap all events land in the reader's socket buffer at once and the
                # gateway relays them in one or two reads; with one, each is a read of its own.
                await asyncio.sleep(gap_s)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=32, help="content events per streamed response")
    parser.add_argument("--reply-bytes", type=int, default=512, help="bytes of reply content")
    parser.add_argument("--chunk-gap-ms", type=float, default=0.0,
                        help="pause between streamed events (0: send them back to back; timers are ~1 ms granular)")
    parser.add_argument("--model", default="bench-mock")
    args = parser.parse_args(argv)
    if args.chunks < 1:
        parser.error("--chunks must be >= 1")
    import uvicorn

    uvicorn.run(make_app(args.chunks, args.reply_bytes, args.model, args.chunk_gap_ms), host=args.host, port=args.port,
                log_level="warning", access_log=False, workers=1, lifespan="on")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
