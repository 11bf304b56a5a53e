"""The proxy-wasm callbacks of one HTTP exchange across an ordered chain of plugins.

Request callbacks run in configured order, response callbacks in reverse order (the
onion model Envoy uses for its HTTP filters). Each step returns a Verdict; the gateway
acts on it (forward, answer locally, wait for proxy_continue_stream, fail).

Body semantics follow Envoy: a plugin that returns Pause from a body callback before
end_of_stream asks the host to buffer; it is called again with the grown buffer when
more data arrives. A plugin that returns Continue lets each chunk through as it comes,
so a chain with no buffering plugin keeps a streaming body streaming.
"""

from __future__ import annotations

import enum
import json
import logging
from dataclasses import dataclass
from time import perf_counter_ns, time_ns

from typing import TYPE_CHECKING, Callable

from opentelemetry.trace import Status, StatusCode

from routeiq.abi.capabilities import Capability
from routeiq.abi.proxy_wasm import Action, StreamType
from routeiq.hostcalls.header_rules import HeaderRules
from routeiq.hostcalls.state import ContextState, HeaderMap, HttpStream, LocalResponse
from routeiq.runtime.errors import GuestTrap, PluginError

from .hook_stats import FOLD_AT
from .plugin import ProxyWasmPlugin
from .plugin_vm import PluginVM

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

log = logging.getLogger("routeiq.dispatch")

REQUEST = 0
RESPONSE = 1
# A plugin without the body capability cannot read the body, so its body callback is
# not called at all (and never makes the host buffer).
BODY_CAPABILITY = {
    "proxy_on_request_body": Capability.REQUEST_BODY,
    "proxy_on_response_body": Capability.RESPONSE_BODY,
}


class BufferLimitExceeded(PluginError):
    """A body grew past plugins[].limits.max_buffer_bytes (not the plugin's fault: no trap)."""

    kind = "buffer_limit"


class Step(enum.Enum):
    CONTINUE = "continue"  # go on with the exchange
    LOCAL = "local"  # stream.local_response is set: answer it instead
    PAUSED = "paused"  # a plugin paused; wait for proxy_continue_stream
    BUFFERING = "buffering"  # body consumed into a plugin's buffer; wait for more data
    CLOSED = "closed"  # a plugin called proxy_close_stream
    FAILED = "failed"  # a plugin failed and is not fail_open


@dataclass
class Verdict:
    step: Step
    position: int = -1  # index into the phase order where the chain stopped
    data: bytes = b""  # body bytes that passed the whole chain
    member: "Member | None" = None
    error: PluginError | None = None


CONTINUE = Verdict(Step.CONTINUE)
_PAUSE = int(Action.PAUSE)  # a plain int: comparing with the IntEnum member costs a call


class Member:
    """One plugin's context for this exchange."""

    __slots__ = ("plugin", "vm", "context", "context_id", "env", "direct", "failed", "fail_open", "_buffers", "finished", "sandbox", "fuel_limit", "hooks", "receives")

    def __init__(self, plugin: ProxyWasmPlugin, vm: PluginVM | None, context: ContextState | None) -> None:
        self.plugin = plugin
        self.vm = vm
        self.context = context
        self.failed = vm is None
        self.fail_open = plugin.spec.fail_open
        self._buffers: tuple[bytearray, bytearray] | None = None  # made on the first body callback
        self.finished = False
        # Looked up once here rather than on each of the exchange's callbacks.
        self.context_id = context.context_id if context is not None else 0
        self.env = vm.env if vm is not None else None
        self.direct = vm.direct if vm is not None else None  # PluginVM.direct: called by _call itself
        self.sandbox = vm.vm if vm is not None else None
        self.fuel_limit = vm.vm.limits.fuel if vm is not None else 0
        self.hooks = plugin.hooks.callbacks
        # ChainStream._receives per body callback: fixed by the VM's exports and grant, so
        # kept on the VM (PluginVM.receives) rather than worked out again every exchange.
        self.receives: dict[str, bool] = vm.receives if vm is not None else {}

    @property
    def buffers(self) -> tuple[bytearray, bytearray]:
        """What a body callback that paused holds, (request, response)."""
        if self._buffers is None:
            self._buffers = (bytearray(), bytearray())
        return self._buffers


