"""The base of the host-call meaning classes (one per concept: headers, buffers, ...).

A meaning method is named after the proxy-wasm call it implements and works on plain
values: it returns a status, or (status, value) when the call answers a value. The ABI
adapters (proxy_abi for core modules, component_abi for components) only move those
values in and out of the guest.
"""

from __future__ import annotations

from typing import Mapping

from routeiq.abi.capabilities import Capability
from routeiq.abi.proxy_wasm import Status

from .state import HostEnv


class CallGroup:
    """Host calls of one concept, for one VM. `names` maps a proxy-wasm name to the name
    the guest's ABI gives the call (a component calls `get-shared-data`), so the audit
    log names what the plugin author wrote."""

    def __init__(self, env: HostEnv, names: Mapping[str, str] | None = None) -> None:
        self.env = env
        self._names = names or {}

    def deny(self, call: str, reason: str, detail: str, status: Status) -> int:
        return self.env.deny(self._names.get(call, call), reason, detail, status)

    def require(self, call: str, capability: Capability) -> int | None:
        """None if granted, else the audited denial (UNIMPLEMENTED); for gates an argument
        decides (body buffers). Whole calls are gated when they are linked."""
        if capability in self.env.grant.capabilities:
            return None
        return self.deny(call, "capability", f"{capability.value} is not granted", Status.UNIMPLEMENTED)
