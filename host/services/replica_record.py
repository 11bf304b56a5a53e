"""The cluster's record of operator changes and of its nodes, in Redis.

Every admin change (a plugin's config, its swapped-in module, a manual quarantine) is one
atomic write: the cluster version is incremented, the plugin's fields change and the new
version is published on a channel, so nodes learn of it at once (pub/sub) or on their next
poll (a message lost while a node was disconnected). Module bytes are content-addressed
(`module:<sha256>`) and verified against their name when read. Each node reports what it
runs under `node:<id>` with a TTL: a node that stops reporting drops out of the view.

Keys (under `<prefix>:replicas:`): `version` (int), `names` (set of plugin names),
`plugin:<name>` (hash: config, module, manifest, quarantine, rev), `module:<sha256>`,
`node:<id>` (JSON, expires), channel `changes`.

Calls are synchronous and bounded by `timeout_s`; callers on the event loop run them on a
thread. Any failure is ReplicaStoreUnavailable."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

FIELDS = ("config", "module", "manifest", "quarantine")

# Fields are set and deleted, the version bumped and published in one step, so a reader
# never sees a change without its version or a version without its change.
_CHANGE_SCRIPT = """
local v = redis.call('INCR', KEYS[1])
local i = 3
while i <= #ARGV do
  if ARGV[i] == 'set' then
    redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i + 2])
  else
    redis.call('HDEL', KEYS[2], ARGV[i + 1])
  end
  i = i + 3
