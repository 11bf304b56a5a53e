"""/admin routes. Roles: viewer (read), operator (config, quarantine), admin (modules).

Authenticate with `Authorization: Bearer <key>` (or `x-routeiq-admin-key`). The OpenAPI
description is at /admin/openapi.json."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Awaitable, Callable

import jsonschema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.schemas import SchemaGenerator

from routeiq.runtime.errors import PluginError

from .auth import AdminKey, allows, authenticate

if TYPE_CHECKING:
    from routeiq.gateway.app import Gateway

MAX_MODULE_BYTES = 64 * 1024 * 1024

schemas = SchemaGenerator({"openapi": "3.0.0", "info": {"title": "RouteIQ admin API", "version": "1"}})


def _error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "admin_error", "code": code}}, status_code=status)


Handler = Callable[[Request], Awaitable[Response]]


def admin_routes(gateway: "Gateway") -> list[Route]:
    keys: list[AdminKey] = gateway.admin_keys

    def guarded(role: str, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            presented = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-routeiq-admin-key")
            key = authenticate(keys, presented)
            if key is None:
                return _error(401, "a valid admin API key is required", "unauthenticated")
            if not allows(key.role, role):
                return _error(403, f"role {key.role!r} may not do this (needs {role})", "forbidden")
            request.state.admin_key = key
            return await handler(request)

        endpoint.__doc__ = handler.__doc__
        return endpoint

    def plugin_or_404(request: Request):  # type: ignore[no-untyped-def]
        name = request.path_params["name"]
        try:
            return gateway.plugin(name)
        except StopIteration:
            return None

    async def list_plugins(_: Request) -> Response:
        """
        summary: List plugins with their state, traps and quarantine
        responses: {200: {description: plugins}}
        """
        return JSONResponse({"plugins": [p.describe() for p in gateway.plugins]})

    async def get_plugin(request: Request) -> Response:
        """
        summary: One plugin - metadata, config, health, per-hook latency percentiles, fuel, traps, denials
        responses: {200: {description: the plugin}, 404: {description: no such plugin}}
        """
        plugin = plugin_or_404(request)
        if plugin is None:
            return _error(404, f"no plugin {request.path_params['name']!r}", "not_found")
        manifest = plugin.admission.manifest
        denials: dict[str, int] = {}
        for (name, call, reason), count in gateway.services.audit.counts.items():
            if name == plugin.spec.name:
                denials[f"{call}:{reason}"] = count
        return JSONResponse(
            {
                **plugin.describe(),
                "metadata": manifest.model_dump(mode="json", exclude_none=True),
                "config": plugin.spec.plugin_config.decode("utf-8", "replace"),
                "hooks": plugin.hooks.describe(),
                "denials": denials,
            }
        )

    async def get_schema(request: Request) -> Response:
        """
        summary: The JSON schema of a plugin's configuration (from its manifest)
        responses: {200: {description: schema}, 404: {description: none}}
        """
        plugin = plugin_or_404(request)
        if plugin is None:
            return _error(404, f"no plugin {request.path_params['name']!r}", "not_found")
        schema = (plugin.admission.manifest.model_extra or {}).get("config_schema")
        if schema is None:
            return _error(404, f"plugin {plugin.spec.name!r} declares no config_schema in its manifest", "no_schema")
        return JSONResponse(schema)

    async def put_config(request: Request) -> Response:
        """
        summary: Replace a plugin's configuration - validated, applied live through proxy_on_configure, persisted
        responses: {200: {description: applied}, 400: {description: invalid or refused by the plugin}}
        """
        plugin = plugin_or_404(request)
        if plugin is None:
            return _error(404, f"no plugin {request.path_params['name']!r}", "not_found")
        raw = await request.body()
        try:
            document = json.loads(raw)
        except json.JSONDecodeError as exc:
            return _error(400, f"the body must be JSON: {exc.msg}", "invalid_json")
        schema = (plugin.admission.manifest.model_extra or {}).get("config_schema")
        if schema is not None:
            try:
                jsonschema.validate(document, schema)
            except jsonschema.ValidationError as exc:
                where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
                return _error(400, f"config {where}: {exc.message}", "schema_violation")
        config = json.dumps(document, separators=(",", ":")).encode()
        try:
            plugin.reconfigure(config)
        except PluginError as exc:
            return _error(400, f"the plugin refused the configuration: {exc}", "rejected_by_plugin")
        gateway.admin_state.save_config(plugin.spec.name, config)
        return JSONResponse({"ok": True, "plugin": plugin.spec.name, "config": document})

    async def post_module(request: Request) -> Response:
        """
        summary: Hot-swap a plugin's module (body - the .wasm). In-flight requests finish on the old VM; a failing module is rolled back
        responses: {200: {description: swapped}, 400: {description: refused, nothing changed}}
        """
        name = request.path_params["name"]
        if plugin_or_404(request) is None:
            return _error(404, f"no plugin {name!r}", "not_found")
        wasm = await request.body()
        if not wasm or len(wasm) > MAX_MODULE_BYTES:
            return _error(400, f"send the module as the body (at most {MAX_MODULE_BYTES} bytes)", "bad_module")
        try:
            plugin = gateway.swap_module(name, wasm)
        except PluginError as exc:
            return _error(400, f"module refused, the old one stays: {exc}", "module_refused")
        return JSONResponse({"ok": True, "plugin": name, "sha256": plugin.sha256})

    async def quarantine(request: Request) -> Response:
        """
        summary: Quarantine a plugin now (skipped, or 503 if not fail_open) until released
        responses: {200: {description: quarantined}}
        """
        plugin = plugin_or_404(request)
        if plugin is None:
            return _error(404, f"no plugin {request.path_params['name']!r}", "not_found")
        plugin.quarantine(f"by operator {request.state.admin_key.name}", manual=True)
        return JSONResponse({"ok": True, **plugin.describe()})

    async def release(request: Request) -> Response:
        """
        summary: Release a quarantined plugin
        responses: {200: {description: released}}
        """
        plugin = plugin_or_404(request)
        if plugin is None:
            return _error(404, f"no plugin {request.path_params['name']!r}", "not_found")
        plugin.release(f"by operator {request.state.admin_key.name}")
        return JSONResponse({"ok": True, **plugin.describe()})

    routes = [
        Route("/admin/plugins", guarded("viewer", list_plugins), methods=["GET"]),
        Route("/admin/plugins/{name}", guarded("viewer", get_plugin), methods=["GET"]),
        Route("/admin/plugins/{name}/schema", guarded("viewer", get_schema), methods=["GET"]),
        Route("/admin/plugins/{name}/config", guarded("operator", put_config), methods=["PUT"]),
        Route("/admin/plugins/{name}/module", guarded("admin", post_module), methods=["POST"]),
        Route("/admin/plugins/{name}/quarantine", guarded("operator", quarantine), methods=["POST"]),
        Route("/admin/plugins/{name}/release", guarded("operator", release), methods=["POST"]),
    ]

    async def openapi(request: Request) -> Response:
        return JSONResponse(schemas.get_schema(routes))

    return routes + [Route("/admin/openapi.json", openapi, methods=["GET"], include_in_schema=False)]


__all__ = ["admin_routes"]
