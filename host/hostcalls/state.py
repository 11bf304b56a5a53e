"""State the host calls read and write: header maps, bodies, contexts, plugin identity."""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Callable, Protocol

from routeiq.abi.capabilities import Capability
from routeiq.abi.proxy_wasm import LogLevel, Pairs, Status, StreamType, encode_map, encoded_map_size
from routeiq.policy.grants import Grant, deny_all

from .header_rules import HeaderRefused, HeaderRules
from .llm_exchange import LlmExchange
from routeiq.runtime.errors import PluginError
from routeiq.services.audit import AuditLog
from routeiq.services.callout import CalloutClient, CalloutResult, CalloutTarget
from routeiq.services.plugin_metrics import PluginMetrics
from routeiq.services.shared_store import InMemoryStore, SharedStore


class HeaderMap:
    """Ordered header pairs with lower-case names, like Envoy's header maps.

    With `rules` set (the maps plugins write), every change is checked first and a
    refused one (HeaderRefused) leaves the map as it was."""

    __slots__ = ("pairs", "writable", "rules", "_sized")

    def __init__(self, pairs: Pairs | None = None, writable: bool = True, rules: HeaderRules | None = None) -> None:
        self.pairs: Pairs = list(pairs or [])
        self.writable = writable
        self.rules = rules
        # (pairs list, its length, its name+value bytes) after the last add(): the next
        # add's size check need not walk the map again. Every other change assigns a new
        # list, and add() only appends, so identity and length tell whether it still holds.
        self._sized: tuple[Pairs, int, int] | None = None

    def get(self, name: bytes) -> bytes | None:
        name = name.lower()
        found = None
        for k, v in self.pairs:
            if k == name:
                if found is not None:  # repeated header: values joined, as Envoy does
                    return b",".join(v for k2, v in self.pairs if k2 == name)
                found = v
        return found

    def add(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        rules = self.rules
        pairs = self.pairs
        if rules is not None:
            rules.check_pair(name, value)
            if name.startswith(b":") and any(k == name for k, _ in pairs):
                raise HeaderRefused("pseudo_header", f"{name.decode('latin-1')} is already set (replace it)")
            sized = self._sized
            if sized is not None and sized[0] is pairs and sized[1] == len(pairs):
                size = sized[2]
            else:
                size = sum(map(len, chain.from_iterable(pairs)))
            size += len(name) + len(value)
            limits = rules.limits
            if len(pairs) >= limits.max_count or size > limits.max_bytes:  # within both caps: nothing to check
                rules.check_add(pairs, size, name, value)
            pairs.append((name, value))
            self._sized = (pairs, len(pairs), size)
            return
        pairs.append((name, value))

    def replace(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        pairs = self.pairs
        for i, (k, _) in enumerate(pairs):
            if k == name:
                after = pairs[:i] + [(k, value)] + [(k2, v2) for k2, v2 in pairs[i + 1 :] if k2 != name]
                break
        else:
            after = pairs + [(name, value)]
        if self.rules is not None:
            self.rules.check_pair(name, value)
            self.rules.check_size(pairs, after)
        self.pairs = after

    def remove(self, name: bytes) -> None:
        name = name.lower()
        if self.rules is not None:
            self.rules.check_remove(name)
        self.pairs = [(k, v) for k, v in self.pairs if k != name]

    def set_all(self, pairs: Pairs) -> None:
        after = [(k.lower(), v) for k, v in pairs]
        rules = self.rules
        if rules is not None:
            seen: set[bytes] = set()
            for k, v in after:
                rules.check_pair(k, v)
                if k.startswith(b":"):
                    if k in seen:
                        raise HeaderRefused("pseudo_header", f"{k.decode('latin-1')} is given twice")
                    seen.add(k)
            # Pseudo-headers the new pairs leave out keep their values: a request
            # always has a method, a path and a scheme.
            kept = [(k, v) for k, v in self.pairs if k.startswith(b":") and k not in seen]
            after = kept + after
            rules.check_size(self.pairs, after)
        self.pairs = after

    def serialize(self) -> bytes:
        return encode_map(self.pairs)

    def serialized_size(self) -> int:
        return encoded_map_size(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)


@dataclass
class LocalResponse:
    status: int
    body: bytes
    headers: Pairs
    details: str = ""
    plugin: str = ""


@dataclass(frozen=True)
class RouteInfo:
    """The route an exchange took (config `routes:`), as the route properties expose it."""

    name: str
    cluster_name: str | None = None  # the operator cluster behind the route, if any
    metadata: dict[str, Any] = field(default_factory=dict)  # Envoy's route metadata: {filter_metadata: {...}}


@dataclass
class HttpStream:
    """One HTTP exchange as all plugins of the chain see it (maps and bodies are shared)."""

    request_headers: HeaderMap
    request_id: str = ""
    client: tuple[str, int] | None = None
    server: tuple[str, int] | None = None
    scheme: str = "http"
    protocol: str = "HTTP/1.1"
    start_ns: int = field(default_factory=time.time_ns)
    end_ns: int = 0  # set when the exchange is over, before on_done / on_log
    request_trailers: HeaderMap | None = None
    response_headers: HeaderMap | None = None
    response_trailers: HeaderMap | None = None
    # The body buffer a body callback currently exposes (None outside body callbacks).
    request_body: bytearray | None = None
    response_body: bytearray | None = None
    request_body_size: int = 0
    response_body_size: int = 0
    local_response: LocalResponse | None = None
    response_started: bool = False
    response_code: int = 0
    response_details: str = ""  # Envoy's response code details: "via_upstream" or the local reply's
    filter_state: dict[tuple[bytes, ...], bytes] = field(default_factory=dict)
    llm: LlmExchange | None = None  # set for chat completion requests on the LLM path
    route: RouteInfo | None = None  # the matched route (None: no routes configured, or none matched)
    route_cache_cleared: bool = False  # a plugin asked to re-match the route (clear_route_cache)
    consumer: dict[str, str] | None = None  # the authenticated virtual key's routeiq.consumer.* values


@dataclass
class ContextState:
    """A proxy-wasm context inside one VM: the root context or one HTTP stream's."""

    context_id: int
    stream: HttpStream | None = None  # None for the root context
    resume_requested: set[int] = field(default_factory=set)
    close_requested: set[int] = field(default_factory=set)
    awaiting_done: bool = False
    done_called: bool = False
    wakeup: Callable[[], None] | None = None
    callouts_made: int = 0
    pending_callouts: set[int] = field(default_factory=set)
    failure: PluginError | None = None  # set when something outside a callback failed this stream

    def request_resume(self, stream_type: StreamType) -> None:
        self.resume_requested.add(int(stream_type))
        if self.wakeup is not None:
            self.wakeup()

    def request_close(self, stream_type: StreamType) -> None:
        self.close_requested.add(int(stream_type))
        if self.wakeup is not None:
            self.wakeup()


LogSink = Callable[[str, LogLevel, str], None]

_PY_LEVELS = {
    LogLevel.TRACE: 5,
    LogLevel.DEBUG: logging.DEBUG,
    LogLevel.INFO: logging.INFO,
    LogLevel.WARN: logging.WARNING,
    LogLevel.ERROR: logging.ERROR,
    LogLevel.CRITICAL: logging.CRITICAL,
}


def python_log_level(level: LogLevel) -> int:
    return _PY_LEVELS[level]


@dataclass
class PluginIdentity:
    name: str
    root_id: str = ""
    vm_id: str = ""
    plugin_config: bytes = b""
    vm_config: bytes = b""
    environment: tuple[tuple[str, str], ...] = ()
    log_level: LogLevel = LogLevel.INFO
    max_buffer_bytes: int = 32 * 1024 * 1024  # a body buffer may not grow past this


@dataclass
class HostServices:
    """Backends shared by every plugin of one gateway (the app owns them)."""

    store: SharedStore = field(default_factory=InMemoryStore)
    metrics: PluginMetrics = field(default_factory=PluginMetrics)
    audit: AuditLog = field(default_factory=AuditLog)
    callouts: CalloutClient = field(default_factory=CalloutClient)
    kv_ops: Counter[tuple[str, str]] = field(default_factory=Counter)  # (plugin, get|set)


STDIO_LINE_MAX = 16 * 1024
_NO_WAIT = contextlib.nullcontext()  # stateless and reusable: a store in this process never waits  # a longer unfinished line is logged as it stands


class VMScheduler(Protocol):
    """What the dispatch layer does for host calls that start work outside the callback:
    callouts, the tick timer, queue readiness (never re-entering the guest from the call)."""

    def start_callout(self, origin: ContextState, call_id: int, target: CalloutTarget, body: bytes, timeout_ms: int) -> bool: ...

    def set_tick_period(self, period_ms: int) -> None: ...

    def queue_ready(self, queue_id: int) -> None: ...


class HostEnv:
    """Everything the host calls of one VM need: its identity and grant, the VM (for guest
    memory), the shared backends, the scheduler for background work, and its contexts.
    The root context exists from the start (proxy-wasm context 1)."""

    def __init__(
        self,
        plugin: PluginIdentity,
        log_sink: LogSink | None = None,
        grant: Grant | None = None,
        services: HostServices | None = None,
        vm: Any = None,  # a routeiq.runtime WasmVM or ComponentSandbox (not yet instantiated)
        scheduler: VMScheduler | None = None,
    ) -> None:
        self.plugin = plugin
        self.vm = vm
        self.scheduler = scheduler
        self.contexts: dict[int, ContextState] = {}
        self._next_context_id = 1
        self.active: ContextState | None = None
        self.logger = logging.getLogger(f"routeiq.plugin.{plugin.name}")
        self.log_sink = log_sink
        self.grant = grant or deny_all(plugin.name)
        self.services = services or HostServices()
        self.callout_response: CalloutResult | None = None
        self.next_callout_id = 1
        self.stdio_pending: dict[int, bytes] = {}  # unfinished stdout/stderr lines, by fd
        self.root = self.new_context(stream=None)

    def new_context(self, stream: HttpStream | None) -> ContextState:
        context = ContextState(context_id=self._next_context_id, stream=stream)
        self._next_context_id += 1
        self.contexts[context.context_id] = context
        return context

    def drop_context(self, context: ContextState) -> None:
        self.contexts.pop(context.context_id, None)

    def deny(self, call: str, reason: str, detail: str, status: Status) -> int:
        """Refuse a host call: audit it and answer the guest with a status."""
        stream = self.stream
        self.services.audit.denied(self.plugin.name, call, reason, detail, stream.request_id if stream else "")
        return status

    def require(self, call: str, capability: Capability) -> int | None:
        """None if granted, else the denial status (UNIMPLEMENTED) after auditing."""
        if capability in self.grant.capabilities:
            return None
        return self.deny(call, "capability", f"{capability.value} is not granted", Status.UNIMPLEMENTED)

    def store_wait(self) -> "contextlib.AbstractContextManager[None]":
        """Around a shared store call: a store in another process (Redis) is dependency
        time, not the plugin's, so its wait is kept off the callback's deadline."""
        vm = self.vm
        if vm is None or not self.services.store.blocking:
            return _NO_WAIT
        return vm.outside_deadline()

    @property
    def stream(self) -> HttpStream | None:
        active = self.active
        return active.stream if active is not None else None

    def write_stdio(self, fd: int, data: bytes) -> None:
        """stdout (info) / stderr (error) into the plugin log, one record per line: a
        runtime writing a line in pieces (Go prints a panic a few bytes at a time) still
        gives one readable record. Envoy logs each write; lines are what operators read."""
        pending = self.stdio_pending.get(fd, b"") + data
        if b"\n" not in data and len(pending) < STDIO_LINE_MAX:
            self.stdio_pending[fd] = pending
            return
        *lines, rest = pending.split(b"\n")
        if len(rest) >= STDIO_LINE_MAX:
            lines.append(rest)
            rest = b""
        if rest:
            self.stdio_pending[fd] = rest
        else:
            self.stdio_pending.pop(fd, None)
        level = LogLevel.INFO if fd == 1 else LogLevel.ERROR
        for line in lines:
            self.emit_log(level, line.decode("utf-8", "replace"))

    def flush_stdio(self) -> None:
        """Log what is left of unfinished lines: at the end of the callback that wrote them
        (as Envoy, which logs every write, shows them), on exit, on VM close."""
        pending, self.stdio_pending = self.stdio_pending, {}
        for fd, rest in pending.items():
            self.emit_log(LogLevel.INFO if fd == 1 else LogLevel.ERROR, rest.decode("utf-8", "replace"))

    def emit_log(self, level: LogLevel, message: str) -> None:
        if level < self.plugin.log_level:
            return
        self.logger.log(python_log_level(level), "%s", message)
        if self.log_sink is not None:
            self.log_sink(self.plugin.name, level, message)
