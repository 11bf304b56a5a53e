"""Pure-ASGI middleware running the proxy-wasm filter chain around an upstream app.

request headers -> request body (buffered only while a plugin asks for it) -> upstream
-> response headers -> response body chunks as they stream -> on_done/on_log/on_delete.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Callable

from opentelemetry.trace import SpanKind
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from routeiq.abi.proxy_wasm import StreamType
from routeiq.dispatch.chain import REQUEST, RESPONSE, ChainStream, Member, Step, Verdict
from routeiq.dispatch.plugin import ProxyWasmPlugin
from routeiq.hostcalls.header_rules import REQUEST as REQUEST_MAP
from routeiq.hostcalls.header_rules import RESPONSE as RESPONSE_MAP
from routeiq.hostcalls.header_rules import HeaderLimits, HeaderRules, valid_origin_form
from routeiq.hostcalls.llm_exchange import ChatRequestError, LlmExchange
from routeiq.hostcalls.state import HeaderMap, HttpStream, LocalResponse
from routeiq.llm.api import CHAT_PATHS
from routeiq.llm.telemetry import record_of
from routeiq.runtime.errors import PluginError
from routeiq.services.request_ids import new_request_id

from routeiq.error_responses import client_error_body, send_bytes, send_error
from .front_door_auth import FrontDoorAuth

from .route_table import RequestFacts, Route, RouteTable

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

ChainFor = Callable[[Route | None], list[ProxyWasmPlugin]]

log = logging.getLogger("routeiq.gateway")


class PauseTimeout(PluginError):
    kind = "pause_timeout"


class StreamAborted(Exception):
    """The exchange must end now (local response, close_stream or failure mid-body)."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.step.value)
        self.verdict = verdict


