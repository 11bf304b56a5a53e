"""The `host` interface of the routeiq:filter WIT world (abi/wit/routeiq-filter.wit).

The same host calls as the proxy-wasm table, with typed values instead of guest
pointers: each function works on the same HostEnv state (header maps, body buffers, the
local response, the shared store, metrics, the LLM exchange) and goes through the same
capability checks (`env.require` / `env.deny`), so a call outside the plugin's grant
answers a status and is audited under its WIT name (`get-shared-data`, ...).

Implementations return a status for `result<_, status>` and (status, value) for
`result<T, status>` (see routeiq.runtime.component.HostImport).
"""

from __future__ import annotations

import time
from typing import Any

import cbor2

from routeiq.abi.capabilities import Capability
from routeiq.abi.proxy_wasm import BufferType, LogLevel, MapType, MetricType, Status, StreamType
from routeiq.runtime.component import HostImport
from routeiq.runtime.errors import GuestTrap
from routeiq.services.callout import CalloutRefused, plan_callout

from .buffers import BufferCalls
from .contexts import ContextCalls
from .header_rules import HeaderRefused
from .headers import _map as header_map
from .llm import MAX_CBOR_BYTES, LlmCalls, _messages
from .properties import PropertyCalls
from .shared_data import SharedDataCalls
from .state import HeaderMap, HostEnv, LocalResponse

# WIT enum cases, in declaration order (the decoded value is the case index).
LOG_LEVELS = ("trace", "debug", "info", "warn", "error", "critical")
MAP_TYPES = ("request-headers", "request-trailers", "response-headers", "response-trailers", "http-call-response-headers", "http-call-response-trailers")
BUFFER_TYPES = ("request-body", "response-body", "http-call-response-body", "vm-configuration", "plugin-configuration")
STREAM_TYPES = ("request", "response")
METRIC_TYPES = ("counter", "gauge", "histogram")
ABORT_REASONS = ("exception", "out-of-memory")

_MAP = (
    MapType.HTTP_REQUEST_HEADERS,
    MapType.HTTP_REQUEST_TRAILERS,
    MapType.HTTP_RESPONSE_HEADERS,
    MapType.HTTP_RESPONSE_TRAILERS,
    MapType.HTTP_CALL_RESPONSE_HEADERS,
    MapType.HTTP_CALL_RESPONSE_TRAILERS,
)
_BUFFER = (
    BufferType.HTTP_REQUEST_BODY,
    BufferType.HTTP_RESPONSE_BODY,
    BufferType.HTTP_CALL_RESPONSE_BODY,
    BufferType.VM_CONFIGURATION,
    BufferType.PLUGIN_CONFIGURATION,
)
_METRIC = (MetricType.COUNTER, MetricType.GAUGE, MetricType.HISTOGRAM)

E = lambda names: ("enum", names)  # noqa: E731
R = lambda ok=None: ("result", ok)  # noqa: E731


