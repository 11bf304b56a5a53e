"""The app factory: everything the gateway owns is created here, per app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send

from routeiq.admin.api import admin_routes
from routeiq.admin.auth import AdminKey
from routeiq.admin.keys_api import key_routes
from routeiq.admin.sessions import ConsoleSessions, session_secret
from routeiq.console.pages import Console
from routeiq.console.series import LiveSeries
from routeiq.console.views import ConsoleSources
from routeiq.config import ConfigError, LoadedConfig, RouteClusterUpstream, RouteUrlUpstream, UpstreamConfig, config_bytes
from routeiq.dispatch.hook_stats import LatencyHistogram
from routeiq.error_responses import exception_handlers, send_error
from routeiq.dispatch.plugin import ProxyWasmPlugin
from routeiq.dispatch.quarantine import Clock
from routeiq.hostcalls.header_rules import HeaderLimits
from routeiq.hostcalls.state import HostServices
from routeiq.llm.api import LlmApi
from routeiq.llm.assembly import LlmSwitch, build_llm, llm_dispatch
from routeiq.llm.mock_provider import MockProvider
from routeiq.llm.router import LlmRouter
from routeiq.llm.routing_replication import SharedRouting, build_shared_routing
from routeiq.llm.telemetry import LlmTelemetry
from routeiq.mcp.server import AsgiEndpoint, McpGateway
from routeiq.mcp.tools import ToolSet
from routeiq.mcp.registration import ToolRegistry
from routeiq.mcp.registration_api import tool_admin_routes
from routeiq.mcp.upstream import UpstreamSet
from routeiq.native.loader import load_native
from routeiq.native.middleware import NativePlugins
from routeiq.native.plugin import GatewayPlugin
from routeiq.runtime.errors import PluginError
from routeiq.runtime.wasm_runtime import WasmRuntime
from routeiq.services.audit import AuditLog
from routeiq.services.breakers import BreakerBoard, BreakerSettings
from routeiq.services.callout import CalloutClient, Resolver
from routeiq.services.clusters import ClusterTable
from routeiq.services.http_client import HttpClient
from routeiq.services.plugin_metrics import PluginMetrics
from routeiq.services.replica_record import ReplicaRecord
from routeiq.services.shared_store import InMemoryStore, RedisStore, SharedStore

from routeiq.gateway.config_watch import ConfigFile, ConfigWatcher, StaticConfigFile
from routeiq.gateway.embedded_upstream import create_embedded_upstream
from routeiq.gateway.events import GatewayEvents
from routeiq.gateway.front_door_auth import FrontDoorAuth
from routeiq.gateway.health import HealthReport
from routeiq.gateway.identity import Identity
from routeiq.gateway.load_shedding import ConcurrencyLimit
from routeiq.gateway.metrics_endpoint import GatewayCollector, metrics_endpoint
from routeiq.gateway.operator_changes import OperatorChanges
from routeiq.gateway.operator_state import OperatorState
from routeiq.gateway.plugin_filter import PluginFilter
from routeiq.gateway.plugin_logs import PluginLogBook
from routeiq.gateway.plugin_set import PluginSet, PluginStartupError
from routeiq.gateway.request_limits import ADMIN_PREFIX, RequestLimits
from routeiq.gateway.replica_sync import ReplicaSync, node_id
from routeiq.gateway.reverse_proxy import ClusterProxy, ReverseProxy
from routeiq.gateway.route_table import RouteTable, compile_route
from routeiq.gateway.routing import PrefixedRoutes
from routeiq.gateway.tracing import Tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("routeiq.gateway")


class Gateway:
    """The composition root: builds everything one app owns, in dependency order, each part
    given what it needs at construction (the admin API, /metrics, /health and the config
    watcher get narrow parts, never this object); owns their start and shutdown."""

    def __init__(
        self, config: LoadedConfig, span_exporter: "SpanExporter | None" = None, resolver: Resolver | None = None, clock: Clock = time.monotonic,
        several_workers: bool = False,
    ) -> None:
        self.config = config
        self._clock = clock  # breakers, quarantine windows, rpm minutes (also of a reloaded LLM path)
        for warning in config.warnings:  # LiteLLM settings without a RouteIQ meaning
            logging.getLogger("routeiq.config").warning("%s", warning)
        self.logs = PluginLogBook()
        self.routing: SharedRouting | None = None  # set once the LLM path is built (close() may run before)
        self.tracing = Tracing(config, span_exporter)
        upstream = config.model.upstream
        # The one outbound HTTP stack: pass-through, reverse proxy, callouts, webhooks.
        self.http = HttpClient(max_per_host=upstream.max_connections if isinstance(upstream, UpstreamConfig) else 100)
        self.events = GatewayEvents(config, self.http)
        self.breakers = BreakerBoard(BreakerSettings(**config.model.router.breaker.model_dump()), self._breaker_changed, clock)
        # The operator's named upstreams, each with its own pool: callouts reach them by name.
        self.clusters = ClusterTable(config.clusters())
        self.services = HostServices(
            store=_store(config, self.breakers),
            metrics=PluginMetrics(config.stats_tag_rules()),
            audit=AuditLog(config.audit_path()),
            callouts=CalloutClient(self.breakers, resolver, self.http, self.clusters),
        )
        self.runtime = WasmRuntime(config.engine_settings(), config.cache_dir())
        self.policy = config.load_policy()
        self.operator_state = OperatorState(config.resolve(config.model.admin.state_dir))
        self.admin_keys = [AdminKey(k.name, k.sha256, k.role) for k in config.model.admin.keys]
        self.request_latency = LatencyHistogram()  # timed by the ConcurrencyLimit middleware
        self.request_outcomes: Counter[str] = Counter()  # answers by status class, counted there too
        where = str(config.path or "<config>")
        self.plugin_set = PluginSet(self.runtime, self.policy, self.services, self.logs, self.operator_state, self.events.emit, clock, where)
        watch = config.path is not None and config.model.server.watch_config
        self.config_watcher = ConfigWatcher(config.path, config, self.plugin_set, self.operator_state, on_llm_change=self._reload_llm) if watch and config.path else None
        self.config_file: ConfigFile = self.config_watcher or StaticConfigFile(config)
        record = _replica_record(config)
        self.operator_changes = OperatorChanges(self.plugin_set, self.operator_state, self.config_file, record)
        replicas = config.model.replicas
        self.replica_sync = (
            ReplicaSync(record, self.operator_changes, self.operator_state, self.plugin_set, node_id(replicas.node_name), replicas.poll_s, replicas.node_ttl_s)
            if record is not None
            else None
        )
        self.native: list[tuple[GatewayPlugin, bool]] = []
        self.tool_set: ToolSet | None = None
        try:
            if self.replica_sync is not None:  # a node that missed changes starts with them
                self.replica_sync.catch_up()
            self.plugin_set.load(config.plugin_specs())
            self.operator_changes.started()
            self.native = self._load_native()
            # MCP tools: sandboxed like plugins, granted from the policy's `tools:`.
            self.tool_set = ToolSet(config, self.runtime, self.policy, self.services, self.logs, self.tracing.tracer)
            # ...and the tools operators registered through /admin/tools (state dir, cluster record).
            self.tool_registry = ToolRegistry(self.tool_set, self.operator_changes, self.operator_state)
            self.tool_registry.load_saved()
            if self.replica_sync is not None:
                self.replica_sync.followers["tools"] = self.tool_registry.follow
                if self.tool_registry.errors:  # recorded tools this node refuses: not converged, and says why
                    self.replica_sync.errors["tools"] = "; ".join(f"tool {n}: {why}" for n, why in sorted(self.tool_registry.errors.items()))
        except BaseException:
            self.close()
            raise
        self.reverse_proxy: ReverseProxy | None = None
        self.mock = MockProvider()
        if isinstance(upstream, UpstreamConfig):
            self.reverse_proxy = ReverseProxy(upstream.url, self.http, upstream.timeout_s, upstream.connect_timeout_s)
            self.upstream_app: Any = self.reverse_proxy
            self.upstream_name = upstream.url
        else:
            self.upstream_app = create_embedded_upstream(self.mock)
            self.upstream_name = "embedded"
        tracer = self.tracing.tracer
        # GenAI metrics (llm/telemetry.py): on this app's own registry, read by /metrics.
        self.llm_telemetry: LlmTelemetry | None = None
        self.identity = Identity.build(config, self.operator_state.directory) if config.model.keys.enabled else None
        meter = self.identity.authenticator if self.identity is not None else None
        try:
            llm = build_llm(config, self.breakers, self.mock, self.http, tracer, self.events, [p for p, _ in self.native], clock=clock, meter=meter)
            self.llm_telemetry = llm.telemetry if llm is not None else None
        except BaseException:
            self.close()
            raise
        self.llm_switch = LlmSwitch(llm) if llm is not None else None
        # Outcomes, feedback and the trained artifact, shared with the other nodes (kv: redis).
        self.routing = build_shared_routing(config, self._router) if llm is not None else None
        server = config.model.server
        header_limits = HeaderLimits(server.max_request_headers_count, server.max_request_headers_kb * 1024)
        plugins = self.plugin_set.plugins
        default_app = llm_dispatch(self.llm_switch, self.upstream_app) if self.llm_switch is not None else self.upstream_app
        try:
            self.route_table = self._route_table(default_app)
            self.plugin_set.load_routes(self.route_table.routes)
        except BaseException:
            self.close()
            raise
        llm = self.llm
        models = frozenset(llm.router.groups) if llm is not None else None
        assert self.tool_set is not None  # built with the plugins above
        mcp = config.model.mcp
        self.mcp_upstreams = UpstreamSet(mcp.servers, self.breakers, mcp.max_output_bytes) if mcp.servers else None
        if self.mcp_upstreams is not None:
            self.tool_set.more_stats.append(self.mcp_upstreams.stats)
        # A stateful MCP session lives in one worker; with several on one port, the next
        # request of a session may reach another: there, each request stands alone.
        stateless = mcp.stateless if mcp.stateless is not None else several_workers
        self.mcp = McpGateway(self.tool_set, mcp, self.admin_keys, self.identity.authenticator if self.identity is not None else None, upstreams=self.mcp_upstreams, stateless=stateless)
        front_door = FrontDoorAuth(self.identity.authenticator, config.model.keys.require_on) if self.identity is not None else None
        self.filter = PluginFilter(default_app, plugins, models, tracer, self.events, header_limits, self.route_table, self.plugin_set.chain_for, front_door)
        router = llm.router if llm is not None else None
        self.health = HealthReport(
            self.plugin_set, [p for p, _ in self.native], self.breakers, self.upstream_name, router, self.config_watcher, self.events, self.replica_sync, self.identity,
            mcp_servers=self.mcp_upstreams,
        )
        self.metrics = GatewayCollector(self.plugin_set, self.services, self.breakers, self.request_latency, router, self.llm_telemetry, meter)
        console = config.model.admin.console
        # Console sessions are also accepted by the admin API (cookie + CSRF token).
        state_dir = self.operator_state.directory
        self.sessions = (
            ConsoleSessions(self.admin_keys, lambda: session_secret(console.session_secret, state_dir), console.session_ttl_s, self.services.store)
            if console.enabled
            else None
        )
        self.console: Console | None = None
        if console.enabled and self.sessions is not None:
            self.live_series = LiveSeries(self.request_latency, self.request_outcomes, self.plugin_set, self.services.audit, console.poll_s)
            sources = ConsoleSources(
                plugins=self.plugin_set,
                audit=self.services.audit,
                breakers=self.breakers,
                series=self.live_series,
                router=self._router,
                routing=self.routing,
                replicas=self.replica_sync,
                keys=self.identity.store if self.identity is not None else None,
                ledger=self.identity.ledger if self.identity is not None else None,
                tools=self.tool_set,
            )
            self.console = Console(sources, self.sessions, self.admin_keys, console)

    @property
    def llm(self) -> LlmApi | None:
        """The LLM API in service (a live reload swaps it)."""
        return self.llm_switch.api if self.llm_switch is not None else None

    def _router(self) -> LlmRouter | None:
        llm = self.llm
        return llm.router if llm is not None else None

    def _reload_llm(self, fresh: LoadedConfig) -> str | None:
        """The config watcher saw `model_list`, `router` or `mock` change: build the LLM
        path anew and swap it in (requests in flight finish on the old one). Returns what
        needs a restart instead (None: applied); ConfigError if the new one cannot be built."""
        if self.llm_switch is None or not fresh.model.model_list:
            return "model_list added or removed (the LLM routes are wired at startup)"
        meter = self.identity.authenticator if self.identity is not None else None
        api = build_llm(fresh, self.breakers, self.mock, self.http, self.tracing.tracer, self.events, [p for p, _ in self.native], self.llm_telemetry, self._clock, meter)
        assert api is not None  # fresh has a model_list
        self.llm_switch.swap(api)
        if self.routing is not None:
            self.routing.adopt(api.router)
        self.filter.llm_models = frozenset(api.router.groups)
        self.health.router = api.router
        self.metrics.router = api.router
        if fresh.model.router.breaker != self.config.model.router.breaker:
            return "router.breaker (breakers keep the settings they started with; model_list and the rest of router were applied)"
        return None

    @property
    def plugins(self) -> list[ProxyWasmPlugin]:
        return self.plugin_set.plugins

    def plugin(self, name: str) -> ProxyWasmPlugin:
        return self.plugin_set.plugin(name)

    def _load_native(self) -> list[tuple[GatewayPlugin, bool]]:
        """Native plugins (trusted tier): the policy is checked before anything is imported."""
        loaded = []
        for entry in self.config.native_plugins():
            config = entry.config if isinstance(entry.config, dict) else {}
            try:
                plugin = load_native(entry.name, entry.python or "", config, self.policy, self.config.base_dir)
            except PluginError as exc:
                if entry.on_startup_failure == "abort":
                    raise PluginStartupError(f"{self.config.path or '<config>'}: plugin {entry.name!r}: {exc}") from None
                log.error("plugin %s: %s; continuing without it", entry.name, exc)
                self.plugin_set.failed.append({"name": entry.name, "state": "failed", "last_error": str(exc)})
                continue
            loaded.append((plugin, entry.fail_open))
        return loaded

    def _route_table(self, default_app: Any) -> RouteTable:
        """The configured routes, each with the ASGI app its requests go to."""
        where = str(self.config.path or "<config>")
        compiled = []
        for i, spec in enumerate(self.config.model.routes):
            upstream = spec.upstream
            cluster_name = None
            if isinstance(upstream, RouteClusterUpstream):
                cluster = self.clusters.get(upstream.cluster)
                assert cluster is not None  # the config checked the name
                app: Any = ClusterProxy(cluster, self.clusters)
                cluster_name = cluster.name
            elif isinstance(upstream, RouteUrlUpstream):
                app = ReverseProxy(upstream.url, self.http, upstream.timeout_s, upstream.connect_timeout_s)
            elif upstream == "llm":
                if self.llm_switch is None:
                    raise ConfigError(f"{where}: routes[{i}].upstream: `llm` needs a model_list")
                app = llm_dispatch(self.llm_switch, _no_route)
            elif upstream == "embedded":
                app = create_embedded_upstream(self.mock)
            else:
                app = default_app
            compiled.append(compile_route(spec, app, cluster_name, config_bytes))
        return RouteTable(compiled)

    def _breaker_changed(self, name: str, old: str, new: str) -> None:
        log.warning("circuit breaker %s: %s -> %s", name, old, new)
        if not name.startswith("webhook:"):  # a target's own breaker is not news for it
            self.events.emit("breaker_state_change", {"breaker": name, "from": old, "to": new})

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/health", self.health.endpoint(), methods=["GET"]),
            Route("/metrics", metrics_endpoint(self.metrics, self.mcp.tools), methods=["GET"]),
            # A regex per admin route only for /admin/ paths.
            *self._key_routes(),
            # MCP (/mcp*), tried only for those paths.
            PrefixedRoutes(
                "/mcp",
                [
                    Route("/mcp/tools", AsgiEndpoint(self.mcp.tools_endpoint), methods=["GET"]),
                    Route("/mcp", AsgiEndpoint(self.mcp.mcp_endpoint), methods=["GET", "POST", "DELETE"]),
                    Route("/mcp/sse", AsgiEndpoint(self.mcp.legacy_sse_endpoint), methods=["GET"]),
                    Route("/mcp/messages/", AsgiEndpoint(self.mcp.legacy_messages_endpoint), methods=["POST"]),
                ],
            ),
            PrefixedRoutes(
                ADMIN_PREFIX,
                admin_routes(
                    self.plugin_set, self.operator_changes, self.replica_sync, self.services.audit, self.admin_keys, self.config.model.admin, self.routing,
                    more=tool_admin_routes(self.tool_registry, self.admin_keys, self.config.model.admin, self.replica_sync.node if self.replica_sync is not None else None, self.sessions),
                    sessions=self.sessions,
                ),
            ),
            *([self.console.route()] if self.console is not None else []),
            Mount("/", app=NativePlugins(self.filter, self.native)),
        ]

    def _key_routes(self) -> list[BaseRoute]:
        """LiteLLM-shaped key management (/key/, /team/, /spend/), tried only for those paths."""
        if self.identity is None:
            return []
        routes = key_routes(self.identity.store, self.identity.ledger, self.identity.authenticator, self.admin_keys, self.sessions)
        return [PrefixedRoutes(prefix, [r for r in routes if isinstance(r, Route) and r.path.startswith(prefix)]) for prefix in ("/key/", "/team/", "/spend/")]

    async def start_background(self) -> None:
        """Timers, webhook delivery and the config watcher need the event loop."""
        for native, _ in self.native:
            await native.startup()
        self.plugin_set.start_background()
        await self.events.start(self.breakers)
        if self.routing is not None:
            await self.routing.start()
        await self.mcp.start()
        if self.config_watcher is not None:
            self.config_watcher.start()
        if self.replica_sync is not None:
            self.replica_sync.start()
        if self.identity is not None:
            await self.identity.start()
        if self.console is not None:
            self.live_series.start()

    async def aclose(self) -> None:
        if getattr(self, "console", None) is not None:
            await self.live_series.stop()
        await self.mcp.stop()  # open MCP sessions end before the tools go
        for native, _ in self.native:
            try:
                await native.shutdown()
            except Exception:
                log.exception("native plugin %s failed in shutdown", native.name)
        if self.config_watcher is not None:
            await self.config_watcher.stop()
        if self.replica_sync is not None:
            await self.replica_sync.stop()
        if self.identity is not None:
            await self.identity.stop()  # due charges to the database, or to the outbox
        await self.events.stop()  # flush what is due; the rest stays in the outbox
        if self.routing is not None:
            await asyncio.to_thread(self.routing.stop)  # joins its threads: not on the loop
        await self.http.aclose()
        await self.clusters.aclose()
        self.close()

    def close(self) -> None:
        if getattr(self, "identity", None) is not None:
            self.identity.close()  # type: ignore[union-attr]
        if getattr(self, "replica_sync", None) is not None:
            self.replica_sync.record.close()  # type: ignore[union-attr]
        self.plugin_set.close()
        if getattr(self, "tool_set", None) is not None:
            self.tool_set.close()  # type: ignore[union-attr]
        self.runtime.close()
        self.tracing.shutdown()
        self.services.store.close()
        self.services.audit.close()
        if self.routing is not None:
            self.routing.stop()


async def _no_route(scope: Scope, receive: Receive, send: Send) -> None:
    """An `upstream: llm` route's answer for a path the LLM API does not serve."""
    await send_error(send, 404, f"no LLM endpoint {scope['path']}", "invalid_request_error", "route_not_found")


