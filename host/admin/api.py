"""/admin routes. Roles: viewer (read), operator (config, quarantine), admin (modules).

Authenticate with `Authorization: Bearer <key>` (or `x-routeiq-admin-key`), or with the
operator console's session cookie, which needs its CSRF token (`x-csrf-token`) on every
request that changes something (docs/console.md). The OpenAPI
description is at /admin/openapi.json. Bodies are read under admin.max_config_bytes /
admin.max_module_bytes (413 past them) and JSON is parsed strictly (400), so nothing
malformed is applied or persisted."""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.schemas import SchemaGenerator

from routeiq.config import AdminConfig
from routeiq.gateway.operator_changes import OperatorChanges
from routeiq.gateway.plugin_set import PluginSet
from routeiq.gateway.replica_sync import ReplicaSync
from routeiq.llm.routing_replication import ArtifactNotStored, SharedRouting
from routeiq.policy.config_schema import ConfigSchemaError, validate_document
from routeiq.runtime.errors import PluginError
from routeiq.services.audit import AuditLog
from routeiq.strategies.artifacts import ArtifactError

from .auth import AdminKey
from .body import BodyRefused, merge_patch, parse_json, read_limited
from .guard import admin_error, admin_guard
from .sessions import ConsoleSessions

MERGE_PATCH_TYPES = ("application/merge-patch+json", "application/json")

schemas = SchemaGenerator({"openapi": "3.0.0", "info": {"title": "RouteIQ admin API", "version": "1"}})


_error = admin_error


