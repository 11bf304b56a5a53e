"""GatewayPlugin: the base class of native Python plugins.

Native plugins are the **trusted tier**: they run in the gateway's own process with no
sandbox, no fuel, no memory cap and full access to Python. Only load code you would put in
the gateway itself; the operator policy must name each one (`native: true` and its
`module`) before it is even imported. Everything else should be a Wasm plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class NativeRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names; changes go upstream
    request_id: str


@dataclass
class NativeResponse:
    """Return one from on_request to answer locally."""

    status: int
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class NativeResponseInfo:
    status: int
    headers: dict[str, str]  # lower-case names; changes go to the client


class GatewayPlugin:
    name: ClassVar[str] = ""
    version: ClassVar[str] = "0.1.0"
    description: ClassVar[str] = ""
    capabilities: ClassVar[tuple[str, ...]] = ()  # declared like Wasm plugins (informational here)
    depends_on: ClassVar[tuple[str, ...]] = ()
    priority: ClassVar[int] = 0
    config_schema: ClassVar[dict[str, Any] | None] = None

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    async def startup(self) -> None:
        """Called once when the gateway starts serving."""

    async def shutdown(self) -> None:
        """Called once when the gateway stops."""

    async def health_check(self) -> bool:
        return True

    async def on_request(self, request: NativeRequest) -> NativeResponse | None:
        """Before the Wasm plugins. Return a NativeResponse to answer locally."""
        return None

    async def on_response(self, request: NativeRequest, response: NativeResponseInfo) -> None:
        """When response headers leave the gateway."""

    async def on_llm_pre_call(self, request_id: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Before routing a chat request; return a changed body to replace it."""
        return None

    async def on_llm_success(self, request_id: str, outcome: dict[str, Any]) -> None:
        """After a chat request was answered (deployment, usage, latency)."""

    async def on_llm_failure(self, request_id: str, error: str) -> None:
        """After every deployment failed."""
