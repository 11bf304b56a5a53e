"""The upstream as an ASGI app: forwards each request to a configured URL with httpx.

Connections are pooled in one AsyncClient per app. Request and response bodies are
streamed in both directions; nothing is buffered here.
"""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator, Awaitable, Callable

import httpx

from .errors import send_error

log = logging.getLogger("routeiq.gateway.upstream")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"host"}
)


class ReverseProxy:
    def __init__(self, base_url: str, timeout_s: float = 60.0, connect_timeout_s: float = 5.0, max_connections: int = 100) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            # No proxies from the environment, no redirects: the gateway is the proxy.
            self._client = httpx.AsyncClient(timeout=self._timeout, limits=self._limits, trust_env=False, follow_redirects=False)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("raw_path") or scope["path"].encode()
        if isinstance(path, bytes):
            path = path.decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        url = self.base_url + path + (f"?{query}" if query else "")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP]
        has_length = any(k.lower() == b"content-length" for k, _ in headers)
        method = scope["method"]

        async def body() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnected()
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return

        content: Any
        if has_length or method in ("POST", "PUT", "PATCH"):
            content = body()
        else:
            content = None
            await _drain(receive)
        client = self.client()
        request = client.build_request(method, url, headers=headers, content=content)
        try:
            response = await client.send(request, stream=True)
        except ClientDisconnected:
            return
        except httpx.TimeoutException as exc:
            await send_error(send, 504, f"upstream timed out: {type(exc).__name__}", "upstream_error", "upstream_timeout")
            return
        except httpx.HTTPError as exc:
            log.warning("upstream %s failed: %s", url, exc)
            await send_error(send, 502, f"upstream unreachable: {exc}", "upstream_error", "upstream_unreachable")
            return
        try:
            out_headers = [(k, v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP]
            await send({"type": "http.response.start", "status": response.status_code, "headers": out_headers})
            async for chunk in response.aiter_raw():
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()


class ClientDisconnected(Exception):
    """The downstream client went away while its body was being forwarded."""


async def _drain(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
