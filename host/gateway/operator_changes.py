"""Operator changes to plugins (config, module, manual quarantine): applied to this node,
kept in its state dir and, in a cluster, recorded for every node.

An admin change is acknowledged only once it is stored: it is applied here first (so a
refused config or module changes nothing anywhere), then recorded; if the record cannot
be written (Redis down), this node's change is undone and StateNotStored says why. Changes
arriving from the cluster record (`converge`) use the same local steps without recording.
One lock orders admin changes and cluster changes on a node."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Awaitable, Callable

from routeiq.dispatch.plugin import ProxyWasmPlugin
from routeiq.services.replica_record import ReplicaRecord, ReplicaStoreUnavailable, PluginRecord, manifest_json

from .config_watch import ConfigFile
from .operator_state import OperatorState
from .plugin_set import PluginSet

log = logging.getLogger("routeiq.admin")

ModuleFetch = Callable[[str], Awaitable[bytes]]


class StateNotStored(Exception):
    """The cluster record could not be written: the change was not made (503)."""


class OperatorChanges:
    def __init__(self, plugins: PluginSet, mirror: OperatorState, config_file: ConfigFile, record: ReplicaRecord | None = None) -> None:
        self.plugins = plugins
        self.mirror = mirror
        self.config_file = config_file
        self.record = record
        self.lock = asyncio.Lock()
        # What this process runs because of operator changes (not the shared state dir's word).
        self.running_module: dict[str, str | None] = {}
        self.overridden_config: dict[str, bool] = {}

    def started(self) -> None:
        """The plugins loaded with the state dir's overrides: that is what runs now."""
        for name in self.mirror.names():
            self.running_module[name] = self.mirror.module_sha(name)
            self.overridden_config[name] = "config" in self.mirror.overrides(name)

    async def _record(self, name: str, set_fields: dict[str, str] | None = None, unset: tuple[str, ...] = ()) -> None:
        if self.record is None:
            return
        try:
            await asyncio.to_thread(self.record.change, name, set_fields, unset)
        except ReplicaStoreUnavailable as exc:
            raise StateNotStored(f"the replica store (kv.url) could not record the change: {exc}") from None

    async def record_entry(self, name: str, set_fields: dict[str, str] | None = None, unset: tuple[str, ...] = ()) -> None:
        """Record a change of another kind of operator state under `name` (MCP tools use
        `tool:<name>`): the same versioned write, StateNotStored if it cannot be made.
        Call it holding `lock`, after applying the change here."""
        await self._record(name, set_fields, unset)

    async def share_module(self, wasm: bytes) -> None:
        """Store module bytes every node can fetch by sha256 (before recording a change
        that names them); StateNotStored if they cannot be stored."""
        if self.record is None:
            return
        try:
            await asyncio.to_thread(self.record.put_module, wasm)
        except ReplicaStoreUnavailable as exc:
            raise StateNotStored(f"the replica store (kv.url) could not keep the module: {exc}") from None

    @staticmethod
    def _undo(what: str, step: Callable[[], object]) -> None:
        try:
            step()
        except Exception:  # the original failure is what the operator gets; this is logged
            log.exception("could not undo %s after the replica store refused the change", what)

    # --------------------------------------------------------------- config
    async def set_config(self, name: str, config: bytes) -> ProxyWasmPlugin:
        """Raises the plugin's PluginError (or ConfigSchemaError) if it refuses `config`."""
        async with self.lock:
            plugin = self.plugins.plugin(name)
            previous = plugin.spec.plugin_config
            plugin.reconfigure(config)
            try:
                await self._record(name, {"config": config.decode("utf-8", "replace")})
            except StateNotStored:
                self._undo(f"plugin {name}'s config", lambda: plugin.reconfigure(previous))
                raise
            self.mirror.save_config(name, config)
            self.overridden_config[name] = True
            return plugin

    async def reset_config(self, name: str) -> ProxyWasmPlugin:
        """Back to the file's config, here and on every node."""
        async with self.lock:
            previous = self.plugins.plugin(name).spec.plugin_config
            had_override = "config" in self.mirror.overrides(name)
            plugin = self.plugins.reset_config(name, self.config_file.spec(name))
            try:
                await self._record(name, unset=("config",))
            except StateNotStored:
                if had_override:
                    self._undo(f"plugin {name}'s config reset", lambda: (plugin.reconfigure(previous), self.mirror.save_config(name, previous)))
                raise
            self.config_file.handed_back(name, "config")
            self.overridden_config[name] = False
            return plugin

    # --------------------------------------------------------------- module
    async def swap_module(self, name: str, wasm: bytes) -> ProxyWasmPlugin:
        """Hot swap to `wasm` (PluginSet.swap_module: admitted under this node's policy)."""
        async with self.lock:
            if self.record is not None:  # the bytes first: every node must find them
                try:
                    await asyncio.to_thread(self.record.put_module, wasm)
                except ReplicaStoreUnavailable as exc:
                    raise StateNotStored(f"the replica store (kv.url) could not keep the module: {exc}") from None
            previous = self.mirror.load(name).get("module")
            plugin = await self.plugins.swap_module(name, wasm)
            manifest = self.mirror.load(name).get("manifest")
            fields = {"module": hashlib.sha256(wasm).hexdigest()}
            self._ran(name, fields["module"])
            if manifest is not None:
                fields["manifest"] = manifest_json(manifest) or ""
            try:
                await self._record(name, fields, () if manifest is not None else ("manifest",))
            except StateNotStored:
                await self._undo_module(name, previous)
                raise
            return plugin

    async def reset_module(self, name: str) -> ProxyWasmPlugin:
        """Back to the module the file names, here and on every node."""
        async with self.lock:
            previous = self.mirror.load(name).get("module")
            plugin = await self.plugins.reset_module(name, self.config_file.spec(name))
            try:
                await self._record(name, unset=("module", "manifest"))
            except StateNotStored:
                if previous is not None:
                    await self._undo_module(name, previous)
                raise
            self.config_file.handed_back(name, "module")
            self._ran(name, None)
            return plugin

    async def _undo_module(self, name: str, previous: object) -> None:
        try:
            if isinstance(previous, str) and Path(previous).exists():
                await self.plugins.swap_module(name, Path(previous).read_bytes())
                self._ran(name, Path(previous).stem)
            else:
                await self.plugins.reset_module(name, self.config_file.spec(name))
                self._ran(name, None)
        except Exception:
            log.exception("could not undo plugin %s's module swap after the replica store refused it", name)

    # ----------------------------------------------------------- quarantine
    async def quarantine(self, name: str, reason: str) -> ProxyWasmPlugin:
        """A manual quarantine: holds across restarts and module swaps, on every node."""
        async with self.lock:
            self.plugins.plugin(name)  # KeyError before anything is recorded
            await self._record(name, {"quarantine": reason})
            self.mirror.save_quarantine(name, reason)
            return self.plugins.quarantine(name, reason)

    async def release(self, name: str, reason: str) -> ProxyWasmPlugin:
        async with self.lock:
            self.plugins.plugin(name)
            await self._record(name, unset=("quarantine",))
            self.mirror.clear_quarantine(name)
            return self.plugins.release(name, reason)

    # ------------------------------------------------------ from the cluster
    def _ran(self, name: str, module: str | None) -> None:
        self.running_module[name] = module

    async def converge(self, name: str, record: PluginRecord, fetch_module: ModuleFetch) -> None:
        """Make this process run what the cluster record says for `name` (the caller holds
        `lock`). Compared with what this process runs, not with the state dir: workers of
        one replica share that directory, and a sibling may have written it already. A field
        that already matches is left alone, so applying a record twice does nothing."""
        mirror = self.mirror
        plugin = self.plugins.plugin(name)
        if record.module != self.running_module.get(name):
            if record.module is None:
                spec = self.config_file.spec(name)
                if spec is not None:
                    await self.plugins.swap_to_file(name, spec.wasm_path, spec.sha256)
                mirror.clear_module(name)
                self.config_file.handed_back(name, "module")
            elif record.module != plugin.sha256:
                await self.plugins.swap_module(name, await fetch_module(record.module))
            self._ran(name, record.module)
            plugin = self.plugins.plugin(name)
        if record.config is None:
            spec = self.config_file.spec(name)
            config = spec.plugin_config if spec is not None else b""
            if self.overridden_config.pop(name, False) and config != plugin.spec.plugin_config:
                plugin.reconfigure(config)
                self.config_file.handed_back(name, "config")
            mirror.clear_config(name)
        else:
            config = record.config.encode()
            if config != plugin.spec.plugin_config:
                plugin.reconfigure(config)
            self.overridden_config[name] = True
            mirror.save_config(name, config)
        manual = plugin.quarantine_reason if plugin.manually_quarantined else None
        if record.quarantine != manual:
            if record.quarantine is None:
                mirror.clear_quarantine(name)
                self.plugins.release(name, "released by an operator (another node)")
            else:
                mirror.save_quarantine(name, record.quarantine)
                self.plugins.quarantine(name, record.quarantine)


__all__ = ["OperatorChanges", "StateNotStored"]
