"""WebAssembly components (the routeiq:filter world): compiled-component cache and one
sandboxed store per VM, with fast calls through the component C API.

Components run under the same limits as core modules: fresh fuel and a fresh epoch
deadline for every top-level call, a linear-memory cap (StoreLimits), and typed traps
(the error classes of vm.py). They also get WASI 0.2 from wasmtime with nothing granted:
no preopened directories, no network, no inherited stdio, only the plugin's `env`.

wasmtime-py's generic component API (`Func.__call__`, `LinkerInstance.add_func`) converts
every value through Python type objects, a `list<u8>` one byte at a time. Our world is
fixed, so values are marshalled directly instead: a `wasmtime_component_val_t` is 32 bytes
(kind byte at 0, payload at 8), packed and unpacked with `struct`. Exports are called and
host functions linked through our own ctypes prototypes.

Byte payloads travel as the world's `byte-string` (a string, one code point per byte,
latin-1), never as `list<u8>`: wasmtime lowers and lifts a list value element by element
(one 32-byte value per byte, ~3 ms each way for 64 KiB), a string as one UTF-8 copy.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import struct
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime import component as wc

from . import capi
from .engine import EngineSettings
from .errors import (
    DeadlineExceeded,
    FuelExhausted,
    GuestExit,
    GuestTrap,
    HostCallFailure,
    MemoryLimitExceeded,
    MemoryOutOfBounds,
    PluginLoadError,
    StackOverflow,
    Unreachable,
)
from .limits import SandboxLimits
from .module_cache import ModuleCache

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


# ---------------------------------------------------------------------------- C API
_dll = ffi.dll
# Guest calls release the GIL (CFUNCTYPE): the epoch ticker must run while a guest spins.
_func_call = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t)(
    ("wasmtime_component_func_call", _dll)
)
# Small helpers keep the GIL (PYFUNCTYPE), so module-level scratch buffers are safe.
_vec_new_uninit = ctypes.PYFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t)(("wasm_byte_vec_new_uninitialized", _dll))
_list_new_uninit = ctypes.PYFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t)(("wasmtime_component_vallist_new_uninit", _dll))
_tuple_new_uninit = ctypes.PYFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t)(("wasmtime_component_valtuple_new_uninit", _dll))
_record_new_uninit = ctypes.PYFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t)(("wasmtime_component_valrecord_new_uninit", _dll))
_val_new = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(("wasmtime_component_val_new", _dll))
_val_delete = ctypes.PYFUNCTYPE(None, ctypes.c_void_p)(("wasmtime_component_val_delete", _dll))
_error_new = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)(("wasmtime_error_new", _dll))
_error_exit_status = ctypes.PYFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_void_p)(("wasmtime_error_exit_status", _dll))
# (data, context, func type, args, nargs, results, nresults) -> wasmtime_error_t* or 0
HostCallback = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t)
_add_func = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, HostCallback, ctypes.c_void_p, ctypes.c_void_p)(
    ("wasmtime_component_linker_instance_add_func", _dll)
)

# wasmtime_component_val_t kinds (wasmtime/component/val.h)
K_BOOL, K_U8, K_U32, K_S64, K_U64 = 0, 2, 6, 7, 8
K_STRING, K_LIST, K_RECORD, K_TUPLE, K_ENUM, K_OPTION, K_RESULT, K_FLAGS = 12, 13, 14, 15, 17, 18, 19, 20

VAL = 32  # sizeof(wasmtime_component_val_t); the payload starts at 8
assert ctypes.sizeof(ffi.wasmtime_component_val_t) == VAL
assert ctypes.sizeof(ffi.wasmtime_component_valrecord_entry_t) == 48

_VAL = struct.Struct("<B7xQQQ")  # kind, three payload words
_QQ = struct.Struct("<QQ")
_I = struct.Struct("<I")
_Q = struct.Struct("<Q")
_q = struct.Struct("<q")
_STATUS_NAMES = (
    b"ok", b"not-found", b"bad-argument", b"serialization-failure", b"parse-failure", b"bad-expression",
    b"invalid-memory-access", b"empty", b"cas-mismatch", b"result-mismatch", b"internal-failure",
    b"broken-connection", b"unimplemented",
)
BAD_ARGUMENT = 2
INTERNAL_FAILURE = 10

_scratch = (ctypes.c_uint64 * 2)()
_scratch_addr = ctypes.addressof(_scratch)
_scratch_val = ctypes.create_string_buffer(VAL)
_scratch_val_addr = ctypes.addressof(_scratch_val)
_string_at = ctypes.string_at
_memmove = ctypes.memmove


def _new_vec(data: bytes) -> tuple[int, int]:
    """A wasm_byte_vec_t owned by wasmtime holding `data`: (size, pointer)."""
    n = len(data)
    _vec_new_uninit(_scratch_addr, n)
    ptr = _scratch[1]
    if n:
        _memmove(ptr, data, n)
    return n, ptr


class BadByteString(ValueError):
    """A byte-string argument with a code point above U+00FF (answered `bad-argument`)."""


def _to_wire(data: bytes) -> bytes:
    """The UTF-8 of the byte-string carrying `data` (ASCII is its own encoding)."""
    return data if data.isascii() else data.decode("latin-1").encode("utf-8")


def _from_wire(utf8: bytes) -> bytes:
    """The bytes a byte-string carries, from its UTF-8 (wasmtime has validated it)."""
    if utf8.isascii():
        return utf8
    try:
        return utf8.decode("utf-8").encode("latin-1")
    except UnicodeError:
        raise BadByteString("a byte-string holds a code point above U+00FF") from None


def _new_byte_string(data: bytes) -> tuple[int, int]:
    """A wasm_name_t (the payload of a string value) holding `data` as a byte-string."""
    return _new_vec(_to_wire(data))


def _box(kind: int, a: int = 0, b: int = 0) -> int:
    """A heap wasmtime_component_val_t (for option, result and variant payloads)."""
    _VAL.pack_into(_scratch_val, 0, kind, a, b, 0)
    return _val_new(_scratch_val_addr)


def _put(dst: int, kind: int, a: int = 0, b: int = 0) -> None:
    _memmove(dst, _VAL.pack(kind, a, b, 0), VAL)


def _headers_list(pairs: Sequence[tuple[bytes, bytes]]) -> tuple[int, int]:
    n = len(pairs)
    _list_new_uninit(_scratch_addr, n)
    lptr = _scratch[1]
    if not n:
        return 0, lptr
    out = bytearray()
    for name, value in pairs:
        _tuple_new_uninit(_scratch_addr, 2)
        tptr = _scratch[1]
        ns, np = _new_vec(name)
        vs, vp = _new_byte_string(value)
        _memmove(tptr, _VAL.pack(K_STRING, ns, np, 0) + _VAL.pack(K_STRING, vs, vp, 0), 2 * VAL)
        out += _VAL.pack(K_TUPLE, 2, tptr, 0)
    _memmove(lptr, bytes(out), VAL * n)
    return n, lptr


def _shared_value(value: bytes | None, cas: int) -> tuple[int, int]:
    _record_new_uninit(_scratch_addr, 2)
    rptr = _scratch[1]
    if value is None:
        option = _VAL.pack(K_OPTION, 0, 0, 0)
    else:
        option = _VAL.pack(K_OPTION, _box(K_STRING, *_new_byte_string(value)), 0, 0)
    n1, p1 = _new_vec(b"value")
    n2, p2 = _new_vec(b"cas")
    _memmove(rptr, _QQ.pack(n1, p1) + option + _QQ.pack(n2, p2) + _VAL.pack(K_U32, cas & 0xFFFFFFFF, 0, 0), 96)
    return 2, rptr


def _call_status(code: int, message: bytes) -> tuple[int, int]:
    _record_new_uninit(_scratch_addr, 2)
    rptr = _scratch[1]
    n1, p1 = _new_vec(b"code")
    n2, p2 = _new_vec(b"message")
    ms, mp = _new_byte_string(message)
    _memmove(rptr, _QQ.pack(n1, p1) + _VAL.pack(K_U32, code & 0xFFFFFFFF, 0, 0) + _QQ.pack(n2, p2) + _VAL.pack(K_STRING, ms, mp, 0), 96)
    return 2, rptr


# ------------------------------------------------------------------ value codecs
# Parameter decoders read one argument from the raw args blob at an offset.
def _read_vec(raw: bytes, off: int) -> bytes:
    size, ptr = _QQ.unpack_from(raw, off)
    return _string_at(ptr, size) if size else b""


def _dec_u32(raw: bytes, off: int) -> int:
    return _I.unpack_from(raw, off + 8)[0]


def _dec_u64(raw: bytes, off: int) -> int:
    return _Q.unpack_from(raw, off + 8)[0]


def _dec_s64(raw: bytes, off: int) -> int:
    return _q.unpack_from(raw, off + 8)[0]


def _dec_bool(raw: bytes, off: int) -> bool:
    return raw[off + 8] != 0


def _dec_name(raw: bytes, off: int) -> bytes:
    """A WIT string as its UTF-8 bytes."""
    return _read_vec(raw, off + 8)


def _dec_str(raw: bytes, off: int) -> str:
    return _read_vec(raw, off + 8).decode("utf-8")


def _dec_bytes(raw: bytes, off: int) -> bytes:
    """A byte-string as the bytes it carries."""
    return _from_wire(_read_vec(raw, off + 8))


def _dec_names(raw: bytes, off: int) -> list[bytes]:
    size, ptr = _QQ.unpack_from(raw, off + 8)
    blob = _string_at(ptr, VAL * size) if size else b""
    return [_read_vec(blob, i * VAL + 8) for i in range(size)]


def _dec_headers(raw: bytes, off: int) -> list[tuple[bytes, bytes]]:
    size, ptr = _QQ.unpack_from(raw, off + 8)
    blob = _string_at(ptr, VAL * size) if size else b""
    pairs = []
    for i in range(size):
        _, tptr = _QQ.unpack_from(blob, i * VAL + 8)
        pair = _string_at(tptr, 2 * VAL)
        pairs.append((_read_vec(pair, 8), _from_wire(_read_vec(pair, VAL + 8))))
    return pairs


def _enum_decoder(names: Sequence[str]) -> Callable[[bytes, int], int]:
    index = {name.encode(): i for i, name in enumerate(names)}

    def decode(raw: bytes, off: int) -> int:
        return index[_read_vec(raw, off + 8)]

    return decode


_PARAM_DECODERS: dict[str, Callable[[bytes, int], Any]] = {
    "u32": _dec_u32,
    "u64": _dec_u64,
    "s64": _dec_s64,
    "bool": _dec_bool,
    "name": _dec_name,
    "str": _dec_str,
    "bytes": _dec_bytes,
    "names": _dec_names,
    "headers": _dec_headers,
}


def _encode_ok(tag: str | None, value: Any) -> int:
    """The boxed ok payload of a result (0 for result<_, status>)."""
    if tag is None:
        return 0
    if tag == "bytes":
        return _box(K_STRING, *_new_byte_string(value))
    if tag == "u32":
        return _box(K_U32, value & 0xFFFFFFFF)
    if tag == "u64":
        return _box(K_U64, value & 0xFFFFFFFFFFFFFFFF)
    if tag == "headers":
        return _box(K_LIST, *_headers_list(value))
    if tag == "shared-value":
        return _box(K_RECORD, *_shared_value(*value))
    if tag == "call-status":
        return _box(K_RECORD, *_call_status(*value))
    raise ValueError(f"unknown ok type {tag}")


def _write_status(dst: int, status: int) -> None:
    _put(dst, K_RESULT, 0, _box(K_ENUM, *_new_vec(_STATUS_NAMES[status])))


def _result_writer(ok: str | None) -> Callable[[int, Any], None]:
    """Writes what an implementation returned: a status for result<_, status>, else
    (status, value) with value used only when status is OK."""
    if ok is None:

        def write_unit(dst: int, status: int) -> None:
            if status:
                _write_status(dst, status)
            else:
                _put(dst, K_RESULT, 1, 0)

        return write_unit

    def write(dst: int, answer: tuple[int, Any]) -> None:
        status, value = answer
        if status:
            _write_status(dst, status)
        else:
            _put(dst, K_RESULT, 1, _encode_ok(ok, value))

    return write


def _plain_writer(tag: Any) -> Callable[[int, Any], None]:
    if isinstance(tag, tuple) and tag[0] == "enum":
        names = [n.encode() for n in tag[1]]
        return lambda dst, index: _put(dst, K_ENUM, *_new_vec(names[index]))
    if tag == "bytes":
        return lambda dst, value: _put(dst, K_STRING, *_new_byte_string(value))
    if tag == "u64":
        return lambda dst, value: _put(dst, K_U64, value & 0xFFFFFFFFFFFFFFFF)
    if tag == "u32":
        return lambda dst, value: _put(dst, K_U32, value & 0xFFFFFFFF)
    raise ValueError(f"unknown result type {tag}")


@dataclass(frozen=True)
class HostImport:
    """One function of the `host` interface as the sandbox links it.

    `params` are decoder tags ("u32", "u64", "s64", "bool", "str", "name" (UTF-8 bytes),
    "bytes" (a byte-string, as the bytes it carries), "names", "headers", or ("enum", case
    names) decoded to the case index).
    `result` is None, ("result", ok tag or None), or a plain tag ("bytes", "u64",
    ("enum", names)). For ("result", None) the implementation returns a status; for
    ("result", tag) it returns (status, value). Raising GuestTrap traps the guest with
    that error. A byte-string argument that carries no bytes (a code point above U+00FF)
    answers `bad-argument` without calling the implementation; any other exception is a
    host bug: logged, answered `internal-failure`.
    """

    name: str
    params: tuple[Any, ...]
    result: Any
    impl: Callable[..., Any]


# ------------------------------------------------------------------------- cache
class ComponentCache(ModuleCache):
    """ModuleCache for components: compile once, deserialize afterwards."""

    def __init__(self, engine: wasmtime.Engine, settings: EngineSettings, directory: Path | None) -> None:
        super().__init__(engine, settings, directory)
        self.last_seconds = 0.0
        self.last_hit = False

    def path_for(self, module_sha256: str) -> Path | None:
        if self._dir is None:
            return None
        return self._dir / f"{module_sha256}-{self._fingerprint}.component.cwasm"

    def load_component(self, wasm: bytes, sha256: str | None = None) -> wc.Component:
        began = time.perf_counter()
        digest = sha256 or hashlib.sha256(wasm).hexdigest()
        path = self.path_for(digest)
        component: wc.Component | None = None
        if path is not None and path.exists():
            try:
                component = wc.Component.deserialize_file(self._engine, str(path))
                self.hits += 1
                self.last_hit = True
            except wasmtime.WasmtimeError as exc:
                log.warning("discarding unusable component cache entry %s: %s", path, exc)
                path.unlink(missing_ok=True)
        if component is None:
            try:
                component = wc.Component(self._engine, wasm)
            except wasmtime.WasmtimeError as exc:
                first = str(exc).splitlines()[0]
                raise PluginLoadError(f"not a valid WebAssembly component: {first}") from None
            self.misses += 1
            self.last_hit = False
            if path is not None:
                self._store(path, component.serialize())
        self.last_seconds = time.perf_counter() - began
        return component


_caches: "weakref.WeakKeyDictionary[Any, ComponentCache]" = weakref.WeakKeyDictionary()


def component_cache(runtime: Any) -> ComponentCache:
    """The component cache of a WasmRuntime: same directory and engine fingerprint as its
    module cache (entries are told apart by their suffix)."""
    cache = _caches.get(runtime)
    if cache is None:
        directory = getattr(runtime.cache, "_dir", None)
        cache = ComponentCache(runtime.engine, runtime.settings, directory)
        _caches[runtime] = cache
    return cache


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
            size, ptr = _QQ.unpack_from(buf, 8)
            value = index[_string_at(ptr, size)]
            _val_delete(addr)
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
        host_imports: Iterable[HostImport],
        epoch_tick_ms: int,
        filter_interface: str = FILTER_INTERFACE,
        environment: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.limits = limits
        self._tick_ms = epoch_tick_ms
        self._armed_ns = 0  # when the current callback's deadline started (moved by waits)
        self._deadline_ticks = max(1, -(-limits.timeout_ms // epoch_tick_ms)) + 1
        self._component = component
        self._filter_interface = filter_interface
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
        self.closed = False
        self.instance: wc.Instance | None = None
        self._iface_index: wc.ExportIndex | None = None
        self._linker = wc.Linker(engine)
        self._linker.add_wasip2()
        root = self._linker.root()
        try:
            host = root.add_instance(HOST_INTERFACE)
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
        err = _add_func(instance_addr, name, len(name), thunk, None, None)
        if err:
            raise PluginLoadError(f"cannot link {HOST_INTERFACE}#{imp.name}: {capi.error_message(err)}")

    def _make_thunk(self, imp: HostImport) -> Callable[..., int]:
        decoders = []
        for i, tag in enumerate(imp.params):
            decode = _enum_decoder(tag[1]) if isinstance(tag, tuple) else _PARAM_DECODERS[tag]
            decoders.append((decode, i * VAL))
        decoders_t = tuple(decoders)
        size = VAL * len(decoders_t)
        result = imp.result
        if result is None:
            write: Callable[[int, Any], None] | None = None
        elif isinstance(result, tuple) and result[0] == "result":
            write = _result_writer(result[1])
        else:
            write = _plain_writer(result)
        is_result = isinstance(result, tuple) and result[0] == "result"
        impl = imp.impl
        qualname = f"{HOST_INTERFACE}#{imp.name}"
        sandbox = self

        def thunk(_data: int, _context: int, _ty: int, args: int, _nargs: int, results: int, _nresults: int) -> int:
            try:
                if size:
                    raw = _string_at(args, size)
                    answer = impl(*[decode(raw, off) for decode, off in decoders_t])
                else:
                    answer = impl()
                if write is not None:
                    write(results, answer)
                return 0
            except GuestTrap as error:
                sandbox._pending = error
                return _error_new(str(error).encode()) or 0
            except BadByteString as error:
                if is_result:
                    _write_status(results, BAD_ARGUMENT)
                    return 0
                failure = HostCallFailure(f"host function {imp.name}: {error}")
                sandbox._pending = failure
                return _error_new(str(failure).encode()) or 0
            except Exception:  # a host bug must never take the gateway down
                log.exception("host function %s failed", qualname)
                if is_result:
                    _write_status(results, INTERNAL_FAILURE)
                    return 0
                error = HostCallFailure(f"host function {imp.name} failed")
                sandbox._pending = error
                return _error_new(str(error).encode()) or 0

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

    def instantiate(self) -> None:
        """Instantiate under fuel and deadline (component start code is bounded too)."""
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
            err = _func_call(fn._addr, self._ctx, fn._args_addr, fn._nargs, fn._res_addr, fn._nres)
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
        exited = _error_exit_status(err, ctypes.addressof(code))
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
        """A typed error from a trap message (the component C API reports traps as
        errors whose cause reads `wasm trap: ...`)."""
        cause = message.rsplit("Caused by:", 1)[-1]
        if "all fuel consumed" in cause:
            return FuelExhausted(f"ran out of fuel ({self.limits.fuel} units) in {callback}", callback=callback, detail=message)
        if "wasm trap: interrupt" in cause:
            return DeadlineExceeded(f"exceeded its {self.limits.timeout_ms} ms deadline in {callback}", callback=callback, detail=message)
        if "call stack exhausted" in cause:
            return StackOverflow(f"overflowed its stack in {callback}", callback=callback, detail=message)
        if "out of bounds memory access" in cause:
            return MemoryOutOfBounds(f"accessed memory out of bounds in {callback}", callback=callback, detail=message)
        if "unreachable" in cause:
            return Unreachable(f"trapped (unreachable) in {callback}", callback=callback, detail=message)
        first = cause.strip().splitlines()[0] if cause.strip() else "trap"
        return GuestTrap(f"trapped in {callback}: {first}", callback=callback, detail=message)

    def memory_limit_error(self, callback: str, detail: str) -> MemoryLimitExceeded:
        mib = self.limits.memory_bytes // (1024 * 1024)
        return MemoryLimitExceeded(f"hit its {mib} MiB memory limit in {callback}", callback=callback, detail=detail)

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