end
redis.call('HSET', KEYS[2], 'rev', v)
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('PUBLISH', ARGV[1], v)
return v
"""


class ReplicaStoreUnavailable(Exception):
    """Redis could not be reached or answered an error; nothing was stored."""


@dataclass(frozen=True)
class PluginRecord:
    """What operators changed for one plugin, cluster-wide (None: the file's value)."""

    rev: int = 0
    config: str | None = None
    module: str | None = None  # sha256 of the swapped-in module
    manifest: str | None = None  # JSON of the manifest a swapped-in module kept
    quarantine: str | None = None  # reason of a manual quarantine

    def fields(self) -> dict[str, str]:
        return {f: getattr(self, f) for f in FIELDS if getattr(self, f) is not None}


@dataclass(frozen=True)
class Snapshot:
    version: int
    plugins: Mapping[str, PluginRecord]


class ReplicaRecord:
    def __init__(self, url: str, prefix: str = "routeiq", timeout_s: float = 1.0) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        retry = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=retry)
        self._base = f"{prefix}:replicas:"
        self._change = self._client.register_script(_CHANGE_SCRIPT)
        self.channel = self._base + "changes"
        self.url = url
        self.timeout_s = timeout_s

    def _key(self, *parts: str) -> str:
        return self._base + ":".join(parts)

    def _run(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except self._errors as exc:
            raise ReplicaStoreUnavailable(f"{type(exc).__name__}: {exc}") from None

    # ------------------------------------------------------------------ reads
    def version(self) -> int:
        return int(self._run(lambda: self._client.get(self._key("version"))) or 0)

    def snapshot(self) -> Snapshot:
        """The version and every plugin's record, read consistently (one transaction)."""

        def read() -> Snapshot:
            names = sorted(n.decode() for n in self._client.smembers(self._key("names")))
            pipe = self._client.pipeline(transaction=True)
            pipe.get(self._key("version"))
            for name in names:
                pipe.hgetall(self._key("plugin", name))
            version, *hashes = pipe.execute()
            plugins = {}
            for name, fields in zip(names, hashes):
                values = {k.decode(): v.decode() for k, v in fields.items()}
                plugins[name] = PluginRecord(int(values.pop("rev", 0)), **{f: values.get(f) for f in FIELDS})
            return Snapshot(int(version or 0), plugins)

        return self._run(read)

    def module(self, sha256: str) -> bytes:
        """A stored module's bytes; ReplicaStoreUnavailable if absent or not what its name says."""
        wasm = self._run(lambda: self._client.get(self._key("module", sha256)))
        if wasm is None:
            raise ReplicaStoreUnavailable(f"module {sha256[:12]} is not in the replica store")
        if hashlib.sha256(wasm).hexdigest() != sha256:
            raise ReplicaStoreUnavailable(f"module {sha256[:12]} in the replica store does not match its sha256; refused")
        return bytes(wasm)

    # ----------------------------------------------------------------- writes
    def put_module(self, wasm: bytes) -> str:
        sha = hashlib.sha256(wasm).hexdigest()
        self._run(lambda: self._client.set(self._key("module", sha), wasm, nx=True))
        return sha

    def change(self, name: str, set_fields: Mapping[str, str] | None = None, unset: tuple[str, ...] = ()) -> int:
        """Apply one plugin's field changes atomically; returns the new cluster version."""
        args: list[str] = [self.channel, name]
        for field, value in (set_fields or {}).items():
            args += ["set", field, value]
        for field in unset:
            args += ["del", field, ""]
        keys = [self._key("version"), self._key("plugin", name), self._key("names")]
        return int(self._run(lambda: self._change(keys=keys, args=args)))

    def reseed(self, version: int, plugins: Mapping[str, Mapping[str, str]], modules: Mapping[str, bytes]) -> bool:
        """Redis lost what it held (a restart without persistence): write back a node's last
        good state as `version`, unless another node already did or a newer change exists.
        Returns whether this call wrote it."""
        import redis

        def write() -> bool:
            for sha, wasm in modules.items():
                self._client.set(self._key("module", sha), wasm, nx=True)
            with self._client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(self._key("version"))
                    current = int(pipe.get(self._key("version")) or 0)
                    if current >= version:
                        return False
                    pipe.multi()
                    for name, fields in plugins.items():
                        pipe.delete(self._key("plugin", name))
                        pipe.hset(self._key("plugin", name), mapping={**fields, "rev": version})
                        pipe.sadd(self._key("names"), name)
                    pipe.set(self._key("version"), version)
                    pipe.publish(self.channel, version)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    return False

        return bool(self._run(write))

    # ------------------------------------------------------------------ nodes
    def report(self, node_id: str, status: Mapping[str, Any], ttl_s: float) -> None:
        data = json.dumps(status, separators=(",", ":"), sort_keys=True)
        self._run(lambda: self._client.set(self._key("node", node_id), data, px=max(1, int(ttl_s * 1000))))

    def forget(self, node_id: str) -> None:
        self._run(lambda: self._client.delete(self._key("node", node_id)))

    def nodes(self) -> list[dict[str, Any]]:
        """Every node that reported within its TTL, by id."""

        def read() -> list[dict[str, Any]]:
            keys = sorted(self._client.scan_iter(match=self._key("node", "*"), count=200))
            values = self._client.mget(keys) if keys else []
            return [json.loads(v) for v in values if v is not None]

        return list(self._run(read))

    # ------------------------------------------------------------- listening
    def listen(self, on_change: Callable[[int], None], stop: threading.Event) -> None:
        """Call `on_change(version)` for every published change until `stop` is set
        (blocking: run it on its own thread). Reconnects after a failure; a change
        published while disconnected is found by the caller's poll."""
        while not stop.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                while not stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None and message.get("type") == "message":
                        try:
                            on_change(int(message["data"]))
                        except ValueError:
                            pass
            except self._errors:
                stop.wait(0.5)
            finally:
                try:
                    pubsub.close()
                except self._errors:
                    pass

    def close(self) -> None:
        self._client.close()


def manifest_json(manifest: Mapping[str, Any] | None) -> str | None:
    return json.dumps(manifest, separators=(",", ":"), sort_keys=True) if manifest is not None else None


__all__ = ["ReplicaRecord", "ReplicaStoreUnavailable", "PluginRecord", "Snapshot", "FIELDS", "manifest_json"]
