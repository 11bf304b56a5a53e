"""The component C API as the sandbox calls it: ctypes prototypes for what wasmtime-py's
generic component API does not expose fast enough, and the layout of a
`wasmtime_component_val_t` (32 bytes: kind byte at 0, payload at 8)."""

from __future__ import annotations

import ctypes
import struct

from wasmtime import _ffi as ffi

dll = ffi.dll
# Guest calls release the GIL (CFUNCTYPE): the epoch ticker must run while a guest spins.
func_call = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t)(
    ("wasmtime_component_func_call", dll)
)
# Small helpers keep the GIL (PYFUNCTYPE): a ValueWriter's scratch buffers are safe.
vec_new_uninit = ctypes.PYFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t)(("wasm_byte_vec_new_uninitialized", dll))
list_new_uninit = ctypes.PYFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t)(("wasmtime_component_vallist_new_uninit", dll))
tuple_new_uninit = ctypes.PYFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t)(("wasmtime_component_valtuple_new_uninit", dll))
record_new_uninit = ctypes.PYFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t)(("wasmtime_component_valrecord_new_uninit", dll))
val_new = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(("wasmtime_component_val_new", dll))
val_delete = ctypes.PYFUNCTYPE(None, ctypes.c_void_p)(("wasmtime_component_val_delete", dll))
error_new = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)(("wasmtime_error_new", dll))
error_exit_status = ctypes.PYFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_void_p)(("wasmtime_error_exit_status", dll))
# (data, context, func type, args, nargs, results, nresults) -> wasmtime_error_t* or 0
HostCallback = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t)
add_func = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, HostCallback, ctypes.c_void_p, ctypes.c_void_p)(
    ("wasmtime_component_linker_instance_add_func", dll)
)

# wasmtime_component_val_t kinds (wasmtime/component/val.h)
K_BOOL, K_U8, K_U32, K_S64, K_U64 = 0, 2, 6, 7, 8
K_STRING, K_LIST, K_RECORD, K_TUPLE, K_ENUM, K_OPTION, K_RESULT, K_FLAGS = 12, 13, 14, 15, 17, 18, 19, 20

VAL = 32  # sizeof(wasmtime_component_val_t); the payload starts at 8
assert ctypes.sizeof(ffi.wasmtime_component_val_t) == VAL
assert ctypes.sizeof(ffi.wasmtime_component_valrecord_entry_t) == 48

VAL_LAYOUT = struct.Struct("<B7xQQQ")  # kind, three payload words
QQ = struct.Struct("<QQ")
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
S64 = struct.Struct("<q")
STATUS_NAMES = (
    b"ok", b"not-found", b"bad-argument", b"serialization-failure", b"parse-failure", b"bad-expression",
    b"invalid-memory-access", b"empty", b"cas-mismatch", b"result-mismatch", b"internal-failure",
    b"broken-connection", b"unimplemented",
)
BAD_ARGUMENT = 2
INTERNAL_FAILURE = 10
