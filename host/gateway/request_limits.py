"""Outermost ASGI middleware: the request-body cap (`server.max_request_body_bytes`).

A declared Content-Length over the cap is answered 413 before a byte of the body is
read; a chunked body is counted as it streams and ends in 413 the moment it passes the
cap (or, if the response already started, the connection is aborted). Nothing past the
cap is ever buffered, whichever layer reads the body: to the inner app the client has
gone away.

/admin/ is not a client route: its handlers read bodies under their own limits
(admin.max_config_bytes, admin.max_module_bytes; host/admin/body.py), so a module upload
may be larger than a chat request.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from routeiq.error_responses import send_error


ADMIN_PREFIX = "/admin/"


class RequestLimits:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        cap = self.max_body_bytes
        declared = _content_length(scope["headers"])
        if declared is not None:
            if declared > cap:
                await send_error(send, 413, f"request body of {declared} bytes exceeds the limit of {cap} bytes", "invalid_request_error", "request_too_large", [(b"connection", b"close")])
            else:
                # The HTTP parser delivers exactly content-length bytes: nothing to count.
                await self.app(scope, receive, send)
            return
        received = 0
        started = False
        exceeded = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    # The inner app sees the client go away, so every reader stops the
                    # same way; what it sends from then on is dropped for the 413.
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded:
            if started:
                raise ConnectionAbortedError("request body exceeded the limit after the response started")
            await send_error(send, 413, f"request body exceeds the limit of {cap} bytes", "invalid_request_error", "request_too_large", [(b"connection", b"close")])


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP parser already refused anything that is not digits
    return None
