"""The client-facing limits (issue #11, items 5-8), attacked over real sockets.

Each test plays the hostile client against a real uvicorn on loopback: oversized and
too many headers, huge and endless bodies, slowloris heads, idle connections, and JSON
that the standard library accepts but no server should.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest

from support import plugin

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


def deployment(id_: str = "a") -> dict[str, Any]:
    return {"model_name": "chat", "litellm_params": {"model": f"openai/mock-{id_}", "api_base": "embedded", "api_key": "sk-test"}, "model_info": {"id": id_}}


def llm_gateway(make_app, live, plugins: list[dict[str, Any]] | None = None, **server: Any) -> str:  # type: ignore[no-untyped-def]
    return live(make_app(plugins or [], model_list=[deployment()], server=server))


def _addr(base: str) -> tuple[str, int]:
    host, port = base.removeprefix("http://").split(":")
    return host, int(port)


def raw_exchange(base: str, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, return everything the server sends until it closes."""
    with socket.create_connection(_addr(base), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may refuse and close before it has read all of it
        return _read_until_closed(sock)


def _read_until_closed(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def error_of(response: bytes) -> dict[str, Any]:
    head, _, body = response.partition(b"\r\n\r\n")
    return json.loads(body)["error"]


# ------------------------------------------------------------------ headers (5)
def test_too_many_request_headers_get_431_and_health_stays_responsive(make_app, live, http) -> None:
    base = llm_gateway(make_app, live)
    headers = b"".join(b"x-h%d: v\r\n" % i for i in range(5000))
    answer = raw_exchange(base, b"GET /v1/models HTTP/1.1\r\nhost: gw\r\n" + headers + b"\r\n")
    assert status_of(answer) == 431
    error = error_of(answer)
    assert error["type"] == "invalid_request_error" and "100 request headers" in error["message"]
    assert http.get(base + "/health").status_code == 200


def test_a_header_over_the_byte_limit_gets_431_without_being_buffered(make_app, live, http) -> None:
    base = llm_gateway(make_app, live, max_request_headers_kb=8)
    with socket.create_connection(_addr(base), timeout=10) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: gw\r\nx-big: ")
        # An endless header value: the gateway must answer once it passes the cap,
        # not wait for the header to end.
        sent = 0
        try:
            while sent < 4 * 1024 * 1024:
                sock.sendall(b"a" * 16384)
                sent += 16384
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _read_until_closed(sock)
    assert status_of(answer) == 431
    assert sent < 4 * 1024 * 1024  # refused long before the client stopped
    assert http.get(base + "/health").status_code == 200


def test_headers_at_the_limit_pass(make_app, live, http) -> None:
    base = llm_gateway(make_app, live, max_request_headers_count=20)
    ok = http.get(base + "/v1/models", headers={f"x-h{i}": "v" for i in range(10)})
    assert ok.status_code == 200
    over = http.get(base + "/v1/models", headers={f"x-h{i}": "v" for i in range(30)})
    assert over.status_code == 431


# -------------------------------------------------------------------- bodies (6)
def test_declared_body_over_the_cap_is_refused_before_it_is_read(make_app, live) -> None:
    base = llm_gateway(make_app, live, max_request_body_bytes=1024 * 1024)
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: 209715200\r\n\r\n"
    answer = raw_exchange(base, head)  # no body sent at all: the answer cannot wait for it
    assert status_of(answer) == 413
    assert error_of(answer)["code"] == "request_too_large"


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/echo"])
def test_endless_chunked_body_is_cut_off_at_the_cap(make_app, live, http, guests, route) -> None:
    plugins = [plugin("tagger", guests["tagger"])] if route == "/echo" else []
    base = llm_gateway(make_app, live, plugins, max_request_body_bytes=256 * 1024)

    def endless():  # type: ignore[no-untyped-def]
        for _ in range(10_000):  # 160 MB if nobody stops it
            yield b"x" * 16384

    try:
        response = http.post(base + route, content=endless(), headers={"content-type": "application/json"})
    except httpx.HTTPError:
        pytest.fail("the gateway must answer 413, not drop the connection")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert http.get(base + "/health").status_code == 200


def test_body_under_the_cap_passes(make_app, live, http) -> None:
    base = llm_gateway(make_app, live, max_request_body_bytes=64 * 1024)
    big = {"model": "chat", "messages": [{"role": "user", "content": "a" * 30_000}]}
    assert http.post(base + "/v1/chat/completions", json=big).status_code == 200


# -------------------------------------------------------------- timeouts (7)
def test_slowloris_head_is_answered_408_and_closed(make_app, live) -> None:
    base = llm_gateway(make_app, live, header_read_timeout_s=0.5)
    with socket.create_connection(_addr(base), timeout=10) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: gw\r\n")
        began = time.monotonic()
        answer = b""
        # One header byte every 100 ms keeps the connection busy but never finishes.
        try:
            while time.monotonic() - began < 8:
                sock.sendall(b"x")
                time.sleep(0.1)
                sock.setblocking(False)
                try:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert answer, "the gateway kept the slowloris connection open"
    assert status_of(answer) == 408


def test_idle_connection_is_closed(make_app, live) -> None:
    base = llm_gateway(make_app, live, keep_alive_timeout_s=0.5)
    with socket.create_connection(_addr(base), timeout=10) as sock:
        # Never sends a byte: closed after the keep-alive idle timeout, not held forever.
        assert _read_until_closed(sock) == b""


def test_keep_alive_connection_is_closed_after_idling(make_app, live) -> None:
    base = llm_gateway(make_app, live, keep_alive_timeout_s=0.5)
    # uvicorn's own default is 5 s: closing within 4 s shows the setting is applied.
    with socket.create_connection(_addr(base), timeout=4) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: gw\r\n\r\n")
        answer = _read_until_closed(sock)
    assert status_of(answer) == 200


# ------------------------------------------------------------------ JSON (8)
BAD_BODIES = {
    "lone surrogate": b'{"model": "chat", "messages": [{"role": "user", "content": "\\ud800"}]}',
    "deep nesting": b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}], "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "NaN": b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    "Infinity": b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}], "temperature": Infinity}',
    "overflowing float": b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e999}',
    "invalid UTF-8": b'{"model": "chat", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
    "messages of numbers": b'{"model": "chat", "messages": [1, 2]}',
    "non-string role": b'{"model": "chat", "messages": [{"role": 5, "content": "hi"}]}',
    "unknown role": b'{"model": "chat", "messages": [{"role": "root", "content": "hi"}]}',
    "content a number": b'{"model": "chat", "messages": [{"role": "user", "content": 7}]}',
    "content part a string": b'{"model": "chat", "messages": [{"role": "user", "content": ["hi"]}]}',
    "model a list": b'{"model": ["chat"], "messages": [{"role": "user", "content": "hi"}]}',
    "stream a string": b'{"model": "chat", "stream": "yes", "messages": [{"role": "user", "content": "hi"}]}',
    "empty messages": b'{"model": "chat", "messages": []}',
    "top-level list": b"[1]",
    "truncated": b'{"model": "chat", "messages": [',
    "huge integer": b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}], "n": ' + b"9" * 5000 + b"}",
}


