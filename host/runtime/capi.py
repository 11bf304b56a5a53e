"""Fast entry points into the wasmtime C API.

wasmtime-py's `Func.__call__` marshals every value through Python objects (~25 us a
call). The per-callback crossings (guest calls, host-function trampolines) live in the
C extension _fastcall.c; this module declares ctypes prototypes, with plain integer
arguments, for the one-off and less frequent calls, and hands _fastcall the addresses
of the wasmtime functions it calls.
"""

from __future__ import annotations

import ctypes

from wasmtime import _ffi as ffi

dll = ffi.dll

linker_define_func_unchecked = ctypes.CFUNCTYPE(
    ctypes.c_void_p,  # wasmtime_error_t*
    ctypes.c_void_p,  # linker
    ctypes.c_char_p,
    ctypes.c_size_t,
    ctypes.c_char_p,
    ctypes.c_size_t,
    ctypes.c_void_p,  # const wasm_functype_t*
    ctypes.c_void_p,  # wasmtime_func_unchecked_callback_t
    ctypes.c_void_p,  # env
    ctypes.c_void_p,  # finalizer (none: the VM keeps the env alive)
)(("wasmtime_linker_define_func_unchecked", dll))


def address(symbol: str) -> int:
    """The address of a wasmtime C API function in wasmtime-py's loaded library."""
    value = ctypes.cast(getattr(dll, symbol), ctypes.c_void_p).value
    if not value:
        raise RuntimeError(f"wasmtime library has no {symbol}")
    return value

context_set_fuel = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64)(
    ("wasmtime_context_set_fuel", dll)
)
context_set_epoch_deadline = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64)(
    ("wasmtime_context_set_epoch_deadline", dll)
)
memory_data = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)(
    ("wasmtime_memory_data", dll)
)
memory_data_size = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p)(
    ("wasmtime_memory_data_size", dll)
)


def address_of_context(store: object) -> int:
    """The raw wasmtime_context_t* of a wasmtime.Store."""
    return ctypes.cast(store._context(), ctypes.c_void_p).value  # type: ignore[attr-defined]


def error_message(error_ptr: int) -> str:
    """Consume a wasmtime_error_t* and return its message."""
    from wasmtime import WasmtimeError

    err = WasmtimeError._from_ptr(ctypes.cast(error_ptr, ctypes.POINTER(ffi.wasmtime_error_t)))
    return str(err)


def take_trap(trap_ptr: int) -> "object":
    """Wrap (and take ownership of) a wasm_trap_t* as a wasmtime.Trap."""
    from wasmtime import Trap

    return Trap._from_ptr(ctypes.cast(trap_ptr, ctypes.POINTER(ffi.wasm_trap_t)))
