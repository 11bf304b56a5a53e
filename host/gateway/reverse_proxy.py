"""The upstream as an ASGI app: forwards each request to a configured URL with httpx.

The upstream URL is built from parts (the configured scheme, host and port, its base
path, then the request's origin-form path), never by joining strings, so no `:path`
can name another host. Requests go straight to httpx's connection pool (one transport
per app): no cookie jar, no redirects, no proxies from the environment, and header
handling that stays linear in the number of headers. Bodies stream both ways.

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
from typing import Any, AsyncIterator

import httpx
from starlette.types import Receive, Scope, Send

from routeiq.hostcalls.header_rules import valid_origin_form

from .errors import send_error

log = logging.getLogger("routeiq.gateway.upstream")


HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"host"}
)


class ReverseProxy:
    def __init__(self, base_url: str, timeout_s: float = 60.0, connect_timeout_s: float = 5.0, max_connections: int = 100) -> None:
        self.base_url = base_url.rstrip("/")
        self._base = httpx.URL(self.base_url)
        self._base_path = self._base.raw_path.split(b"?", 1)[0].rstrip(b"/")
        self.timeout_s = timeout_s
        self._timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s).as_dict()
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._transport: httpx.AsyncHTTPTransport | None = None

    def transport(self) -> httpx.AsyncHTTPTransport:
        if self._transport is None:
            self._transport = httpx.AsyncHTTPTransport(limits=self._limits, trust_env=False)
        return self._transport

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    def url_for(self, path: bytes, query: bytes) -> httpx.URL:
        """The upstream URL: configured scheme/host/port + base path + `path`, which the
        caller has checked is origin-form."""
        target = self._base_path + path + (b"?" + query if query else b"")
        return self._base.copy_with(raw_path=target)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("raw_path") or scope["path"].encode("latin-1")
        if not valid_origin_form(path):
            await send_error(send, 400, "the request target must be an origin-form path", "invalid_request_error", "invalid_path")
            return
        url = self.url_for(path, scope.get("query_string", b""))
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP]
        # Host is the upstream's, unless a plugin rewrote :authority (host rewriting).
        rewritten = scope.get("routeiq.authority")
        if rewritten:
            headers.insert(0, (b"host", rewritten))
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
        request = httpx.Request(method, url, headers=headers, content=content, extensions={"timeout": self._timeout})
        try:
            async with head_deadline:
                if content is None:
                    head_deadline.reschedule(loop.time() + self.timeout_s)
                response = await self.transport().handle_async_request(request)
        except ClientDisconnected:
            return
        except (httpx.TimeoutException, TimeoutError) as exc:
            await send_error(send, 504, f"upstream timed out: no response head within {self.timeout_s:g} s ({type(exc).__name__})", "upstream_error", "upstream_timeout")
            return
        except httpx.HTTPError as exc:
            log.warning("upstream %s failed: %s", url, exc)
            await send_error(send, 502, f"upstream unreachable: {exc}", "upstream_error", "upstream_unreachable")
            return
        response.request = request
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
                    log.warning("upstream %s sent nothing for %g s (upstream.timeout_s); response cut", url, self.timeout_s)
                    raise ConnectionAbortedError("upstream stalled mid-response") from None
                except httpx.HTTPError as exc:
                    log.warning("upstream %s failed mid-response: %s", url, exc)
                    raise ConnectionAbortedError("upstream failed mid-response") from None
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
