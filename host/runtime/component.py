"""WebAssembly components (the routeiq:filter world): compiled-component cache and one
sandboxed store per VM, with fast calls through the component C API.

Components run under the same limits as core modules: fresh fuel and a fresh epoch
deadline for every top-level call, a linear-memory cap (StoreLimits), and typed traps
(the error classes of vm.py). They also get WASI 0.2 from wasmtime with nothing granted:
no preopened directories, no network, no inherited stdio, only the plugin's `env`.

Exports are called and host functions linked through our own ctypes prototypes
(component_capi), with values marshalled directly (component_values); traps are typed by
component_traps; compiled components are cached by component_cache.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import struct
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

import wasmtime
from wasmtime import component as wc

from . import capi
from .component_capi import (
    BAD_ARGUMENT,
    INTERNAL_FAILURE,
    K_BOOL,
    K_U32,
    QQ,
    VAL,
    HostCallback,
    add_func,
    error_exit_status,
    error_new,
    func_call,
    val_delete,
)
from .component_traps import classify_trap
from .component_values import BadByteString, HostImport, ValueWriter, param_decoder
from .errors import GuestExit, GuestTrap, HostCallFailure, MemoryLimitExceeded, PluginLoadError
from .limits import SandboxLimits, out_of_memory

log = logging.getLogger("routeiq.runtime")

WIT_PACKAGE = "routeiq:filter"
WIT_VERSION = "0.2.0"
HOST_INTERFACE = f"{WIT_PACKAGE}/host@{WIT_VERSION}"
FILTER_INTERFACE = f"{WIT_PACKAGE}/filter@{WIT_VERSION}"
TYPES_INTERFACE = f"{WIT_PACKAGE}/types@{WIT_VERSION}"

# A componentize-py component is 14 core instances sharing one memory, with a
# 5,702-entry function table; the core-module counts of SandboxLimits are too small.
MIN_INSTANCES = 32
MIN_TABLES = 8
MIN_MEMORIES = 4
MIN_TABLE_ELEMENTS = 20_000


def is_component(header: bytes) -> bool:
    """A component binary: the Wasm magic, then version 0x0d and layer 1 (a core module
    has version 1, layer 0)."""
    return len(header) >= 8 and header[:4] == b"\0asm" and header[6:8] == b"\x01\x00"


def find_interface(names: Iterable[str], interface: str) -> str | None:
    """The name under which `interface` (package/name@version) appears, accepting any
    0.1.x patch version."""
    base, _, version = interface.partition("@")
    major_minor = ".".join(version.split(".")[:2])
    for name in names:
        n_base, _, n_version = name.partition("@")
        if n_base == base and ".".join(n_version.split(".")[:2]) == major_minor:
            return name
    return None


def check_component(component: wc.Component, engine: wasmtime.Engine) -> str:
    """Refuse a component that imports what the host does not provide or does not
    export the filter interface. Returns the name of its filter export."""
    ty = component.type
    imports = list(ty.imports(engine))
    problems = [
        name for name in imports
        if not name.startswith("wasi:") and find_interface([name], HOST_INTERFACE) is None and find_interface([name], TYPES_INTERFACE) is None
    ]
    if problems:
        # 0.1 moved bytes as list<u8>; an older build of the same world only needs a rebuild
        stale = any(name.startswith(f"{WIT_PACKAGE}/") for name in problems)
        raise PluginLoadError(
            "component imports what the host does not provide: " + ", ".join(problems)
            + f" (the host provides {HOST_INTERFACE} and WASI 0.2"
            + ("; rebuild the component against abi/wit/routeiq-filter.wit)" if stale else ")")
        )
    exported = find_interface(ty.exports(engine), FILTER_INTERFACE)
    if exported is None:
        raise PluginLoadError(f"component does not export {FILTER_INTERFACE} (build it against abi/wit/routeiq-filter.wit)")
    return exported


# ----------------------------------------------------------------------- sandbox
class GuestExport:
    """A filter export prepared for direct calls: packed u32/bool arguments, a decoded
    bool or enum result."""

    __slots__ = ("name", "_func", "_addr", "_args", "_args_addr", "_pack", "_kinds", "_nargs", "_res", "_res_addr", "_nres", "_decode")

    def __init__(self, name: str, func: wc.Func, params: Sequence[str], result: Any) -> None:
        self.name = name
        self._func = func
        self._addr = ctypes.addressof(func._func)
        self._nargs = len(params)
        self._args = ctypes.create_string_buffer(max(VAL * self._nargs, VAL))
        self._args_addr = ctypes.addressof(self._args)
        fmt = "<" + "".join("B7xI20x" if p == "u32" else "B7x?23x" for p in params)
        self._pack = struct.Struct(fmt).pack_into
        self._kinds = tuple(K_U32 if p == "u32" else K_BOOL for p in params)
        self._res = ctypes.create_string_buffer(VAL)
        self._res_addr = ctypes.addressof(self._res)
        self._nres = 0 if result is None else 1
        self._decode = _export_result_decoder(result, self._res)

    def pack(self, args: Sequence[Any]) -> None:
        flat: list[Any] = []
        for kind, value in zip(self._kinds, args):
            flat.append(kind)
            flat.append(value)
        self._pack(self._args, 0, *flat)


def _export_result_decoder(result: Any, buf: Any) -> Callable[[], Any]:
    if result is None:
        return lambda: None
    if result == "bool":
        return lambda: buf.raw[8] != 0
    kind, names = result
    if kind == "enum":
        index = {name.encode(): i for i, name in enumerate(names)}
        addr = ctypes.addressof(buf)

        def decode_enum() -> int:
            size, ptr = QQ.unpack_from(buf, 8)
            value = index[ctypes.string_at(ptr, size)]
            val_delete(addr)
            return value

        return decode_enum
    raise ValueError(f"unknown export result {result}")


class ComponentSandbox:
    """A store plus one instance of a component under SandboxLimits (the component
    counterpart of WasmVM)."""

    def __init__(
        self,
        engine: wasmtime.Engine,
        component: wc.Component,
        limits: SandboxLimits,
        epoch_tick_ms: int,
        filter_interface: str = FILTER_INTERFACE,
        environment: Sequence[tuple[str, str]] = (),
        host_interface: str = HOST_INTERFACE,
    ) -> None:
        self.limits = limits
        self._tick_ms = epoch_tick_ms
        self._armed_ns = 0  # when the current callback's deadline started (moved by waits)
        self._deadline_ticks = max(1, -(-limits.timeout_ms // epoch_tick_ms)) + 1
        self._component = component
        self._filter_interface = filter_interface
        self._host_interface = host_interface  # the world's import (routeiq:tool links a subset)
        self.store = wasmtime.Store(engine)
        self.store.set_limits(
            memory_size=limits.memory_bytes,
            table_elements=max(limits.table_elements, MIN_TABLE_ELEMENTS),
            instances=max(limits.instances, MIN_INSTANCES),
            tables=max(limits.tables, MIN_TABLES),
            memories=max(limits.memories, MIN_MEMORIES),
        )
        wasi = wasmtime.WasiConfig()  # nothing inherited, nothing preopened, no network
        wasi.env = [[k, v] for k, v in environment]
        self.store.set_wasi(wasi)
        self._ctx = capi.address_of_context(self.store)
        self._pending: GuestTrap | None = None
        self._depth = 0
        self.current_callback = ""
        self._callbacks: list[object] = []  # ctypes thunks live as long as the store
        self._values = ValueWriter()
        self.closed = False
        self.instance: wc.Instance | None = None
        self._iface_index: wc.ExportIndex | None = None
        self._linker = wc.Linker(engine)
        self._linker.add_wasip2()

    def _link(self, host_imports: Iterable[HostImport]) -> None:
        root = self._linker.root()
        try:
            host = root.add_instance(self._host_interface)
            try:
                host_addr = ctypes.cast(host.ptr(), ctypes.c_void_p).value
                for imp in host_imports:
                    self._define(host_addr, imp)
            finally:
                host.close()
        finally:
            root.close()

    # ------------------------------------------------------------ host links
    def _define(self, instance_addr: int, imp: HostImport) -> None:
        thunk = HostCallback(self._make_thunk(imp))
        self._callbacks.append(thunk)
        name = imp.name.encode()
        err = add_func(instance_addr, name, len(name), thunk, None, None)
        if err:
            raise PluginLoadError(f"cannot link {self._host_interface}#{imp.name}: {capi.error_message(err)}")

    def _make_thunk(self, imp: HostImport) -> Callable[..., int]:
        decoders = []
        for i, tag in enumerate(imp.params):
            decode = param_decoder(tag)
            decoders.append((decode, i * VAL))
        decoders_t = tuple(decoders)
        size = VAL * len(decoders_t)
        values = self._values
        string_at = ctypes.string_at
        result = imp.result
        if result is None:
            write: Callable[[int, Any], None] | None = None
        elif isinstance(result, tuple) and result[0] == "result":
            write = values.result_writer(result[1])
        else:
            write = values.plain_writer(result)
        is_result = isinstance(result, tuple) and result[0] == "result"
        impl = imp.impl
        qualname = f"{HOST_INTERFACE}#{imp.name}"
        sandbox = self

        def thunk(_data: int, _context: int, _ty: int, args: int, _nargs: int, results: int, _nresults: int) -> int:
            try:
                if size:
                    raw = string_at(args, size)
                    answer = impl(*[decode(raw, off) for decode, off in decoders_t])
                else:
                    answer = impl()
                if write is not None:
                    write(results, answer)
                return 0
            except GuestTrap as error:
                sandbox._pending = error
                return error_new(str(error).encode()) or 0
            except BadByteString as error:
                if is_result:
                    values.write_status(results, BAD_ARGUMENT)
                    return 0
                failure = HostCallFailure(f"host function {imp.name}: {error}")
                sandbox._pending = failure
                return error_new(str(failure).encode()) or 0
            except Exception:  # a host bug must never take the gateway down
                log.exception("host function %s failed", qualname)
                if is_result:
                    values.write_status(results, INTERNAL_FAILURE)
                    return 0
                error = HostCallFailure(f"host function {imp.name} failed")
                sandbox._pending = error
                return error_new(str(error).encode()) or 0

        return thunk

    # ----------------------------------------------------------------- calls
    def _begin_callback(self) -> None:
        err = capi.context_set_fuel(self._ctx, self.limits.fuel)
        if err:
            raise HostCallFailure(capi.error_message(err))
        capi.context_set_epoch_deadline(self._ctx, self._deadline_ticks)
        self._armed_ns = time.monotonic_ns()
        self._pending = None

    @contextlib.contextmanager
    def outside_deadline(self) -> Iterator[None]:
        """As WasmVM.outside_deadline: a dependency wait is not the plugin's time."""
        began = time.monotonic_ns()
        try:
            yield
        finally:
            if self._depth and not self.closed:
                now = time.monotonic_ns()
                self._armed_ns += now - began
                left_ms = self.limits.timeout_ms - (now - self._armed_ns) / 1e6
                capi.context_set_epoch_deadline(self._ctx, max(1, -(-int(left_ms) // self._tick_ms)) + 1)

    def instantiate(self, host_imports: Iterable[HostImport]) -> None:
        """Link `host_imports` (built over a host environment holding this sandbox, hence
        not at construction), then instantiate under fuel and deadline (component start
        code is bounded too)."""
        self._link(host_imports)
        self._begin_callback()
        self.current_callback = "instantiate"
        try:
            self.instance = self._linker.instantiate(self.store, self._component)
        except wasmtime.WasmtimeError as exc:
            if self._pending is not None:
                raise self._take_pending("instantiate") from None
            message = str(exc)
            trap = self.classify(message, "instantiate")
            if type(trap) is not GuestTrap:
                raise trap from None
            if "exceeds memory limits" in message:
                raise PluginLoadError(
                    f"instantiation failed: {message.splitlines()[0]} "
                    f"(the memory limit is {self.limits.memory_bytes // (1024 * 1024)} MiB; raise limits.memory_mb)"
                ) from None
            raise PluginLoadError(f"instantiation failed: {message.splitlines()[0]}") from None
        self._iface_index = self.instance.get_export_index(self.store, self._filter_interface)
        if self._iface_index is None:
            raise PluginLoadError(f"component does not export {self._filter_interface}")

    def export(self, name: str, params: Sequence[str], result: Any) -> GuestExport | None:
        assert self.instance is not None
        index = self.instance.get_export_index(self.store, name, self._iface_index)
        if index is None:
            return None
        func = self.instance.get_func(self.store, index)
        if func is None:
            return None
        return GuestExport(name, func, params, result)

    def invoke(self, fn: GuestExport, args: Sequence[Any]) -> Any:
        """Call a filter export with fresh fuel and a fresh deadline."""
        if self.closed:
            raise GuestTrap(f"{fn.name}: the VM was discarded", callback=fn.name)
        if self._depth:
            raise HostCallFailure(f"{fn.name}: re-entered the component from a host call", callback=fn.name)
        if fn._nargs:
            fn.pack(args)
        self._begin_callback()
        self.current_callback = fn.name
        self._depth = 1
        try:
            err = func_call(fn._addr, self._ctx, fn._args_addr, fn._nargs, fn._res_addr, fn._nres)
        finally:
            self._depth = 0
        if err:
            raise self._failure(fn.name, err)
        return fn._decode()

    def call_generic(self, name: str, *args: Any) -> Any:
        """Call a filter export through wasmtime-py's generic path (for rare calls with
        rich values: configure, implemented), under the same limits."""
        assert self.instance is not None
        index = self.instance.get_export_index(self.store, name, self._iface_index)
        func = self.instance.get_func(self.store, index) if index is not None else None
        if func is None:
            raise PluginLoadError(f"component does not export {self._filter_interface}#{name}")
        self._begin_callback()
        self.current_callback = name
        self._depth = 1
        try:
            return func(self.store, *args)
        except wasmtime.WasmtimeError as exc:
            if self._pending is not None:
                raise self._take_pending(name) from None
            raise self.classify(str(exc), name) from None
        finally:
            self._depth = 0

    # --------------------------------------------------------------- traps
    def _failure(self, callback: str, err: int) -> GuestTrap:
        code = ctypes.c_int(0)
        exited = error_exit_status(err, ctypes.addressof(code))
        message = capi.error_message(err)
        if self._pending is not None:
            return self._take_pending(callback)
        if exited:
            return GuestExit(f"exited with status {code.value} in {callback}", callback=callback, detail=message)
        return self.classify(message, callback)

    def _take_pending(self, callback: str) -> GuestTrap:
        error = self._pending
        assert error is not None
        self._pending = None
        if not error.callback:
            error.callback = callback
        return error

    def classify(self, message: str, callback: str) -> GuestTrap:
        return classify_trap(message, callback, self.limits)

    def memory_limit_error(self, callback: str, detail: str) -> MemoryLimitExceeded:
        return out_of_memory(self.limits, callback, detail)

    def fuel_remaining(self) -> int:
        return self.store.get_fuel()

    def close(self) -> None:
        """Free the store (and the instance's linear memory) now."""
        if self.closed:
            return
        self.closed = True
        self.instance = None
        self._iface_index = None
        self.store.close()
        self._linker.close()
        self._callbacks.clear()
