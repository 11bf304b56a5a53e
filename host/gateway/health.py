"""GET /health: what runs and in what state. Plugin failures degrade the report, but the
gateway itself is up, so it answers 200 either way (load balancers probe liveness)."""

from __future__ import annotations

import logging
import os
from typing import Any, Awaitable, Callable, Protocol, Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from routeiq import __version__
from routeiq.llm.router import LlmRouter
from routeiq.native.plugin import GatewayPlugin
from routeiq.services.breakers import BreakerBoard

from .config_watch import ConfigWatcher
from .events import GatewayEvents
from .plugin_set import PluginSet
from .identity import Identity
from .replica_sync import ReplicaSync

log = logging.getLogger("routeiq.gateway")


class UpstreamStatus(Protocol):
    """What /health asks of the MCP gateway's upstream servers (routeiq.mcp, a layer above)."""

    def status(self) -> dict[str, Any]: ...

    def degraded(self) -> bool: ...


class HealthReport:
    def __init__(
        self,
        plugins: PluginSet,
        native: Sequence[GatewayPlugin],
        breakers: BreakerBoard,
        upstream_name: str,
        router: LlmRouter | None,
        watcher: ConfigWatcher | None,
        events: GatewayEvents,
        replicas: ReplicaSync | None = None,
        identity: Identity | None = None,
        mcp_servers: UpstreamStatus | None = None,
    ) -> None:
        self.mcp_servers = mcp_servers
        self.replicas = replicas
        self.identity = identity
        self.plugins = plugins
        self.native = native
        self.breakers = breakers
        self.upstream_name = upstream_name
        self.router = router
        self.watcher = watcher
        self.events = events

    def wasm_report(self) -> dict[str, Any]:
        """The report without asking native plugins (synchronous: no awaits)."""
        plugins = self.plugins.describe()
        report: dict[str, Any] = {
            "status": "degraded" if any(p["state"] != "ready" for p in plugins) else "ok",
            "version": __version__,
            "pid": os.getpid(),
            "upstream": self.upstream_name,
            "plugins": plugins,
            "breakers": {b.name: b.describe() for b in self.breakers.all()},
        }
        if self.router is not None:
            report["routing"] = routing = self.router.describe()
            if routing.get("replication", {}).get("status") == "degraded":  # serving on local routing state
                report["status"] = "degraded"
        if self.watcher is not None:
            report["config"] = self.watcher.status()
        if self.replicas is not None:
            # Redis away: this node serves its last good state, and says so.
            replicas = report["replicas"] = self.replicas.status()
            if replicas["store"] != "ok" or replicas["errors"]:
                report["status"] = "degraded"
        if self.identity is not None:
            keys = report["keys"] = self.identity.status()
            if not keys["migrated"] or keys["spend"]["last_error"]:  # charges wait in the outbox
                report["status"] = "degraded"
        if self.mcp_servers is not None:  # an upstream MCP server not connected: its tools answer errors
            report["mcp_servers"] = self.mcp_servers.status()
            if self.mcp_servers.degraded():
                report["status"] = "degraded"
        webhooks = self.events.stats()
        if webhooks is not None:
            report["webhooks"] = webhooks
        return report

    async def report(self) -> dict[str, Any]:
        report = self.wasm_report()
        for native in self.native:
            try:
                healthy = await native.health_check()
            except Exception as exc:
                healthy = False
                log.warning("native plugin %s health check failed: %s", native.name, exc)
            report["plugins"].append({"name": native.name, "kind": "native", "state": "ready" if healthy else "unhealthy", "version": native.version})
            if not healthy:
                report["status"] = "degraded"
        return report

    def endpoint(self) -> Callable[[Request], Awaitable[Response]]:
        async def health(_: Request) -> Response:
            return JSONResponse(await self.report())

        return health