class ChainStream:
    def __init__(self, plugins: list[ProxyWasmPlugin], stream: HttpStream, tracer: Tracer | None = None) -> None:
        self.stream = stream
        self.tracer = tracer
        self.members: list[Member] = []
        self.failure: PluginError | None = None
        self._wants: dict[str, bool] = {}  # wants(), until a member fails
        self._request_order = list(range(len(plugins)))
        self._response_order = self._request_order[::-1]
        # How many plugins (in request order) had their request headers callback reached:
        # Envoy creates a filter's VM context there, so only those see a local reply.
        self.decoded = 0
        # The local reply being passed through the response callbacks: a plugin that
        # answers again during that pass sends a new one (compared by identity).
        self.encoding: LocalResponse | None = None
        for plugin in plugins:
            self.members.append(self._open(plugin))

    # ------------------------------------------------------------- plumbing
    def _open(self, plugin: ProxyWasmPlugin) -> Member:
        try:
            vm = plugin.current_vm()
        except PluginError as exc:
            member = Member(plugin, None, None)
            self._note_failure(member, exc)
            return member
        context = vm.env.new_context(self.stream)
        member = Member(plugin, vm, context)
        plugin.active_streams += 1
        try:
            create = member.direct.get("proxy_on_context_create") if member.direct is not None else None
            if create is not None:  # what vm.call does, as in _call (context creation is not timed)
                env = vm.env
                env.active = context
                try:
                    create(context.context_id, vm.root.context_id)
                finally:
                    env.active = None
                    if env.stdio_pending:
                        env.flush_stdio()
            else:
                vm.call("proxy_on_context_create", context, context.context_id, vm.root.context_id)
        except GuestTrap as exc:
            self._fail(member, exc)
        return member

    def _note_failure(self, member: Member, error: PluginError) -> None:
        member.failed = True
        self._wants.clear()
        if not member.plugin.spec.fail_open and self.failure is None:
            self.failure = error

    def _fail(self, member: Member, error: GuestTrap) -> None:
        if member.vm is not None:
            member.plugin.discard(member.vm, error)
        self._note_failure(member, error)

    def _live(self, member: Member) -> bool:
        if member.failed:
            return False
        if member.vm is None or member.vm.vm.closed:
            # Another exchange made this VM trap: this context died with it.
            self._note_failure(member, GuestTrap(f"plugin {member.plugin.spec.name} VM was restarted mid-request"))
            return False
        return True

    def _call(self, member: Member, name: str, *args: int) -> int | None | GuestTrap:
        direct = member.direct
        if direct is None:
            return self._call_vm(member, name, *args)
        fn = direct.get(name)
        if fn is None:  # not exported: never called, nothing recorded
            return None
        if self.tracer is not None:
            return self._traced_call(member, name, *args)
        # PluginVM.call inlined: this runs for every callback of every plugin. The guest
        # call records its own time and fuel into the hook stats (HookStats.attach).
        env = member.env
        assert env is not None
        env.active = member.context
        try:
            try:
                return fn(member.context_id, *args)  # type: ignore[no-any-return]
            finally:
                env.active = None
                if env.stdio_pending:
                    env.flush_stdio()
        except GuestTrap as exc:
            if not exc.callback:
                exc.callback = name
            self._fail(member, exc)
            return exc

    def _call_vm(self, member: Member, name: str, *args: int) -> int | None | GuestTrap:
        """_call for a VM the chain does not call directly (a component's): through
        vm.call, timed here."""
        vm = member.vm
        context = member.context
        assert vm is not None and context is not None
        if not vm.exports(name):  # not exported: never called, nothing recorded
            return None
        if self.tracer is not None:
            return self._traced_call(member, name, *args)
        began = perf_counter_ns()
        try:
            result = vm.call(name, context, context.context_id, *args)
        except GuestTrap as exc:
            if not exc.callback:
                exc.callback = name
            self._fail(member, exc)
            return exc
        elapsed = perf_counter_ns() - began
        stats = member.hooks.get(name)
        if stats is None:
            stats = member.plugin.hooks.slot(name)
        pending = stats.pending  # CallbackStats.add, inlined
        pending.append((elapsed, member.fuel_limit - member.sandbox.fuel_remaining()))  # type: ignore[union-attr]
        if len(pending) >= FOLD_AT:
            stats.fold()
        return result

    def _traced_call(self, member: Member, name: str, *args: int) -> int | None | GuestTrap:
        """The same call inside a span with plugin, callback, fuel used and outcome."""
        vm = member.vm
        assert vm is not None and member.context is not None and self.tracer is not None
        with self.tracer.start_as_current_span(f"plugin {member.plugin.spec.name} {name}") as span:
            span.set_attribute("routeiq.plugin", member.plugin.spec.name)
            span.set_attribute("routeiq.callback", name)
            fuel_limit = vm.vm.limits.fuel
            try:
                result = vm.call(name, member.context, member.context.context_id, *args)
            except GuestTrap as exc:
                span.set_attribute("routeiq.outcome", exc.kind)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                if not exc.callback:
                    exc.callback = name
                self._fail(member, exc)
                return exc
            span.set_attribute("routeiq.fuel_used", fuel_limit - vm.vm.fuel_remaining())
            span.set_attribute("routeiq.outcome", "ok" if result != Action.PAUSE else "pause")
            return result

    def _undo_point(self, member: Member, body: bytearray | None = None) -> "Callable[[], None] | None":
        """For a fail_open plugin: a way back to the exchange as it was before this
        callback, so a plugin skipped after a trap leaves no partial edits behind
        (headers, trailers, body, a local response, LLM request changes). A plugin
        that fails closed ends the exchange anyway, so it pays nothing for this."""
        if not member.plugin.spec.fail_open:
            return None
        stream = self.stream
        maps = [m for m in (stream.request_headers, stream.response_headers, stream.request_trailers, stream.response_trailers) if m is not None]
        saved_pairs = [list(m.pairs) for m in maps]
        local = stream.local_response
        llm = stream.llm
        saved_llm = (llm.request.get("messages"), llm.pinned_model, llm.dirty) if llm is not None else None
        saved_body = bytes(body) if body is not None else None

        def undo() -> None:
            for m, pairs in zip(maps, saved_pairs):
                m.pairs = pairs
            stream.local_response = local
            if llm is not None and saved_llm is not None:
                llm.request["messages"], llm.pinned_model, llm.dirty = saved_llm
            if body is not None and saved_body is not None:
                body[:] = saved_body

        return undo

    def has_failure_verdict(self) -> Verdict | None:
        if self.failure is not None:
            return Verdict(Step.FAILED, error=self.failure)
        return None

    @staticmethod
    def _receives(member: Member, callback: str) -> bool:
        known = member.receives.get(callback)
        if known is None:  # the member's VM and grant are fixed for the VM's life
            if member.vm is None or not member.vm.exports(callback):
                known = False
            else:
                capability = BODY_CAPABILITY.get(callback)
                known = capability is None or member.plugin.admission.grant.allows(capability)
            member.receives[callback] = known
        return known

    def wants(self, callback: str) -> bool:
        """Will any live plugin receive this callback? (Unexported ones are never called.)
        Asked for every body chunk; the answer changes only when a member fails."""
        known = self._wants.get(callback)
        if known is None:
            known = self._wants[callback] = any(not m.failed and self._receives(m, callback) for m in self.members)
        return known

    def _after_callback(self, member: Member, action: int | None, position: int, stream_type: StreamType) -> Verdict | None:
        """Turn what a callback did into a verdict, or None to go on to the next plugin."""
        context = member.context
        assert context is not None
        if self.failure is not None:
            return Verdict(Step.FAILED, position, member=member, error=self.failure)
        if self.stream.local_response is not self.encoding:
            return Verdict(Step.LOCAL, position, member=member)
        if int(stream_type) in context.close_requested:
            return Verdict(Step.CLOSED, position, member=member)
        if action == Action.PAUSE:
            if int(stream_type) in context.resume_requested:
                context.resume_requested.discard(int(stream_type))
                return None
            return Verdict(Step.PAUSED, position, member=member)
        return None

    def resume_check(self, member: Member, stream_type: StreamType) -> Verdict | None:
        """After a wakeup: what did the paused plugin ask for? None means keep waiting."""
        context = member.context
        assert context is not None
        if context.failure is not None and not member.failed:
            self._note_failure(member, context.failure)
            return self.has_failure_verdict() or CONTINUE
        if self.stream.local_response is not self.encoding:
            return Verdict(Step.LOCAL, member=member)
        if int(stream_type) in context.close_requested:
            return Verdict(Step.CLOSED, member=member)
        if int(stream_type) in context.resume_requested:
            context.resume_requested.discard(int(stream_type))
            return CONTINUE
        if self.failure is not None or not self._live(member):
            return self.has_failure_verdict() or CONTINUE
        return None

    # ------------------------------------------------------------- headers
    def _headers(self, order: list[int], start: int, callback: str, count: int, eos: bool, st: StreamType) -> Verdict:
        failure = self.has_failure_verdict()
        if failure:
            return failure
        members = self.members
        stream = self.stream
        end = int(eos)
        for position in range(start, len(order)):
            member = members[order[position]]
            if (member.failed or member.sandbox.closed) and not self._live(member):  # type: ignore[union-attr]
                if self.failure is not None:
                    return Verdict(Step.FAILED, position, error=self.failure)
                continue
            undo = self._undo_point(member) if member.fail_open else None
            action = self._call(member, callback, count, end)
            if isinstance(action, GuestTrap):
                if self.failure is None:  # fail_open: skipped, and so is what it asked for
                    if undo is not None:
                        undo()
                    continue
                action = None
            # The common outcome, checked inline: nothing asked for, go on.
            if action != _PAUSE and self.failure is None and stream.local_response is self.encoding and not member.context.close_requested:  # type: ignore[union-attr]
                continue
            verdict = self._after_callback(member, action, position, st)
            if verdict is not None:
                return verdict
        return CONTINUE

    def request_headers(self, end_of_stream: bool, start: int = 0) -> Verdict:
        count = len(self.stream.request_headers)
        verdict = self._headers(self._request_order, start, "proxy_on_request_headers", count, end_of_stream, StreamType.HTTP_REQUEST)
        self.decoded = len(self.members) if verdict.step is Step.CONTINUE else verdict.position + 1
        return verdict

    def encode_local_reply(self) -> None:
        """Run the response callbacks next on stream.local_response, as Envoy encodes a
        local reply sent while decoding: through every filter whose request headers were
        decoded (the sender and those before it, or all of them once the headers passed),
        in response order. Filters after the sender never had a context and see nothing."""
        self.encoding = self.stream.local_response
        self._response_order = [i for i in self._response_order if i < self.decoded]

    def response_headers(self, end_of_stream: bool, start: int = 0) -> Verdict:
        headers = self.stream.response_headers
        count = len(headers) if headers is not None else 0
        return self._headers(self._response_order, start, "proxy_on_response_headers", count, end_of_stream, StreamType.HTTP_RESPONSE)

    # ---------------------------------------------------------------- bodies
    def request_body(self, chunk: bytes, end_of_stream: bool, start: int = 0) -> Verdict:
        return self._body(REQUEST, chunk, end_of_stream, start)

    def response_body(self, chunk: bytes, end_of_stream: bool, start: int = 0) -> Verdict:
        return self._body(RESPONSE, chunk, end_of_stream, start)

    def drain(self, direction: int, position: int) -> bytes:
        """Take what a paused plugin holds, to pass it on once it resumes."""
        order = self._request_order if direction == REQUEST else self._response_order
        buffer = self.members[order[position]].buffers[direction]
        data = bytes(buffer)
        buffer.clear()
        return data

    def _body(self, direction: int, data: bytes, eos: bool, start: int) -> Verdict:
        failure = self.has_failure_verdict()
        if failure:
            return failure
        stream = self.stream
        if direction == REQUEST:
            order, callback, st = self._request_order, "proxy_on_request_body", StreamType.HTTP_REQUEST
        else:
            order, callback, st = self._response_order, "proxy_on_response_body", StreamType.HTTP_RESPONSE
        members = self.members
        for position in range(start, len(order)):
            member = members[order[position]]
            if (member.failed or member.sandbox.closed) and not self._live(member):  # type: ignore[union-attr]
                if self.failure is not None:
                    return Verdict(Step.FAILED, position, error=self.failure)
                continue
            receives = member.receives.get(callback)
            if not (self._receives(member, callback) if receives is None else receives):
                continue
            buffer = member.buffers[direction]
            buffer.extend(data)
            if len(buffer) > member.plugin.spec.max_buffer_bytes:
                return self._over_buffer_limit(member, position, direction)
            if direction == REQUEST:
                stream.request_body = buffer
            else:
                stream.response_body = buffer
            undo = self._undo_point(member, buffer) if member.fail_open else None
            try:
                action = self._call(member, callback, len(buffer), int(eos))
            finally:
                stream.request_body = None
                stream.response_body = None
            if isinstance(action, GuestTrap):
                if self.failure is not None:
                    return Verdict(Step.FAILED, position, error=self.failure)
                if undo is not None:
                    undo()
                # fail_open: pass what it held through unchanged, ignore what it asked for
                data = bytes(buffer)
                buffer.clear()
                continue
            if action == Action.PAUSE and not eos and self.failure is None and stream.local_response is self.encoding:
                context = member.context
                assert context is not None
                if int(st) not in context.close_requested and int(st) not in context.resume_requested:
                    return Verdict(Step.BUFFERING, position)
            verdict = self._after_callback(member, action, position, st)
            if verdict is not None:
                return verdict
            data = bytes(buffer)
            buffer.clear()
        return Verdict(Step.CONTINUE, data=data)

    def _over_buffer_limit(self, member: Member, position: int, direction: int) -> Verdict:
        """A body outgrew what the plugin may hold (Envoy's per-filter buffer limit): the
        request is answered 413; a response, already started, is aborted."""
        name, cap = member.plugin.spec.name, member.plugin.spec.max_buffer_bytes
        member.buffers[direction].clear()
        which = "request" if direction == REQUEST else "response"
        message = f"the {which} body exceeds the {cap}-byte buffer limit of plugin {name} (plugins[].limits.max_buffer_bytes)"
        log.warning("request %s: %s", self.stream.request_id, message)
        if direction == REQUEST and not self.stream.response_started:
            body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "request_too_large", "plugin": name}}).encode()
            self.stream.local_response = LocalResponse(413, body, [(b"content-type", b"application/json")], "buffer_limit", name)
            return Verdict(Step.LOCAL, position, member=member)
        return Verdict(Step.FAILED, position, member=member, error=BufferLimitExceeded(message))

    # ------------------------------------------------------------------- end
    def finish(self) -> list[Member]:
        """proxy_on_done, then proxy_on_log and proxy_on_delete for every context.
        Returns members whose plugin answered false from proxy_on_done (finalized later
        by `finalize` once the plugin calls proxy_done or the grace period ends)."""
        if not self.stream.end_ns:
            self.stream.end_ns = time_ns()  # request.duration from on_done on
        waiting: list[Member] = []
        for member in self.members:
            if (member.failed or member.sandbox.closed) and not self._live(member):  # type: ignore[union-attr]
                if member.vm is not None and not member.finished:
                    member.finished = True
                    member.plugin.active_streams -= 1
                continue
            done = self._call(member, "proxy_on_done")
            if isinstance(done, GuestTrap):
                continue
            if done == 0:
                assert member.context is not None
                if not member.context.done_called:
                    member.context.awaiting_done = True
                    waiting.append(member)
                    continue
            self.finalize(member)
        return waiting

    def finalize(self, member: Member) -> None:
        if member.finished:
            return
        member.finished = True
        if member.vm is not None:
            member.plugin.active_streams -= 1
        if (member.failed or member.sandbox.closed) and not self._live(member):  # type: ignore[union-attr]
            return
        if isinstance(self._call(member, "proxy_on_log"), GuestTrap) or isinstance(self._call(member, "proxy_on_delete"), GuestTrap):
            return
        assert member.env is not None and member.context is not None
        member.env.drop_context(member.context)
        member.plugin.note_success()

    def close_all(self) -> None:
        """Forget every context without callbacks (exchange aborted by the client)."""
        for member in self.members:
            if member.vm is not None and member.context is not None:
                member.vm.drop_context(member.context)
            if member.vm is not None and not member.finished:
                member.finished = True
                member.plugin.active_streams -= 1


def request_header_map(method: str, path: str, authority: str, scheme: str, headers: list[tuple[bytes, bytes]], rules: HeaderRules | None = None) -> HeaderMap:
    pairs = [(b":method", method.encode()), (b":path", path.encode("latin-1")), (b":authority", authority.encode("latin-1")), (b":scheme", scheme.encode())]
    pairs.extend((k.lower(), v) for k, v in headers if k.lower() != b"host")
    return HeaderMap(pairs, rules=rules)
