"""What the embedded mock provider answers for the OpenAI operations besides chat: the
shapes the official SDKs parse, deterministic content (derived from the request), so the
demo and the tests need no keys and no network."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import struct
import time
import wave
import zlib
from typing import Any, AsyncIterator

from .operations import OperationRequest


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _embedding(text: str, dims: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    raw = (seed * (dims * 4 // len(seed) + 1))[: dims * 4]
    return [round(v / 2**32 * 2 - 1, 6) for v in struct.unpack(f"<{dims}I", raw)]


def _inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v if isinstance(v, str) else json.dumps(v) for v in value]
    return [""]


_MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent", "self-harm",
    "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors", "violence", "violence/graphic",
)  # fmt: skip


def _png() -> bytes:
    """A valid 1x1 PNG (what an image generation returns, made up)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(b"\x00\x40\x80\xc0")) + chunk(b"IEND", b"")


def _wav(seconds: float) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * int(8000 * seconds))
    return out.getvalue()


def reply_text(query: str) -> str:
    return f"You said: {query}" if query else "Hello from the RouteIQ mock upstream."


def answer(request: OperationRequest, model: str) -> tuple[str, bytes]:
    """(content type, body) of the mock's answer to a non-streaming operation."""
    op, body = request.operation, request.body
    query = op.query(body)
    now = int(time.time())
    doc: Any
    if op.name == "text_completion":
        reply = reply_text(query)
        doc = {
            "id": "cmpl-mock-" + _digest(model, query), "object": "text_completion", "created": now, "model": model,
            "choices": [{"index": 0, "text": reply, "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": _tokens(query), "completion_tokens": _tokens(reply), "total_tokens": _tokens(query) + _tokens(reply)},
        }  # fmt: skip
    elif op.name == "embeddings":
        dims = body.get("dimensions") if isinstance(body.get("dimensions"), int) and 0 < body["dimensions"] <= 4096 else 8
        data = []
        for i, text in enumerate(_inputs(body.get("input"))):
            vector = _embedding(text, dims)
            encoded: Any = vector
            if body.get("encoding_format") == "base64":  # the openai SDK asks for this by default
                encoded = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        tokens = sum(_tokens(t) for t in _inputs(body.get("input")))
        doc = {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    elif op.name == "moderations":
        flagged = "kill" in query.lower()  # the mock's only rule: enough to test both answers
        results = []
        for text in _inputs(body.get("input")):
            hit = "kill" in text.lower()
            results.append({
                "flagged": hit,
                "categories": {c: hit and c == "violence" for c in _MODERATION_CATEGORIES},
                "category_scores": {c: (0.9 if hit and c == "violence" else 0.001) for c in _MODERATION_CATEGORIES},
                "category_applied_input_types": {c: ["text"] for c in _MODERATION_CATEGORIES},
            })  # fmt: skip
        doc = {"id": "modr-mock-" + _digest(model, query, str(flagged)), "model": model, "results": results}
    elif op.name == "image_generation":
        count = body.get("n") if isinstance(body.get("n"), int) and 1 <= body["n"] <= 10 else 1
        png = base64.b64encode(_png()).decode()
        item = {"b64_json": png} if body.get("response_format") == "b64_json" else {"url": "data:image/png;base64," + png}
        doc = {"created": now, "data": [{**item, "revised_prompt": query} for _ in range(count)]}
    elif op.name == "speech":
        # Always WAV (the mock encodes no MP3); the content type says so.
        return "audio/wav", _wav(min(0.1 * _tokens(query), 5.0))
    elif op.name == "transcription":
        name, size = (request.files[0][1], len(request.files[0][3])) if request.files else ("nothing", 0)
        text = f"Mock transcript of {name} ({size} bytes)."
        if body.get("response_format") == "text":
            return "text/plain; charset=utf-8", text.encode()
        doc = {"text": text}
    elif op.name == "responses":
        doc = _response(model, query, now, "completed", reply_text(query))
    else:
        raise ValueError(f"the mock has no answer for {op.name}")
    return "application/json", json.dumps(doc).encode()


def _response(model: str, query: str, created: int, status: str, text: str) -> dict[str, Any]:
    rid = _digest(model, query)
    output = []
    if status == "completed":
        output = [{"type": "message", "id": "msg_" + rid, "status": "completed", "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": []}]}]
    return {
        "id": "resp_" + rid, "object": "response", "created_at": created, "status": status, "model": model, "output": output,
        "error": None, "incomplete_details": None, "instructions": None, "metadata": {}, "parallel_tool_calls": True,
        "temperature": 1.0, "tool_choice": "auto", "tools": [], "top_p": 1.0,
        "usage": {"input_tokens": _tokens(query), "output_tokens": _tokens(text), "total_tokens": _tokens(query) + _tokens(text),
                  "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}} if status == "completed" else None,
    }  # fmt: skip


def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(data).encode() + b"\n\n"


async def stream(request: OperationRequest, model: str) -> AsyncIterator[bytes]:
    """Server-sent events of a streaming completion or response, as OpenAI sends them."""
    body = request.body
    query = request.operation.query(body)
    reply = reply_text(query)
    words = [w if i == 0 else " " + w for i, w in enumerate(reply.split(" "))]
    now = int(time.time())
    if request.operation.name == "text_completion":
        cid = "cmpl-mock-" + _digest(model, query)
        for i, piece in enumerate(words):
            last = i == len(words) - 1
            yield _sse({"id": cid, "object": "text_completion", "created": now, "model": model, "choices": [{"index": 0, "text": piece, "logprobs": None, "finish_reason": "stop" if last else None}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": _tokens(query), "completion_tokens": _tokens(reply), "total_tokens": _tokens(query) + _tokens(reply)}
            yield _sse({"id": cid, "object": "text_completion", "created": now, "model": model, "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"
        return
    # The Responses API: typed events, each with a sequence number, no [DONE].
    started = _response(model, query, now, "in_progress", "")
    done = _response(model, query, now, "completed", reply)
    item = done["output"][0]
    seq = iter(range(1_000_000))
    yield _sse({"type": "response.created", "sequence_number": next(seq), "response": started}, "response.created")
    yield _sse({"type": "response.in_progress", "sequence_number": next(seq), "response": started}, "response.in_progress")
    empty_item = {**item, "status": "in_progress", "content": []}
    yield _sse({"type": "response.output_item.added", "sequence_number": next(seq), "output_index": 0, "item": empty_item}, "response.output_item.added")
    part = {"type": "output_text", "text": "", "annotations": []}
    yield _sse({"type": "response.content_part.added", "sequence_number": next(seq), "item_id": item["id"], "output_index": 0, "content_index": 0, "part": part}, "response.content_part.added")
    for piece in words:
        yield _sse({"type": "response.output_text.delta", "sequence_number": next(seq), "item_id": item["id"], "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []}, "response.output_text.delta")
    yield _sse({"type": "response.output_text.done", "sequence_number": next(seq), "item_id": item["id"], "output_index": 0, "content_index": 0, "text": reply, "logprobs": []}, "response.output_text.done")
    yield _sse({"type": "response.content_part.done", "sequence_number": next(seq), "item_id": item["id"], "output_index": 0, "content_index": 0, "part": {**part, "text": reply}}, "response.content_part.done")
    yield _sse({"type": "response.output_item.done", "sequence_number": next(seq), "output_index": 0, "item": item}, "response.output_item.done")
    yield _sse({"type": "response.completed", "sequence_number": next(seq), "response": done}, "response.completed")
