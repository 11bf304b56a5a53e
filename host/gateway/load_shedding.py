"""A concurrency limit: past `limit` requests in flight, answer 503 with Retry-After at
once instead of queueing (a queue only adds latency to an overloaded gateway). It also
times every request for the request latency histogram."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Receive, Scope, Send

from routeiq.dispatch.hook_stats import LatencyHistogram

from routeiq.error_responses import send_error

EXEMPT = ("/health", "/metrics")


class ConcurrencyLimit:
    def __init__(self, app: ASGIApp, limit: int, latency: LatencyHistogram, retry_after_s: int = 1) -> None:
        self.app = app
        self.limit = limit
        self.retry_after = str(retry_after_s).encode()
        self.in_flight = 0
        self.shed = 0
        self.latency = latency  # every request this worker served (seconds), owned by the gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.limit and self.in_flight >= self.limit:
            self.shed += 1
            await send_error(send, 503, f"the gateway is at its concurrency limit ({self.limit}); retry shortly", "server_error", "overloaded", [(b"retry-after", self.retry_after)])
            return
        self.in_flight += 1
        began = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.latency.observe(time.perf_counter() - began)
