"""Header maps and body buffers of the current HTTP exchange.

Values are `str` (bytes decoded as UTF-8, undecodable bytes kept as surrogate escapes so
they round-trip); every setter also takes `bytes`. Names are case-insensitive.
"""

from __future__ import annotations

import json as _json
from typing import Any, Iterable, Iterator

from ._bindings import BufferType, Err, MapType, Status, from_wire, host, to_wire
from .errors import host_error

Value = str | bytes


def _text(wire: str) -> str:
    """A byte-string's bytes decoded as UTF-8 (ASCII is already its own text)."""
    return wire if wire.isascii() else wire.encode("latin-1").decode("utf-8", "surrogateescape")


def _wire(value: Value) -> str:
    """A value as the byte-string the host takes: bytes as they are, text as its UTF-8
    (surrogate escapes back to their bytes)."""
    if isinstance(value, (bytes, bytearray)):
        return to_wire(value)
    if isinstance(value, memoryview):
        return to_wire(bytes(value))
    text = value if isinstance(value, str) else str(value)
    return text if text.isascii() else to_wire(text.encode("utf-8", "surrogateescape"))


class Headers:
    """One header map (request or response headers or trailers, or a callout's response
    headers). Reads and writes go straight to the host: there is no copy to sync."""

    __slots__ = ("_map",)

    def __init__(self, which: MapType) -> None:
        self._map = which

    def get(self, name: str, default: str | None = None) -> str | None:
        try:
            return _text(host.get_header(self._map, name))
        except Err as err:
            if err.value == Status.NOT_FOUND:
                return default
            raise host_error(err, "get-header") from None

    def get_bytes(self, name: str) -> bytes | None:
        try:
            return from_wire(host.get_header(self._map, name))
        except Err as err:
            if err.value == Status.NOT_FOUND:
                return None
            raise host_error(err, "get-header") from None

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get_bytes(name) is not None

    def items(self) -> list[tuple[str, str]]:
        try:
            return [(k, _text(v)) for k, v in host.get_headers(self._map)]
        except Err as err:
            raise host_error(err, "get-headers") from None

    def __iter__(self) -> Iterator[str]:
        return iter([k for k, _ in self.items()])

    def __len__(self) -> int:
        return len(self.items())

    def add(self, name: str, value: Value) -> None:
        """Add a header (an existing one of the same name stays)."""
        try:
            host.add_header(self._map, name, _wire(value))
        except Err as err:
            raise host_error(err, "add-header") from None

    def set(self, name: str, value: Value) -> None:
        """Replace every header of that name with one value."""
        try:
            host.replace_header(self._map, name, _wire(value))
        except Err as err:
            raise host_error(err, "replace-header") from None

    __setitem__ = set

    def remove(self, name: str) -> None:
        try:
            host.remove_header(self._map, name)
        except Err as err:
            raise host_error(err, "remove-header") from None

    __delitem__ = remove

    def replace_all(self, pairs: Iterable[tuple[str, Value]]) -> None:
        try:
            host.set_headers(self._map, [(k, _wire(v)) for k, v in pairs])
        except Err as err:
            raise host_error(err, "set-headers") from None


REQUEST_HEADERS = Headers(MapType.REQUEST_HEADERS)
RESPONSE_HEADERS = Headers(MapType.RESPONSE_HEADERS)
REQUEST_TRAILERS = Headers(MapType.REQUEST_TRAILERS)
RESPONSE_TRAILERS = Headers(MapType.RESPONSE_TRAILERS)
CALL_RESPONSE_HEADERS = Headers(MapType.HTTP_CALL_RESPONSE_HEADERS)

_MAX = 0xFFFFFFFF


class Body:
    """The body buffer a body hook sees: what has arrived so far, or the whole body
    once the filter has returned Action.PAUSE until end_of_stream (the host buffers)."""

    __slots__ = ("_buffer", "size", "end_of_stream")

    def __init__(self, which: BufferType, size: int, end_of_stream: bool) -> None:
        self._buffer = which
        self.size = size
        self.end_of_stream = end_of_stream

    def read(self, start: int = 0, length: int | None = None) -> bytes:
        """Bytes of the buffer (needs the request_body / response_body capability)."""
        try:
            return from_wire(host.get_buffer(self._buffer, start, _MAX if length is None else length))
        except Err as err:
            raise host_error(err, "get-buffer") from None

    def text(self, encoding: str = "utf-8") -> str:
        return self.read().decode(encoding, "replace")

    def json(self) -> Any:
        return _json.loads(self.read())

    def set(self, start: int, size: int, data: Value) -> None:
        """Replace `size` bytes at `start` with `data` (start at or past the end appends)."""
        self._set(start, size, _wire(data))

    def _set(self, start: int, size: int, wire: str) -> None:
        try:
            host.set_buffer(self._buffer, start, size, wire)
        except Err as err:
            raise host_error(err, "set-buffer") from None

    def replace(self, data: Value) -> None:
        """Replace the whole buffer (the host fixes content-length)."""
        wire = _wire(data)
        self._set(0, _MAX, wire)
        self.size = len(wire)  # one code point per byte

    def append(self, data: Value) -> None:
        self.set(_MAX, 0, data)

    def prepend(self, data: Value) -> None:
        self.set(0, 0, data)

    def __len__(self) -> int:
        return self.size


def buffer_bytes(which: BufferType) -> bytes:
    try:
        return from_wire(host.get_buffer(which, 0, _MAX))
    except Err as err:
        if err.value == Status.NOT_FOUND:
            return b""
        raise host_error(err, "get-buffer") from None


class CallResponse:
    """The answer to an HTTP callout (`ok` is False when it failed or timed out)."""

    __slots__ = ("call_id", "ok", "status", "headers", "body")

    def __init__(self, call_id: int, ok: bool, status: int | None, headers: list[tuple[str, str]], body: bytes) -> None:
        self.call_id = call_id
        self.ok = ok
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def json(self) -> Any:
        return _json.loads(self.body)
