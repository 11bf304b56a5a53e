"""The complete import table a proxy-wasm module can link against."""

from __future__ import annotations

from functools import partial

from routeiq.abi.proxy_wasm import Status, WasiErrno
from routeiq.runtime.vm import HostFunction

from .buffers import BufferCalls
from .clock import ClockCalls
from .contexts import ContextCalls
from .headers import HeaderCalls
from .http_call import HttpCallCalls
from .llm import LlmCalls
from .metrics import MetricCalls
from .shared_data import SharedDataCalls
from .shared_queue import SharedQueueCalls
from .timers import TimerCalls
from .log import LoggingCalls
from .properties import PropertyCalls
from .state import HostEnv
from .stream import StreamCalls
from .unimplemented import I64_PARAMS, UNIMPLEMENTED_CALLS, UnimplementedCalls
from .wasi import WASI_MODULES, WasiCalls

I32 = "i32"
I64 = "i64"

# proxy-wasm name -> (params, results); all in module "env".
PROXY_SIGNATURES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "proxy_log": ((I32,) * 3, (I32,)),
    "proxy_get_log_level": ((I32,), (I32,)),
    "proxy_get_current_time_nanoseconds": ((I32,), (I32,)),
    "proxy_get_header_map_pairs": ((I32,) * 3, (I32,)),
    "proxy_set_header_map_pairs": ((I32,) * 3, (I32,)),
    "proxy_get_header_map_size": ((I32,) * 2, (I32,)),
    "proxy_get_header_map_value": ((I32,) * 5, (I32,)),
    "proxy_add_header_map_value": ((I32,) * 5, (I32,)),
    "proxy_replace_header_map_value": ((I32,) * 5, (I32,)),
    "proxy_remove_header_map_value": ((I32,) * 3, (I32,)),
    "proxy_get_buffer_bytes": ((I32,) * 5, (I32,)),
    "proxy_set_buffer_bytes": ((I32,) * 5, (I32,)),
    "proxy_get_buffer_status": ((I32,) * 3, (I32,)),
    "proxy_send_local_response": ((I32,) * 8, (I32,)),
    "proxy_continue_stream": ((I32,), (I32,)),
    "proxy_close_stream": ((I32,), (I32,)),
    "proxy_continue_request": ((), (I32,)),
    "proxy_continue_response": ((), (I32,)),
    "proxy_clear_route_cache": ((), (I32,)),
    "proxy_get_property": ((I32,) * 4, (I32,)),
    "proxy_set_property": ((I32,) * 4, (I32,)),
    "proxy_set_effective_context": ((I32,), (I32,)),
    "proxy_done": ((), (I32,)),
    "proxy_http_call": ((I32,) * 10, (I32,)),
    "proxy_dispatch_http_call": ((I32,) * 10, (I32,)),
    "proxy_get_status": ((I32,) * 3, (I32,)),
    "proxy_get_shared_data": ((I32,) * 5, (I32,)),
    "proxy_set_shared_data": ((I32,) * 5, (I32,)),
    "proxy_register_shared_queue": ((I32,) * 3, (I32,)),
    "proxy_resolve_shared_queue": ((I32,) * 5, (I32,)),
    "proxy_enqueue_shared_queue": ((I32,) * 3, (I32,)),
    "proxy_dequeue_shared_queue": ((I32,) * 3, (I32,)),
    "proxy_define_metric": ((I32,) * 4, (I32,)),
    "proxy_increment_metric": ((I32, I64), (I32,)),
    "proxy_record_metric": ((I32, I64), (I32,)),
    "proxy_get_metric": ((I32,) * 2, (I32,)),
    "proxy_set_tick_period_milliseconds": ((I32,), (I32,)),
    "routeiq_get_llm_request": ((I32,) * 2, (I32,)),
    "routeiq_set_llm_messages": ((I32,) * 2, (I32,)),
    "routeiq_set_llm_model": ((I32,) * 2, (I32,)),
    "routeiq_get_llm_response": ((I32,) * 2, (I32,)),
}

# WASI name -> (params, results, implementation attribute on WasiCalls)
WASI_SIGNATURES: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "fd_write": ((I32,) * 4, (I32,), "fd_write"),
    "clock_time_get": ((I32, I64, I32), (I32,), "clock_time_get"),
    "clock_res_get": ((I32,) * 2, (I32,), "clock_res_get"),
    "random_get": ((I32,) * 2, (I32,), "random_get"),
    "environ_sizes_get": ((I32,) * 2, (I32,), "environ_sizes_get"),
    "environ_get": ((I32,) * 2, (I32,), "environ_get"),
    "args_sizes_get": ((I32,) * 2, (I32,), "args_sizes_get"),
    "args_get": ((I32,) * 2, (I32,), "args_get"),
    "proc_exit": ((I32,), (), "proc_exit"),
    "sched_yield": ((), (I32,), "sched_yield"),
    "fd_read": ((I32,) * 4, (I32,), "fd_badf"),
    "fd_close": ((I32,), (I32,), "fd_badf"),
    "fd_seek": ((I32, I64, I32, I32), (I32,), "fd_badf"),
    "fd_fdstat_get": ((I32,) * 2, (I32,), "fd_badf"),
    "fd_prestat_get": ((I32,) * 2, (I32,), "fd_badf"),
    "fd_prestat_dir_name": ((I32,) * 3, (I32,), "fd_badf"),
    "path_open": ((I32,) * 5 + (I64, I64) + (I32,) * 2, (I32,), "nosys"),
    "poll_oneoff": ((I32,) * 4, (I32,), "nosys"),
}


def build_host_functions(env: HostEnv) -> dict[tuple[str, str], HostFunction]:
    groups = [
        LoggingCalls(env),
        ClockCalls(env),
        HeaderCalls(env),
        BufferCalls(env),
        StreamCalls(env),
        PropertyCalls(env),
        ContextCalls(env),
        HttpCallCalls(env),
        SharedDataCalls(env),
        SharedQueueCalls(env),
        MetricCalls(env),
        TimerCalls(env),
        LlmCalls(env),
    ]
    table: dict[tuple[str, str], HostFunction] = {}
    for name, (params, results) in PROXY_SIGNATURES.items():
        impl = next(getattr(g, name) for g in groups if hasattr(g, name))
        table[("env", name)] = HostFunction("env", name, params, results, impl)

    unimplemented = UnimplementedCalls(env)
    for name, count in UNIMPLEMENTED_CALLS.items():
        params = tuple(I64 if i in I64_PARAMS.get(name, ()) else I32 for i in range(count))
        table[("env", name)] = HostFunction("env", name, params, (I32,), partial(_unimplemented, unimplemented, name))

    wasi = WasiCalls(env)
    for module in WASI_MODULES:
        for name, (params, results, attr) in WASI_SIGNATURES.items():
            table[(module, name)] = HostFunction(
                module,
                name,
                params,
                results,
                getattr(wasi, attr),
                error_result=WasiErrno.FAULT,
                memory_error_result=WasiErrno.FAULT,
            )
    return table


def _unimplemented(calls: UnimplementedCalls, name: str, *_args: int) -> int:
    return calls.answer(name)


def import_names() -> list[str]:
    """Every import a module may declare, as module.name (for docs and `plugin inspect`)."""
    names = [f"env.{n}" for n in PROXY_SIGNATURES] + [f"env.{n}" for n in UNIMPLEMENTED_CALLS]
    names += [f"{m}.{n}" for m in WASI_MODULES for n in WASI_SIGNATURES]
    return names


__all__ = ["build_host_functions", "import_names", "Status"]
