"""The only module that touches the componentize-py bindings of the routeiq:tool world
(`wit_world`, generated at build time). Byte payloads are latin-1 strings, as in the
filter SDK (routeiq_guest._bindings)."""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types

Status = types.Status
LogLevel = types.LogLevel
MetricType = types.MetricType
AbortReason = types.AbortReason
ToolExport = exports.Tool


def from_wire(text: str) -> bytes:
    return text.encode("latin-1")


def to_wire(data: bytes) -> str:
    return data.decode("latin-1")


__all__ = ["Err", "host", "Status", "LogLevel", "MetricType", "AbortReason", "ToolExport", "from_wire", "to_wire"]
