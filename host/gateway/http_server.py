"""The HTTP/1.1 front door: uvicorn's httptools protocol with the client-side limits.

uvicorn has no request-head limits (a 100 MB header or 100k headers were buffered and
then walked), no header-read timeout (a slowloris client holds a connection forever),
and arms its keep-alive timer only after a first response, so a connection that never
sends a byte is never closed. Envoy answers these with max_request_headers_kb/count
(431), request_headers_timeout (408) and idle_timeout; this protocol does the same.
Limits on the body are the ASGI middleware's (request_limits.py): they need the route.

Every response carries exactly one `server` (`routeiq`) and one `date`, the gateway's own,
as Envoy's HTTP connection manager overwrites both by default
(`server_header_transformation: OVERWRITE`): uvicorn writes them, and what an upstream, the
embedded upstream or a plugin put there is dropped as the response head leaves (plugins
still see an upstream's in `proxy_on_response_headers`, as in Envoy).
"""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import dataclass
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

SERVER_NAME = b"routeiq"
_GATEWAY_HEADERS = frozenset({b"server", b"date"})

# Request line and header framing ("name: value\r\n") on top of the header bytes counted.
_FRAMING_SLACK = 8 * 1024


@dataclass(frozen=True)
class HeadLimits:
    max_header_bytes: int
    max_header_count: int
    header_read_timeout_s: float

    @classmethod
    def from_server(cls, server: Any) -> "HeadLimits":
        """From the config's `server` section (routeiq.config.ServerConfig)."""
        return cls(server.max_request_headers_kb * 1024, server.max_request_headers_count, server.header_read_timeout_s)


class _Refused(Exception):
    """Raised from a parser callback to stop parsing this request's head."""


class GatewayHeaders:
    """ASGI wrapper dropping the app's `server` and `date` response headers: uvicorn
    writes the gateway's own (its default headers), so each appears once."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_gateway_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers") or ()
                if any(name.lower() in _GATEWAY_HEADERS for name, _ in headers):
                    message = {**message, "headers": [(n, v) for n, v in headers if n.lower() not in _GATEWAY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_gateway_headers)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, limits: HeadLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = GatewayHeaders(self.app)
        self.limits = limits
        self._in_head = False
        self._head_raw = 0  # bytes received while the current head is incomplete
        self._head_bytes = 0  # header names + values (and the URL) of the current head
        self._head_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, str] | None = None

    # A connection that never sends a byte is idle too: close it like a kept-alive one.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._refusal is not None:
                self._refuse(*self._refusal)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self._refuse(400, "invalid HTTP request")
            return
        if self._in_head:
            # httptools buffers a header until it ends; count raw bytes so one endless
            # header cannot grow without bound before on_header sees it.
            self._head_raw += len(data)
            if self._head_raw > self.limits.max_header_bytes + _FRAMING_SLACK:
                self._refuse(431, f"request headers exceed {self.limits.max_header_bytes // 1024} KiB")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_raw = 0
        self._head_bytes = 0
        self._head_count = 0
        self._refusal = None
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.limits.header_read_timeout_s, self._head_timed_out)

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if self._head_bytes > self.limits.max_header_bytes:
            self._stop(414, f"request line and headers exceed {self.limits.max_header_bytes // 1024} KiB")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_count += 1
        self._head_bytes += len(name) + len(value)
        if self._head_count > self.limits.max_header_count:
            self._stop(431, f"more than {self.limits.max_header_count} request headers")
        if self._head_bytes > self.limits.max_header_bytes:
            self._stop(431, f"request headers exceed {self.limits.max_header_bytes // 1024} KiB")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def _stop(self, status: int, message: str) -> None:
        self._refusal = (status, message)
        raise _Refused(message)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, f"request head not received within {self.limits.header_read_timeout_s:g} s")

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, status: int, message: str) -> None:
        """Answer with an OpenAI-shaped error and close: the rest of this connection's
        bytes cannot be framed any more."""
        self._in_head = False
        self._cancel_head_timer()
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            code = {400: "invalid_request", 408: "request_timeout", 414: "uri_too_long", 431: "request_header_fields_too_large"}.get(status)
            body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}).encode()
            reason = {400: b"Bad Request", 408: b"Request Timeout", 414: b"URI Too Long", 431: b"Request Header Fields Too Large"}[status]
            head = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
            for name, value in self.server_state.default_headers:
                head.append(name + b": " + value + b"\r\n")
            head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
            self.transport.write(b"".join(head) + body)
        self.transport.close()


def uvicorn_config(app: Any, server: Any, **options: Any) -> uvicorn.Config:
    """The uvicorn settings `serve` and the tests run with (`server`: ServerConfig)."""
    return uvicorn.Config(app, **uvicorn_options(server), **options)


def uvicorn_options(server: Any) -> dict[str, Any]:
    protocol = functools.partial(GuardedHttpToolsProtocol, limits=HeadLimits.from_server(server))
    return {
        "http": protocol,
        "timeout_keep_alive": server.keep_alive_timeout_s,
        "timeout_graceful_shutdown": server.drain_timeout_s,
        "lifespan": "on",
        "server_header": False,
        "date_header": True,
        "headers": [("server", SERVER_NAME.decode())],
    }