@pytest.mark.parametrize("with_plugin", [False, True], ids=["no-plugins", "llm-plugin"])
def test_bad_json_on_the_chat_route_is_a_400(make_app, live, http, guests, with_plugin) -> None:
    # With a plugin on the LLM path the filter parses the body first (for routeiq_*).
    plugins = [plugin("probe", guests["hostcall_probe"])] if with_plugin else []
    base = llm_gateway(make_app, live, plugins)
    for name, body in BAD_BODIES.items():
        response = http.post(base + "/v1/chat/completions", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, f"{name}: {response.status_code} {response.text[:200]}"
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error", name
    assert http.post(base + "/v1/chat/completions", json=CHAT).status_code == 200


def test_bad_json_error_names_the_field(make_app, live, http) -> None:
    base = llm_gateway(make_app, live)
    response = http.post(base + "/v1/chat/completions", content=BAD_BODIES["non-string role"])
    assert response.json()["error"]["param"] == "messages[0].role"
    response = http.post(base + "/v1/chat/completions", content=BAD_BODIES["lone surrogate"])
    assert response.json()["error"]["param"] == "messages[0].content"


def test_bad_json_on_feedback_is_a_400(make_app, live, http) -> None:
    base = llm_gateway(make_app, live)
    for body in (b'{"request_id": "x", "score": NaN}', b'{"request_id": 5, "score": 1}', b"\xff", b'{"request_id": "\\udfff", "score": 1}'):
        assert http.post(base + "/v1/feedback", content=body).status_code == 400, body


def test_bad_json_on_the_embedded_upstream_is_a_400(make_app, live, http, guests) -> None:
    # Not the LLM route: a plain proxy in front of the embedded mock upstream.
    base = live(make_app([plugin("tagger", guests["tagger"])]))
    for name, body in BAD_BODIES.items():
        response = http.post(base + "/v1/chat/completions", content=body)
        assert response.status_code == 400, f"{name}: {response.status_code} {response.text[:200]}"


# ------------------------------------------------ issue #13 item 12: one server, one date
@pytest.fixture
def chatty_upstream():  # type: ignore[no-untyped-def]
    """A plain uvicorn (none of the gateway's settings) whose app sets its own `server` and
    `date` on top of uvicorn's: every response it sends carries two of each."""
    import threading

    import uvicorn

    from support import free_port

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"server", b"upstream-app"), (b"date", b"Thu, 01 Jan 2026 00:00:00 GMT"), (b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"upstream"})

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.parametrize("upstream", ["embedded", "reverse_proxy"])
def test_every_response_carries_one_server_and_one_date(make_app, live, guests, chatty_upstream: str, upstream: str) -> None:  # type: ignore[no-untyped-def]
    direct = httpx.get(chatty_upstream + "/", timeout=10)
    assert len(direct.headers.get_list("server")) == 2 and len(direct.headers.get_list("date")) == 2  # what the gateway is given
    config = "embedded" if upstream == "embedded" else {"url": chatty_upstream}
    base = live(make_app([plugin("tagger", guests["tagger"])], upstream=config, model_list=[deployment()]))
    with httpx.Client(base_url=base, timeout=10) as client:
        answers = [client.get("/echo"), client.get("/health"), client.get("/metrics"), client.post("/v1/chat/completions", json=CHAT)]
    for response in answers:
        assert response.headers.get_list("server") == ["routeiq"], (response.request.url, response.headers)
        assert len(response.headers.get_list("date")) == 1, (response.request.url, response.headers)
        assert response.headers["date"].endswith(" GMT") and "2026 00:00:00" not in response.headers["date"]
    # The front door's own refusals (written by the protocol, not the app) too.
    refused = raw_exchange(base, b"GET /echo HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n").lower()
    assert refused.startswith(b"http/1.1 431") and refused.count(b"\r\nserver: routeiq\r\n") == 1 and refused.count(b"\r\ndate: ") == 1, refused[:300]
