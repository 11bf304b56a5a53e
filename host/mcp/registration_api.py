"""/admin/tools: register, hot-swap and unregister MCP tools at run time (role admin, as
for plugin modules), and list what this worker serves (role viewer).

`PUT /admin/tools/{name}` takes one JSON document: `module`, the .wasm as base64, and the
tool's settings as an `mcp.tools` entry has them (`allow`, `limits`, `config`,
`description`, `log_level`, `sha256`: a pin the upload must match). The module is
checked as a configured tool is (pin, the policy's `tools.<name>` grant, manifest, input
and output schemas with jsonschema, VM start) before it is recorded and listed; a PUT on
a served name hot-swaps it (calls already running finish on the old VM)."""

from __future__ import annotations

import base64
import binascii
import os
from typing import Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from routeiq.admin.auth import AdminKey
from routeiq.admin.body import parse_json, read_limited
from routeiq.admin.guard import admin_error, admin_guard
from routeiq.admin.sessions import ConsoleSessions
from routeiq.config import AdminConfig
from routeiq.runtime.errors import PluginLoadError

from .registration import RegistrationRefused, ToolRegistry, parse_settings


def tool_admin_routes(registry: ToolRegistry, keys: Sequence[AdminKey], limits: AdminConfig, node: str | None, sessions: ConsoleSessions | None = None) -> list[Route]:
    guarded = admin_guard(keys, sessions)
    # base64 takes 4 bytes per 3; the settings are a config-sized document beside it.
    body_limit = limits.max_module_bytes * 4 // 3 + 4 + limits.max_config_bytes

    async def list_tools(_: Request) -> Response:
        """
        summary: The MCP tools this worker serves (origin config_file or admin, sha256, allow, limits, counters) and registrations it could not serve
        responses: {200: {description: tools}}
        """
        return JSONResponse({"node": node, "pid": os.getpid(), "tools": registry.describe()})

    async def put_tool(request: Request) -> Response:
        """
        summary: Register or hot-swap an MCP tool - body {"module" - the .wasm as base64, and mcp.tools settings - allow, limits, config, description, log_level, sha256}; checked (pin, policy, manifest, schemas, start), recorded for every node, then listed
        responses: {200: {description: registered}, 400: {description: refused - nothing changed}, 413: {description: larger than admin.max_module_bytes}, 503: {description: the record could not be stored - nothing changed}}
        """
        name = request.path_params["name"]
        document = parse_json(await read_limited(request, body_limit, "admin.max_module_bytes"))
        if not isinstance(document, dict) or not isinstance(document.get("module"), str):
            return admin_error(400, "send {\"module\": \"<the .wasm as base64>\", ...settings}", "bad_module")
        try:
            wasm = base64.b64decode(document.pop("module"), validate=True)
        except (binascii.Error, ValueError):
            return admin_error(400, "module: not valid base64", "bad_module")
        if not wasm:
            return admin_error(400, "module: empty", "bad_module")
        if len(wasm) > limits.max_module_bytes:
            return admin_error(413, f"the module is larger than {limits.max_module_bytes} bytes (admin.max_module_bytes)", "body_too_large")
        try:
            entry = parse_settings(name, document)
            tool = await registry.register(name, wasm, entry)
        except RegistrationRefused as exc:
            return admin_error(400, f"tool refused, nothing changed: {exc}", exc.code)
        except PluginLoadError as exc:  # pin, policy, manifest, schemas, start
            return admin_error(400, f"tool refused, nothing changed: {exc}", "tool_refused")
        return JSONResponse({"ok": True, "tool": name, "sha256": tool.sha256, "description": tool.description})

    async def delete_tool(request: Request) -> Response:
        """
        summary: Unregister an MCP tool registered through the admin API, on every node - the config file's tool of that name serves again, if there is one
        responses: {200: {description: unregistered}, 404: {description: no admin registration of that name}, 503: {description: the record could not be stored - nothing changed}}
        """
        name = request.path_params["name"]
        try:
            now = await registry.unregister(name)
        except KeyError:
            in_file = name in registry.tools.file_entries
            hint = " (it comes from the config file: remove it there)" if in_file else ""
            return admin_error(404, f"no tool {name!r} was registered through the admin API{hint}", "not_found")
        except PluginLoadError as exc:
            return admin_error(400, f"the config file's tool {name!r} could not be loaded back, the registration stays: {exc}", "tool_refused")
        return JSONResponse({"ok": True, "tool": name, "serving": now})

    return [
        Route("/admin/tools", guarded("viewer", list_tools), methods=["GET"]),
        Route("/admin/tools/{name}", guarded("admin", put_tool), methods=["PUT"]),
        Route("/admin/tools/{name}", guarded("admin", delete_tool), methods=["DELETE"]),
    ]


__all__ = ["tool_admin_routes"]
