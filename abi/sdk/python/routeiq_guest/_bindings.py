"""The only module that touches the componentize-py generated bindings (`wit_world`,
generated from abi/wit/routeiq-filter.wit at build time). Everything else in the SDK
goes through the names defined here."""

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

__all__ = [
    "Err", "host", "Status", "Action", "LogLevel", "MapType", "BufferType", "StreamType",
    "MetricType", "Hooks", "AbortReason", "FilterExport",
]
