"""A concurrency limit: past `limit` requests in flight, answer 503 with Retry-After at
once instead of queueing (a queue only adds latency to an overloaded gateway)."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from .errors import send_error

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
EXEMPT = ("/health", "/metrics")


class ConcurrencyLimit:
    def __init__(self, app: ASGIApp, limit: int, retry_after_s: int = 1) -> None:
        self.app = app
        self.limit = limit
        self.retry_after = str(retry_after_s).encode()
        self.in_flight = 0
        self.shed = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.limit or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self.shed += 1
            await send_error(send, 503, f"the gateway is at its concurrency limit ({self.limit}); retry shortly", "server_error", "overloaded", [(b"retry-after", self.retry_after)])
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
