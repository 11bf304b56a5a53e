"""MCP tools registered, hot-swapped and unregistered at run time (the admin API), kept as
operator state: in the admin state dir (so a restart serves them) and, in a cluster, in
the replica record every worker and replica follows.

This is the plugins' operator-change machinery (routeiq.gateway.operator_changes), not a
second one: a tool's state is the record entry `tool:<name>` (fields `module`, the sha256
of its module, and `config`, its settings as JSON: allow, limits, config, description,
log_level, sha256), its module bytes are stored by sha256 like a swapped plugin module,
and each node follows the record through ReplicaSync (a follower). An admin change is
loaded and started here first (pin, policy admission, manifest, schemas checked with
jsonschema, VM start: a refused module changes nothing anywhere), then recorded (503 if
the record cannot be stored: nothing changed), and only then served.

A registration under the name of a config-file tool overrides it until unregistered,
when the file's tool serves again (as a plugin's module swap does)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from routeiq.config import McpToolConfig, _field_path
from routeiq.gateway.operator_changes import ModuleFetch, OperatorChanges
from routeiq.gateway.operator_state import OperatorState
from routeiq.policy.config_schema import ConfigSchemaError
from routeiq.runtime.errors import PluginLoadError
from routeiq.services.replica_record import PluginRecord, Snapshot

from .tools import ToolSet, WasmTool

log = logging.getLogger("routeiq.mcp")

ENTRY_PREFIX = "tool:"  # record and state-dir entries of tools, beside the plugins' (whose names cannot hold ':')
SETTINGS_EXCLUDE = {"name", "wasm"}  # the name is the entry's; the module is its sha256


class RegistrationRefused(Exception):
    """The upload or its settings were refused; nothing changed. `code` says which check."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def entry_key(name: str) -> str:
    return ENTRY_PREFIX + name


def parse_settings(name: str, settings: Any) -> McpToolConfig:
    """The registration's settings as an mcp.tools entry (errors name the field)."""
    if not isinstance(settings, dict):
        raise RegistrationRefused("the settings must be a JSON object", "bad_settings")
    try:
        return McpToolConfig.model_validate({**settings, "name": name, "wasm": "<uploaded>"})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = "unknown setting" if err["type"] == "extra_forbidden" else str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{_field_path(tuple(err['loc']))}: {msg}")
        raise RegistrationRefused("; ".join(problems), "bad_settings") from None


def settings_json(entry: McpToolConfig) -> str:
    return json.dumps(entry.model_dump(mode="json", exclude=SETTINGS_EXCLUDE), separators=(",", ":"), sort_keys=True)


