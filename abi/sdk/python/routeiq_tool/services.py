"""What a tool may ask the host: its configuration, the clock, shared data (`shared_kv`)
and metrics (`metrics`). A call outside the tool's grant raises HostError with the status
the host answered (`unimplemented`), and the host audits it."""

from __future__ import annotations

import json
from typing import Any

from ._bindings import Err, MetricType, Status, from_wire, host, to_wire


class HostError(Exception):
    """A host call answered a status other than ok (`status`: its WIT name)."""

    def __init__(self, call: str, status: Status) -> None:
        self.status = status
        name = status.name.lower().replace("_", "-")
        super().__init__(f"{call}: {name}")


def _check(call: str, thunk: Any) -> Any:
    try:
        return thunk()
    except Err as err:
        raise HostError(call, err.value) from None


def config() -> bytes:
    """The tool's configuration bytes (`mcp.tools[].config`)."""
    return from_wire(host.get_config())


def config_json() -> Any:
    """The configuration parsed as JSON (None when there is none)."""
    raw = config()
    return json.loads(raw) if raw.strip() else None


def now_ns() -> int:
    return host.get_current_time_nanoseconds()


def kv_get(key: str) -> tuple[bytes | None, int]:
    """(value or None, cas) of a shared-data key in the tool's namespace."""
    entry = _check("get-shared-data", lambda: host.get_shared_data(key))
    return (from_wire(entry.value) if entry.value is not None else None), entry.cas


def kv_set(key: str, value: bytes, cas: int = 0) -> None:
    """Set a key; with `cas` only if it still has that version (else HostError cas-mismatch)."""
    _check("set-shared-data", lambda: host.set_shared_data(key, to_wire(value), cas))


class metric:
    """A counter (or gauge / histogram) the gateway exports on /metrics."""

    def __init__(self, name: str, kind: MetricType = MetricType.COUNTER) -> None:
        self.id = _check("define-metric", lambda: host.define_metric(kind, name))

    def add(self, delta: int = 1) -> None:
        _check("increment-metric", lambda: host.increment_metric(self.id, delta))

    def record(self, value: int) -> None:
        _check("record-metric", lambda: host.record_metric(self.id, value))
