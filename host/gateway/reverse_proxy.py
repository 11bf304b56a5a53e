"""The upstream as an ASGI app: forwards each request to a configured URL with httpx.

Connections are pooled in one AsyncClient per app. Request and response bodies are
streamed in both directions; nothing is buffered here.

Deadlines (`upstream.timeout_s`), bounded in wall-clock time, not per socket read (a
trickle of one byte a second defeats a read timeout): the response head must arrive
within timeout_s of the request having been sent (504 otherwise), and then every body
chunk within timeout_s of the previous one (otherwise the response is cut: the client
sees a truncated body and a closed connection). A proxy cannot bound a whole response
it streams through (downloads, event streams), so there is no total deadline.
"""

from __future__ import annotations

import asyncio
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
        self.timeout_s = timeout_s
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

        loop = asyncio.get_running_loop()
        # Armed once the request is sent: a slow client upload is not the upstream's time.
        head_deadline = asyncio.timeout(None)

        async def body() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnected()
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    head_deadline.reschedule(loop.time() + self.timeout_s)
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
            async with head_deadline:
                if content is None:
                    head_deadline.reschedule(loop.time() + self.timeout_s)
                response = await client.send(request, stream=True)
        except ClientDisconnected:
            return
        except (httpx.TimeoutException, TimeoutError) as exc:
            await send_error(send, 504, f"upstream timed out: no response head within {self.timeout_s:g} s ({type(exc).__name__})", "upstream_error", "upstream_timeout")
            return
        except httpx.HTTPError as exc:
            log.warning("upstream %s failed: %s", url, exc)
            await send_error(send, 502, f"upstream unreachable: {exc}", "upstream_error", "upstream_unreachable")
            return
        try:
            out_headers = [(k, v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP]
            await send({"type": "http.response.start", "status": response.status_code, "headers": out_headers})
            chunks = response.aiter_raw()
            while True:
                try:
                    async with asyncio.timeout(self.timeout_s):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except (httpx.TimeoutException, TimeoutError):
                    # Headers are out: all that is left is to cut the response (returning
                    # without the last body message makes the server close the connection).
                    log.warning("upstream %s sent nothing for %g s (upstream.timeout_s); response cut", url, self.timeout_s)
                    return
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
