"""The app factory: everything the gateway owns is created here, per app."""

from __future__ import annotations

import contextlib
import logging
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from routeiq import __version__
from routeiq.config import ConfigError, LoadedConfig, UpstreamConfig
from routeiq.dispatch.plugin import ProxyWasmPlugin
from routeiq.runtime.errors import PluginError
from routeiq.runtime.wasm_runtime import WasmRuntime

from .embedded_upstream import create_embedded_upstream
from .plugin_filter import PluginFilter
from .plugin_logs import PluginLogBook
from .reverse_proxy import ReverseProxy

log = logging.getLogger("routeiq.gateway")


class PluginStartupError(ConfigError):
    """A configured plugin could not be loaded or started."""


class Gateway:
    """The state one app owns: runtime, plugins, upstream, plugin logs."""

    def __init__(self, config: LoadedConfig) -> None:
        self.config = config
        self.logs = PluginLogBook()
        self.runtime = WasmRuntime(config.engine_settings(), config.cache_dir())
        self.plugins: list[ProxyWasmPlugin] = []
        try:
            for spec in config.plugin_specs():
                where = f"{config.path or '<config>'}: plugin {spec.name!r} ({spec.wasm_path})"
                try:
                    plugin = ProxyWasmPlugin(spec, self.runtime, self.logs)
                    plugin.start()
                except PluginError as exc:
                    raise PluginStartupError(f"{where}: {exc}") from None
                self.plugins.append(plugin)
                log.info("plugin %s loaded (ABI %s, sha256 %s)", spec.name, plugin.abi_version, plugin.sha256[:12])
        except BaseException:
            self.close()
            raise
        upstream = config.model.upstream
        self.reverse_proxy: ReverseProxy | None = None
        if isinstance(upstream, UpstreamConfig):
            self.reverse_proxy = ReverseProxy(upstream.url, upstream.timeout_s, upstream.connect_timeout_s, upstream.max_connections)
            self.upstream_app: Any = self.reverse_proxy
            self.upstream_name = upstream.url
        else:
            self.upstream_app = create_embedded_upstream()
            self.upstream_name = "embedded"
        self.filter = PluginFilter(self.upstream_app, self.plugins)

    def plugin(self, name: str) -> ProxyWasmPlugin:
        return next(p for p in self.plugins if p.spec.name == name)

    def health(self) -> dict[str, Any]:
        plugins = [p.describe() for p in self.plugins]
        degraded = any(p["state"] != "ready" for p in plugins)
        return {"status": "degraded" if degraded else "ok", "version": __version__, "upstream": self.upstream_name, "plugins": plugins}

    async def aclose(self) -> None:
        if self.reverse_proxy is not None:
            await self.reverse_proxy.aclose()
        self.close()

    def close(self) -> None:
        for plugin in self.plugins:
            plugin.close()
        self.runtime.close()


def create_app(config: LoadedConfig) -> Starlette:
    gateway = Gateway(config)

    async def health(_: Request) -> JSONResponse:
        # Plugin failures degrade the report but the gateway itself is up: 200 either way.
        return JSONResponse(gateway.health())

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await gateway.aclose()

    app = Starlette(
        routes=[Route("/health", health, methods=["GET"]), Mount("/", app=gateway.filter)],
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app