class ComponentHostCalls:
    """The `host` functions of one component VM. `env.vm` is its ComponentSandbox."""

    def __init__(self, env: HostEnv) -> None:
        self.env = env
        self._buffers = BufferCalls(env)
        self._kv = SharedDataCalls(env)
        self._properties = PropertyCalls(env)
        self._contexts = ContextCalls(env)
        self._llm = LlmCalls(env)

    # ----------------------------------------------------------- logging etc.
    def log(self, level: int, message: str) -> int:
        self.env.emit_log(LogLevel(level), message)
        return Status.OK

    def get_log_level(self) -> int:
        return int(self.env.plugin.log_level)

    def get_plugin_config(self) -> bytes:
        return self.env.plugin.plugin_config

    def get_vm_config(self) -> bytes:
        return self.env.plugin.vm_config

    def get_current_time_nanoseconds(self) -> int:
        return time.time_ns()

    # ---------------------------------------------------------------- headers
    def _writable(self, which: int) -> HeaderMap | int:
        hmap = header_map(self.env, _MAP[which])
        if hmap is None or not hmap.writable:
            return Status.BAD_ARGUMENT
        return hmap

    def get_header(self, which: int, name: bytes) -> tuple[int, bytes]:
        hmap = header_map(self.env, _MAP[which])
        value = hmap.get(name) if hmap is not None else None
        if value is None:
            return Status.NOT_FOUND, b""
        return Status.OK, value

    def get_headers(self, which: int) -> tuple[int, list[tuple[bytes, bytes]]]:
        hmap = header_map(self.env, _MAP[which])
        return Status.OK, list(hmap.pairs) if hmap is not None else []

    def set_headers(self, which: int, pairs: list[tuple[bytes, bytes]]) -> int:
        hmap = self._writable(which)
        if isinstance(hmap, int):
            return hmap
        try:
            hmap.set_all(pairs)
        except HeaderRefused as refused:
            return self.env.deny("set-headers", refused.reason, refused.detail, Status.BAD_ARGUMENT)
        return Status.OK

    def add_header(self, which: int, name: bytes, value: bytes) -> int:
        hmap = self._writable(which)
        if isinstance(hmap, int):
            return hmap
        try:
            hmap.add(name, value)
        except HeaderRefused as refused:
            return self.env.deny("add-header", refused.reason, refused.detail, Status.BAD_ARGUMENT)
        return Status.OK

    def replace_header(self, which: int, name: bytes, value: bytes) -> int:
        hmap = self._writable(which)
        if isinstance(hmap, int):
            return hmap
        try:
            hmap.replace(name, value)
        except HeaderRefused as refused:
            return self.env.deny("replace-header", refused.reason, refused.detail, Status.BAD_ARGUMENT)
        return Status.OK

    def remove_header(self, which: int, name: bytes) -> int:
        hmap = self._writable(which)
        if isinstance(hmap, int):
            return hmap
        try:
            hmap.remove(name)
        except HeaderRefused as refused:
            return self.env.deny("remove-header", refused.reason, refused.detail, Status.BAD_ARGUMENT)
        return Status.OK

    # ---------------------------------------------------------------- buffers
    def get_buffer(self, which: int, start: int, max_size: int) -> tuple[int, bytes]:
        buffer_type = _BUFFER[which]
        denied = self._buffers._gate("get-buffer", buffer_type)
        if denied is not None:
            return denied, b""
        buf = self._buffers._buffer(buffer_type)
        if buf is None:
            return Status.NOT_FOUND, b""
        if start > len(buf):
            return Status.BAD_ARGUMENT, b""
        return Status.OK, bytes(memoryview(buf)[start : start + max_size])  # one copy

    def get_buffer_size(self, which: int) -> tuple[int, int]:
        buffer_type = _BUFFER[which]
        denied = self._buffers._gate("get-buffer-size", buffer_type)
        if denied is not None:
            return denied, 0
        buf = self._buffers._buffer(buffer_type)
        if buf is None:
            return Status.NOT_FOUND, 0
        return Status.OK, len(buf)

    def set_buffer(self, which: int, start: int, size: int, data: bytes) -> int:
        buffer_type = _BUFFER[which]
        denied = self._buffers._gate("set-buffer", buffer_type)
        if denied is not None:
            return denied
        return self._buffers.write("set-buffer", buffer_type, start, size, data)

    # --------------------------------------------------------- stream control
    def send_local_response(self, status_code: int, details: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
        env = self.env
        stream = env.stream
        if stream is None or stream.response_started:
            return Status.BAD_ARGUMENT
        if not 200 <= status_code <= 599:
            return Status.BAD_ARGUMENT
        stream.local_response = LocalResponse(
            status=status_code,
            body=body,
            headers=[(k.lower(), v) for k, v in headers],
            details=details,
            plugin=env.plugin.name,
        )
        return Status.OK

    def _active_stream(self) -> int | None:
        active = self.env.active
        if active is None or active.stream is None:
            return Status.NOT_FOUND
        return None

    def continue_stream(self, which: int) -> int:
        problem = self._active_stream()
        if problem is not None:
            return problem
        self.env.active.request_resume(StreamType(which))  # type: ignore[union-attr]
        return Status.OK

    def close_stream(self, which: int) -> int:
        problem = self._active_stream()
        if problem is not None:
            return problem
        self.env.active.request_close(StreamType(which))  # type: ignore[union-attr]
        return Status.OK

    def done(self) -> int:
        return self._contexts.proxy_done()

    def abort(self, reason: int, message: str) -> None:
        """The guest gives up: trap it with a typed error (its VM is then discarded)."""
        sandbox = self.env.vm
        callback = getattr(sandbox, "current_callback", "") or "a callback"
        first = message.strip().splitlines()[-1] if message.strip() else "an uncaught exception"
        if ABORT_REASONS[reason] == "out-of-memory":
            raise sandbox.memory_limit_error(callback, message)
        raise GuestTrap(f"raised {first} in {callback}", callback=callback, detail=message)

    # ------------------------------------------------------------- properties
    def get_property(self, path: list[bytes]) -> tuple[int, bytes]:
        value = self._properties.resolve(tuple(p for p in path if p))
        if value is None:
            return Status.NOT_FOUND, b""
        return Status.OK, value

    def set_property(self, path: list[bytes], value: bytes) -> int:
        stream = self.env.stream
        if stream is None:
            return Status.NOT_FOUND
        segments = tuple(p for p in path if p)
        if not segments:
            return Status.BAD_ARGUMENT
        stream.filter_state[segments] = value
        return Status.OK

    # ------------------------------------------------------------ shared data
    def get_shared_data(self, key: bytes) -> tuple[int, Any]:
        status, value, cas = self._kv.fetch("get-shared-data", key)
        if status != Status.OK:
            return status, None
        return Status.OK, (value, cas)

    def set_shared_data(self, key: bytes, value: bytes, cas: int) -> int:
        return self._kv.put("set-shared-data", key, value, cas)

    # --------------------------------------------------------------- callouts
    def http_call(
        self, upstream: str, headers: list[tuple[bytes, bytes]], body: bytes, _trailers: list[tuple[bytes, bytes]], timeout_ms: int
    ) -> tuple[int, int]:
        env = self.env
        denied = env.require("http-call", Capability.HTTP_CALLOUT)
        if denied is not None:
            return denied, 0
        origin = env.active
        if origin is None or env.start_callout is None:
            return Status.INTERNAL_FAILURE, 0
        limits = env.grant.limits
        if origin.callouts_made >= limits.callouts_per_request:
            return env.deny("http-call", "callout_limit", f"more than {limits.callouts_per_request} callouts in one request", Status.BAD_ARGUMENT), 0
        try:
            target = plan_callout(env.grant, upstream, [(k.lower(), v) for k, v in headers], env.services.callouts.resolver)
        except CalloutRefused as refused:
            return env.deny("http-call", refused.reason, refused.detail, Status.BAD_ARGUMENT), 0
        origin.callouts_made += 1
        call_id = env.next_callout_id
        env.next_callout_id += 1
        timeout = min(timeout_ms or limits.callout_timeout_ms, limits.callout_timeout_ms)
        env.start_callout(origin, call_id, target, body, timeout)
        return Status.OK, call_id

    # ---------------------------------------------------------------- metrics
    def define_metric(self, kind: int, name: str) -> tuple[int, int]:
        env = self.env
        denied = env.require("define-metric", Capability.METRICS)
        if denied is not None:
            return denied, 0
        status, metric_id = env.services.metrics.define(env.plugin.name, int(_METRIC[kind]), name)
        return status, metric_id

    def increment_metric(self, metric_id: int, delta: int) -> int:
        env = self.env
        denied = env.require("increment-metric", Capability.METRICS)
        if denied is not None:
            return denied
        return env.services.metrics.increment(env.plugin.name, metric_id, delta)

    def record_metric(self, metric_id: int, value: int) -> int:
        env = self.env
        denied = env.require("record-metric", Capability.METRICS)
        if denied is not None:
            return denied
        return env.services.metrics.record(env.plugin.name, metric_id, value)

    def get_metric(self, metric_id: int) -> tuple[int, int]:
        env = self.env
        denied = env.require("get-metric", Capability.METRICS)
        if denied is not None:
            return denied, 0
        return env.services.metrics.get(env.plugin.name, metric_id)

    # ----------------------------------------------------------------- timers
    def set_tick_period(self, period_ms: int) -> int:
        env = self.env
        denied = env.require("set-tick-period", Capability.TIMERS)
        if denied is not None:
            return denied
        if env.set_tick_period is None:
            return Status.INTERNAL_FAILURE
        env.set_tick_period(period_ms)
        return Status.OK

    # -------------------------------------------------------------------- LLM
    def get_llm_request(self) -> tuple[int, bytes]:
        exchange = self._llm._exchange("get-llm-request")
        if isinstance(exchange, int):
            return exchange, b""
        return Status.OK, cbor2.dumps(exchange.view())

    def set_llm_messages(self, raw: bytes) -> int:
        exchange = self._llm._exchange("set-llm-messages")
        if isinstance(exchange, int):
            return exchange
        if exchange.forwarded or len(raw) > MAX_CBOR_BYTES:
            return Status.BAD_ARGUMENT
        try:
            messages = _messages(cbor2.loads(raw))
        except (cbor2.CBORDecodeError, RecursionError, ValueError, OverflowError, MemoryError):
            return Status.PARSE_FAILURE
        if messages is None:
            return Status.PARSE_FAILURE
        exchange.request["messages"] = messages
        exchange.dirty = True
        return Status.OK

    def set_llm_model(self, model: str) -> int:
        exchange = self._llm._exchange("set-llm-model")
        if isinstance(exchange, int):
            return exchange
        if exchange.forwarded:
            return Status.BAD_ARGUMENT
        if model not in exchange.known_models:
            return Status.NOT_FOUND
        exchange.pinned_model = model
        return Status.OK

    def get_llm_response(self) -> tuple[int, bytes]:
        exchange = self._llm._exchange("get-llm-response")
        if isinstance(exchange, int):
            return exchange, b""
        if exchange.outcome is None:
            return Status.NOT_FOUND, b""
        return Status.OK, cbor2.dumps(exchange.outcome.as_dict())


# WIT name -> (parameter types, result type); the implementation is the method of the
# same name (dashes as underscores).
HOST_SIGNATURES: dict[str, tuple[tuple[Any, ...], Any]] = {
    "log": ((E(LOG_LEVELS), "str"), R()),
    "get-log-level": ((), E(LOG_LEVELS)),
    "get-plugin-config": ((), "bytes"),
    "get-vm-config": ((), "bytes"),
    "get-current-time-nanoseconds": ((), "u64"),
    "get-header": ((E(MAP_TYPES), "name"), R("bytes")),
    "get-headers": ((E(MAP_TYPES),), R("headers")),
    "set-headers": ((E(MAP_TYPES), "headers"), R()),
    "add-header": ((E(MAP_TYPES), "name", "bytes"), R()),
    "replace-header": ((E(MAP_TYPES), "name", "bytes"), R()),
    "remove-header": ((E(MAP_TYPES), "name"), R()),
    "get-buffer": ((E(BUFFER_TYPES), "u32", "u32"), R("bytes")),
    "get-buffer-size": ((E(BUFFER_TYPES),), R("u32")),
    "set-buffer": ((E(BUFFER_TYPES), "u32", "u32", "bytes"), R()),
    "send-local-response": (("u32", "str", "bytes", "headers"), R()),
    "continue-stream": ((E(STREAM_TYPES),), R()),
    "close-stream": ((E(STREAM_TYPES),), R()),
    "done": ((), R()),
    "abort": ((E(ABORT_REASONS), "str"), None),
    "get-property": (("names",), R("bytes")),
    "set-property": (("names", "bytes"), R()),
    "get-shared-data": (("name",), R("shared-value")),
    "set-shared-data": (("name", "bytes", "u32"), R()),
    "http-call": (("str", "headers", "bytes", "headers", "u32"), R("u32")),
    "define-metric": ((E(METRIC_TYPES), "str"), R("u32")),
    "increment-metric": (("u32", "s64"), R()),
    "record-metric": (("u32", "u64"), R()),
    "get-metric": (("u32",), R("u64")),
    "set-tick-period": (("u32",), R()),
    "get-llm-request": ((), R("bytes")),
    "set-llm-messages": (("bytes",), R()),
    "set-llm-model": (("str",), R()),
    "get-llm-response": ((), R("bytes")),
}


def build_component_imports(env: HostEnv) -> list[HostImport]:
    calls = ComponentHostCalls(env)
    return [HostImport(name, params, result, getattr(calls, name.replace("-", "_"))) for name, (params, result) in HOST_SIGNATURES.items()]
