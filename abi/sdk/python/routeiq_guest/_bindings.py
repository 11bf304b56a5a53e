"""The only module that touches the componentize-py generated bindings (`wit_world`,
generated from abi/wit/routeiq-filter.wit at build time). Everything else in the SDK
goes through the names defined here.

Byte payloads cross the boundary as the world's `byte-string`: a `str` with one code
point per byte (latin-1), because the host copies a string across in one piece but a
`list<u8>` one value per byte. `to_wire` / `from_wire` convert; authors only see bytes.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types

Status = types.Status
Action = types.Action
LogLevel = types.LogLevel
MapType = types.MapType
BufferType = types.BufferType
StreamType = types.StreamType
MetricType = types.MetricType
Hooks = types.Hooks
AbortReason = types.AbortReason
FilterExport = exports.Filter


def to_wire(data: bytes | bytearray) -> str:
    """Bytes as a byte-string (U+0000..U+00FF, one code point per byte)."""
    return data.decode("latin-1")


def from_wire(text: str) -> bytes:
    """The bytes a byte-string carries."""
    return text.encode("latin-1")


__all__ = [
    "Err", "host", "Status", "Action", "LogLevel", "MapType", "BufferType", "StreamType",
    "MetricType", "Hooks", "AbortReason", "FilterExport", "to_wire", "from_wire",
]
