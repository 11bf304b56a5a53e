"""The OpenAI-compatible endpoints: /v1/chat/completions, the other operations routed by
`model` (operations.py: completions, embeddings, responses, moderations, images, speech,
transcriptions), /v1/models[/{id}], /v1/feedback; each also without the /v1 prefix, as
LiteLLM's proxy serves them.

A deployment that fails before its first byte (error status, timeout, refused
connection, an answer that is not a JSON object) is marked on its breaker and the next
candidate is tried; once bytes have gone to the client, a stream is never switched.

Deadlines are whole (`Deadlines`): a non-streaming attempt gets `timeout_s` for all of
it, connect to last body byte; a streaming one gets `first_byte_s` until its first
chunk, then at most `idle_s` between chunks. A stream that goes quiet mid-way ends with
an OpenAI-style `data: {"error": ...}` event and no `[DONE]`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Mapping, Protocol, Sequence

from opentelemetry.trace import SpanKind, Status, StatusCode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from routeiq.error_responses import exception_handlers
from routeiq.hostcalls.llm_exchange import ChatRequestError, LlmExchange, LlmOutcome, check_chat_request
from routeiq.services.request_ids import new_request_id
from routeiq.strict_json import JsonInputError, loads

from . import anthropic_format
from .backends import BackendError, EmbeddedBackend, LitellmBackend, PassthroughBackend
from .deployments import LiveDeployment
from .operations import OPERATIONS, Operation, OperationRequest, OperationRequestError, read_operation_request
from .router import LlmRouter, NoSuchModel, RoutedCall
from .sse import SseParser
from .telemetry import LlmTelemetry, provider_name, track

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer


class EventEmitter(Protocol):
    """Where gateway events (webhooks) go: routing fallbacks, upstream failures."""

    def emit(self, event_type: str, payload: Mapping[str, Any]) -> None: ...


log = logging.getLogger("routeiq.llm")

CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_API_PATHS = ["/v1/chat/completions", "/v1/messages", "/v1/models", "/v1/feedback"] + [op.path for op in OPERATIONS]
# Every path the LLM API answers (`llm_dispatch` sends these to it); /v1/models/{id} by prefix.
LLM_ROUTES = frozenset(_API_PATHS + [p.removeprefix("/v1") for p in _API_PATHS])
MODEL_PREFIXES = ("/v1/models/", "/models/")


def is_llm_path(path: str) -> bool:
    return path in LLM_ROUTES or path.startswith(MODEL_PREFIXES)


def openai_error(status: int, message: str, type_: str, code: str | None = None, headers: dict[str, str] | None = None, param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}}, status_code=status, headers=headers)


class UsageTap:
    """Finds `usage` in an SSE stream as it passes (it comes in the last chunk)."""

    def __init__(self) -> None:
        self._events = SseParser()
        self.usage: dict[str, int] = {}

    def feed(self, chunk: bytes) -> None:
        for event in self._events.feed(chunk):
            if b'"usage"' not in event.data:
                continue
            try:
                usage = loads(event.data).get("usage")
            except (JsonInputError, AttributeError):
                continue
            if isinstance(usage, dict):
                self.usage = usage


@dataclass(frozen=True)
class Deadlines:
    """router.timeout_s, router.first_byte_timeout_s (default timeout_s), router.stream_idle_timeout_s."""

    whole_s: float = 60.0
    first_byte_s: float = 60.0
    idle_s: float = 30.0


class Meter(Protocol):
    """Charges answered requests to their consumer (identity.KeyAuthenticator)."""

    def charge(self, consumer: Any, request_id: str, model_group: str, deployment: str, prompt_tokens: int, completion_tokens: int, cost: float) -> None: ...


class LlmApi:
    def __init__(
        self,
        router: LlmRouter,
        embedded: EmbeddedBackend,
        passthrough: PassthroughBackend,
        litellm: LitellmBackend,
        deadlines: Deadlines,
        retries: int,
        tracer: Tracer | None = None,
        events: EventEmitter | None = None,
        native: Sequence[Any] = (),
        telemetry: LlmTelemetry | None = None,
        meter: Meter | None = None,
    ) -> None:
        self.meter = meter  # charges answered requests to their virtual key (keys.enabled)
        self.tracer = tracer  # None: tracing is off
        self.telemetry = telemetry or LlmTelemetry(frozenset(router.models))  # GenAI metrics
        self.events = events
        self.native = list(native)  # native GatewayPlugins: told of every attempt
        self.router = router
        self.backends = {"embedded": embedded, "passthrough": passthrough, "litellm": litellm}
        self.deadlines = deadlines
        self.retries = retries
        routes = [
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/messages", self.messages, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/models/{model:path}", self.model, methods=["GET"]),
            Route("/v1/feedback", self.feedback, methods=["POST"]),
        ] + [Route(op.path, self._operation_endpoint(op), methods=["POST"]) for op in OPERATIONS]
        # LiteLLM's proxy also answers every route without /v1.
        routes += [Route(r.path.removeprefix("/v1"), r.endpoint, methods=list(r.methods or ())) for r in routes]
        self.app = Starlette(routes=routes, exception_handlers=exception_handlers())

    async def models(self, _: Request) -> JSONResponse:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "routeiq"} for m in self.router.models]
        return JSONResponse({"object": "list", "data": data})

    async def model(self, request: Request) -> JSONResponse:
        name = request.path_params["model"]
        if name not in self.router.models and name not in self.router.aliases.groups:  # a hidden alias is still served
            return openai_error(404, f"The model '{name}' does not exist", "invalid_request_error", "model_not_found", param="model")
        return JSONResponse({"id": name, "object": "model", "created": 0, "owned_by": "routeiq"})

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
            replica = self.router.replica
            if replica is None:
                return openai_error(404, f"no recent answered request {request_id!r} (feedback goes to the worker that served it)", "invalid_request_error", "unknown_request")
            # Shared routing state: the outcome may still be on its way from the node that served it.
            router = self.router
            if not (await replica.wait_for(lambda: router.knows(request_id)) and router.feedback(request_id, score)):
                return openai_error(404, f"no recent answered request {request_id!r} on any node", "invalid_request_error", "unknown_request")
        return JSONResponse({"ok": True, "request_id": request_id, "score": score})

    async def chat_completions(self, request: Request) -> Response:
        exchange: LlmExchange | None = request.scope.get("routeiq.llm")
        if exchange is None:
            try:
                exchange = LlmExchange.parse(await request.body(), frozenset(self.router.groups))
            except ChatRequestError as exc:
                return openai_error(400, exc.message, "invalid_request_error", "invalid_body", param=exc.param)
        if not exchange.pinned_model and not exchange.request.get("model"):
            return openai_error(400, "you must provide a model parameter", "invalid_request_error", "missing_model", param="model")
        track(request.scope, request.scope["path"], str(exchange.request.get("model") or ""), exchange)
        refused = self._consumer_refused(request.scope, exchange, exchange.pinned_model or str(exchange.request.get("model") or ""))
        if refused is not None:
            return refused
        request_id = request.headers.get("x-request-id") or new_request_id()
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
        return await self._run(call, body, exchange, bool(body.get("stream")))

    async def messages(self, request: Request) -> Response:
        """Anthropic's Messages API over the chat path (anthropic_format.py): translated
        in, routed and retried as chat, translated out; errors in Anthropic's envelope."""
        try:
            document = loads(await request.body() or b"null")
            chat = anthropic_format.to_chat(document)
            exchange = LlmExchange(check_chat_request(chat), frozenset(self.router.groups))
        except JsonInputError as exc:
            return _anthropic_error(400, f"the body is not valid JSON: {exc}")
        except anthropic_format.AnthropicRequestError as exc:
            return _anthropic_error(400, exc.message)
        except ChatRequestError as exc:
            return _anthropic_error(400, exc.message)
        model = chat["model"]
        track(request.scope, request.scope["path"], model, exchange)
        if self._consumer_refused(request.scope, exchange, model) is not None:
            return _anthropic_error(403, f"this key may not use model {model!r}")
        request_id = request.headers.get("x-request-id") or new_request_id()
        try:
            call = self.router.plan(request_id, chat, None, request.headers.get("x-api-key", "") or request.headers.get("authorization", ""))
        except NoSuchModel:
            return _anthropic_error(404, f"model: {model}")
        stream = bool(chat.get("stream"))
        response = await self._run(call, chat, exchange, stream)
        if isinstance(response, _RelayResponse):
            response.body_iterator = anthropic_format.StreamTranslator(model).translate(response.body_iterator)
            return response
        try:
            answer = loads(bytes(response.body))
        except JsonInputError:
            answer = None
        headers = {k: v for k, v in response.headers.items() if k.startswith("x-routeiq-") or k in ("x-request-id", "retry-after")}
        if response.status_code >= 400 or not isinstance(answer, dict):
            error = answer.get("error") if isinstance(answer, dict) else None
            message = error.get("message") if isinstance(error, dict) else str(error or "the deployment's answer could not be read")
            return _anthropic_error(response.status_code if response.status_code >= 400 else 502, str(message), headers)
        return JSONResponse(anthropic_format.from_chat(answer, model), headers=headers)

    async def _run(self, call: RoutedCall, body: dict[str, Any], exchange: LlmExchange, stream: bool) -> Response:
        """A chat completion through the attempt loop. A stream always asks the deployment
        for its usage (the gateway's token accounting, budgets and spend need it); a client
        that did not ask for it (`stream_options.include_usage`) does not get that chunk,
        as OpenAI sends none then."""
        if not stream:
            return await self._attempt_loop(call, lambda attempt, number: self._answer(attempt, body, exchange, number), False)
        options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
        strip = not options.get("include_usage")
        if strip:
            body = {**body, "stream_options": {**options, "include_usage": True}}
        return await self._attempt_loop(call, lambda attempt, number: self._open_stream(attempt, body, exchange, number, strip), True)

    def _operation_endpoint(self, op: Operation) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                parsed = await read_operation_request(op, request)
            except OperationRequestError as exc:
                return openai_error(400, exc.message, "invalid_request_error", exc.code, param=exc.param)
            request_id = request.headers.get("x-request-id") or new_request_id()
            exchange = LlmExchange(parsed.body)
            track(request.scope, request.scope["path"], parsed.model, exchange)
            refused = self._consumer_refused(request.scope, exchange, parsed.model)
            if refused is not None:
                return refused
            try:
                call = self.router.plan(request_id, parsed.routing_body(), None, request.headers.get("authorization", "") or request.headers.get("x-api-key", ""))
            except NoSuchModel as exc:
                return openai_error(404, f"the model {str(exc) or '(none)'!r} does not exist; see GET /v1/models", "invalid_request_error", "model_not_found", param="model")
            if parsed.stream:
                return await self._attempt_loop(call, lambda attempt, number: self._open_operation_stream(attempt, parsed, exchange, number), True, op.name)
            return await self._attempt_loop(call, lambda attempt, number: self._operation_answer(attempt, parsed, exchange, number), False, op.name)

        return endpoint

    async def _operation_answer(self, attempt: "_Attempt", request: OperationRequest, exchange: LlmExchange, number: int) -> Response:
        d = attempt.d
        whole = self.deadlines.whole_s
        try:
            async with asyncio.timeout(whole):
                content_type, content = await self.backends[d.kind].call(d, request, whole)
        except TimeoutError:
            raise BackendError(f"{d.id} did not answer within {whole:g} s (router.timeout_s)", 504) from None
        usage = _usage_in(content_type, content)
        attempt.succeed(usage)
        self._outcome(exchange, attempt.call, d, 200, attempt.began, usage)
        await self._native_success(attempt.call, exchange)
        return Response(content, media_type=content_type, headers=self._headers(attempt.call, d, number))

    async def _open_operation_stream(self, attempt: "_Attempt", request: OperationRequest, exchange: LlmExchange, number: int) -> Response:
        d = attempt.d
        return await self._open_relay(attempt, exchange, number, lambda timeout_s: self.backends[d.kind].open_stream(d, request, timeout_s))

    def _headers(self, call: RoutedCall, d: LiveDeployment, attempts: int) -> dict[str, str]:
        headers = {
            "x-routeiq-model": call.requested or call.request.model,
            "x-routeiq-deployment": d.id,
            "x-routeiq-strategy": call.decision.strategy,
            "x-routeiq-attempts": str(attempts),
            "x-request-id": call.request.request_id,
        }
        if call.requested:  # answered by a fallback group
            headers["x-routeiq-fallback-group"] = call.request.model
        return headers

    def _emit(self, event_type: str, payload: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.emit(event_type, payload)

    def _consumer_refused(self, scope: Scope, exchange: LlmExchange, model: str) -> Response | None:
        """Binds the request's virtual key (front door) to the exchange; 403 if the key
        may not use `model` (its own `models`, else its team's)."""
        consumer = scope.get("routeiq.consumer")
        if consumer is None:
            return None
        exchange.consumer = consumer
        group = self.router.aliases.groups.get(model, model)  # an alias is allowed as its group
        if not (consumer.allows_model(model) or consumer.allows_model(group)):
            return openai_error(403, f"the key {consumer.key_name} may not use model {model!r}", "permission_error", "model_not_allowed", param="model")
        return None

    def _charge(self, exchange: LlmExchange, call: RoutedCall, d: LiveDeployment, usage: dict[str, int]) -> None:
        """Charge the request once, however many attempts and fallbacks it took."""
        if self.meter is None or exchange.consumer is None or exchange.charged:
            return
        exchange.charged = True
        prompt, completion = int(usage.get("prompt_tokens", 0) or 0), int(usage.get("completion_tokens", 0) or 0)
        cost = (prompt + completion) / 1000.0 * d.routing.cost_per_1k_tokens
        model = call.requested or call.request.model
        self.meter.charge(exchange.consumer, call.request.request_id, model, d.id, prompt, completion, cost)

    def _wants(self, event_type: str) -> bool:
        """Is any webhook target listening? (Payloads are only built for one that is.)"""
        return self.events is not None and self.events.wants(event_type)

    def _outcome(self, exchange: LlmExchange, call: RoutedCall, d: LiveDeployment, status: int, began: float, usage: dict[str, int] | None) -> None:
        usage = usage or {}
        if usage:  # what the deployment says it used is charged, answered in full or not
            self._charge(exchange, call, d, usage)
        if self._wants("request_complete"):
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

    def _span(self, call: RoutedCall, d: LiveDeployment, stream: bool, operation: str = "chat"):  # type: ignore[no-untyped-def]
        """A client span for one deployment call, with the gen_ai semantic attributes."""
        if self.tracer is None:
            return None
        span = self.tracer.start_span(f"{operation} {d.upstream_model}", kind=SpanKind.CLIENT)
        span.set_attribute("gen_ai.operation.name", operation)
        span.set_attribute("gen_ai.provider.name", provider_name(d))
        span.set_attribute("gen_ai.system", provider_name(d))  # the name before semconv 1.37
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

    async def _attempt_loop(self, call: RoutedCall, begin: "Callable[[_Attempt, int], Awaitable[Response]]", stream: bool, operation: str = "chat") -> Response:
        """The one attempt loop, streaming or not: try the candidates in order until one
        answers, then (group exhausted) the candidates of each fallback group in turn
        (router.fallbacks & co.). `_answer` and `_open_stream` differ only in how a
        deployment answers; every failure of either (and a stream cut mid-way, in
        `_relay`) goes through `_attempt_failed`, and every way out settles the attempt
        (see `_Attempt`), so no breaker is left with a probe slot taken."""
        last: BackendError | None = None
        number = 0
        group: RoutedCall | None = call
        tried = {call.request.model}
        while group is not None:
            for d in self._attempts(group):
                breaker = self.router.breaker(d)
                if not breaker.allow():
                    continue
                number += 1
                if self.router.budgets is not None:
                    self.router.budgets.take(d.id)  # model_list rpm: this request counts
                attempt = _Attempt(self, group, d, breaker.probe_round, stream, operation)
                try:
                    return await begin(attempt, number)
                except BackendError as exc:
                    error = exc
                except Exception as exc:  # an answer we cannot use, or a backend bug: the deployment failed
                    log.warning("request %s: %s failed unexpectedly", call.request.request_id, d.id, exc_info=True)
                    error = BackendError(f"{d.id} failed: {type(exc).__name__}: {exc}", 502)
                except BaseException:  # cancelled: says nothing about the deployment
                    attempt.abandon("cancelled")
                    raise
                last = error
                self._attempt_failed(attempt, str(error), "failing over" if error.retryable else "not retryable", status=error.status)
                if not error.retryable:
                    break
                self.router.fallbacks += 1
            # The group is exhausted: its fallback groups, by the kind of the last failure.
            group = self.router.fallback(group, tried, _failure_kind(last), str(last or "no healthy deployment"))
        return await self._exhausted(call, last)

    def _attempt_failed(self, attempt: "_Attempt", error: str, then: str, usage: dict[str, int] | None = None, status: int = 502) -> None:
        """An attempt failed: breaker and strategy hear it, and the operator's log says so."""
        attempt.fail(error, usage, status)
        log.warning("request %s: %s failed (%s); %s", attempt.call.request.request_id, attempt.d.id, error, then)

    async def _answer(self, attempt: "_Attempt", body: dict[str, Any], exchange: LlmExchange, number: int) -> Response:
        d = attempt.d
        whole = self.deadlines.whole_s
        try:
            async with asyncio.timeout(whole):  # connect, head and the whole body
                answer = await self.backends[d.kind].complete(d, body, whole)
        except TimeoutError:
            raise BackendError(f"{d.id} did not answer within {whole:g} s (router.timeout_s)", 504) from None
        if not isinstance(answer, dict):
            raise BackendError(f"{d.id} answered JSON that is not an object ({type(answer).__name__})", 502)
        usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else None
        response = JSONResponse(answer, headers=self._headers(attempt.call, d, number))  # refuses NaN: a bad answer
        if attempt.span is not None:
            attempt.span.set_attribute("gen_ai.response.model", str(answer.get("model", "")))
        attempt.succeed(usage)
        self._outcome(exchange, attempt.call, d, 200, attempt.began, usage)
        await self._native_success(attempt.call, exchange)
        return response

    async def _open_stream(self, attempt: "_Attempt", body: dict[str, Any], exchange: LlmExchange, number: int, strip_usage: bool = False) -> Response:
        d = attempt.d
        return await self._open_relay(attempt, exchange, number, lambda timeout_s: self.backends[d.kind].stream(d, body, timeout_s), strip_usage)

    async def _open_relay(
        self, attempt: "_Attempt", exchange: LlmExchange, number: int, open_chunks: Callable[[float], Awaitable[AsyncIterator[bytes]]], strip_usage: bool = False
    ) -> Response:
        """A streamed answer, chat or another operation: its first chunk is fetched before
        the response starts, so until then the request can still fail over. (If anext
        fails, the stream has ended: the failure went through its frame, so there is
        nothing left to close.)"""
        d = attempt.d
        first_byte = self.deadlines.first_byte_s
        try:
            async with asyncio.timeout(first_byte):
                # The backend's own per-operation timeout is only a backstop for ours.
                chunks = await open_chunks(max(first_byte, self.deadlines.idle_s))
                first = await anext(chunks)
        except StopAsyncIteration:
            raise BackendError(f"{d.id} ended its stream without sending anything", 502) from None
        except TimeoutError:
            raise BackendError(f"{d.id} sent no first chunk within {first_byte:g} s (router.first_byte_timeout_s)", 504) from None
        relay = self._relay(first, chunks, attempt, exchange)
        return _RelayResponse(
            _without_usage_chunks(relay) if strip_usage else relay,
            attempt,
            chunks,
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", **self._headers(attempt.call, d, number)},
        )

    async def _relay(self, first: bytes, chunks: AsyncIterator[bytes], attempt: "_Attempt", exchange: LlmExchange) -> AsyncIterator[bytes]:
        tap = UsageTap()
        error = ""
        attempt.first_chunk_at = time.perf_counter()  # time to first token: handed on now
        try:
            chunk: bytes | None = first
            while chunk is not None:
                tap.feed(chunk)
                yield chunk
                chunk, error = await self._next_chunk(chunks, attempt.d)
            if error:
                # Settled before the event is sent: the client may leave during it.
                self._attempt_failed(attempt, error, "stream cut (its first bytes were sent: no failover)", tap.usage)
                self._outcome(exchange, attempt.call, attempt.d, 502, attempt.began, tap.usage)
                await self._request_failed(attempt.call, 502, error)
                event = {"error": {"message": error, "type": "server_error", "param": None, "code": "upstream_error"}}
                yield b"data: " + json.dumps(event).encode() + b"\n\n"
                return
        except (GeneratorExit, asyncio.CancelledError):
            # Closed or cancelled from our side (the client hung up, or shutdown), whether
            # while waiting for the next chunk or while handing one on: says nothing about
            # the deployment (499, as nginx logs it).
            if not attempt.settled:
                self._outcome(exchange, attempt.call, attempt.d, 499, attempt.began, tap.usage)
            attempt.abandon("client closed the stream", tap.usage)
            raise
        attempt.succeed(tap.usage)
        self._outcome(exchange, attempt.call, attempt.d, 200, attempt.began, tap.usage)
        await self._native_success(attempt.call, exchange)

    async def _next_chunk(self, chunks: AsyncIterator[bytes], d: LiveDeployment) -> tuple[bytes | None, str]:
        """The next chunk within router.stream_idle_timeout_s; (None, "") at the end,
        (None, why) if the deployment went quiet or broke the stream."""
        idle = self.deadlines.idle_s
        try:
            async with asyncio.timeout(idle):
                return await anext(chunks), ""
        except StopAsyncIteration:
            return None, ""
        except TimeoutError:
            return None, f"{d.id} sent nothing for {idle:g} s (router.stream_idle_timeout_s); stream cut"
        except Exception as exc:  # the upstream connection broke mid-stream
            return None, f"{d.id} broke its stream: {type(exc).__name__}: {exc}"

    async def _native_success(self, call: RoutedCall, exchange: LlmExchange) -> None:
        outcome = exchange.outcome.as_dict() if exchange.outcome is not None else {}
        for native in self.native:
            try:
                await native.on_llm_success(call.request.request_id, outcome)
            except Exception:
                log.exception("native plugin %s failed in on_llm_success", native.name)

    async def _request_failed(self, call: RoutedCall, status: int, error: str) -> None:
        """The request failed for good (every candidate, or a stream cut mid-way)."""
        for native in self.native:
            try:
                await native.on_llm_failure(call.request.request_id, error)
            except Exception:
                log.exception("native plugin %s failed in on_llm_failure", native.name)
        self._emit("error", {"request_id": call.request.request_id, "model": call.request.model, "status": status, "error": error})

    async def _exhausted(self, call: RoutedCall, last: BackendError | None) -> Response:
        await self._request_failed(call, 503 if last is None else 502, str(last or "no healthy deployment"))
        if last is None:
            return openai_error(503, f"no healthy deployment for {call.request.model!r} (all circuit breakers open)", "server_error", "no_healthy_deployment", {"retry-after": "5"})
        # The deployment's own error (message, type, code) reaches the client with its
        # status, retried or not: an upstream 500 or 429 is not "all deployments failed".
        if last.body:
            try:
                document = loads(last.body)
            except JsonInputError:
                document = None
            if isinstance(document, dict) and isinstance(document.get("error"), dict):
                headers = {"x-routeiq-model": call.request.model, "x-request-id": call.request.request_id}
                return JSONResponse(document, status_code=last.status, headers=headers)
        return openai_error(504 if last.status == 504 else 502, f"all deployments failed; last: {last}", "server_error", "upstream_error")


class _Attempt:
    """One try of one deployment. Settled exactly once, whatever way the try ends: an
    answer (`succeed`), an error or an answer we cannot use (`fail`: breaker and strategy
    hear it), or cancellation / a client that went away (`abandon`: the half-open probe
    slot is handed back and nothing is counted against the deployment)."""

    def __init__(self, api: LlmApi, call: RoutedCall, d: LiveDeployment, probe_round: int, stream: bool, operation: str = "chat") -> None:
        self.api = api
        self.call = call
        self.d = d
        self.probe_round = probe_round
        self.began = time.perf_counter()
        self.span = api._span(call, d, stream, operation)
        self.settled = False
        self.operation = operation
        self.first_chunk_at: float | None = None  # streams: when the first chunk was relayed

    def _metrics(self, error_type: str, usage: dict[str, int] | None) -> None:
        """The GenAI metrics of this attempt (llm/telemetry.py), recorded as it settles."""
        self.api.telemetry.attempt_end(self.operation, self.call.request.model, self.d, self.began, time.perf_counter(), self.first_chunk_at, error_type, usage)

    def succeed(self, usage: dict[str, int] | None) -> None:
        if not self.settled:
            self.settled = True
            self.api._end_span(self.span, True, usage)
            self.api.router.record(self.call, self.d, True, time.perf_counter() - self.began, usage)
            self._metrics("", usage)

    def fail(self, error: str, usage: dict[str, int] | None = None, status: int = 502) -> None:
        if not self.settled:
            self.settled = True
            self.api._end_span(self.span, False, usage, error)
            self.api.router.record(self.call, self.d, False, time.perf_counter() - self.began, usage)
            self._metrics(str(status), usage)  # error.type: the status the attempt failed with

    def abandon(self, reason: str, usage: dict[str, int] | None = None) -> None:
        if not self.settled:
            self.settled = True
            self.api._end_span(self.span, False, usage, reason)
            self.api.router.breaker(self.d).release(self.probe_round)
            self._metrics("cancelled", usage)


class _RelayResponse(StreamingResponse):
    """A relayed stream that settles its attempt even if the relay never ran (the client
    was gone before the first chunk) and always closes the upstream stream."""

    def __init__(self, content: AsyncIterator[bytes], attempt: _Attempt, upstream: AsyncIterator[bytes], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._attempt = attempt
        self._upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await _aclose(self.body_iterator)
            await _aclose(self._upstream)
            self._attempt.abandon("client closed the stream before it started")


def _usage_only(data: bytes) -> bool:
    try:
        doc = loads(data)
    except JsonInputError:
        return False
    return isinstance(doc, dict) and doc.get("choices") == [] and isinstance(doc.get("usage"), dict)


_EVENT_END = re.compile(rb"(?:\r\n|\r|\n)(?:\r\n|\r|\n)")
_LINE = re.compile(rb"\r\n|\r|\n")


def _event_data(raw: bytes) -> bytes:
    lines = [line[5:].removeprefix(b" ") for line in _LINE.split(raw) if line.startswith(b"data:")]
    return b"\n".join(lines)


async def _without_usage_chunks(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A chat stream minus the usage-only chunk (`choices: []` with `usage`) the gateway
    asked for on the client's behalf; everything else passes byte for byte (events are
    cut at their blank line, whatever line ends the upstream uses)."""
    pending = b""
    try:
        async for chunk in chunks:
            pending += chunk
            out = []
            start = 0
            for end in _EVENT_END.finditer(pending):
                if end.end() == len(pending) and pending.endswith(b"\r"):
                    break  # the CR may be half of a CRLF still to come
                raw = pending[start : end.end()]
                start = end.end()
                if b'"usage"' in raw and _usage_only(_event_data(raw)):  # most events: one substring test
                    continue
                out.append(raw)
            pending = pending[start:]
            if out:
                yield b"".join(out)
        if pending:
            yield pending
    finally:
        await _aclose(chunks)


def _failure_kind(error: BackendError | None) -> str:
    """Which fallback list a group's last failure calls for: `context_window`,
    `content_policy`, `client` (another 4xx: the request itself) or `upstream`."""
    if error is None:
        return "upstream"  # every breaker open
    text = f"{error} {error.body or b''!r}"
    if "context_length_exceeded" in text or "ContextWindowExceeded" in text:
        return "context_window"
    if "content_policy_violation" in text or "ContentPolicyViolation" in text:
        return "content_policy"
    if 400 <= error.status < 500 and error.status != 429 and not error.retryable:
        return "client"
    return "upstream"


def _anthropic_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(anthropic_format.error_body(status, message), status_code=status, headers=headers)


def _usage_in(content_type: str, content: bytes) -> dict[str, int] | None:
    """`usage` of a JSON answer, in chat's names (the Responses API says input/output)."""
    if not content_type.startswith("application/json") or b'"usage"' not in content:
        return None
    try:
        usage = loads(content).get("usage")
    except (JsonInputError, AttributeError):
        return None
    if not isinstance(usage, dict):
        return None
    if "input_tokens" in usage and "prompt_tokens" not in usage:
        return {"prompt_tokens": int(usage.get("input_tokens") or 0), "completion_tokens": int(usage.get("output_tokens") or 0)}
    return usage


async def _aclose(iterator: Any) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
