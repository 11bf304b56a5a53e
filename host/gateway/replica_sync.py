"""One node of a cluster: follows the cluster record of operator changes and reports what
it runs.

At startup (before plugins load) the node brings its state dir up to the record, so a node
that was down during a change starts with it; if Redis cannot be reached it starts from
its state dir (its last good state) and says so. While serving it applies each change as
it is published (pub/sub wakes it; a poll every `poll_s` catches what a lost connection
missed), and reports itself (version applied, each plugin's module, config digest, state
and quarantine) under a key that expires after `node_ttl_s`. If Redis comes back empty
(restarted without persistence), the node writes its last good state back, so an operator
change is not lost with Redis's memory.

Automatic quarantine (traps) stays per node, as in Envoy and Kong: a VM that fails on one
node is that node's problem (its memory, its inputs), and the others keep serving with
theirs. Every node's view is in the report, so /admin/nodes shows where a plugin is
quarantined. Manual quarantine is an operator change: it applies to every node."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import threading
import time
from typing import Any, Awaitable, Callable

from routeiq.policy.manifest import PluginManifest
from routeiq.services.replica_record import ReplicaRecord, ReplicaStoreUnavailable, PluginRecord, Snapshot

from .operator_changes import ModuleFetch, OperatorChanges
from .operator_state import OperatorState
from .plugin_set import PluginSet

log = logging.getLogger("routeiq.replicas")

# Another kind of operator state kept in the same record (MCP tools, a layer above): given
# the snapshot and the module fetch, it brings what this process runs up to the record.
Follower = Callable[[Snapshot, ModuleFetch], Awaitable[None]]


def node_id(name: str | None = None) -> str:
    """`<name or hostname>:<pid>`: unique per worker process across replicas."""
    return f"{name or socket.gethostname()}:{os.getpid()}"


class ReplicaSync:
    def __init__(
        self,
        record: ReplicaRecord,
        changes: OperatorChanges,
        mirror: OperatorState,
        plugins: PluginSet,
        node: str,
        poll_s: float = 1.0,
        node_ttl_s: float = 5.0,
    ) -> None:
        self.record = record
        self.changes = changes
        self.mirror = mirror
        self.plugins = plugins
        self.node = node
        self.poll_s = poll_s
        self.node_ttl_s = node_ttl_s
        self.applied = 0  # the cluster version this node runs
        self.latest = 0  # the newest version seen in the record
        self.store_error: str | None = None  # Redis unreachable: serving the last good state
        self.errors: dict[str, str] = {}  # plugin -> why its change did not apply here
        self.started = time.time()
        self.synced_at: float | None = None
        self._wake: asyncio.Event | None = None
        self._stop = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: threading.Thread | None = None
        self._failures_logged = 0.0
        self.followers: dict[str, Follower] = {}  # by what they follow, e.g. "tools"

    # ---------------------------------------------------------------- startup
    def catch_up(self) -> None:
        """Bring the state dir up to the record before the plugins load from it."""
        mine = self.mirror.applied_version()
        try:
            snapshot = self.record.snapshot()
            if self._reseed_needed(snapshot, mine):
                self._reseed(max(mine or 0, 1))
                return
            self._write_mirror(snapshot)
        except ReplicaStoreUnavailable as exc:
            self.store_error = str(exc)
            self.applied = mine or 0
            log.error("replica store unreachable at startup (%s): starting from the last good state in %s (version %s)", exc, self.mirror.directory, mine)

    def _reseed_needed(self, snapshot: Snapshot, mine: int | None) -> bool:
        # Redis holds less than this node applied (it lost its data), or this is the first
        # cluster start of a state dir that a single gateway wrote.
        if mine is None:
            return snapshot.version == 0 and any(self.mirror.record_fields(n) for n in self.mirror.names())
        return snapshot.version < mine

    def _reseed(self, version: int) -> None:
        plugins = {n: f for n in self.mirror.names() if (f := self.mirror.record_fields(n))}
        modules = {}
        for fields in plugins.values():
            sha = fields.get("module")
            if sha is not None:
                path = self.mirror.directory / "modules" / f"{sha}.wasm"
                if path.exists():
                    modules[sha] = path.read_bytes()
        if self.record.reseed(version, plugins, modules):
            log.warning("replica store held an older state than this node (version %d): wrote this node's back (%d plugins)", version, len(plugins))
        self.applied = self.latest = version
        self.mirror.set_applied_version(version)

    def _write_mirror(self, snapshot: Snapshot) -> None:
        mirror = self.mirror
        for name in sorted(set(mirror.names()) | set(snapshot.plugins)):
            record = snapshot.plugins.get(name, PluginRecord())
            mirror.clear_config(name) if record.config is None else mirror.save_config(name, record.config.encode())
            if record.module is None:
                mirror.clear_module(name)
            elif record.module != mirror.module_sha(name):
                path = mirror.store_module(self.record.module(record.module))
                kept = PluginManifest.model_validate(json.loads(record.manifest)) if record.manifest else None
                mirror.save_module(name, path, kept)
            mirror.clear_quarantine(name) if record.quarantine is None else mirror.save_quarantine(name, record.quarantine)
        self.applied = self.latest = snapshot.version
        mirror.set_applied_version(snapshot.version)

    # ---------------------------------------------------------------- serving
    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        wake = self._wake

        def on_change(version: int) -> None:
            if version > self.applied:
                loop.call_soon_threadsafe(wake.set)

        self._listener = threading.Thread(target=self.record.listen, args=(on_change, self._stop), name="routeiq-replica-listen", daemon=True)
        self._listener.start()
        self._task = loop.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            self._task = None
        try:
            await asyncio.to_thread(self.record.forget, self.node)
        except ReplicaStoreUnavailable:
            pass  # the report expires by itself
        if self._listener is not None:
            await asyncio.to_thread(self._listener.join, 2.0)
        self.record.close()

    async def _run(self) -> None:
        assert self._wake is not None
        first = True
        while True:
            if not first:  # the first round reports at once: a new node is visible right away
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                except asyncio.TimeoutError:
                    pass
            first = False
            self._wake.clear()
            try:
                await self.sync_once()
                await asyncio.to_thread(self.record.report, self.node, self.report(), self.node_ttl_s)
            except ReplicaStoreUnavailable as exc:
                self._unreachable(exc)
            except Exception:  # one bad change must not stop the node following the others
                log.exception("cluster sync failed")

    def _unreachable(self, exc: Exception) -> None:
        if self.store_error is None or time.monotonic() - self._failures_logged > 30:
            self._failures_logged = time.monotonic()
            log.error("replica store unreachable (%s): serving the last good state (version %d)", exc, self.applied)
        self.store_error = str(exc)

    async def sync_once(self) -> None:
        """Apply every change recorded since the version this node runs."""
        version = await asyncio.to_thread(self.record.version)
        if self.store_error is not None:
            log.warning("replica store reachable again (version %d; this node runs %d)", version, self.applied)
        self.store_error = None
        self.latest = version
        if version == self.applied:
            return
        if version < self.applied:
            await asyncio.to_thread(self._reseed, self.applied)
            return
        snapshot = await asyncio.to_thread(self.record.snapshot)
        loaded = {p.spec.name for p in self.plugins.all()}
        async with self.changes.lock:
            for name in sorted(loaded):
                record = snapshot.plugins.get(name, PluginRecord())
                try:
                    await self.changes.converge(name, record, self._fetch)
                    self.errors.pop(name, None)
                except ReplicaStoreUnavailable:
                    raise
                except Exception as exc:  # refused here (policy, plugin): reported, the rest applies
                    self.errors[name] = f"{type(exc).__name__}: {exc}"
                    log.error("cluster change for plugin %s not applied on this node: %s", name, exc)
            for what, follow in self.followers.items():
                try:
                    await follow(snapshot, self._fetch)
                    self.errors.pop(what, None)
                except ReplicaStoreUnavailable:
                    raise
                except Exception as exc:  # reported like a plugin's refusal (each follower keeps its own details)
                    self.errors[what] = f"{type(exc).__name__}: {exc}"
                    log.exception("cluster changes of %s not applied on this node", what)
            self.applied = self.latest = snapshot.version
            self.mirror.set_applied_version(snapshot.version)
        self.synced_at = time.time()
        log.info("cluster version %d applied", snapshot.version)

    async def _fetch(self, sha256: str) -> bytes:
        local = self.mirror.directory / "modules" / f"{sha256}.wasm"
        if local.exists():
            wasm = local.read_bytes()
            if hashlib.sha256(wasm).hexdigest() == sha256:
                return wasm
        return await asyncio.to_thread(self.record.module, sha256)

    # -------------------------------------------------------------- reporting
    def report(self) -> dict[str, Any]:
        """What this node runs: the cluster version and each plugin as it is here."""
        plugins = {}
        for p in self.plugins.all():
            plugins[p.spec.name] = {
                "state": p.state,
                "sha256": p.sha256,
                "config_sha256": hashlib.sha256(p.spec.plugin_config).hexdigest(),
                "quarantined": p.state == "quarantined",
                "quarantine_reason": p.quarantine_reason or None,
                "manual": p.manually_quarantined,
                "traps": p.stats.traps,
            }
        return {
            "node": self.node,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "version": self.applied,
            "errors": dict(self.errors),
            "store": "unreachable" if self.store_error else "ok",
            "started": self.started,
            "updated": time.time(),
            "plugins": plugins,
        }

    def status(self) -> dict[str, Any]:
        """This node's view, for /health."""
        return {
            "node": self.node,
            "version": self.applied,
            "latest": self.latest,
            "converged": self.store_error is None and self.applied == self.latest and not self.errors,
            "store": "unreachable" if self.store_error else "ok",
            "store_error": self.store_error,
            "errors": dict(self.errors),
        }

    async def view(self) -> dict[str, Any]:
        """Every node's report and whether all run the latest version (/admin/nodes)."""
        try:
            version, nodes = await asyncio.to_thread(lambda: (self.record.version(), self.record.nodes()))
        except ReplicaStoreUnavailable as exc:
            return {"store": "unreachable", "store_error": str(exc), "converged": False, "version": None, "this_node": self.node, "nodes": [self.report()]}
        for n in nodes:
            n["converged"] = n.get("version") == version and not n.get("errors")
        return {
            "store": "ok",
            "version": version,
            "this_node": self.node,
            "converged": bool(nodes) and all(n["converged"] for n in nodes),
            "nodes": nodes,
        }


__all__ = ["ReplicaSync", "node_id"]
