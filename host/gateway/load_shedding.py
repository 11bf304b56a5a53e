"""A concurrency limit: past `limit` requests in flight, answer 503 with Retry-After at
once instead of queueing (a queue only adds latency to an overloaded gateway). It also
times every request for the request latency histogram, and ends it: the LLM request
counter (`LlmTelemetry.request_end`) and the access-log line (`server.access_log`)."""

from __future__ import annotations

import time
from collections import Counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from routeiq.dispatch.hook_stats import LatencyHistogram
from routeiq.error_responses import send_error
from routeiq.llm.telemetry import RECORD_KEY, LlmTelemetry, RequestRecord

from .access_log import access_line

EXEMPT = ("/health", "/metrics", "/ui/live")  # the console polls /ui/live: not traffic


class ConcurrencyLimit:
    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        latency: LatencyHistogram,
        retry_after_s: int = 1,
        telemetry: LlmTelemetry | None = None,
        access_log: bool = False,
        outcomes: Counter[str] | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.retry_after = str(retry_after_s).encode()
        self.in_flight = 0
        self.shed = 0
        self.latency = latency  # every request this worker served (seconds), owned by the gateway
        self.telemetry = telemetry  # None: no model_list
        self.access_log = access_log
        self.outcomes = outcomes  # answers by status class ("2xx", "4xx", "5xx", ...), owned by the gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.limit and self.in_flight >= self.limit:
            self.shed += 1
            if self.outcomes is not None:
                self.outcomes["5xx"] += 1
            await send_error(send, 503, f"the gateway is at its concurrency limit ({self.limit}); retry shortly", "server_error", "overloaded", [(b"retry-after", self.retry_after)])
            return
        self.in_flight += 1
        began = time.perf_counter()
        record = RequestRecord(scope["method"], scope["path"])
        scope[RECORD_KEY] = record
        head: list[Message] = []
        unanswered = 499  # no answer started and nothing raised: the client left

        async def noting_send(message: Message) -> None:
            if not head and message["type"] == "http.response.start":
                head.append(message)
            await send(message)

        try:
            await self.app(scope, receive, noting_send)
        except Exception:
            unanswered = 500  # Starlette's error middleware answers it
            raise
        finally:
            self.in_flight -= 1
            elapsed = time.perf_counter() - began
            self.latency.observe(elapsed)
            status = int(head[0]["status"]) if head else unanswered
            if self.outcomes is not None:
                self.outcomes[f"{status // 100}xx"] += 1
            if record.llm and self.telemetry is not None:
                self.telemetry.request_end(record, status)
            if self.access_log:
                access_line(record, status, elapsed, _request_id(head, scope))


def _request_id(head: list[Message], scope: Scope) -> str:
    """The answer's x-request-id (the gateway's or the client's), else the request's."""
    for headers in ((head[0].get("headers") or ()) if head else (), scope.get("headers") or ()):
        for name, value in headers:
            if name == b"x-request-id":
                return value.decode("latin-1")
    return ""
