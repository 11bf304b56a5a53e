"""The gateway's one outbound HTTP client (issue #12 item 7), seen from an upstream: it
forwards what the client sent and nothing of its own, and one client's cookies never
reach another (the pool is shared by every request, callout and webhook)."""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit


def recording_upstream(seen: list[dict[str, str]]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append({k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"set-cookie", b"session=secret-of-the-first-client"), (b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def bare_get(base: str, path: str) -> bytes:
    """A request with only the headers HTTP/1.1 requires (no client library adds any)."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_the_proxy_adds_no_headers_of_its_own_and_keeps_no_cookies(make_app, live) -> None:  # type: ignore[no-untyped-def]
    seen: list[dict[str, str]] = []
    # By name: a cookie jar would keep cookies for a name (it refuses them for bare addresses).
    upstream = live(recording_upstream(seen)).replace("127.0.0.1", "localhost")
    gateway = live(make_app([], upstream={"url": upstream}))
    first = bare_get(gateway, "/first")
    assert first.startswith(b"HTTP/1.1 200") and b"set-cookie: session=secret-of-the-first-client" in first.lower()
    assert bare_get(gateway, "/second").startswith(b"HTTP/1.1 200")
    assert len(seen) == 2
    assert not {"user-agent", "accept", "accept-encoding", "content-type", "cookie"} & set(seen[0])
    assert "cookie" not in seen[1]  # the first client's cookie stayed with the first client