class PluginFilter:
    def __init__(
        self,
        app: ASGIApp,
        plugins: list[ProxyWasmPlugin],
        llm_models: frozenset[str] | None = None,
        tracer: Tracer | None = None,
        events: Any = None,
        header_limits: HeaderLimits | None = None,
        routes: RouteTable | None = None,
        chain_for: ChainFor | None = None,
        auth: FrontDoorAuth | None = None,
    ) -> None:
        self.app = app
        self.auth = auth  # virtual keys (keys.enabled): checked before any plugin runs
        # With routes, each request's upstream, plugins and route properties come from
        # the route it matches (`chain_for` gives a route's plugins, in chain order).
        self.routes = routes if routes else None
        self.chain_for: ChainFor = chain_for or (lambda route: self.plugins)
        limits = header_limits or HeaderLimits()
        self.request_rules = HeaderRules(REQUEST_MAP, limits)
        self.response_rules = HeaderRules(RESPONSE_MAP, limits)
        self.events = events  # GatewayEvents: plugin failures are `error` events
        self.plugins = plugins
        self.llm_models = llm_models  # set when the gateway serves the LLM path itself
        self.tracer = tracer
        self._background: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.tracer is None:
            if not self.plugins and self.routes is None:
                scope = await self._authenticated(scope, send)
                if scope:
                    await self.app(scope, receive, send)
                return
            await _Exchange(self, scope, receive, send).run()
            return
        with self.tracer.start_as_current_span(f"{scope['method']} {scope['path']}", kind=SpanKind.SERVER) as span:
            span.set_attribute("http.request.method", scope["method"])
            span.set_attribute("url.path", scope["path"])
            status: list[int] = []

            async def traced_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status.append(int(message["status"]))
                await send(message)

            if self.plugins or self.routes is not None:
                exchange = _Exchange(self, scope, receive, traced_send)
                span.set_attribute("routeiq.request_id", exchange.stream.request_id)
                await exchange.run()
            else:
                scope = await self._authenticated(scope, traced_send)
                if scope:
                    await self.app(scope, receive, traced_send)
            if status:
                span.set_attribute("http.response.status_code", status[0])

    async def _authenticated(self, scope: Scope, send: Send) -> Scope | None:
        """Without plugins or routes: the front door's check alone (None: refused, answered)."""
        if self.auth is None or not self.auth.required(scope["path"], None):
            return scope
        consumer = await self.auth.admit(scope["headers"], scope["path"], None, send)  # ASGI names are lower-case
        return {**scope, "routeiq.consumer": consumer} if consumer is not None else None

    def keep(self, task: asyncio.Task[None]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for k, v in headers:
        if k == b"content-length":
            return v.strip() not in (b"", b"0")
        if k == b"transfer-encoding":
            return True
    return False


class _Exchange:
    def __init__(self, owner: PluginFilter, scope: Scope, receive: Receive, send: Send) -> None:
        self.owner = owner
        self.scope = scope
        self.receive = receive
        self.send = send
        # One pass over the client's headers: the map's pairs (lower-case, without Host,
        # which becomes :authority) and the few the filter itself needs.
        pairs: list[tuple[bytes, bytes]] = []
        request_id = ""
        has_id = False
        host: bytes | None = None
        for k, v in scope["headers"]:
            k = k.lower()
            if k == b"host":
                if host is None:
                    host = v
                continue
            if k == b"x-request-id" and not has_id:
                has_id = True
                request_id = v.decode("latin-1")
            pairs.append((k, v))
        if not request_id:
            request_id = new_request_id()
        if not has_id:
            pairs.append((b"x-request-id", request_id.encode()))
        self.client_authority = host or b""
        path = scope.get("raw_path") or scope["path"].encode()
        path_text = path.decode("latin-1") if isinstance(path, bytes) else path
        if scope.get("query_string"):
            path_text += "?" + scope["query_string"].decode("latin-1")
        self.has_body = _has_body(pairs)
        scheme = scope.get("scheme", "http")
        pseudo = [(b":method", scope["method"].encode()), (b":path", path_text.encode("latin-1")), (b":authority", self.client_authority), (b":scheme", scheme.encode())]
        self.stream = HttpStream(
            request_headers=HeaderMap(pseudo + pairs, rules=owner.request_rules),
            request_id=request_id,
            client=tuple(scope["client"]) if scope.get("client") else None,  # type: ignore[arg-type]
            server=tuple(scope["server"]) if scope.get("server") else None,  # type: ignore[arg-type]
            scheme=scheme,
            protocol=f"HTTP/{scope.get('http_version', '1.1')}",
        )
        # With routes, the chain is opened once the route is known (an LLM request's route
        # may depend on its model, parsed from the body first).
        self.route: Route | None = None
        self.chain = ChainStream(owner.plugins if owner.routes is None else [], self.stream, owner.tracer)
        self.llm_route = owner.llm_models is not None and scope["method"] == "POST" and scope["path"] in CHAT_PATHS
        self.response_sent = False  # http.response.start went to the client
        self.response_done = False
        self.replaced = False  # the upstream response was replaced; drop its messages
        self.llm_body_invalid = False
        self.aborted: Verdict | None = None  # a plugin ended the exchange mid request body
        self.client_gone = False

    # -------------------------------------------------------------- driver
    async def run(self) -> None:
        try:
            await self._run()
        finally:
            waiting = self.chain.finish()
            if waiting:
                self.owner.keep(asyncio.ensure_future(self._await_done(waiting)))

    async def _run(self) -> None:
        llm_body: bytes | None = None
        if self.llm_route:
            # Chat requests are parsed before the plugins run, so routeiq_get_llm_request
            # works from proxy_on_request_headers on.
            llm_body = await self._read_body()
            if llm_body is None:
                return  # the client went away
            self.stream.request_body_size = len(llm_body)
            try:
                self.stream.llm = LlmExchange.parse(llm_body, self.owner.llm_models or frozenset())
            except ChatRequestError:
                pass  # plugins still run (an auth filter answers first); the LLM app answers 400
            self.has_body = bool(llm_body)
        routes = self.owner.routes
        before: list[tuple[bytes, bytes]] | None = None
        if routes is not None:
            self._match_route(routes)
            self.chain = ChainStream(self.owner.chain_for(self.route), self.stream, self.owner.tracer)
            before = list(self.stream.request_headers.pairs)
        auth = self.owner.auth
        if auth is not None and auth.required(self.scope["path"], self.route.auth if self.route is not None else None):
            consumer = await auth.admit(self.stream.request_headers.pairs, self.scope["path"], self.route.name if self.route is not None else None, self.send)
            if consumer is None:
                return  # refused: no plugin, no upstream
            self.stream.consumer = consumer.properties()
            self.scope["routeiq.consumer"] = consumer
        verdict = await self._settle(self.chain.request_headers(not self.has_body), StreamType.HTTP_REQUEST, self.chain.request_headers, not self.has_body)
        if verdict.step is not Step.CONTINUE:
            await self._answer(verdict)
            return
        self.stream.request_headers.writable = False
        if routes is not None:
            # Envoy clears the route cache on every request header change (and on
            # clear_route_cache): the upstream is the route the request now matches. The
            # plugins already running stay those of the first match.
            if self.stream.route_cache_cleared or self.stream.request_headers.pairs != before:
                self._match_route(routes)
            if self.route is None:
                await self._no_route()
                return
        receive: Receive = self.receive
        headers = self._upstream_request_headers()
        if llm_body is not None:
            try:
                body = await self._llm_body_phase(llm_body)
            except StreamAborted as aborted:
                await self._answer(aborted.verdict)
                return
            headers = [(k, v) for k, v in headers if k != b"content-length"] + [(b"content-length", str(len(body)).encode())]
            receive = _replay(body, self.receive)
        elif self.has_body and self.chain.wants("proxy_on_request_body"):
            first = await self.receive()
            if first["type"] == "http.disconnect":
                return
            if not first.get("more_body", False):
                # The whole body is here: run it through the chain now, so a plugin can
                # still answer locally and the upstream gets an exact content-length.
                try:
                    body = await self._request_body_chunk(first.get("body", b""), True)
                except StreamAborted as aborted:
                    await self._answer(aborted.verdict)
                    return
                headers = [(k, v) for k, v in headers if k != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                receive = _replay(body, self.receive)
            else:
                headers = [(k, v) for k, v in headers if k != b"content-length"]
                receive = self._streaming_request_body(first)
        scope = dict(self.scope)
        req = self.stream.request_headers
        target = req.get(b":path") or b"/"
        if not valid_origin_form(target):
            # The host calls refuse such a :path from a plugin; this is the client's own.
            await send_error(self.send, 400, "the request target must be an origin-form path", "invalid_request_error", "invalid_path")
            return
        scope["method"] = (req.get(b":method") or b"GET").decode("latin-1")
        full_path = target.decode("latin-1")
        path, _, query = full_path.partition("?")
        scope["path"] = path
        scope["raw_path"] = path.encode("latin-1")
        scope["query_string"] = query.encode("latin-1")
        scope["headers"] = headers
        if self.stream.llm is not None and not self.llm_body_invalid:
            scope["routeiq.llm"] = self.stream.llm
        authority = req.get(b":authority")
        if authority and authority != self.client_authority:
            scope["routeiq.authority"] = authority  # a plugin rewrote it: the upstream's Host
        upstream = self.route.upstream if self.route is not None else self.owner.app
        record = record_of(scope)
        if record is not None and self.route is not None:
            record.route = self.route.name  # the metrics' `route` label
        try:
            await upstream(scope, self._noting_disconnect(receive), self._filtered_send)
        except Exception:
            if self.aborted is None:
                raise
        if self.aborted is not None:  # however the upstream app took the abort
            await self._answer(self.aborted)
            return
        if not self.response_done and self.response_sent:
            if self.client_gone:  # the client left mid-response: nothing is left to finish
                log.info("client disconnected before the response ended (%s)", self.stream.request_id)
                return
            raise RuntimeError("upstream app ended without finishing its response")

    def _match_route(self, routes: RouteTable) -> None:
        req = self.stream.request_headers
        target = (req.get(b":path") or b"/").decode("latin-1")
        llm = self.stream.llm
        facts = RequestFacts(
            method=(req.get(b":method") or b"GET").decode("latin-1"),
            path=target.split("?", 1)[0],
            authority=(req.get(b":authority") or b"").decode("latin-1"),
            headers=req,
            model=_model_of(llm.request) if llm is not None else None,
        )
        self.route = routes.match(facts)
        self.stream.route = self.route.info if self.route is not None else None
        self.stream.route_cache_cleared = False

    async def _no_route(self) -> None:
        """Envoy's router answers a request no route matches with 404 (`route_not_found`),
        through the response callbacks like any local reply."""
        path = (self.stream.request_headers.get(b":path") or b"/").decode("latin-1").split("?", 1)[0]
        body = client_error_body(self.scope["path"], 404, f"no route matches {self.scope['method']} {path}", "invalid_request_error", "route_not_found")
        self.stream.local_response = LocalResponse(404, body, [(b"content-type", b"application/json")], "route_not_found")
        await self._answer(Verdict(Step.LOCAL))

    def _noting_disconnect(self, receive: Receive) -> Receive:
        """`receive` for the upstream app, remembering a client that went away (a streaming
        response then stops early: that is the client's doing, not an upstream failure)."""

        async def noting() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.client_gone = True
            return message

        return noting

    async def _read_body(self) -> bytes | None:
        chunks = []
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _llm_body_phase(self, body: bytes) -> bytes:
        """Messages a plugin replaced go into the body first; raw body rewrites by body
        callbacks come after and are parsed back, so both kinds of edit land."""
        exchange = self.stream.llm
        parsed = body
        if exchange is not None and exchange.dirty:
            body = exchange.body()
        if body and self.chain.wants("proxy_on_request_body"):
            body = await self._body_chunk(REQUEST, body, True) or b""
        if exchange is not None:
            exchange.forwarded = True
            if body is parsed or body == parsed:
                return body  # unchanged since it was parsed: no second parse
            try:
                exchange.request = LlmExchange.parse(body, exchange.known_models).request
            except ChatRequestError:
                # A plugin rewrote the body into something that is not a chat request:
                # the LLM app parses what is forwarded and answers 400, as for a client.
                self.llm_body_invalid = True
        return body

    def _upstream_request_headers(self) -> list[tuple[bytes, bytes]]:
        req = self.stream.request_headers
        headers = [(k, v) for k, v in req.pairs if not k.startswith(b":")]
        authority = req.get(b":authority")
        if authority:
            headers.insert(0, (b"host", authority))
        return headers

    # ----------------------------------------------------------- pausing
    async def _settle(self, verdict: Verdict, stream_type: StreamType, rerun: Callable[..., Verdict], *args: Any) -> Verdict:
        """Wait out PAUSED verdicts: resume the chain after the paused plugin once it
        calls proxy_continue_stream, or apply what it did instead."""
        while verdict.step is Step.PAUSED:
            member = verdict.member
            assert member is not None
            outcome = await self._wait(member, stream_type)
            if outcome.step is not Step.CONTINUE:
                return outcome
            verdict = rerun(*args, start=verdict.position + 1)
        return verdict

    async def _wait(self, member: Member, stream_type: StreamType) -> Verdict:
        context = member.context
        assert context is not None
        event = asyncio.Event()
        context.wakeup = event.set
        timeout = member.plugin.spec.pause_timeout_ms / 1000.0
        try:
            while True:
                outcome = self.chain.resume_check(member, stream_type)
                if outcome is not None:
                    return outcome
                event.clear()
                try:
                    await asyncio.wait_for(event.wait(), timeout)
                except asyncio.TimeoutError:
                    error = PauseTimeout(f"plugin {member.plugin.spec.name} paused the stream for more than {timeout:g} s")
                    self.chain._note_failure(member, error)
                    return self.chain.has_failure_verdict() or Verdict(Step.CONTINUE)
        finally:
            context.wakeup = None

    # ------------------------------------------------------------- bodies
    async def _body_chunk(self, direction: int, chunk: bytes, eos: bool) -> bytes | None:
        """Run one chunk through the chain: bytes to forward, or None while buffering."""
        run = self.chain.request_body if direction == REQUEST else self.chain.response_body
        stream_type = StreamType.HTTP_REQUEST if direction == REQUEST else StreamType.HTTP_RESPONSE
        verdict = run(chunk, eos)
        while verdict.step is Step.PAUSED:
            assert verdict.member is not None
            outcome = await self._wait(verdict.member, stream_type)
            if outcome.step is not Step.CONTINUE:
                raise StreamAborted(outcome)
            verdict = run(self.chain.drain(direction, verdict.position), eos, start=verdict.position + 1)
        if verdict.step is Step.BUFFERING:
            return None
        if verdict.step is not Step.CONTINUE:
            raise StreamAborted(verdict)
        return verdict.data

    async def _request_body_chunk(self, chunk: bytes, eos: bool) -> bytes:
        self.stream.request_body_size += len(chunk)
        data = await self._body_chunk(REQUEST, chunk, eos)
        return data or b""

    def _streaming_request_body(self, first: Message) -> Receive:
        pending: list[Message] = [first]
        finished = False

        async def receive() -> Message:
            nonlocal finished
            while True:
                if finished:
                    return await self.receive()
                message = pending.pop() if pending else await self.receive()
                if message["type"] != "http.request":
                    return message
                eos = not message.get("more_body", False)
                self.stream.request_body_size += len(message.get("body", b""))
                # A local reply raises StreamAborted out of the upstream client's body
                # iterator: the client abandons the request and closes the connection
                # without the final chunk, so the upstream never sees a complete request.
                try:
                    data = await self._body_chunk(REQUEST, message.get("body", b""), eos)
                except StreamAborted as aborted:
                    self.aborted = aborted.verdict
                    raise
                if data is None and not eos:
                    continue
                finished = eos
                return {"type": "http.request", "body": data or b"", "more_body": not eos}

        return receive

    # ----------------------------------------------------------- response
    async def _filtered_send(self, message: Message) -> None:
        # What the upstream app answers to an aborted request body (a 500, a 502) is not
        # the response: the local reply is.
        if self.replaced or self.aborted is not None:
            return
        kind = message["type"]
        if kind == "http.response.start":
            await self._response_start(message)
        elif kind == "http.response.body":
            await self._response_body(message)
        else:
            await self.send(message)

    async def _response_start(self, message: Message) -> None:
        status = int(message["status"])
        upstream = [(k.lower(), v) for k, v in message.get("headers", [])]
        stream = self.stream
        stream.response_code = status
        stream.response_details = "via_upstream"
        stream.response_headers = HeaderMap([(b":status", str(status).encode())] + upstream, rules=self.owner.response_rules)
        verdict = await self._settle(self.chain.response_headers(False), StreamType.HTTP_RESPONSE, self.chain.response_headers, False)
        if verdict.step is not Step.CONTINUE:
            self.replaced = True
            # A local reply from a response callback goes straight to the client (Envoy's
            # sendDirectLocalReply): it replaces the upstream's and never loops.
            await self._answer(verdict, through_chain=False)
            return
        headers = stream.response_headers
        headers.writable = False
        try:
            status = int(headers.get(b":status") or status)
        except ValueError:
            pass
        stream.response_code = status
        out = [(k, v) for k, v in headers.pairs if not k.startswith(b":")]
        if self.chain.wants("proxy_on_response_body"):
            # A plugin may rewrite the body, so its length is not known in advance.
            out = [(k, v) for k, v in out if k != b"content-length"]
        stream.response_started = True
        self.response_sent = True
        await self.send({"type": "http.response.start", "status": status, "headers": out})

    async def _response_body(self, message: Message) -> None:
        chunk = message.get("body", b"")
        eos = not message.get("more_body", False)
        self.stream.response_body_size += len(chunk)
        if self.chain.wants("proxy_on_response_body"):
            try:
                data = await self._body_chunk(RESPONSE, chunk, eos)
            except StreamAborted as aborted:
                error = aborted.verdict.error
                log.warning("request %s: response aborted mid-body (%s): %s", self.stream.request_id, aborted.verdict.step.value, error)
                raise ConnectionAbortedError("response aborted by a plugin") from None
            if data is None:
                return
            chunk = data
        if eos:
            self.response_done = True
        await self.send({"type": "http.response.body", "body": chunk, "more_body": not eos})

    # ------------------------------------------------------------ answers
    async def _answer(self, verdict: Verdict, through_chain: bool = True) -> None:
        stream = self.stream
        if self.response_sent:
            raise ConnectionAbortedError(f"cannot answer after the response started ({verdict.step.value})")
        rid = [(b"x-request-id", stream.request_id.encode())]
        if verdict.step is Step.LOCAL and through_chain:
            outcome = await self._encode_local(rid)
            if outcome is None:
                return
            verdict = outcome  # a plugin answered again, closed or failed: sent as is
        self.response_sent = True
        self.response_done = True
        stream.response_started = True
        if verdict.step is Step.LOCAL:
            local = stream.local_response
            assert local is not None
            stream.response_code = local.status
            stream.response_details = local.details
            await self._send_local(local, rid)
        elif verdict.step is Step.CLOSED:
            name = verdict.member.plugin.spec.name if verdict.member else "a plugin"
            stream.response_code = 503
            body = client_error_body(self.scope["path"], 503, f"plugin {name} closed the stream", "plugin_error", "stream_closed", plugin=name)
            await send_bytes(self.send, 503, body, rid + [(b"connection", b"close"), (b"x-routeiq-plugin-error", name.encode())])
        else:
            error = verdict.error or self.chain.failure
            name = _plugin_of(error, verdict, self.chain)
            kind = error.kind if error is not None else "plugin_error"
            stream.response_code = 503
            if self.owner.events is not None:
                self.owner.events.emit("error", {"request_id": stream.request_id, "plugin": name, "kind": kind, "status": 503, "path": self.scope["path"]})
            body = client_error_body(self.scope["path"], 503, f"plugin {name} failed ({kind})", "plugin_error", kind, plugin=name)
            await send_bytes(self.send, 503, body, rid + [(b"x-routeiq-plugin-error", name.encode())])

    async def _encode_local(self, rid: list[tuple[bytes, bytes]]) -> Verdict | None:
        """Pass a local reply sent while the request was decoded through the response
        callbacks (Envoy's sendLocalReplyViaFilterChain), then send what they made of it.
        Returns the verdict to answer instead when a plugin did something else."""
        stream, chain = self.stream, self.chain
        local = stream.local_response
        assert local is not None
        headers = [(k, v) for k, v in local.headers if not k.startswith(b":")]
        if not any(k == b"x-request-id" for k, _ in headers):
            headers += rid
        if local.body and not any(k == b"content-type" for k, _ in headers):
            headers.append((b"content-type", b"text/plain"))
        headers = [(k, v) for k, v in headers if k != b"content-length"] + [(b"content-length", str(len(local.body)).encode())]
        stream.response_code = local.status
        stream.response_headers = HeaderMap([(b":status", str(local.status).encode())] + headers, rules=self.owner.response_rules)
        chain.encode_local_reply()
        body = local.body
        verdict = await self._settle(chain.response_headers(not body), StreamType.HTTP_RESPONSE, chain.response_headers, not body)
        if verdict.step is Step.CONTINUE and body and chain.wants("proxy_on_response_body"):
            try:
                body = await self._body_chunk(RESPONSE, body, True) or b""
            except StreamAborted as aborted:
                verdict = aborted.verdict
        if verdict.step is not Step.CONTINUE:
            return verdict
        out = stream.response_headers
        out.writable = False
        try:
            status = int(out.get(b":status") or local.status)
        except ValueError:
            status = local.status
        stream.response_code = status
        self.response_sent = self.response_done = stream.response_started = True
        # content-length is the body's as the plugins left it
        await send_bytes(self.send, status, body, [(k, v) for k, v in out.pairs if not k.startswith(b":")], content_type=b"text/plain")
        return None

    async def _send_local(self, local: LocalResponse, extra: list[tuple[bytes, bytes]]) -> None:
        headers = [(k, v) for k, v in local.headers if not k.startswith(b":")]
        self.stream.response_body_size = len(local.body)  # response.size on_log reads
        if not any(k == b"x-request-id" for k, _ in headers):
            headers += extra
        await send_bytes(self.send, local.status, local.body, headers, content_type=b"text/plain")

    async def _await_done(self, members: list[Member]) -> None:
        """Finalize contexts whose plugin answered false from proxy_on_done."""
        for member in members:
            context = member.context
            assert context is not None
            if not context.done_called:
                event = asyncio.Event()
                context.wakeup = event.set
                try:
                    await asyncio.wait_for(event.wait(), member.plugin.spec.pause_timeout_ms / 1000.0)
                except asyncio.TimeoutError:
                    log.warning("plugin %s never called proxy_done; finalizing its context", member.plugin.spec.name)
                finally:
                    context.wakeup = None
            self.chain.finalize(member)


def _model_of(request: dict[str, Any]) -> str | None:
    model = request.get("model")
    return model if isinstance(model, str) else None


def _plugin_of(error: PluginError | None, verdict: Verdict, chain: ChainStream) -> str:
    if verdict.member is not None:
        return verdict.member.plugin.spec.name
    for member in chain.members:
        if member.failed and not member.plugin.spec.fail_open:
            return member.plugin.spec.name
    return "unknown"


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
