"""One sandboxed instance of a module: store, limits, unchecked calls, guest memory.

Everything on the per-callback path goes through the raw C API: guest exports are called
with `wasmtime_func_call_unchecked` on preallocated value arrays and host functions are
linked with `wasmtime_linker_define_func_unchecked`, both through the small C extension
_fastcall.c (ctypes alone costs ~1 us per crossing; see capi.py for the one-off calls). Linear memory is
configured never to move, so its base address is read once; only its size is refreshed,
and only when an access falls beyond the last size seen (memory never shrinks).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import struct
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

import wasmtime

from . import _fastcall, capi
from .errors import GuestTrap, HostCallFailure, Interrupted, MemoryOutOfBounds, PluginLoadError, Unreachable
from .limits import SandboxLimits, memory_use_hint, out_of_fuel, out_of_memory, out_of_stack, past_deadline

log = logging.getLogger("routeiq.runtime")

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_VALTYPES = {"i32": wasmtime.ValType.i32, "i64": wasmtime.ValType.i64}


# _fastcall writes raw values with its own copy of the union; it must match wasmtime's.
assert _fastcall.val_raw_size() == ctypes.sizeof(capi.ffi.wasmtime_val_raw_t), "wasmtime_val_raw_t layout changed"


class GuestMemoryError(Exception):
    """A guest-supplied pointer or length is outside its linear memory."""


class TrapRequest(Exception):
    """Raised by a host function to make the calling guest trap with a typed error."""

    def __init__(self, error: GuestTrap) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class HostFunction:
    """A host function as the runtime links it: signature plus implementation.

    `impl` receives the raw integer arguments and returns the integer result (or None
    for functions without results). Raising TrapRequest traps the guest; any other
    exception is a host bug, logged, and answered with `error_result`.
    """

    module: str
    name: str
    params: tuple[str, ...]
    results: tuple[str, ...]
    impl: Callable[..., int | None]
    error_result: int = 10  # INTERNAL_FAILURE
    memory_error_result: int = 6  # INVALID_MEMORY_ACCESS (WASI functions use FAULT)


HostFunctionTable = Mapping[tuple[str, str], HostFunction]


def _valtype_name(vt: wasmtime.ValType) -> str:
    return str(vt)


def check_imports(module: wasmtime.Module, table: HostFunctionTable) -> None:
    """Refuse a module whose imports the host cannot satisfy, naming each of them."""
    problems = []
    for imp in module.imports:
        key = (imp.module, imp.name or "")
        ty = imp.type
        if not isinstance(ty, wasmtime.FuncType):
            problems.append(f"{imp.module}.{imp.name} (a {type(ty).__name__}; only functions can be imported)")
            continue
        fn = table.get(key)
        if fn is None:
            problems.append(f"{imp.module}.{imp.name} (unknown host function)")
            continue
        want_params = tuple(_valtype_name(v) for v in ty.params)
        want_results = tuple(_valtype_name(v) for v in ty.results)
        if want_params != fn.params or want_results != fn.results:
            problems.append(
                f"{imp.module}.{imp.name} (imported as ({', '.join(want_params)}) -> ({', '.join(want_results)}), "
                f"host provides ({', '.join(fn.params)}) -> ({', '.join(fn.results)}))"
            )
    if problems:
        raise PluginLoadError("module imports what the host does not provide: " + "; ".join(problems))


# A prepared guest export: call it with i32 arguments, get the u32 result (or None).
# Implemented in C (_fastcall.GuestCall); `name` and `param_count` are attributes.
GuestFunction = _fastcall.GuestCall


class WasmVM:
    """A store plus an instance of one module under SandboxLimits."""

    def __init__(
        self,
        engine: wasmtime.Engine,
        module: wasmtime.Module,
        limits: SandboxLimits,
        epoch_tick_ms: int,
        interruptible: bool = False,
    ) -> None:
        self.limits = limits
        self._tick_ms = epoch_tick_ms
        # An interruptible VM is asked at every epoch tick whether to go on (its wall-clock
        # deadline, or a stop from another thread); others trap when their ticks run out.
        self.interruptible = interruptible
        self._deadline_ticks = 1 if interruptible else max(1, -(-limits.timeout_ms // epoch_tick_ms)) + 1
        self._stop: threading.Event | None = None  # set by another thread: stop the running call
        self._stopped_by = ""  # "deadline" | "cancelled": why the epoch callback ended a call
        self.store = wasmtime.Store(engine)
        self.store.set_limits(
            memory_size=limits.memory_bytes,
            table_elements=limits.table_elements,
            instances=limits.instances,
            tables=limits.tables,
            memories=limits.memories,
        )
        self._ctx = capi.address_of_context(self.store)
        self._sandbox = _fastcall.Sandbox(
            self._ctx,
            capi.address("wasmtime_func_call_unchecked"),
            capi.address("wasmtime_context_set_fuel"),
            capi.address("wasmtime_context_set_epoch_deadline"),
            capi.address("wasmtime_context_get_fuel"),
            limits.fuel,
            self._deadline_ticks,
            self._call_failed,
        )
        self._pending: GuestTrap | None = None
        self._callbacks: list[object] = []  # keep ctypes thunks alive as long as the store
        self._depth = 0
        self.closed = False
        self._memory: wasmtime.Memory | None = None
        self._mem_addr = 0
        self._mem_base = 0
        self._mem_size = 0
        self._view: memoryview = memoryview(b"")
        self._allocator: GuestFunction | None = None

        if interruptible:
            self._install_epoch_callback()

        self._linker = wasmtime.Linker(engine)
        self._module = module
        self.instance: wasmtime.Instance | None = None
        self._export_names: frozenset[str] = frozenset(e.name for e in module.exports)

    def instantiate(self, host_functions: HostFunctionTable) -> None:
        """Link the module's imports to `host_functions`, then instantiate under the
        limits (a start function that never ends hits its deadline). The host functions
        come at this step, not at construction, because they are built over a host
        environment that holds this VM (for guest memory): VM first, then env, then link."""
        linker_addr = ctypes.cast(self._linker.ptr(), ctypes.c_void_p).value
        # A module may import one function twice (valid Wasm; Go's runtime does it for
        # fd_write): one definition serves every import of that name.
        for key in dict.fromkeys((imp.module, imp.name or "") for imp in self._module.imports):
            self._define(linker_addr, host_functions[key])
        self._begin_callback()
        try:
            self.instance = self._linker.instantiate(self.store, self._module)
        except wasmtime.Trap as trap:
            raise self._classify(trap, "instantiate") from None
        except wasmtime.WasmtimeError as exc:
            if self._pending is not None:
                raise self._take_pending("instantiate") from None
            raise PluginLoadError(f"instantiation failed: {exc}") from None
        self._exports = self.instance.exports(self.store)
        memory = self._exports["memory"] if "memory" in self._export_names else None
        self._memory = memory if isinstance(memory, wasmtime.Memory) else None
        self._mem_addr = ctypes.addressof(self._memory._memory) if self._memory is not None else 0
        self._refresh_memory()

    # ----------------------------------------------------------------- exports
    def export_names(self) -> list[str]:
        return sorted(self._export_names)

    def function(self, name: str) -> GuestFunction | None:
        """A prepared guest export, or None if the module does not export it."""
        if name not in self._export_names:
            return None
        item = self._exports[name]
        if not isinstance(item, wasmtime.Func):
            return None
        ty = item.type(self.store)
        return _fastcall.GuestCall(self._sandbox, name, bytes(item._func), len(ty.params), len(ty.results))

    def set_allocator(self, fn: GuestFunction) -> None:
        self._allocator = fn

    # ------------------------------------------------------------------- calls
    def _begin_callback(self) -> None:
        ctx = self._ctx
        err = capi.context_set_fuel(ctx, self.limits.fuel)
        if err:
            raise HostCallFailure(capi.error_message(err))
        capi.context_set_epoch_deadline(ctx, self._deadline_ticks)
        if self.interruptible:
            self._sandbox.armed_ns = time.monotonic_ns()

    # ----------------------------------------------------------- interrupting
    def _install_epoch_callback(self) -> None:
        """wasmtime's epoch deadline callback: runs on the calling thread at each tick
        the guest reaches; it extends the deadline by one tick, or ends the call with an
        error that _failure turns into DeadlineExceeded or Interrupted."""
        from wasmtime import _bindings as ffi

        kind_continue = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
        vm = self

        def on_deadline(_ctx: object, _data: object, delta: object, kind: object) -> int:
            stop = vm._stop
            if stop is not None and stop.is_set():
                vm._stopped_by = "cancelled"
            elif (time.monotonic_ns() - vm._sandbox.armed_ns) / 1e6 >= vm.limits.timeout_ms:
                vm._stopped_by = "deadline"
            else:
                delta[0] = 1  # type: ignore[index]
                kind[0] = kind_continue  # type: ignore[index]
                return 0
            error = ffi.wasmtime_error_new(f"stopped: {vm._stopped_by}".encode())
            return ctypes.cast(error, ctypes.c_void_p).value or 0

        callback_type = ffi._wasmtime_store_epoch_deadline_callback.argtypes[1]
        finalizer_type = ffi._wasmtime_store_epoch_deadline_callback.argtypes[3]
        thunk = callback_type(on_deadline)
        self._callbacks.append(thunk)
        ffi.wasmtime_store_epoch_deadline_callback(self.store.ptr(), thunk, None, finalizer_type())

    def stop_on(self, event: threading.Event | None) -> None:
        """An interruptible VM ends its running call at the next tick once `event` is set
        (from any thread); None: no such stop. The caller sets it before each call."""
        self._stop = event
        self._stopped_by = ""

    @contextlib.contextmanager
    def outside_deadline(self) -> Iterator[None]:
        """A host call waiting on a dependency (Redis) inside this block is not charged
        to the callback's wall-clock deadline: afterwards the deadline is re-armed with
        what was left of it when the wait began. (Fuel is not touched: a wait uses none.)"""
        began = time.monotonic_ns()
        try:
            yield
        finally:
            sandbox = self._sandbox
            if sandbox.depth and not self.closed:
                now = time.monotonic_ns()
                sandbox.armed_ns = armed = sandbox.armed_ns + (now - began)
                left_ms = self.limits.timeout_ms - (now - armed) / 1e6
                capi.context_set_epoch_deadline(self._ctx, max(1, -(-int(left_ms) // self._tick_ms)) + 1)

    def _call_failed(self, callback: str, trap: int, err: int) -> GuestTrap:
        """What a failed guest call raises (called from _fastcall with the raw pointers)."""
        if self.closed:
            return GuestTrap(f"{callback}: the VM was discarded", callback=callback)
        error = self._failure(callback, trap or None, err or None)
        if self._sandbox.depth == 0:
            self._pending = None  # nothing may leak into the next callback
        return error

    def _failure(self, callback: str, trap: int | None, err: int | None) -> GuestTrap:
        stopped, self._stopped_by = self._stopped_by, ""
        if stopped:  # the epoch callback ended the call (its error is in err or trap)
            if trap:
                capi.take_trap(trap)
            elif err:
                capi.error_message(err)
            if stopped == "cancelled":
                return Interrupted(f"{callback} was cancelled by the client; its VM is replaced", callback=callback)
            return past_deadline(self.limits, callback, "epoch deadline")
        if trap:
            t = capi.take_trap(trap)
            if self._pending is not None:
                return self._take_pending(callback)
            return self._classify(t, callback)
        message = capi.error_message(err) if err else "unknown failure"
        if self._pending is not None:
            return self._take_pending(callback)
        return GuestTrap(f"{callback}: {message}", callback=callback, detail=message)

    def _take_pending(self, callback: str = "") -> GuestTrap:
        error = self._pending
        assert error is not None
        self._pending = None
        if callback and not error.callback:
            error.callback = callback
        return error

    def _classify(self, trap: "wasmtime.Trap", callback: str) -> GuestTrap:
        code = trap.trap_code
        message = trap.message
        first_line = message.splitlines()[0] if message else "trap"
        TrapCode = wasmtime.TrapCode
        if code == TrapCode.OUT_OF_FUEL:
            return out_of_fuel(self.limits, callback, message)
        if code == TrapCode.INTERRUPT:
            return past_deadline(self.limits, callback, message)
        if code == TrapCode.STACK_OVERFLOW:
            return out_of_stack(callback, message)
        if code == TrapCode.UNREACHABLE and self._near_memory_limit():
            return out_of_memory(self.limits, callback, message)
        if code == TrapCode.MEMORY_OUT_OF_BOUNDS:
            cls: type[GuestTrap] = MemoryOutOfBounds
            text = f"accessed memory out of bounds in {callback}"
        elif code == TrapCode.UNREACHABLE:
            cls = Unreachable
            text = f"trapped (unreachable) in {callback}" + memory_use_hint(self.limits, self._memory_used())
        else:
            cls = GuestTrap
            text = f"trapped in {callback}: {first_line}"
        return cls(text, callback=callback, detail=message)

    def _memory_used(self) -> int:
        return capi.memory_data_size(self._ctx, self._mem_addr) if self._memory is not None else 0

    def _near_memory_limit(self) -> bool:
        return self._memory is not None and self._memory_used() + 64 * 1024 * 16 >= self.limits.memory_bytes

    # ------------------------------------------------------------ host links
    def _define(self, linker_addr: int, fn: HostFunction) -> None:
        ty = wasmtime.FuncType([_VALTYPES[p]() for p in fn.params], [_VALTYPES[r]() for r in fn.results])
        kinds = "".join("I" if p == "i64" else "i" for p in fn.params)
        thunk = _fastcall.HostThunk(fn.impl, kinds, bool(fn.results), capi.address("wasmtime_trap_new"), self._error_handler(fn))
        self._callbacks.append(thunk)
        self._callbacks.append(ty)
        mod = fn.module.encode()
        name = fn.name.encode()
        err = capi.linker_define_func_unchecked(
            linker_addr,
            mod,
            len(mod),
            name,
            len(name),
            ctypes.cast(ty.ptr(), ctypes.c_void_p).value,
            _fastcall.trampoline_address(),
            thunk.env,
            None,
        )
        if err:
            raise PluginLoadError(f"cannot link {fn.module}.{fn.name}: {capi.error_message(err)}")

    def _error_handler(self, fn: HostFunction) -> Callable[[BaseException], int | bytes]:
        """What a host function's result is when it raises: the trampoline calls the
        implementation directly and this only on an exception (no Python frame wraps the
        calls that succeed). A result of bytes makes the guest trap with that message."""
        error_result = fn.error_result
        memory_error_result = fn.memory_error_result
        qualname = f"{fn.module}.{fn.name}"
        vm = self

        def on_error(exc: BaseException) -> int | bytes:
            if isinstance(exc, GuestMemoryError):
                return memory_error_result
            if isinstance(exc, TrapRequest):
                vm._pending = exc.error
                return str(exc.error).encode()
            if isinstance(exc, GuestTrap):  # a nested guest call (allocation) trapped
                vm._pending = exc
                return str(exc).encode()
            if not isinstance(exc, Exception):
                raise exc  # KeyboardInterrupt and the like: reported, and the guest traps
            log.error("host function %s failed", qualname, exc_info=exc)  # a host bug must never take the gateway down
            return error_result

        return on_error

    # ------------------------------------------------------------------ memory
    def _refresh_memory(self) -> None:
        if self._memory is None:
            return
        size = capi.memory_data_size(self._ctx, self._mem_addr)
        if size != self._mem_size or not self._mem_base:
            self._mem_base = capi.memory_data(self._ctx, self._mem_addr) or 0
            self._mem_size = size
            self._view = memoryview((ctypes.c_ubyte * size).from_address(self._mem_base)).cast("B") if size else memoryview(b"")

    def _check(self, ptr: int, length: int) -> None:
        end = ptr + length
        if end > self._mem_size:
            self._refresh_memory()
            if end > self._mem_size:
                raise GuestMemoryError(f"[{ptr}, {end}) is outside linear memory of {self._mem_size} bytes")

    def read(self, ptr: int, length: int) -> bytes:
        end = ptr + length
        if end > self._mem_size:
            self._check(ptr, length)
        return self._view[ptr:end].tobytes()

    def write(self, ptr: int, data: bytes) -> None:
        end = ptr + len(data)
        if end > self._mem_size:
            self._check(ptr, len(data))
        self._view[ptr:end] = data

    def read_u32(self, ptr: int) -> int:
        self._check(ptr, 4)
        return _U32.unpack_from(self._view, ptr)[0]

    def write_u32(self, ptr: int, value: int) -> None:
        self._check(ptr, 4)
        _U32.pack_into(self._view, ptr, value & 0xFFFFFFFF)

    def write_u64(self, ptr: int, value: int) -> None:
        self._check(ptr, 8)
        _U64.pack_into(self._view, ptr, value & 0xFFFFFFFFFFFFFFFF)

    def check_u32_pair(self, ptr_a: int, ptr_b: int) -> None:
        """The common (ret_data, ret_size) pair of return slots, checked in one go."""
        if ptr_a + 4 > self._mem_size or ptr_b + 4 > self._mem_size:
            self._check(ptr_a, 4)
            self._check(ptr_b, 4)

    def write_u32_pair(self, ptr_a: int, value_a: int, ptr_b: int, value_b: int) -> None:
        """Write two u32 return values; the slots must have passed check_u32_pair."""
        view = self._view
        _U32.pack_into(view, ptr_a, value_a & 0xFFFFFFFF)
        _U32.pack_into(view, ptr_b, value_b & 0xFFFFFFFF)

    def check_writable(self, *ptrs_and_sizes: tuple[int, int]) -> None:
        for ptr, size in ptrs_and_sizes:
            self._check(ptr, size)

    def allocate(self, size: int) -> int:
        """Allocate `size` bytes with the guest's own allocator; 0 means it refused."""
        if self._allocator is None:
            raise GuestMemoryError("module exports no allocator (proxy_on_memory_allocate or malloc)")
        ptr = self._allocator(size) or 0
        if ptr and ptr + size > self._mem_size:
            self._check(ptr, size)  # refreshes the view if the allocator grew memory
        return ptr

    def put_bytes(self, data: bytes, ret_data: int, ret_size: int) -> bool:
        """Copy `data` into a guest allocation and write (pointer, size) to two return
        slots that passed check_u32_pair; False if the guest's allocator refused. What
        allocate, write and write_u32_pair do, in one call: every host call that returns
        a value ends here."""
        size = len(data)
        ptr = 0
        if size:
            if self._allocator is None:
                raise GuestMemoryError("module exports no allocator (proxy_on_memory_allocate or malloc)")
            ptr = self._allocator(size) or 0
            if not ptr:
                return False
            end = ptr + size
            if end > self._mem_size:
                self._check(ptr, size)  # refreshes the view if the allocator grew memory
            self._view[ptr:end] = data
        view = self._view
        _U32.pack_into(view, ret_data, ptr)
        _U32.pack_into(view, ret_size, size)
        return True

    def memory_size(self) -> int:
        self._refresh_memory()
        return self._mem_size

    def fuel_remaining(self) -> int:
        return self._sandbox.fuel_remaining()

    def close(self) -> None:
        """Free the store and its linear memory now, not whenever the GC finds the cycle
        between the VM and its host-function thunks. The VM cannot be called afterwards."""
        if self.closed:
            return
        self.closed = True
        self._sandbox.close()
        self._view = memoryview(b"")
        self._exports = None  # type: ignore[assignment]
        self.instance = None
        self._allocator = None
        self.store.close()
        self._linker.close()
        self._callbacks.clear()