class ToolRegistry:
    """What this process serves because of operator changes to tools, and the changes."""

    def __init__(self, tools: ToolSet, changes: OperatorChanges, mirror: OperatorState) -> None:
        self.tools = tools
        self.changes = changes
        self.mirror = mirror
        # name -> (module sha256, settings JSON) of the admin registration this process serves.
        self.running: dict[str, tuple[str, str]] = {}
        self.errors: dict[str, str] = {}  # name -> why the recorded registration does not serve here

    # ---------------------------------------------------------------- startup
    def saved(self) -> dict[str, tuple[str, str]]:
        """Registrations in the state dir (the cluster record's mirror once caught up)."""
        found = {}
        for key in self.mirror.names():
            if not key.startswith(ENTRY_PREFIX):
                continue
            fields = self.mirror.record_fields(key)
            if "module" in fields and "config" in fields:
                found[key[len(ENTRY_PREFIX):]] = (fields["module"], fields["config"])
        return found

    def load_saved(self) -> None:
        """Serve what operators registered before this start. One that no longer loads
        (the policy changed, say) is logged and reported in `errors`; the rest serve."""
        for name, (sha, settings) in sorted(self.saved().items()):
            try:
                tool = self._build(name, self._module_path(sha), settings)
            except (RegistrationRefused, PluginLoadError, OSError) as exc:
                self.errors[name] = str(exc)
                log.error("registered tool %s not served: %s", name, exc)
                continue
            self.tools.put(tool)
            self.running[name] = (sha, settings)
            log.info("registered tool %s loaded (sha256 %s)", name, sha[:12])

    def _module_path(self, sha: str) -> Path:
        return self.mirror.directory / "modules" / f"{sha}.wasm"

    def _build(self, name: str, wasm_path: Path, settings: str) -> WasmTool:
        entry = parse_settings(name, json.loads(settings)).model_copy(update={"wasm": str(wasm_path)})
        try:
            return self.tools.build(entry, wasm_path)
        except ConfigSchemaError as exc:  # its config does not match the manifest's config_schema
            raise RegistrationRefused(f"tool {name!r}: {exc}", "schema_violation") from None

    # ----------------------------------------------------------- admin writes
    async def register(self, name: str, wasm: bytes, entry: McpToolConfig) -> WasmTool:
        """Load, record, then serve (replacing the tool of that name, if any). Raises
        RegistrationRefused, PluginLoadError (its reason: pin, policy, manifest, schemas,
        start) or StateNotStored."""
        settings = settings_json(entry)
        sha = hashlib.sha256(wasm).hexdigest()
        async with self.changes.lock:
            staging = self._stage(wasm)
            try:
                tool = await asyncio.to_thread(self._build, name, staging, settings)
            finally:
                staging.unlink(missing_ok=True)
            try:
                await self.changes.share_module(wasm)
                await self.changes.record_entry(entry_key(name), {"module": sha, "config": settings})
            except BaseException:
                tool.close()
                raise
            self._keep(name, wasm, settings)
            self.tools.put(tool)
            self.running[name] = (sha, settings)
            self.errors.pop(name, None)
            log.info("tool %s registered by an operator (sha256 %s)", name, sha[:12])
            return tool

    async def unregister(self, name: str) -> str:
        """Remove the registration: the config file's tool of that name serves again, or
        none. KeyError if nothing was registered under `name`. Returns what serves now."""
        async with self.changes.lock:
            if name not in self.running and name not in self.saved():
                raise KeyError(name)
            fallback = await self._file_tool(name)
            try:
                await self.changes.record_entry(entry_key(name), unset=("module", "config"))
            except BaseException:
                if fallback is not None:
                    fallback.close()
                raise
            self._forget(name)
            self._serve_file_tool(name, fallback)
            return "config_file" if fallback is not None else "none"

    def _stage(self, wasm: bytes) -> Path:
        """The upload as a file to load from (not yet kept: it may be refused)."""
        staging_dir = self.mirror.directory / "staging"
        staging_dir.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(dir=staging_dir, suffix=".wasm")
        with os.fdopen(fd, "wb") as f:
            f.write(wasm)
        return Path(path)

    def _keep(self, name: str, wasm: bytes, settings: str) -> None:
        key = entry_key(name)
        self.mirror.save_config(key, settings.encode())
        self.mirror.save_module(key, self.mirror.store_module(wasm))

    def _forget(self, name: str) -> None:
        key = entry_key(name)
        self.mirror.clear_config(key)
        self.mirror.clear_module(key)
        self.running.pop(name, None)
        self.errors.pop(name, None)

    async def _file_tool(self, name: str) -> WasmTool | None:
        """The config file's tool of that name, loaded (not served yet), or None."""
        entry = self.tools.file_entries.get(name)
        if entry is None:
            return None
        return await asyncio.to_thread(self.tools.build, entry[0], entry[1])

    def _serve_file_tool(self, name: str, tool: WasmTool | None) -> None:
        if tool is not None:
            self.tools.put(tool)
        else:
            self.tools.remove(name)

    # ------------------------------------------------------ from the cluster
    async def follow(self, snapshot: Snapshot, fetch: ModuleFetch) -> None:
        """ReplicaSync's follower (it holds the changes lock): serve what the record says
        for every tool. A registration this node refuses is reported; the rest apply."""
        wanted: dict[str, tuple[str, str] | None] = {}
        for key, record in snapshot.plugins.items():
            if key.startswith(ENTRY_PREFIX):
                wanted[key[len(ENTRY_PREFIX):]] = _registration(record)
        for name in self.running:
            wanted.setdefault(name, None)
        failed = []
        for name, want in sorted(wanted.items()):
            if want == self.running.get(name):
                continue
            try:
                if want is None:
                    fallback = await self._file_tool(name)
                    self._forget(name)
                    self._serve_file_tool(name, fallback)
                    continue
                sha, settings = want
                wasm = await fetch(sha)
                path = self.mirror.store_module(wasm)
                tool = await asyncio.to_thread(self._build, name, path, settings)
                self._keep(name, wasm, settings)
                self.tools.put(tool)
                self.running[name] = want
                self.errors.pop(name, None)
                log.info("tool %s registered (from the cluster record, sha256 %s)", name, sha[:12])
            except (RegistrationRefused, PluginLoadError, OSError) as exc:
                self.errors[name] = str(exc)
                failed.append(f"tool {name}: {exc}")
        if failed:
            raise RegistrationRefused("; ".join(failed), "refused_here")

    def describe(self) -> list[dict[str, Any]]:
        """Every tool this process serves, and registrations it could not serve."""
        listed = []
        for name, tool in sorted(self.tools.tools.items()):
            origin = "admin" if name in self.running else "config_file"
            listed.append({"name": name, "origin": origin, "sha256": tool.sha256, "description": tool.description, "allow": tool.allow.model_dump(mode="json"), "limits": {"fuel": tool.admission.limits.fuel, "memory_mb": tool.admission.limits.memory_bytes // (1024 * 1024), "timeout_ms": tool.admission.limits.timeout_ms}, "stats": {"calls": tool.stats.calls, "errors": tool.stats.errors, "traps": tool.stats.traps, "cancelled": tool.stats.cancelled}})
        for name, why in sorted(self.errors.items()):
            if name not in self.running:
                listed.append({"name": name, "origin": "admin", "state": "refused_here", "error": why})
        return listed


def _registration(record: PluginRecord) -> tuple[str, str] | None:
    if record.module is None or record.config is None:
        return None
    return record.module, record.config


__all__ = ["ToolRegistry", "RegistrationRefused", "parse_settings", "entry_key", "ENTRY_PREFIX"]
