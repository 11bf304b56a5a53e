"""The WIT component ABI: the `host` interface of the routeiq:filter world
(abi/wit/routeiq-filter.wit) as a component links it.

The same meaning methods as the proxy-wasm table (hostcalls.meaning), with typed values
instead of guest pointers. Each entry of CALLS names its meaning and the WIT types of its
parameters and result; the only conversions here are WIT enum cases to proxy-wasm enum
values and property paths to segments. Gates come from abi/capabilities.py as for core
modules, and a refusal is audited under the WIT name (`get-shared-data`, ...).

A meaning answers a status for `result<_, status>` and (status, value) for
`result<T, status>` (see routeiq.runtime.component.HostImport); for a plain result the
value is passed on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from routeiq.abi.capabilities import GATED_CALLS, Capability
from routeiq.abi.proxy_wasm import BufferType, MapType, Status
from routeiq.runtime.component_values import HostImport
from routeiq.runtime.errors import GuestTrap

from .meaning import host_calls, meaning_names
from .state import HostEnv

# WIT enum cases, in declaration order (the decoded value is the case index).
LOG_LEVELS = ("trace", "debug", "info", "warn", "error", "critical")
MAP_TYPES = ("request-headers", "request-trailers", "response-headers", "response-trailers", "http-call-response-headers", "http-call-response-trailers")
BUFFER_TYPES = ("request-body", "response-body", "http-call-response-body", "vm-configuration", "plugin-configuration")
STREAM_TYPES = ("request", "response")
METRIC_TYPES = ("counter", "gauge", "histogram")
ABORT_REASONS = ("exception", "out-of-memory")


@dataclass(frozen=True)
class WitEnum:
    """A WIT enum parameter and the proxy-wasm value of each case (None: the same index)."""

    cases: tuple[str, ...]
    values: tuple[int, ...] | None = None


LOG_LEVEL = WitEnum(LOG_LEVELS)  # proxy_log_level_t has the same order
MAP_TYPE = WitEnum(MAP_TYPES, tuple(int(m) for m in (
    MapType.HTTP_REQUEST_HEADERS,
    MapType.HTTP_REQUEST_TRAILERS,
    MapType.HTTP_RESPONSE_HEADERS,
    MapType.HTTP_RESPONSE_TRAILERS,
    MapType.HTTP_CALL_RESPONSE_HEADERS,
    MapType.HTTP_CALL_RESPONSE_TRAILERS,
)))  # fmt: skip
BUFFER_TYPE = WitEnum(BUFFER_TYPES, tuple(int(b) for b in (
    BufferType.HTTP_REQUEST_BODY,
    BufferType.HTTP_RESPONSE_BODY,
    BufferType.HTTP_CALL_RESPONSE_BODY,
    BufferType.VM_CONFIGURATION,
    BufferType.PLUGIN_CONFIGURATION,
)))  # fmt: skip
STREAM_TYPE = WitEnum(STREAM_TYPES)
METRIC_TYPE = WitEnum(METRIC_TYPES)
PATH = "path"  # list<string> property path -> its non-empty segments


def R(ok: str | None = None) -> tuple[str, str | None]:
    """result<ok, status> (ok None: result<_, status>)."""
    return ("result", ok)


@dataclass(frozen=True)
class Call:
    """One WIT function: the meaning it calls, its parameters, its result."""

    meaning: str
    params: tuple[Any, ...]
    result: Any


CALLS: dict[str, Call] = {
    "log": Call("proxy_log", (LOG_LEVEL, "str"), R()),
    "get-log-level": Call("proxy_get_log_level", (), ("enum", LOG_LEVELS)),
    "get-plugin-config": Call("plugin_configuration", (), "bytes"),
    "get-vm-config": Call("vm_configuration", (), "bytes"),
    "get-current-time-nanoseconds": Call("proxy_get_current_time_nanoseconds", (), "u64"),
    "get-header": Call("proxy_get_header_map_value", (MAP_TYPE, "name"), R("bytes")),
    "get-headers": Call("proxy_get_header_map_pairs", (MAP_TYPE,), R("headers")),
    "set-headers": Call("proxy_set_header_map_pairs", (MAP_TYPE, "headers"), R()),
    "add-header": Call("proxy_add_header_map_value", (MAP_TYPE, "name", "bytes"), R()),
    "replace-header": Call("proxy_replace_header_map_value", (MAP_TYPE, "name", "bytes"), R()),
    "remove-header": Call("proxy_remove_header_map_value", (MAP_TYPE, "name"), R()),
    "get-buffer": Call("proxy_get_buffer_bytes", (BUFFER_TYPE, "u32", "u32"), R("bytes")),
    "get-buffer-size": Call("proxy_get_buffer_status", (BUFFER_TYPE,), R("u32")),
    "set-buffer": Call("proxy_set_buffer_bytes", (BUFFER_TYPE, "u32", "u32", "bytes"), R()),
    "send-local-response": Call("proxy_send_local_response", ("u32", "str", "bytes", "headers"), R()),
    "continue-stream": Call("proxy_continue_stream", (STREAM_TYPE,), R()),
    "close-stream": Call("proxy_close_stream", (STREAM_TYPE,), R()),
    "done": Call("proxy_done", (), R()),
    "get-property": Call("proxy_get_property", (PATH,), R("bytes")),
    "set-property": Call("proxy_set_property", (PATH, "bytes"), R()),
    "get-shared-data": Call("proxy_get_shared_data", ("name",), R("shared-value")),
    "set-shared-data": Call("proxy_set_shared_data", ("name", "bytes", "u32"), R()),
    "register-shared-queue": Call("proxy_register_shared_queue", ("str",), R("u32")),
    "resolve-shared-queue": Call("proxy_resolve_shared_queue", ("str", "str"), R("u32")),
    "enqueue-shared-queue": Call("proxy_enqueue_shared_queue", ("u32", "bytes"), R()),
    "dequeue-shared-queue": Call("proxy_dequeue_shared_queue", ("u32",), R("bytes")),
    "http-call": Call("proxy_http_call", ("str", "headers", "bytes", "headers", "u32"), R("u32")),
    "get-call-status": Call("proxy_get_status", (), R("call-status")),
    "define-metric": Call("proxy_define_metric", (METRIC_TYPE, "str"), R("u32")),
    "increment-metric": Call("proxy_increment_metric", ("u32", "s64"), R()),
    "record-metric": Call("proxy_record_metric", ("u32", "u64"), R()),
    "get-metric": Call("proxy_get_metric", ("u32",), R("u64")),
    "set-tick-period": Call("proxy_set_tick_period_milliseconds", ("u32",), R()),
    "get-llm-request": Call("routeiq_get_llm_request", (), R("bytes")),
    "set-llm-messages": Call("routeiq_set_llm_messages", ("bytes",), R()),
    "set-llm-model": Call("routeiq_set_llm_model", ("str",), R()),
    "get-llm-response": Call("routeiq_get_llm_response", (), R("bytes")),
}

# The routeiq:tool world's `host` (abi/wit/tool/routeiq-tool.wit): the calls a tool may
# make, with the filter world's signatures (same meanings, same gates); names differ only
# where the tool world drops the filter's vocabulary.
TOOL_CALLS: dict[str, Call] = {
    "log": CALLS["log"],
    "get-log-level": CALLS["get-log-level"],
    "get-config": CALLS["get-plugin-config"],
    "get-current-time-nanoseconds": CALLS["get-current-time-nanoseconds"],
    "get-shared-data": CALLS["get-shared-data"],
    "set-shared-data": CALLS["set-shared-data"],
    "define-metric": CALLS["define-metric"],
    "increment-metric": CALLS["increment-metric"],
    "record-metric": CALLS["record-metric"],
    "get-metric": CALLS["get-metric"],
}

# Component-only: not a proxy-wasm call (a core module traps itself).
ABORT = "abort"
ABORT_SIGNATURE = ((("enum", ABORT_REASONS), "str"), None)

# proxy-wasm name -> WIT name, for the audit log (first WIT function of a meaning wins).
AUDIT_NAMES: dict[str, str] = {}
for _wit, _call in CALLS.items():
    AUDIT_NAMES.setdefault(_call.meaning, _wit)


def _check_table() -> None:
    meanings = meaning_names()
    for wit, call in CALLS.items():
        if call.meaning not in meanings:
            raise TypeError(f"{wit}: no meaning method {call.meaning} in hostcalls")
        if call.meaning in GATED_CALLS and not (isinstance(call.result, tuple) and call.result[0] == "result"):
            raise TypeError(f"{wit} is gated, so it must answer result<_, status>")


_check_table()


def _wit_tag(param: Any) -> Any:
    if isinstance(param, WitEnum):
        return ("enum", param.cases)
    if param == PATH:
        return "names"
    return param


def _converter(param: Any) -> Callable[[Any], Any] | None:
    if isinstance(param, WitEnum):
        return param.values.__getitem__ if param.values is not None else None
    if param == PATH:
        return lambda path: tuple(p for p in path if p)
    return None


def _adapter(fn: Callable[..., Any], call: Call) -> Callable[..., Any]:
    converters = tuple(_converter(p) for p in call.params)
    plain = call.result is not None and not (isinstance(call.result, tuple) and call.result[0] == "result")
    if not any(converters):
        if plain:
            return lambda *args: fn(*args)[1]
        return fn

    def adapter(*args: Any) -> Any:
        answer = fn(*[c(a) if c is not None else a for c, a in zip(converters, args)])
        return answer[1] if plain else answer

    return adapter


def _denied(env: HostEnv, wit: str, capability: Capability, with_value: bool) -> Callable[..., Any]:
    detail = f"{capability.value} is not granted"

    def denied(*_args: Any) -> Any:
        status = env.deny(wit, "capability", detail, Status.UNIMPLEMENTED)
        return (status, None) if with_value else status

    return denied


def _abort(env: HostEnv) -> Callable[[int, str], None]:
    def abort(reason: int, message: str) -> None:
        """The guest gives up: trap it with a typed error (its VM is then discarded)."""
        sandbox = env.vm
        callback = getattr(sandbox, "current_callback", "") or "a callback"
        first = message.strip().splitlines()[-1] if message.strip() else "an uncaught exception"
        if ABORT_REASONS[reason] == "out-of-memory":
            raise sandbox.memory_limit_error(callback, message)
        raise GuestTrap(f"raised {first} in {callback}", callback=callback, detail=message)

    return abort


def build_component_imports(env: HostEnv, calls: dict[str, Call] = CALLS) -> list[HostImport]:
    """The `host` functions for one component VM, gated by the plugin's grant (`calls`:
    the world's host interface, the filter world's unless given)."""
    meanings = host_calls(env, AUDIT_NAMES)
    granted = env.grant.capabilities
    imports = []
    for wit, call in calls.items():
        capability = GATED_CALLS.get(call.meaning)
        if capability is not None and capability not in granted:
            impl = _denied(env, wit, capability, call.result[1] is not None)
        else:
            impl = _adapter(meanings[call.meaning], call)
        imports.append(HostImport(wit, tuple(_wit_tag(p) for p in call.params), call.result, impl))
    params, result = ABORT_SIGNATURE
    imports.append(HostImport(ABORT, params, result, _abort(env)))
    return imports


def signatures() -> dict[str, tuple[tuple[Any, ...], Any]]:
    """WIT name -> (decoder tags of the parameters, result), every function linked."""
    sigs = {wit: (tuple(_wit_tag(p) for p in call.params), call.result) for wit, call in CALLS.items()}
    sigs[ABORT] = ABORT_SIGNATURE
    return sigs
