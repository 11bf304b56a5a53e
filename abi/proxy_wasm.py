"""proxy-wasm ABI v0.2.1 constants and serialization formats.

Values follow the public spec (proxy-wasm/spec, abi-versions/v0.2.1). Nothing here
depends on wasmtime: these are the types both the host and the tests speak.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from itertools import chain

ABI_VERSION_EXPORTS: dict[str, str] = {
    "proxy_abi_version_0_2_1": "0.2.1",
    "proxy_abi_version_0_2_0": "0.2.0",
}


class Status(IntEnum):
    OK = 0
    NOT_FOUND = 1
    BAD_ARGUMENT = 2
    SERIALIZATION_FAILURE = 3
    PARSE_FAILURE = 4
    BAD_EXPRESSION = 5
    INVALID_MEMORY_ACCESS = 6
    EMPTY = 7
    CAS_MISMATCH = 8
    RESULT_MISMATCH = 9
    INTERNAL_FAILURE = 10
    BROKEN_CONNECTION = 11
    UNIMPLEMENTED = 12


class Action(IntEnum):
    CONTINUE = 0
    PAUSE = 1


class LogLevel(IntEnum):
    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4
    CRITICAL = 5


class MapType(IntEnum):
    HTTP_REQUEST_HEADERS = 0
    HTTP_REQUEST_TRAILERS = 1
    HTTP_RESPONSE_HEADERS = 2
    HTTP_RESPONSE_TRAILERS = 3
    GRPC_CALL_INITIAL_METADATA = 4
    GRPC_CALL_TRAILING_METADATA = 5
    HTTP_CALL_RESPONSE_HEADERS = 6
    HTTP_CALL_RESPONSE_TRAILERS = 7


class BufferType(IntEnum):
    HTTP_REQUEST_BODY = 0
    HTTP_RESPONSE_BODY = 1
    DOWNSTREAM_DATA = 2
    UPSTREAM_DATA = 3
    HTTP_CALL_RESPONSE_BODY = 4
    GRPC_CALL_MESSAGE = 5
    VM_CONFIGURATION = 6
    PLUGIN_CONFIGURATION = 7
    FOREIGN_FUNCTION_ARGUMENTS = 8


class StreamType(IntEnum):
    HTTP_REQUEST = 0
    HTTP_RESPONSE = 1
    DOWNSTREAM = 2
    UPSTREAM = 3


class MetricType(IntEnum):
    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2


class PeerType(IntEnum):
    UNKNOWN = 0
    LOCAL = 1
    REMOTE = 2


class WasiErrno(IntEnum):
    SUCCESS = 0
    BADF = 8
    FAULT = 21
    INVAL = 28
    NOSYS = 52
    NOTSUP = 58


class WasiFd(IntEnum):
    STDOUT = 1
    STDERR = 2


class WasiClock(IntEnum):
    REALTIME = 0
    MONOTONIC = 1


Pairs = list[tuple[bytes, bytes]]

_U32 = struct.Struct("<I")


class MapFormatError(ValueError):
    """A serialized header map does not follow the spec's layout."""


def encode_map(pairs: Pairs) -> bytes:
    """Serialize header pairs: count, (key_len, value_len)*, then key\\0value\\0 each."""
    if not pairs:
        return b""
    sizes = [_U32.pack(len(pairs))]
    data = []
    for key, value in pairs:
        sizes.append(struct.pack("<II", len(key), len(value)))
        data.append(key)
        data.append(b"\0")
        data.append(value)
        data.append(b"\0")
    return b"".join(sizes) + b"".join(data)


def encoded_map_size(pairs: Pairs) -> int:
    """len(encode_map(pairs)), without building it."""
    if not pairs:
        return 0
    return 4 + 10 * len(pairs) + sum(map(len, chain.from_iterable(pairs)))


def decode_map(raw: bytes) -> Pairs:
    """Parse a serialized header map; an empty value or a single NUL is the empty map."""
    if len(raw) <= 1:
        return []
    if len(raw) < 4:
        raise MapFormatError("map shorter than its pair count")
    (count,) = _U32.unpack_from(raw, 0)
    header_end = 4 + 8 * count
    if header_end > len(raw):
        raise MapFormatError(f"map declares {count} pairs but has only {len(raw)} bytes")
    pairs: Pairs = []
    pos = header_end
    for i in range(count):
        key_len, value_len = struct.unpack_from("<II", raw, 4 + 8 * i)
        key_end = pos + key_len
        value_end = key_end + 1 + value_len
        if value_end + 1 > len(raw):
            raise MapFormatError(f"pair {i} runs past the end of the map")
        pairs.append((raw[pos:key_end], raw[key_end + 1 : value_end]))
        pos = value_end + 1
    return pairs


def split_property_path(raw: bytes) -> tuple[bytes, ...]:
    """Property paths are segments joined by NUL (Envoy also accepts dots in one segment)."""
    segments = [s for s in raw.split(b"\0") if s]
    if len(segments) == 1 and b"." in segments[0]:
        segments = segments[0].split(b".")
        if len(segments) > 3 and tuple(segments[:2]) in _MAP_ATTRIBUTES:
            # A header name may hold dots: request.headers.x.y is header "x.y".
            segments = segments[:2] + [b".".join(segments[2:])]
    return tuple(segments)


_MAP_ATTRIBUTES = frozenset({(b"request", b"headers"), (b"response", b"headers"), (b"response", b"trailers")})
