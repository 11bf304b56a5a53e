"""Fast entry points into the wasmtime C API.

wasmtime-py's `Func.__call__` marshals every value through Python objects (~25 us a
call). The C API's *unchecked* calls take a flat array of raw values instead
(~2-3 us). We declare our own ctypes prototypes for them on wasmtime-py's loaded
library, with plain integer arguments so ctypes does no pointer wrapping per call.
"""

from __future__ import annotations

import ctypes

from wasmtime import _ffi as ffi

dll = ffi.dll

# A raw value slot is a 16-byte union (i32/i64/f32/f64/v128/refs).
VAL_RAW_SIZE = ctypes.sizeof(ffi.wasmtime_val_raw_t)
ValRaw = ffi.wasmtime_val_raw_t

# (env, caller, args_and_results, count) -> wasm_trap_t* (0 when the call succeeded)
UncheckedCallback = ctypes.CFUNCTYPE(
    ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t
)
Finalizer = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
NO_FINALIZER = ctypes.cast(None, Finalizer)

func_call_unchecked = ctypes.CFUNCTYPE(
    ctypes.c_void_p,  # wasmtime_error_t*
    ctypes.c_void_p,  # wasmtime_context_t*
    ctypes.c_void_p,  # const wasmtime_func_t*
    ctypes.c_void_p,  # wasmtime_val_raw_t*
    ctypes.c_size_t,
    ctypes.c_void_p,  # wasm_trap_t** out
)(("wasmtime_func_call_unchecked", dll))

linker_define_func_unchecked = ctypes.CFUNCTYPE(
    ctypes.c_void_p,  # wasmtime_error_t*
    ctypes.c_void_p,  # linker
    ctypes.c_char_p,
    ctypes.c_size_t,
    ctypes.c_char_p,
    ctypes.c_size_t,
    ctypes.c_void_p,  # const wasm_functype_t*
    UncheckedCallback,
    ctypes.c_void_p,
    Finalizer,
)(("wasmtime_linker_define_func_unchecked", dll))

context_set_fuel = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64)(
    ("wasmtime_context_set_fuel", dll)
)
context_get_fuel = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)(
    ("wasmtime_context_get_fuel", dll)
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
trap_new = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t)(
    ("wasmtime_trap_new", dll)
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
