"""The proxy-wasm linear-memory ABI: the import table a core module links against.

Like proxy-wasm-cpp-host's exports.cc this module only moves bytes. Each entry of CALLS
says how one import's arguments and results sit in guest memory and which meaning
method (hostcalls.meaning, by proxy-wasm name) it calls. Every adapter does the same
four steps: read all inputs, check the return slots, call the meaning, write the
results. So a bad pointer answers INVALID_MEMORY_ACCESS before anything happens, and a
guest allocation happens only for a value that is returned.

The adapters are generated from CALLS (as dataclasses generates __init__): a host call
is a straight-line function with no per-argument dispatch, which matters on the
per-request path (a filter makes several host calls per hook).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from routeiq.abi.capabilities import GATED_CALLS, UNGATED_CALLS, Capability
from routeiq.abi.proxy_wasm import MapFormatError, Pairs, Status, WasiErrno, decode_map, encode_map, split_property_path
from routeiq.runtime.vm import HostFunction

from .meaning import host_calls, meaning_names
from .state import HostEnv
from .unimplemented import I64_PARAMS, UNIMPLEMENTED_CALLS, UnimplementedCalls
from .wasi import WASI_MODULES, WasiCalls

I32 = "i32"
I64 = "i64"

# Inputs: how the meaning's arguments are passed.
U32 = "u32"  # one i32, as is
S64 = "s64"  # one i64, as is
BYTES = "bytes"  # (ptr, size): the bytes there
STR = "str"  # (ptr, size): UTF-8 text (invalid bytes replaced)
MAP = "map"  # (ptr, size): a serialized header map (malformed: BAD_ARGUMENT)
PATH = "path"  # (ptr, size): a property path, NUL-separated segments

# Outputs: where the meaning's value goes (STATUS: there is none).
STATUS = "status"
OUT_U32 = "u32*"  # (ptr): the value as u32
OUT_U64 = "u64*"  # (ptr): the value as u64
OUT_BYTES = "bytes*"  # (ptr*, size*): bytes in a guest allocation
OUT_MAP = "map*"  # (ptr*, size*): header pairs, serialized, in a guest allocation
OUT_SIZE_FLAGS = "size*,flags*"  # the value is a size; flags are always 0
OUT_SHARED = "shared*"  # (ptr*, size*, cas*): (value or None, cas); None answers NOT_FOUND
OUT_CODE_MESSAGE = "code*,message*"  # (code*, ptr*, size*): (status code, message bytes)

_INPUT_WIDTH = {U32: 1, S64: 1, BYTES: 2, STR: 2, MAP: 2, PATH: 2}
_OUTPUT_WIDTH = {STATUS: 0, OUT_U32: 1, OUT_U64: 1, OUT_BYTES: 2, OUT_MAP: 2, OUT_SIZE_FLAGS: 2, OUT_SHARED: 3, OUT_CODE_MESSAGE: 3}


@dataclass(frozen=True)
class Import:
    """One proxy-wasm import: its inputs, its output, and the meaning it calls (by
    default the method named like the import)."""

    inputs: tuple[str, ...]
    output: str = STATUS
    meaning: str = ""

    def params(self) -> tuple[str, ...]:
        types: list[str] = []
        for kind in self.inputs:
            types += [I64] if kind == S64 else [I32] * _INPUT_WIDTH[kind]
        return tuple(types) + (I32,) * _OUTPUT_WIDTH[self.output]


CALLS: dict[str, Import] = {
    "proxy_log": Import((U32, STR)),
    "proxy_get_log_level": Import((), OUT_U32),
    "proxy_get_current_time_nanoseconds": Import((), OUT_U64),
    "proxy_get_header_map_pairs": Import((U32,), OUT_MAP),
    "proxy_set_header_map_pairs": Import((U32, MAP)),
    "proxy_get_header_map_size": Import((U32,), OUT_U32),
    "proxy_get_header_map_value": Import((U32, BYTES), OUT_BYTES),
    "proxy_add_header_map_value": Import((U32, BYTES, BYTES)),
    "proxy_replace_header_map_value": Import((U32, BYTES, BYTES)),
    "proxy_remove_header_map_value": Import((U32, BYTES)),
    "proxy_get_buffer_bytes": Import((U32, U32, U32), OUT_BYTES),
    "proxy_set_buffer_bytes": Import((U32, U32, U32, BYTES)),
    "proxy_get_buffer_status": Import((U32,), OUT_SIZE_FLAGS),
    "proxy_send_local_response": Import((U32, STR, BYTES, MAP, U32)),
    "proxy_continue_stream": Import((U32,)),
    "proxy_close_stream": Import((U32,)),
    "proxy_continue_request": Import(()),
    "proxy_continue_response": Import(()),
    "proxy_clear_route_cache": Import(()),
    "proxy_get_property": Import((PATH,), OUT_BYTES),
    "proxy_set_property": Import((PATH, BYTES)),
    "proxy_set_effective_context": Import((U32,)),
    "proxy_done": Import(()),
    # Trailers are read (a bad pointer is still refused) but not sent: callouts carry none.
    "proxy_http_call": Import((STR, MAP, BYTES, BYTES, U32), OUT_U32),
    "proxy_dispatch_http_call": Import((STR, MAP, BYTES, BYTES, U32), OUT_U32, meaning="proxy_http_call"),
    "proxy_get_status": Import((), OUT_CODE_MESSAGE),
    "proxy_get_shared_data": Import((BYTES,), OUT_SHARED),
    "proxy_set_shared_data": Import((BYTES, BYTES, U32)),
    "proxy_register_shared_queue": Import((STR,), OUT_U32),
    "proxy_resolve_shared_queue": Import((STR, STR), OUT_U32),
    "proxy_enqueue_shared_queue": Import((U32, BYTES)),
    "proxy_dequeue_shared_queue": Import((U32,), OUT_BYTES),
    "proxy_define_metric": Import((U32, STR), OUT_U32),
    "proxy_increment_metric": Import((U32, S64)),
    "proxy_record_metric": Import((U32, S64)),
    "proxy_get_metric": Import((U32,), OUT_U64),
    "proxy_set_tick_period_milliseconds": Import((U32,)),
    "proxy_call_foreign_function": Import((STR, BYTES), OUT_BYTES),
    "routeiq_get_llm_request": Import((), OUT_BYTES),
    "routeiq_set_llm_messages": Import((BYTES,)),
    "routeiq_set_llm_model": Import((STR,)),
    "routeiq_get_llm_response": Import((), OUT_BYTES),
}

# Every wasi_snapshot_preview1 function (WASI's witx), so no toolchain's runtime fails to
# link: WASI name -> (params, results, implementation attribute on WasiCalls). Files,
# sockets and processes do not exist in the sandbox; those answer the errno Envoy's host
# answers (ENOSYS, EBADF for the preopen scan), or success where Envoy answers success.
_N = I32
WASI_SIGNATURES: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "args_get": ((_N,) * 2, (I32,), "args_get"),
    "args_sizes_get": ((_N,) * 2, (I32,), "args_sizes_get"),
    "environ_get": ((_N,) * 2, (I32,), "environ_get"),
    "environ_sizes_get": ((_N,) * 2, (I32,), "environ_sizes_get"),
    "clock_res_get": ((_N,) * 2, (I32,), "clock_res_get"),
    "clock_time_get": ((_N, I64, _N), (I32,), "clock_time_get"),
    "fd_advise": ((_N, I64, I64, _N), (I32,), "nosys"),
    "fd_allocate": ((_N, I64, I64), (I32,), "nosys"),
    "fd_close": ((_N,), (I32,), "fd_close"),
    "fd_datasync": ((_N,), (I32,), "nosys"),
    "fd_fdstat_get": ((_N,) * 2, (I32,), "fd_fdstat_get"),
    "fd_fdstat_set_flags": ((_N,) * 2, (I32,), "nosys"),
    "fd_fdstat_set_rights": ((_N, I64, I64), (I32,), "nosys"),
    "fd_filestat_get": ((_N,) * 2, (I32,), "nosys"),
    "fd_filestat_set_size": ((_N, I64), (I32,), "nosys"),
    "fd_filestat_set_times": ((_N, I64, I64, _N), (I32,), "nosys"),
    "fd_pread": ((_N,) * 3 + (I64, _N), (I32,), "nosys"),
    "fd_prestat_get": ((_N,) * 2, (I32,), "fd_badf"),  # no preopened directories: the scan ends
    "fd_prestat_dir_name": ((_N,) * 3, (I32,), "nosys"),
    "fd_pwrite": ((_N,) * 3 + (I64, _N), (I32,), "nosys"),
    "fd_read": ((_N,) * 4, (I32,), "nosys"),
    "fd_readdir": ((_N,) * 3 + (I64, _N), (I32,), "nosys"),
    "fd_renumber": ((_N,) * 2, (I32,), "nosys"),
    "fd_seek": ((_N, I64, _N, _N), (I32,), "fd_seek"),
    "fd_sync": ((_N,), (I32,), "nosys"),
    "fd_tell": ((_N,) * 2, (I32,), "nosys"),
    "fd_write": ((_N,) * 4, (I32,), "fd_write"),
    "path_create_directory": ((_N,) * 3, (I32,), "nosys"),
    "path_filestat_get": ((_N,) * 5, (I32,), "nosys"),
    "path_filestat_set_times": ((_N,) * 4 + (I64, I64, _N), (I32,), "nosys"),
    "path_link": ((_N,) * 7, (I32,), "nosys"),
    "path_open": ((_N,) * 5 + (I64, I64) + (_N,) * 2, (I32,), "nosys"),
    "path_readlink": ((_N,) * 6, (I32,), "nosys"),
    "path_remove_directory": ((_N,) * 3, (I32,), "nosys"),
    "path_rename": ((_N,) * 6, (I32,), "nosys"),
    "path_symlink": ((_N,) * 5, (I32,), "nosys"),
    "path_unlink_file": ((_N,) * 3, (I32,), "nosys"),
    "poll_oneoff": ((_N,) * 4, (I32,), "poll_oneoff"),
    "proc_exit": ((_N,), (), "proc_exit"),
    "proc_raise": ((_N,), (I32,), "nosys"),
    "sched_yield": ((), (I32,), "sched_yield"),
    "random_get": ((_N,) * 2, (I32,), "random_get"),
    "sock_accept": ((_N,) * 3, (I32,), "nosys"),
    "sock_recv": ((_N,) * 6, (I32,), "nosys"),
    "sock_send": ((_N,) * 5, (I32,), "nosys"),
    "sock_shutdown": ((_N,) * 2, (I32,), "nosys"),
}


# ------------------------------------------------------------- value movers
def _map_or_none(raw: bytes) -> Pairs | None:
    try:
        return decode_map(raw)
    except MapFormatError:
        return None


_HELPERS = {"map_or_none": _map_or_none, "split_path": split_property_path, "encode_map": encode_map}


def _adapter_source(name: str, spec: Import) -> str:
    """Python source of a factory `make(env, fn)` returning the adapter for `name`."""
    params: list[str] = []
    reads: list[str] = []
    checks: list[str] = []
    args: list[str] = []
    for i, kind in enumerate(spec.inputs):
        if kind in (U32, S64):
            params.append(f"a{i}")
            args.append(f"a{i}")
            continue
        ptr, size = f"a{i}", f"a{i}n"
        params += [ptr, size]
        raw = f"vm.read({ptr}, {size})"
        value = {BYTES: raw, STR: f"{raw}.decode('utf-8', 'replace')", MAP: f"map_or_none({raw})", PATH: f"split_path({raw})"}[kind]
        reads.append(f"v{i} = {value}")
        if kind == MAP:
            checks.append(f"if v{i} is None: return {int(Status.BAD_ARGUMENT)}")
        args.append(f"v{i}")
    outs = [f"r{j}" for j in range(_OUTPUT_WIDTH[spec.output])]
    params += outs
    out = spec.output
    slots = {
        STATUS: [],
        OUT_U32: ["vm.check_writable((r0, 4))"],
        OUT_U64: ["vm.check_writable((r0, 8))"],
        OUT_BYTES: ["vm.check_u32_pair(r0, r1)"],
        OUT_MAP: ["vm.check_u32_pair(r0, r1)"],
        OUT_SIZE_FLAGS: ["vm.check_u32_pair(r0, r1)"],
        OUT_SHARED: ["vm.check_u32_pair(r0, r1)", "vm.check_writable((r2, 4))"],
        OUT_CODE_MESSAGE: ["vm.check_writable((r0, 4))", "vm.check_u32_pair(r1, r2)"],
    }[out]
    call = f"fn({', '.join(args)})"
    failed = int(Status.INTERNAL_FAILURE)  # the guest's allocator refused (WasmVM.put_bytes)
    if out == STATUS:
        tail = [f"return {call}"]
    else:
        tail = [f"status, value = {call}", "if status: return status"]
        tail += {
            OUT_U32: ["vm.write_u32(r0, value)", "return 0"],
            OUT_U64: ["vm.write_u64(r0, value)", "return 0"],
            OUT_BYTES: [f"return 0 if vm.put_bytes(value, r0, r1) else {failed}"],
            OUT_MAP: [f"return 0 if vm.put_bytes(encode_map(value), r0, r1) else {failed}"],
            OUT_SIZE_FLAGS: ["vm.write_u32_pair(r0, value, r1, 0)", "return 0"],
            OUT_SHARED: ["data, cas = value", "vm.write_u32(r2, cas)", f"if data is None: return {int(Status.NOT_FOUND)}", f"return 0 if vm.put_bytes(data, r0, r1) else {failed}"],
            OUT_CODE_MESSAGE: ["code, message = value", "vm.write_u32(r0, code)", f"return 0 if vm.put_bytes(message, r1, r2) else {failed}"],
        }[out]
    body = (["vm = env.vm"] if reads or slots or out != STATUS else []) + reads + slots + checks + tail
    lines = ["def make(env, fn):", f"    def {name}({', '.join(params)}):"] + [f"        {line}" for line in body] + [f"    return {name}"]
    return "\n".join(lines) + "\n"


def _factory(name: str, spec: Import) -> Callable[[HostEnv, Callable[..., Any]], Callable[..., int]]:
    namespace: dict[str, Any] = dict(_HELPERS)
    exec(compile(_adapter_source(name, spec), f"<proxy_abi {name}>", "exec"), namespace)  # noqa: S102 - source built above from CALLS
    return namespace["make"]


def _check_table() -> None:
    """Every import is gated or declared ungated, and has exactly one meaning."""
    meanings = meaning_names()
    for name, spec in CALLS.items():
        if (name in GATED_CALLS) == (name in UNGATED_CALLS):
            raise TypeError(f"{name}: list it in exactly one of GATED_CALLS and UNGATED_CALLS (abi/capabilities.py)")
        if (spec.meaning or name) not in meanings:
            raise TypeError(f"{name}: no meaning method {spec.meaning or name} in hostcalls")
    stray = (set(GATED_CALLS) | UNGATED_CALLS) - set(CALLS)
    if stray:
        raise TypeError(f"abi/capabilities.py lists host calls the host does not link: {sorted(stray)}")


_check_table()
_FACTORIES = {name: _factory(name, spec) for name, spec in CALLS.items()}


def denied_call(env: HostEnv, name: str, capability: Capability) -> Callable[..., int]:
    """What a gated import is linked to when its capability is not granted."""
    detail = f"{capability.value} is not granted"

    def denied(*_args: int) -> int:
        return env.deny(name, "capability", detail, Status.UNIMPLEMENTED)

    return denied


def build_host_functions(env: HostEnv) -> dict[tuple[str, str], HostFunction]:
    """The import table for one VM, gated by the plugin's grant."""
    meanings = host_calls(env)
    granted = env.grant.capabilities
    table: dict[tuple[str, str], HostFunction] = {}
    for name, spec in CALLS.items():
        capability = GATED_CALLS.get(name)
        if capability is not None and capability not in granted:
            impl = denied_call(env, name, capability)
        else:
            impl = _FACTORIES[name](env, meanings[spec.meaning or name])
        table[("env", name)] = HostFunction("env", name, spec.params(), (I32,), impl)

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
    names = [f"env.{n}" for n in CALLS] + [f"env.{n}" for n in UNIMPLEMENTED_CALLS]
    names += [f"{m}.{n}" for m in WASI_MODULES for n in WASI_SIGNATURES]
    return names
