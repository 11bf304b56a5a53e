"""Watches the main config file and applies what can change live, with the same validation
as at startup. Plugin configuration changes go through proxy_on_configure; a changed module
is hot-swapped; anything else (plugins added or removed, server, upstream, policy) is
reported as needing a restart. A file that fails validation changes nothing.

Only a change of the file's content counts: a `touch`, or a rewrite with the same bytes,
is not a reload. And the admin API's changes overlay the file: an edit applies to the
fields it changed (against what the file said before), except a field an operator
changed through /admin (a plugin's config or its module): that edit is not applied and is
reported (a warning in the log and `config.overridden` in /health), never silently
applied or dropped.

A changed module is read, admitted and compiled on a thread (the admin upload's path,
PluginSet.swap_to_file): the gateway keeps serving during a reload that compiles a
multi-MB module, and only the switch to the new VM happens on the event loop."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from routeiq.config import ConfigError, LoadedConfig, config_from_bytes
from routeiq.dispatch.plugin_spec import PluginSpec
from routeiq.runtime.errors import PluginError

from .operator_state import OperatorState
from .plugin_set import PluginSet

log = logging.getLogger("routeiq.config")


@dataclass(frozen=True)
class _FileValues:
    """The live-applicable fields of one plugin as the file gives them."""

    module: tuple[Path, str | None, tuple[int, int]]  # path, pin, and the file's mtime and size
    config: bytes

    @classmethod
    def of(cls, spec: PluginSpec) -> "_FileValues":
        # The file's stat too: a module rewritten in place (a plugins_dir rebuild) is a change.
        try:
            st = spec.wasm_path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = (0, -1)
        return cls((spec.wasm_path.resolve(), spec.sha256.lower() if spec.sha256 else None, stamp), spec.plugin_config)


class ConfigFile(Protocol):
    """The config file as last read: what undoing an admin change returns to."""

    def spec(self, name: str) -> PluginSpec | None: ...

    def handed_back(self, name: str, field: str) -> None: ...


class StaticConfigFile:
    """The config file of a gateway that does not watch it: as read at startup."""

    def __init__(self, config: LoadedConfig) -> None:
        self.config = config

    def spec(self, name: str) -> PluginSpec | None:
        return next((s for s in self.config.plugin_specs() if s.name == name), None)

    def handed_back(self, name: str, field: str) -> None:
        pass


class ConfigWatcher:
    """A ConfigFile that follows the file's edits and applies them to `plugins`."""

    def __init__(
        self,
        path: Path,
        config: LoadedConfig,
        plugins: PluginSet,
        operator_state: OperatorState,
        interval_s: float = 1.0,
        on_llm_change: Callable[[LoadedConfig], str | None] | None = None,
    ) -> None:
        self.plugins = plugins
        # Rebuilds the LLM path from a new model_list/router/mock; returns what it could not
        # apply (needs a restart), raises ConfigError if the new one cannot be built.
        self.on_llm_change = on_llm_change
        self.needs_restart: list[str] = []  # changes the running gateway did not apply
        self.operator_state = operator_state
        self.path = path
        self.interval_s = interval_s
        self._dir = config.plugins_dir_signature()
        self._digest = config.digest or self._read_digest()
        # The file may have changed since `config` was read from it (a worker starting
        # during an edit): then its stat is not taken as seen, and the first poll reloads.
        stat = self._stat_now()  # before the read: an edit in between is seen by the first poll
        self._stat: tuple[int, int] | None = stat if self._read_digest() == self._digest else None
        # What the file said for each plugin when it was last read: an edit is a field
        # that differs from this, not from the running value (admin changes differ).
        self._file = {s.name: _FileValues.of(s) for s in config.plugin_specs()}
        self.latest = config  # the file as last read and validated
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0
        self.reloading = False  # a reload is being applied (a module may be compiling)
        self.unchanged = 0  # the file was touched or rewritten with the same content
        self.last_error: str | None = None
        self.overridden: dict[str, str] = {}  # "plugin.field" -> why the file's edit is not applied

    def _stat_now(self) -> tuple[int, int]:
        try:
            st = self.path.stat()
        except OSError:
            return (0, -1)
        return (st.st_mtime_ns, st.st_size)

    def _read_digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.poll()
            except Exception as exc:  # a surprise in one reload must not stop the watching
                self.last_error = f"config reload failed: {exc}"
                log.exception("config reload failed")

    async def poll(self) -> None:
        """Reload if the file's content changed since it was last read, or a file in its
        plugins_dir was added, changed or removed."""
        stat = self._stat_now()
        directory = self.latest.plugins_dir_signature()
        if directory != self._dir:
            self._dir = directory
            self._stat = stat
            self.reloading = True
            try:
                await self.reload()
            finally:
                self.reloading = False
            return
        if stat == self._stat:
            return
        first = self._stat is None
        self._stat = stat
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            self.last_error = f"{self.path}: cannot read config file: {exc.strerror or exc}"
            log.error("config reload: %s", self.last_error)
            return
        digest = hashlib.sha256(raw).hexdigest()
        if digest == self._digest:
            if not first:
                self.unchanged += 1
            log.debug("config file %s touched, content unchanged: nothing to reload", self.path)
            return
        self._digest = digest
        self.reloading = True
        try:
            await self.reload(raw)
        finally:
            self.reloading = False

    def status(self) -> dict[str, object]:
        return {
            "reloads": self.reloads,
            "reloading": self.reloading,  # a reload is being applied (compiling on a thread)
            "unchanged": self.unchanged,  # touched, same content: not a reload
            "last_error": self.last_error,
            "overridden": sorted(self.overridden.values()),  # file edits an admin change overrides
            "needs_restart": list(self.needs_restart),  # changed sections only a restart applies
        }

    async def reload(self, raw: bytes | None = None) -> None:
        try:
            fresh = config_from_bytes(raw if raw is not None else self.path.read_bytes(), self.path)
            specs = {s.name: s for s in fresh.plugin_specs()}
        except (ConfigError, OSError) as exc:
            self.last_error = str(exc)
            log.error("config reload refused, keeping the running configuration:\n%s", exc)
            return
        for warning in fresh.warnings:
            log.warning("%s", warning)
        if fresh.model.clusters != self.latest.model.clusters:
            self._needs_restart("clusters")
            log.warning("config reload: clusters changed; that takes a restart (the running gateway keeps the clusters it started with)")
        if fresh.model.mcp != self.latest.model.mcp:  # tools load at startup (admin API registration: docs/mcp.md, not yet)
            self._needs_restart("mcp")
            log.warning("config reload: mcp changed; that takes a restart (the running gateway keeps the tools it started with)")
        problems = []
        before_llm, after_llm = self.latest.model, fresh.model
        if (before_llm.model_list, before_llm.router, before_llm.mock) != (after_llm.model_list, after_llm.router, after_llm.mock):
            if self.on_llm_change is None:
                self._needs_restart("model_list/router")
                log.warning("config reload: model_list/router changed; that takes a restart")
            else:
                try:
                    pending = self.on_llm_change(fresh)
                except ConfigError as exc:
                    problems.append(f"model_list/router not applied: {exc}")
                else:
                    if pending is not None:
                        self._needs_restart(pending)
                        log.warning("config reload: %s: that takes a restart", pending)
                    else:
                        log.warning("config reload: model_list/router applied (%d deployments); requests in flight finish on the previous ones", len(after_llm.model_list))
        self.latest = fresh
        plugins = self.plugins
        current = {p.spec.name: p for p in plugins.all()}
        discovered = {p.name for p in fresh.discovered_plugins()}
        for name in sorted(set(specs) - plugins.names()):
            if name in discovered and specs[name].kind == "filter":  # a new file in plugins_dir: loaded live
                try:
                    await plugins.add(specs[name])
                    self._file[name] = _FileValues.of(specs[name])
                except (PluginError, OSError) as exc:
                    problems.append(f"plugin {name} (new in plugins_dir): {exc}")
        if set(specs) != plugins.names():
            self._needs_restart("plugins added or removed")
            log.warning("config reload: plugins were added or removed; that takes a restart")
        for name in current:
            spec = specs.get(name)
            before = self._file.get(name)
            if spec is None or before is None:
                continue
            now = _FileValues.of(spec)
            applied_module, applied_config = before.module, before.config
            overrides = self.operator_state.overrides(name)
            try:
                if now.module != before.module:
                    if "module" in overrides:
                        self._override(name, "module", f"the file now names {spec.wasm_path}, but a module swapped in through the admin API overrides it")
                    else:
                        await plugins.swap_to_file(name, spec.wasm_path, spec.sha256)
                        self.overridden.pop(f"{name}.module", None)
                    applied_module = now.module
                if now.config != before.config:
                    plugin = plugins.plugin(name)
                    if "config" in overrides and now.config != plugin.spec.plugin_config:
                        self._override(name, "config", "the file's config changed, but a config set through the admin API overrides it")
                    elif now.config != plugin.spec.plugin_config:
                        plugin.reconfigure(spec.plugin_config)
                        self.overridden.pop(f"{name}.config", None)
                    applied_config = now.config
            except (PluginError, OSError) as exc:
                problems.append(f"plugin {name}: {exc}")
            # A field that failed to apply keeps its old value here, so the next edit retries it.
            self._file[name] = _FileValues(applied_module, applied_config)
        self.reloads += 1
        self.last_error = "; ".join(problems) or None
        if problems:
            log.error("config reload applied partly: %s", self.last_error)
        else:
            log.warning("config reloaded from %s", self.path)

    def _needs_restart(self, what: str) -> None:
        if what not in self.needs_restart:
            self.needs_restart.append(what)

    def spec(self, name: str) -> PluginSpec | None:
        return next((s for s in self.latest.plugin_specs() if s.name == name), None)

    def handed_back(self, name: str, field: str) -> None:
        """An admin change was undone: the file's value applies, no conflict remains."""
        self.overridden.pop(f"{name}.{field}", None)

    def _override(self, name: str, field: str, why: str) -> None:
        undo = f"DELETE /admin/plugins/{name}/{field}"
        message = f"plugin {name}: {field}: {why}; the file's value is not applied ({undo} returns to the file's)"
        self.overridden[f"{name}.{field}"] = message
        log.warning("config reload: %s", message)