def admin_routes(
    plugins: PluginSet,
    changes: OperatorChanges,
    replicas: ReplicaSync | None,
    audit: AuditLog,
    keys: Sequence[AdminKey],
    limits: AdminConfig,
    routing: SharedRouting | None = None,
    more: Sequence[Route] = (),
    sessions: ConsoleSessions | None = None,
) -> list[Route]:
    """`more`: admin routes of parts above this layer (the MCP tools'), served and described
    in /admin/openapi.json with these."""

    guarded = admin_guard(keys, sessions)

    def plugin_or_404(request: Request):  # type: ignore[no-untyped-def]
        name = request.path_params["name"]
        try:
            return plugins.plugin(name)
        except KeyError:
            return None

    async def list_plugins(_: Request) -> Response:
        """
        summary: List plugins with their state, traps and quarantine
        responses: {200: {description: plugins}}
        """
        return JSONResponse({"plugins": [p.describe() for p in plugins.all()]})

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
        for (name, call, reason), count in audit.counts.items():
            if name == plugin.spec.name:
                denials[f"{call}:{reason}"] = count
        return JSONResponse(
            {
                **plugin.describe(),
                "metadata": manifest.model_dump(mode="json", exclude_none=True),
                "config": plugin.spec.plugin_config.decode("utf-8", "replace"),
                "hooks": plugin.hooks.describe(),
                "denials": denials,
                **(await node_views(plugin.spec.name)),
            }
        )

    async def node_views(name: str) -> dict[str, Any]:
        """Which node answered and, with replicas, how the plugin is on each node."""
        here = {"node": replicas.node if replicas is not None else None, "pid": os.getpid()}
        if replicas is None:
            return here
        view = await replicas.view()
        nodes = {n["node"]: {"version": n.get("version"), **n.get("plugins", {}).get(name, {"state": "absent"})} for n in view["nodes"]}
        return {**here, "nodes": nodes}

    async def list_nodes(_: Request) -> Response:
        """
        summary: Every worker and replica sharing this gateway's operator state - the version each runs, each plugin's module, config digest, state and quarantine there, and whether all have converged
        responses: {200: {description: nodes}}
        """
        if replicas is None:
            return JSONResponse({"shared": False, "converged": True, "this_node": None, "pid": os.getpid(), "nodes": []})
        return JSONResponse({"shared": True, "pid": os.getpid(), **(await replicas.view())})

    async def get_schema(request: Request) -> Response:
        """
        summary: The JSON schema of a plugin's configuration (from its manifest)
        responses: {200: {description: schema}, 404: {description: none}}
        """
        plugin = plugin_or_404(request)
        if plugin is None:
            return _error(404, f"no plugin {request.path_params['name']!r}", "not_found")
        schema = plugin.admission.manifest.config_schema
        if schema is None:
            return _error(404, f"plugin {plugin.spec.name!r} declares no config_schema in its manifest", "no_schema")
        return JSONResponse(schema)

    async def apply_config(plugin: Any, document: Any) -> Response:
        """Validate `document` (schema, size), apply it live, then persist it."""
        try:
            validate_document(plugin.admission.manifest.config_schema, document)
        except ConfigSchemaError as exc:
            return _error(400, str(exc), "schema_violation")
        config = json.dumps(document, separators=(",", ":")).encode()
        if len(config) > limits.max_config_bytes:
            return _error(413, f"the resulting config is larger than {limits.max_config_bytes} bytes (admin.max_config_bytes)", "body_too_large")
        try:
            await changes.set_config(plugin.spec.name, config)
        except ConfigSchemaError as exc:
            return _error(400, str(exc), "schema_violation")
        except PluginError as exc:
            return _error(400, f"the plugin refused the configuration: {exc}", "rejected_by_plugin")
        return JSONResponse({"ok": True, "plugin": plugin.spec.name, "config": document})

    async def put_config(request: Request) -> Response:
        """
        summary: Replace a plugin's whole configuration (keys not sent are gone; PATCH merges) - validated against the manifest's config_schema, applied live through proxy_on_configure, persisted
        responses: {200: {description: applied}, 400: {description: not strict JSON / schema violation / refused by the plugin}, 413: {description: larger than admin.max_config_bytes}}
        """
        plugin = plugin_or_404(request)
        if plugin is None:
            return _error(404, f"no plugin {request.path_params['name']!r}", "not_found")
        document = parse_json(await read_limited(request, limits.max_config_bytes, "admin.max_config_bytes"))
        return await apply_config(plugin, document)

    async def patch_config(request: Request) -> Response:
        """
        summary: Merge into a plugin's configuration (RFC 7396 JSON merge patch - null deletes a key), then validate, apply and persist as PUT does
        responses: {200: {description: applied}, 400: {description: not strict JSON / schema violation / refused by the plugin}, 409: {description: the current config is not JSON}, 413: {description: larger than admin.max_config_bytes}, 415: {description: not a merge patch}}
        """
        plugin = plugin_or_404(request)
        if plugin is None:
            return _error(404, f"no plugin {request.path_params['name']!r}", "not_found")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in MERGE_PATCH_TYPES:
            return _error(415, f"send a JSON merge patch ({' or '.join(MERGE_PATCH_TYPES)})", "unsupported_media_type")
        patch = parse_json(await read_limited(request, limits.max_config_bytes, "admin.max_config_bytes"))
        current_raw = plugin.spec.plugin_config
        try:
            current = parse_json(current_raw) if current_raw.strip() else {}
        except BodyRefused:
            return _error(409, f"plugin {plugin.spec.name!r} has a configuration that is not JSON; replace it with PUT", "config_not_json")
        return await apply_config(plugin, merge_patch(current, patch))

    async def post_module(request: Request) -> Response:
        """
        summary: Hot-swap a plugin's module (body - the .wasm). In-flight requests finish on the old VM; a refused module is not kept; a module without a manifest keeps the plugin's
        responses: {200: {description: swapped}, 400: {description: refused, nothing changed}, 413: {description: larger than admin.max_module_bytes}}
        """
        name = request.path_params["name"]
        if plugin_or_404(request) is None:
            return _error(404, f"no plugin {name!r}", "not_found")
        wasm = await read_limited(request, limits.max_module_bytes, "admin.max_module_bytes")
        if not wasm:
            return _error(400, "send the module as the body", "bad_module")
        try:
            plugin = await changes.swap_module(name, wasm)
        except PluginError as exc:
            return _error(400, f"module refused, the old one stays: {exc}", "module_refused")
        except OSError as exc:
            return _error(503, f"the module could not be kept in the admin state dir, the old one stays: {exc.strerror or exc}", "state_unwritable")
        return JSONResponse({"ok": True, "plugin": name, "sha256": plugin.sha256})

    async def delete_config(request: Request) -> Response:
        """
        summary: Undo the admin config change - the config file's value for this plugin applies again (live) and is what a restart uses
        responses: {200: {description: the file's config applies}, 400: {description: refused by the plugin or its schema}}
        """
        plugin = plugin_or_404(request)
        if plugin is None:
            return _error(404, f"no plugin {request.path_params['name']!r}", "not_found")
        try:
            plugin = await changes.reset_config(plugin.spec.name)
        except PluginError as exc:
            return _error(400, f"the file's configuration was refused, the admin one stays: {exc}", "rejected_by_plugin")
        return JSONResponse({"ok": True, "plugin": plugin.spec.name, "config": plugin.spec.plugin_config.decode("utf-8", "replace")})

    async def delete_module(request: Request) -> Response:
        """
        summary: Undo the admin module swap - hot-swap back to the module the config file names
        responses: {200: {description: the file's module serves}, 400: {description: refused - the swapped-in module stays}}
        """
        plugin = plugin_or_404(request)
        if plugin is None:
            return _error(404, f"no plugin {request.path_params['name']!r}", "not_found")
        try:
            plugin = await changes.reset_module(plugin.spec.name)
        except PluginError as exc:
            return _error(400, f"the file's module was refused, the swapped-in one stays: {exc}", "module_refused")
        return JSONResponse({"ok": True, "plugin": plugin.spec.name, "sha256": plugin.sha256})

    async def quarantine(request: Request) -> Response:
        """
        summary: Quarantine a plugin now (skipped, or 503 if not fail_open) until released - across restarts and module swaps
        responses: {200: {description: quarantined}}
        """
        plugin = plugin_or_404(request)
        if plugin is None:
            return _error(404, f"no plugin {request.path_params['name']!r}", "not_found")
        # Holds across restarts, on every node, and for its route instances too.
        await changes.quarantine(plugin.spec.name, f"by operator {request.state.admin_key.name}")
        return JSONResponse({"ok": True, **plugin.describe()})

    async def release(request: Request) -> Response:
        """
        summary: Release a quarantined plugin
        responses: {200: {description: released}}
        """
        plugin = plugin_or_404(request)
        if plugin is None:
            return _error(404, f"no plugin {request.path_params['name']!r}", "not_found")
        await changes.release(plugin.spec.name, f"by operator {request.state.admin_key.name}")
        return JSONResponse({"ok": True, **plugin.describe()})

    async def get_routing(request: Request) -> Response:
        """
        summary: Routing state of the worker that answers - strategy, state sha256 (?state=1 - the state itself), artifact in use, replication across nodes (node, events published/applied/dropped, lag, redis ok/degraded)
        responses: {200: {description: routing state}, 404: {description: no LLM router}}
        """
        if routing is None:
            return _error(404, "no LLM router (the config has no model_list)", "not_found")
        return JSONResponse(routing.describe(with_state=request.query_params.get("state") in ("1", "true")))

    async def put_artifact(request: Request) -> Response:
        """
        summary: Load a routing artifact (what `routeiq route-train` writes, sha256-verified, for router.strategy) live on every node - stored in Redis (kv backend redis) or the admin state dir first, so nodes starting later and restarts load it too
        responses: {200: {description: stored and loaded}, 400: {description: not an artifact / sha256 mismatch / another strategy}, 413: {description: larger than admin.max_module_bytes}, 503: {description: could not be stored - not loaded}}
        """
        if routing is None:
            return _error(404, "no LLM router (the config has no model_list)", "not_found")
        document = parse_json(await read_limited(request, limits.max_module_bytes, "admin.max_module_bytes"))
        try:
            return JSONResponse(await routing.put_artifact(document))
        except ArtifactError as exc:
            return _error(400, f"artifact refused, the strategy in use stays: {exc}", "artifact_refused")
        except ArtifactNotStored as exc:
            return _error(503, f"artifact not stored, so not loaded: {exc}", "not_stored")

    routes = [
        Route("/admin/nodes", guarded("viewer", list_nodes), methods=["GET"]),
        Route("/admin/routing", guarded("viewer", get_routing), methods=["GET"]),
        Route("/admin/routing/artifact", guarded("admin", put_artifact), methods=["PUT"]),
        Route("/admin/plugins", guarded("viewer", list_plugins), methods=["GET"]),
        Route("/admin/plugins/{name}", guarded("viewer", get_plugin), methods=["GET"]),
        Route("/admin/plugins/{name}/schema", guarded("viewer", get_schema), methods=["GET"]),
        Route("/admin/plugins/{name}/config", guarded("operator", put_config), methods=["PUT"]),
        Route("/admin/plugins/{name}/config", guarded("operator", patch_config), methods=["PATCH"]),
        Route("/admin/plugins/{name}/config", guarded("operator", delete_config), methods=["DELETE"]),
        Route("/admin/plugins/{name}/module", guarded("admin", post_module), methods=["POST"]),
        Route("/admin/plugins/{name}/module", guarded("admin", delete_module), methods=["DELETE"]),
        Route("/admin/plugins/{name}/quarantine", guarded("operator", quarantine), methods=["POST"]),
        Route("/admin/plugins/{name}/release", guarded("operator", release), methods=["POST"]),
        *more,
    ]

    async def openapi(request: Request) -> Response:
        return JSONResponse(schemas.get_schema(routes))

    return routes + [Route("/admin/openapi.json", openapi, methods=["GET"], include_in_schema=False)]


__all__ = ["admin_routes"]
