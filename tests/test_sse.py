"""Upstream SSE framing (issue #12 item 7): the host reads `usage` out of a relayed
stream whatever line ends the upstream uses (CRLF, LF, CR) and however its bytes are cut
into chunks, as the WHATWG EventSource spec frames events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from routeiq.llm.sse import SseEvent, SseParser
from support import eventually, plugin


def parse(*chunks: bytes) -> list[SseEvent]:
    parser = SseParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_framing_follows_the_eventsource_spec() -> None:
    stream = b"\xef\xbb\xbf: a comment\r\nevent: delta\r\ndata: one\r\ndata:two\r\nid: 7\r\n\r\ndata\n\ndata: last\r\rdata: open at the end"
    assert parse(stream) == [
        SseEvent(data=b"one\ntwo", event="delta", id="7"),
        SseEvent(data=b"", id="7"),  # `data` alone is an empty data line
        SseEvent(data=b"last", id="7"),  # CR alone ends lines; the unfinished event is dropped
    ]


def test_a_crlf_split_across_chunks_is_one_line_end() -> None:
    # Read as CR then LF, the LF would be a blank line ending the event early.
    assert parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == [SseEvent(data=b"a\nb")]


def test_events_without_data_and_other_fields_are_not_dispatched() -> None:
    assert parse(b"event: ping\n\nretry: 1500\nunknown: x\n\n: keep-alive\n\ndata: x\n\n") == [SseEvent(data=b"x", retry_ms=1500)]


def test_one_leading_space_is_stripped_and_no_more() -> None:
    assert parse(b"data:  two spaces\ndata:none\n\n") == [SseEvent(data=b" two spaces\nnone")]


_line = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=30)
_event = st.tuples(st.sampled_from(["message", "delta", ""]), st.lists(_line, min_size=1, max_size=4))


@settings(max_examples=300, deadline=None)
@given(events=st.lists(_event, max_size=6), eol=st.sampled_from(["\r\n", "\n", "\r"]), data=st.data())
def test_any_chunking_and_any_line_end_give_the_same_events(events: list[tuple[str, list[str]]], eol: str, data: st.DataObject) -> None:
    text = ""
    for kind, lines in events:
        text += f": comment{eol}"
        if kind:
            text += f"event: {kind}{eol}"
        text += "".join(f"data: {line}{eol}" for line in lines) + eol
    stream = text.encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    expected = [SseEvent(data="\n".join(lines).encode(), event=kind or "message") for kind, lines in events]
    assert parse(*chunks) == expected
    assert parse(stream) == expected


@given(stream=st.binary(max_size=200), cuts=st.lists(st.integers(0, 200), max_size=8))
def test_arbitrary_bytes_parse_the_same_however_cut(stream: bytes, cuts: list[int]) -> None:
    points = sorted(min(c, len(stream)) for c in cuts)
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)])]
    assert parse(*chunks) == parse(stream)


# ---------------------------------------------------------------- end to end
USAGE = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}


def crlf_upstream(chunks: list[bytes]) -> Any:
    """An OpenAI-compatible upstream (raw ASGI) that streams `chunks` as they are."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def test_usage_from_a_crlf_framed_upstream_stream_reaches_plugins(make_app, live, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    delta = {"choices": [{"index": 0, "delta": {"content": "hi"}}]}
    last = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": USAGE}
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\r\n\r\n" for e in (delta, last)) + b"data: [DONE]\r\n\r\n"
    split = body.index(b"usage") + 3
    cut = body.index(b"\r\n", split) + 1  # the CRLF that ends the usage line, cut in two
    chunks = [body[:split], body[split:cut], body[cut:]]
    api_base = live(crlf_upstream(chunks)) + "/v1"
    deployment = {"model_name": "chat", "litellm_params": {"model": "openai/fake", "api_base": api_base, "api_key": "sk-test"}, "model_info": {"id": "a"}}
    app = make_app([plugin("probe", guests["hostcall_probe"])], model_list=[deployment], router={"retries": 0})
    url = live(app)
    with httpx.Client(timeout=30, trust_env=False) as client:
        response = client.post(f"{url}/v1/chat/completions", json={"model": "chat", "stream": True, "messages": [{"role": "user", "content": "hi"}]}, headers={"x-probe": "llm_response"})
    assert response.status_code == 200
    assert response.content == body  # relayed byte for byte
    logs = app.state.gateway.logs.messages
    assert eventually(lambda: "probe llm_response status=0 deployment=a total_tokens=6" in logs("probe"))
