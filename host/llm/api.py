"""The OpenAI-compatible endpoints: /v1/chat/completions, /v1/models, /v1/feedback.

A deployment that fails before its first byte (error status, timeout, refused
connection) is marked on its breaker and the next candidate is tried; once bytes have
gone to the client, a stream is never switched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, AsyncIterator

from opentelemetry.trace import SpanKind, Status, StatusCode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from routeiq.hostcalls.llm_exchange import ChatRequestError, LlmExchange, LlmOutcome
from routeiq.strict_json import JsonInputError, loads

from .backends import BackendError, EmbeddedBackend, LitellmBackend, PassthroughBackend
from .deployments import LiveDeployment
from .router import LlmRouter, NoSuchModel, RoutedCall

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

log = logging.getLogger("routeiq.llm")

LLM_ROUTES = ("/v1/chat/completions", "/v1/models", "/v1/feedback")


def openai_error(status: int, message: str, type_: str, code: str | None = None, headers: dict[str, str] | None = None, param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}}, status_code=status, headers=headers)


class UsageTap:
    """Finds `usage` in an SSE stream as it passes (it comes in the last chunk)."""

    def __init__(self) -> None:
        self._buffer = b""
        self.usage: dict[str, int] = {}

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        while b"\n\n" in self._buffer:
            event, self._buffer = self._buffer.split(b"\n\n", 1)
            for line in event.split(b"\n"):
                if line.startswith(b"data:") and b'"usage"' in line:
                    try:
                        usage = loads(line[5:].strip()).get("usage")
                    except (JsonInputError, AttributeError):
                        continue
                    if isinstance(usage, dict):
                        self.usage = usage


class LlmApi:
    def __init__(self, router: LlmRouter, embedded: EmbeddedBackend, passthrough: PassthroughBackend, litellm: LitellmBackend, timeout_s: float, retries: int) -> None:
        self.tracer: Tracer | None = None  # set by the app when tracing is on
        self.events: Any = None  # GatewayEvents, set by the app
        self.native: list[Any] = []  # native GatewayPlugins, set by the app
        self.router = router
        self.backends = {"embedded": embedded, "passthrough": passthrough, "litellm": litellm}
        self.timeout_s = timeout_s
        self.retries = retries
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/feedback", self.feedback, methods=["POST"]),
            ]
        )

    async def aclose(self) -> None:
        await self.backends["passthrough"].aclose()  # type: ignore[attr-defined]

    async def models(self, _: Request) -> JSONResponse:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "routeiq"} for m in self.router.models]
        return JSONResponse({"object": "list", "data": data})

    async def feedback(self, request: Request) -> Response:
        try:
            payload = loads(await request.body() or b"null")
            request_id = payload["request_id"]
            score = payload["score"]
            if not isinstance(request_id, str) or isinstance(score, bool) or not isinstance(score, (int, float)):
                raise TypeError
        except (JsonInputError, KeyError, TypeError):
            return openai_error(400, "expected {\"request_id\": str, \"score\": number between 0 and 1}", "invalid_request_error")
        if not 0.0 <= score <= 1.0:
            return openai_error(400, "score must be between 0 and 1", "invalid_request_error", "invalid_score")
        if not self.router.feedback(request_id, score):
            return openai_error(404, f"no recent answered request {request_id!r} (feedback goes to the worker that served it)", "invalid_request_error", "unknown_request")
        return JSONResponse({"ok": True, "request_id": request_id, "score": score})

    async def chat_completions(self, request: Request) -> Response:
        exchange: LlmExchange | None = request.scope.get("routeiq.llm")
        if exchange is None:
            try:
                exchange = LlmExchange.parse(await request.body(), frozenset(self.router.groups))
            except ChatRequestError as exc:
                return openai_error(400, exc.message, "invalid_request_error", "invalid_body", param=exc.param)
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        for native in self.native:
            changed = await native.on_llm_pre_call(request_id, exchange.request)
            if changed is not None:
                exchange.request = changed
        body = exchange.request
        try:
            call = self.router.plan(request_id, body, exchange.pinned_model, request.headers.get("authorization", "") or request.headers.get("x-api-key", ""))
            if self.tracer is not None:
                with self.tracer.start_as_current_span("route") as span:
                    span.set_attribute("routeiq.strategy", call.decision.strategy)
                    span.set_attribute("routeiq.model", call.request.model)
                    span.set_attribute("routeiq.candidates", [d.id for d in call.order])
                    span.set_attribute("routeiq.chosen", call.order[0].id)
                    span.set_attribute("routeiq.decide_us", call.decide_s * 1e6)
        except NoSuchModel as exc:
            return openai_error(404, f"the model {str(exc) or '(none)'!r} does not exist; see GET /v1/models", "invalid_request_error", "model_not_found")
        if body.get("stream"):
            return await self._stream(call, body, exchange)
        return await self._complete(call, body, exchange)

    def _headers(self, call: RoutedCall, d: LiveDeployment, attempts: int) -> dict[str, str]:
        return {
            "x-routeiq-model": call.request.model,
            "x-routeiq-deployment": d.id,
            "x-routeiq-strategy": call.decision.strategy,
            "x-routeiq-attempts": str(attempts),
            "x-request-id": call.request.request_id,
        }

    def _emit(self, event_type: str, payload: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.emit(event_type, payload)

    def _outcome(self, exchange: LlmExchange, call: RoutedCall, d: LiveDeployment, status: int, began: float, usage: dict[str, int] | None) -> None:
        usage = usage or {}
        self._emit(
            "request_complete",
            {
                "request_id": call.request.request_id,
                "model": call.request.model,
                "deployment": d.id,
                "strategy": call.decision.strategy,
                "status": status,
                "latency_ms": round((time.perf_counter() - began) * 1000.0, 3),
                "usage": dict(usage),
            },
        )
        if d is not call.order[0]:
            self._emit("model_switch", {"request_id": call.request.request_id, "model": call.request.model, "from": call.order[0].id, "to": d.id})
        exchange.outcome = LlmOutcome(
            model=call.request.model,
            deployment=d.id,
            provider_model=d.upstream_model,
            strategy=call.decision.strategy,
            status=status,
            latency_ms=(time.perf_counter() - began) * 1000.0,
            prompt_tokens=int(usage.get("prompt_tokens", 0) or 0),
            completion_tokens=int(usage.get("completion_tokens", 0) or 0),
        )

    def _span(self, call: RoutedCall, d: LiveDeployment, stream: bool):  # type: ignore[no-untyped-def]
        """A client span for one deployment call, with the gen_ai semantic attributes."""
        if self.tracer is None:
            return None
        span = self.tracer.start_span(f"chat {d.upstream_model}", kind=SpanKind.CLIENT)
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.system", d.kind if d.kind != "litellm" else str(d.litellm_params.get("model", "")).split("/", 1)[0])
        span.set_attribute("gen_ai.request.model", d.upstream_model)
        span.set_attribute("routeiq.deployment", d.id)
        span.set_attribute("routeiq.stream", stream)
        return span

    @staticmethod
    def _end_span(span, ok: bool, usage: dict[str, int] | None, error: str = "") -> None:  # type: ignore[no-untyped-def]
        if span is None:
            return
        usage = usage or {}
        if "prompt_tokens" in usage:
            span.set_attribute("gen_ai.usage.input_tokens", int(usage.get("prompt_tokens") or 0))
            span.set_attribute("gen_ai.usage.output_tokens", int(usage.get("completion_tokens") or 0))
        if not ok:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    def _attempts(self, call: RoutedCall) -> list[LiveDeployment]:
        return call.order[: self.retries + 1]

    async def _complete(self, call: RoutedCall, body: dict[str, Any], exchange: LlmExchange) -> Response:
        last: BackendError | None = None
        for attempt, d in enumerate(self._attempts(call), start=1):
            breaker = self.router.breaker(d)
            if not breaker.allow():
                continue
            began = time.perf_counter()
            span = self._span(call, d, False)
            try:
                answer = await self.backends[d.kind].complete(d, body, self.timeout_s)
            except BackendError as exc:
                self._end_span(span, False, None, str(exc))
                self.router.record(call, d, False, time.perf_counter() - began)
                log.warning("request %s: %s failed (%s); %s", call.request.request_id, d.id, exc, "failing over" if exc.retryable else "not retryable")
                last = exc
                if not exc.retryable:
                    break
                self.router.fallbacks += 1
                continue
            usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else None
            if span is not None:
                span.set_attribute("gen_ai.response.model", str(answer.get("model", "")))
            self._end_span(span, True, usage)
            self.router.record(call, d, True, time.perf_counter() - began, usage)
            self._outcome(exchange, call, d, 200, began, usage)
            await self._native_success(call, exchange)
            return JSONResponse(answer, headers=self._headers(call, d, attempt))
        return await self._exhausted(call, last)

    async def _stream(self, call: RoutedCall, body: dict[str, Any], exchange: LlmExchange) -> Response:
        last: BackendError | None = None
        for attempt, d in enumerate(self._attempts(call), start=1):
            breaker = self.router.breaker(d)
            if not breaker.allow():
                continue
            began = time.perf_counter()
            span = self._span(call, d, True)
            try:
                chunks = await self.backends[d.kind].stream(d, body, self.timeout_s)
            except BackendError as exc:
                self._end_span(span, False, None, str(exc))
                self.router.record(call, d, False, time.perf_counter() - began)
                last = exc
                if not exc.retryable:
                    break
                self.router.fallbacks += 1
                continue
            return StreamingResponse(
                self._relay(chunks, call, d, began, exchange, span),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache", **self._headers(call, d, attempt)},
            )
        return await self._exhausted(call, last)

    async def _relay(self, chunks: AsyncIterator[bytes], call: RoutedCall, d: LiveDeployment, began: float, exchange: LlmExchange, span: Any = None) -> AsyncIterator[bytes]:
        tap = UsageTap()
        ok = False
        client_gone = False
        try:
            async for chunk in chunks:
                tap.feed(chunk)
                yield chunk
            ok = True
        except (GeneratorExit, asyncio.CancelledError):
            # Closed or cancelled from our side (the client hung up, or shutdown), whether
            # while waiting for the next chunk or while handing one on.
            client_gone = True
            raise
        finally:
            if client_gone:
                # The client hung up: says nothing about the deployment, so neither its
                # breaker nor the strategy's statistics hear of it (499, as nginx logs it).
                self._end_span(span, False, tap.usage, "client closed the stream")
                self._outcome(exchange, call, d, 499, began, tap.usage)
            else:
                self._end_span(span, ok, tap.usage, "" if ok else "stream interrupted")
                self.router.record(call, d, ok, time.perf_counter() - began, tap.usage)
                self._outcome(exchange, call, d, 200 if ok else 502, began, tap.usage)
            if ok:
                await self._native_success(call, exchange)

    async def _native_success(self, call: RoutedCall, exchange: LlmExchange) -> None:
        outcome = exchange.outcome.as_dict() if exchange.outcome is not None else {}
        for native in self.native:
            try:
                await native.on_llm_success(call.request.request_id, outcome)
            except Exception:
                log.exception("native plugin %s failed in on_llm_success", native.name)

    async def _exhausted(self, call: RoutedCall, last: BackendError | None) -> Response:
        for native in self.native:
            try:
                await native.on_llm_failure(call.request.request_id, str(last or "no healthy deployment"))
            except Exception:
                log.exception("native plugin %s failed in on_llm_failure", native.name)
        self._emit("error", {"request_id": call.request.request_id, "model": call.request.model, "status": 503 if last is None else 502, "error": str(last or "no healthy deployment")})
        if last is None:
            return openai_error(503, f"no healthy deployment for {call.request.model!r} (all circuit breakers open)", "server_error", "no_healthy_deployment", {"retry-after": "5"})
        if not last.retryable and last.body:
            try:
                return JSONResponse(loads(last.body), status_code=last.status)
            except JsonInputError:
                pass
        return openai_error(504 if last.status == 504 else 502, f"all deployments failed; last: {last}", "server_error", "upstream_error")