def _replica_record(config: LoadedConfig) -> ReplicaRecord | None:
    """The shared record of operator changes, when replicas share one (kv: redis)."""
    kv = config.model.kv
    if kv.backend != "redis" or not config.model.replicas.share_operator_state:
        return None
    assert kv.url is not None
    return ReplicaRecord(kv.url, kv.prefix, kv.timeout_s)


def _store(config: LoadedConfig, breakers: BreakerBoard) -> SharedStore:
    kv = config.model.kv
    if kv.backend == "redis":
        assert kv.url is not None
        return RedisStore(kv.url, kv.prefix, kv.timeout_s, breakers)
    return InMemoryStore()


def create_app(
    config: LoadedConfig, span_exporter: "SpanExporter | None" = None, resolver: Resolver | None = None, clock: Clock = time.monotonic, several_workers: bool = False
) -> Starlette:
    """The gateway app. `span_exporter` (tests) receives spans synchronously; `resolver`
    resolves callout names (the event loop's getaddrinfo by default); `clock` (monotonic
    seconds) times the circuit breakers and the quarantine windows; `several_workers`: this
    process is one of several sharing a port (MCP sessions then cannot stay in one)."""
    gateway = Gateway(config, span_exporter, resolver, clock, several_workers)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await gateway.start_background()
        try:
            yield
        finally:
            await gateway.aclose()

    app = Starlette(
        middleware=[
            Middleware(RequestLimits, max_body_bytes=config.model.server.max_request_body_bytes),
            Middleware(
                ConcurrencyLimit,
                limit=config.model.server.max_concurrency,
                latency=gateway.request_latency,
                telemetry=gateway.llm_telemetry,
                access_log=config.model.server.access_log,
                outcomes=gateway.request_outcomes,
            ),
        ],
        routes=gateway.routes(),
        lifespan=lifespan,
        exception_handlers=exception_handlers(),
    )
    app.state.gateway = gateway
    return app


def tune_gc_for_serving() -> None:
    """Keep the cyclic GC off the request path of a serving process.

    Everything built so far (imports, config, compiled plugins) is frozen out of the
    collector's reach, and young collections run every 10,000 allocations instead of 700:
    under load, full collections walking startup objects paused a worker ~100 ms about
    once a second. Measured with 3 plugins at 32 connections: p99 146 -> 35-43 ms, RPS
    +30% (docs/plugin-host.md). Serving processes only; create_app never does this, so
    tests that build many apps in one process are unaffected."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


CONFIG_ENV = "ROUTEIQ_CONFIG"
POLICY_ENV = "ROUTEIQ_POLICY"


def create_app_from_environment() -> Starlette:
    """Factory for `uvicorn --factory` and multi-worker serving: each worker process
    builds its own app from the files named in the environment."""
    import os

    from routeiq.config import load_config

    config = load_config(os.environ[CONFIG_ENV], os.environ.get(POLICY_ENV) or None)
    app = create_app(config, several_workers=True)
    tune_gc_for_serving()
    return app
