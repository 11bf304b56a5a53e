"""Values of the routeiq:filter world marshalled directly (not through wasmtime-py's
generic path, which converts every value through Python type objects): decoders read a
host call's arguments from the raw argument array; a ValueWriter builds results.

Byte payloads travel as the world's `byte-string` (a string, one code point per byte,
latin-1), never as `list<u8>`: wasmtime lowers and lifts a list value element by element
(one 32-byte value per byte, ~3 ms each way for 64 KiB), a string as one UTF-8 copy.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .component_capi import (
    K_ENUM,
    K_LIST,
    K_OPTION,
    K_RECORD,
    K_RESULT,
    K_STRING,
    K_TUPLE,
    K_U32,
    K_U64,
    QQ,
    S64,
    STATUS_NAMES,
    U32,
    U64,
    VAL,
    VAL_LAYOUT,
    list_new_uninit,
    record_new_uninit,
    tuple_new_uninit,
    val_new,
    vec_new_uninit,
)

_string_at = ctypes.string_at
_memmove = ctypes.memmove


class BadByteString(ValueError):
    """A byte-string argument with a code point above U+00FF (answered `bad-argument`)."""


def to_wire(data: bytes) -> bytes:
    """The UTF-8 of the byte-string carrying `data` (ASCII is its own encoding)."""
    return data if data.isascii() else data.decode("latin-1").encode("utf-8")


def from_wire(utf8: bytes) -> bytes:
    """The bytes a byte-string carries, from its UTF-8 (wasmtime has validated it)."""
    if utf8.isascii():
        return utf8
    try:
        return utf8.decode("utf-8").encode("latin-1")
    except UnicodeError:
        raise BadByteString("a byte-string holds a code point above U+00FF") from None


# --------------------------------------------------------------------- decoders
# A decoder reads one argument from the raw argument array at an offset.
def _read_vec(raw: bytes, off: int) -> bytes:
    size, ptr = QQ.unpack_from(raw, off)
    return _string_at(ptr, size) if size else b""


def _dec_u32(raw: bytes, off: int) -> int:
    return U32.unpack_from(raw, off + 8)[0]


def _dec_u64(raw: bytes, off: int) -> int:
    return U64.unpack_from(raw, off + 8)[0]


def _dec_s64(raw: bytes, off: int) -> int:
    return S64.unpack_from(raw, off + 8)[0]


def _dec_bool(raw: bytes, off: int) -> bool:
    return raw[off + 8] != 0


def _dec_name(raw: bytes, off: int) -> bytes:
    """A WIT string as its UTF-8 bytes."""
    return _read_vec(raw, off + 8)


def _dec_str(raw: bytes, off: int) -> str:
    return _read_vec(raw, off + 8).decode("utf-8")


def _dec_bytes(raw: bytes, off: int) -> bytes:
    """A byte-string as the bytes it carries."""
    return from_wire(_read_vec(raw, off + 8))


def _dec_names(raw: bytes, off: int) -> list[bytes]:
    size, ptr = QQ.unpack_from(raw, off + 8)
    blob = _string_at(ptr, VAL * size) if size else b""
    return [_read_vec(blob, i * VAL + 8) for i in range(size)]


def _dec_headers(raw: bytes, off: int) -> list[tuple[bytes, bytes]]:
    size, ptr = QQ.unpack_from(raw, off + 8)
    blob = _string_at(ptr, VAL * size) if size else b""
    pairs = []
    for i in range(size):
        _, tptr = QQ.unpack_from(blob, i * VAL + 8)
        pair = _string_at(tptr, 2 * VAL)
        pairs.append((_read_vec(pair, 8), from_wire(_read_vec(pair, VAL + 8))))
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


def param_decoder(tag: Any) -> Callable[[bytes, int], Any]:
    """The decoder of one parameter tag (see HostImport)."""
    return _enum_decoder(tag[1]) if isinstance(tag, tuple) else _PARAM_DECODERS[tag]


# ---------------------------------------------------------------------- writers
class ValueWriter:
    """Builds result values in memory wasmtime owns. One per sandbox: the scratch
    buffers receive the C API's out-parameters (the calls keep the GIL)."""

    def __init__(self) -> None:
        self._scratch = (ctypes.c_uint64 * 2)()
        self._scratch_addr = ctypes.addressof(self._scratch)
        self._scratch_val = ctypes.create_string_buffer(VAL)
        self._scratch_val_addr = ctypes.addressof(self._scratch_val)

    def new_vec(self, data: bytes) -> tuple[int, int]:
        """A wasm_byte_vec_t owned by wasmtime holding `data`: (size, pointer)."""
        n = len(data)
        vec_new_uninit(self._scratch_addr, n)
        ptr = self._scratch[1]
        if n:
            _memmove(ptr, data, n)
        return n, ptr

    def new_byte_string(self, data: bytes) -> tuple[int, int]:
        """A wasm_name_t (the payload of a string value) holding `data` as a byte-string."""
        return self.new_vec(to_wire(data))

    def box(self, kind: int, a: int = 0, b: int = 0) -> int:
        """A heap wasmtime_component_val_t (for option, result and variant payloads)."""
        VAL_LAYOUT.pack_into(self._scratch_val, 0, kind, a, b, 0)
        return val_new(self._scratch_val_addr)

    @staticmethod
    def put(dst: int, kind: int, a: int = 0, b: int = 0) -> None:
        _memmove(dst, VAL_LAYOUT.pack(kind, a, b, 0), VAL)

    def headers_list(self, pairs: Sequence[tuple[bytes, bytes]]) -> tuple[int, int]:
        n = len(pairs)
        list_new_uninit(self._scratch_addr, n)
        lptr = self._scratch[1]
        if not n:
            return 0, lptr
        out = bytearray()
        for name, value in pairs:
            tuple_new_uninit(self._scratch_addr, 2)
            tptr = self._scratch[1]
            ns, np = self.new_vec(name)
            vs, vp = self.new_byte_string(value)
            _memmove(tptr, VAL_LAYOUT.pack(K_STRING, ns, np, 0) + VAL_LAYOUT.pack(K_STRING, vs, vp, 0), 2 * VAL)
            out += VAL_LAYOUT.pack(K_TUPLE, 2, tptr, 0)
        _memmove(lptr, bytes(out), VAL * n)
        return n, lptr

    def _record(self, fields: Sequence[tuple[bytes, bytes]]) -> tuple[int, int]:
        """A record from (field name, packed value) entries (48 bytes each)."""
        record_new_uninit(self._scratch_addr, len(fields))
        rptr = self._scratch[1]
        blob = b"".join(QQ.pack(*self.new_vec(name)) + value for name, value in fields)
        _memmove(rptr, blob, len(blob))
        return len(fields), rptr

    def shared_value(self, value: bytes | None, cas: int) -> tuple[int, int]:
        if value is None:
            option = VAL_LAYOUT.pack(K_OPTION, 0, 0, 0)
        else:
            option = VAL_LAYOUT.pack(K_OPTION, self.box(K_STRING, *self.new_byte_string(value)), 0, 0)
        return self._record([(b"value", option), (b"cas", VAL_LAYOUT.pack(K_U32, cas & 0xFFFFFFFF, 0, 0))])

    def call_status(self, code: int, message: bytes) -> tuple[int, int]:
        ms, mp = self.new_byte_string(message)
        return self._record([(b"code", VAL_LAYOUT.pack(K_U32, code & 0xFFFFFFFF, 0, 0)), (b"message", VAL_LAYOUT.pack(K_STRING, ms, mp, 0))])

    def encode_ok(self, tag: str | None, value: Any) -> int:
        """The boxed ok payload of a result (0 for result<_, status>)."""
        if tag is None:
            return 0
        if tag == "bytes":
            return self.box(K_STRING, *self.new_byte_string(value))
        if tag == "u32":
            return self.box(K_U32, value & 0xFFFFFFFF)
        if tag == "u64":
            return self.box(K_U64, value & 0xFFFFFFFFFFFFFFFF)
        if tag == "headers":
            return self.box(K_LIST, *self.headers_list(value))
        if tag == "shared-value":
            return self.box(K_RECORD, *self.shared_value(*value))
        if tag == "call-status":
            return self.box(K_RECORD, *self.call_status(*value))
        raise ValueError(f"unknown ok type {tag}")

    def write_status(self, dst: int, status: int) -> None:
        self.put(dst, K_RESULT, 0, self.box(K_ENUM, *self.new_vec(STATUS_NAMES[status])))

    def result_writer(self, ok: str | None) -> Callable[[int, Any], None]:
        """Writes what an implementation returned: a status for result<_, status>, else
        (status, value) with value used only when status is OK."""
        put, write_status, encode_ok = self.put, self.write_status, self.encode_ok
        if ok is None:

            def write_unit(dst: int, status: int) -> None:
                if status:
                    write_status(dst, status)
                else:
                    put(dst, K_RESULT, 1, 0)

            return write_unit

        def write(dst: int, answer: tuple[int, Any]) -> None:
            status, value = answer
            if status:
                write_status(dst, status)
            else:
                put(dst, K_RESULT, 1, encode_ok(ok, value))

        return write

    def plain_writer(self, tag: Any) -> Callable[[int, Any], None]:
        put = self.put
        if isinstance(tag, tuple) and tag[0] == "enum":
            names = [n.encode() for n in tag[1]]
            return lambda dst, index: put(dst, K_ENUM, *self.new_vec(names[index]))
        if tag == "bytes":
            return lambda dst, value: put(dst, K_STRING, *self.new_byte_string(value))
        if tag == "u64":
            return lambda dst, value: put(dst, K_U64, value & 0xFFFFFFFFFFFFFFFF)
        if tag == "u32":
            return lambda dst, value: put(dst, K_U32, value & 0xFFFFFFFF)
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
