"""Routing state shared between nodes: outcomes, feedback and trained artifacts.

A node is one worker process (`host:pid:<random>`). With `kv.backend: redis` every node appends what
its router learns (each outcome, each client feedback) to one Redis Stream,
`<prefix>:routing:events`, and applies every other node's events to its own router in stream
order, so learned strategies (the bandit's arms, latency EWMAs) learn from all traffic and
`/v1/feedback` finds a request whichever node served it. A node that starts later loads the
stored artifact, then replays the stream after it (bounded by `stream_max_len`).

The request path only appends to an in-memory buffer; a thread writes it in batches. A
second thread reads the stream (XREAD BLOCK) and hands batches to the event loop, where the
router and its strategy live, so strategies are never touched from two threads.

Redis down: every node keeps routing with its local state, reports `degraded`, buffers up
to `max_buffered` events (then drops the oldest, counted), and catches up from where it
stopped reading when Redis is back. Delivery is at least once: a batch that failed midway
is sent again. An artifact PUT is acknowledged only once Redis (or, with the memory
backend, the admin state dir) has stored it.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from routeiq.config import LoadedConfig, RoutingReplicationConfig
from routeiq.strategies.artifacts import ArtifactError, strategy_from, verify_artifact
from routeiq.strategies.base import Decision, Outcome, RoutingRequest

from .router import LlmRouter

log = logging.getLogger("routeiq.routing")

OUTCOME, FEEDBACK, ARTIFACT = "o", "f", "a"
_BATCH = 500  # stream entries per XADD pipeline / XREAD

# KEYS[1] = stream, KEYS[2] = artifact hash; ARGV = node, sha256, document, maxlen.
# One script: the artifact and its stream event are stored together or not at all, and the
# hash remembers the event's id, so a node loading it replays only what came after.
_STORE_ARTIFACT = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', 'n', ARGV[1], 't', 'a', 'd', ARGV[2])
redis.call('HSET', KEYS[2], 'doc', ARGV[3], 'sha256', ARGV[2], 'after', id)
return id
"""
# KEYS[1] = artifact hash; ARGV = document, sha256, stream position. Puts back the artifact
# in use after Redis lost it (restarted without persistence), unless another node did.
_RESTORE_ARTIFACT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'doc', ARGV[1], 'sha256', ARGV[2], 'after', ARGV[3])
return 1
"""


def node_id() -> str:
    # host:pid names the worker for an operator; the random tail keeps two nodes apart that
    # share both (containers with one hostname, two gateways in one process).
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class ArtifactNotStored(Exception):
    """The artifact could not be stored where every node (or the next start) finds it."""


def outcome_fields(outcome: Outcome) -> dict[str, Any]:
    """The parts of an outcome another node can rebuild it from (no decision context)."""
    r = outcome.request
    return {
        "request_id": r.request_id, "model": r.model, "query": r.query, "api_key": r.api_key,
        "deployment": outcome.deployment.id, "strategy": outcome.decision.strategy, "success": outcome.success,
        "latency_s": outcome.latency_s, "prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens, "cost": outcome.cost,
    }


def outcome_from(fields: Mapping[str, Any], router: LlmRouter) -> Outcome | None:
    """The outcome another node shipped, against this router's deployments (None: unknown
    deployment). Strategies recompute what they need from the query (the bandit's features)."""
    live = router.deployments.get(str(fields.get("deployment")))
    if live is None:
        return None
    request = RoutingRequest(str(fields["request_id"]), str(fields.get("model", "")), str(fields.get("query", "")), api_key=str(fields.get("api_key", "")))
    return Outcome(
        request=request,
        decision=Decision((live.routing,), str(fields.get("strategy", ""))),
        deployment=live.routing,
        success=bool(fields.get("success")),
        latency_s=float(fields.get("latency_s", 0.0)),
        prompt_tokens=int(fields.get("prompt_tokens", 0)),
        completion_tokens=int(fields.get("completion_tokens", 0)),
        cost=float(fields.get("cost", 0.0)),
    )


def install_artifact(router: LlmRouter, doc: Mapping[str, Any]) -> None:
    """Replace the router's strategy by one built from a verified artifact (same class)."""
    current = router.strategy
    if doc["name"] != current.name:
        raise ArtifactError(f"the artifact holds a {doc['name']!r} strategy but router.strategy is {current.name!r}")
    router.strategy = strategy_from(doc, type(current), router.strategy_options)


class RoutingReplication:
    """One node's link to the shared stream: a publisher thread and a reader thread."""

    def __init__(
        self,
        url: str,
        prefix: str,
        timeout_s: float,
        settings: RoutingReplicationConfig,
        current: Callable[[], LlmRouter | None],
        on_artifact: Callable[[dict[str, Any], str], None],
        node: str | None = None,
    ) -> None:
        import redis

        self._redis_errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self.node = node or node_id()
        self.settings = settings
        self.stream = f"{prefix}:routing:events"
        self.artifact_key = f"{prefix}:routing:artifact"
        self.timeout_s = timeout_s
        self._block_ms = 1000
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        # XREAD BLOCK holds its connection: the reader has its own, with room for the block.
        self._reader = redis.Redis.from_url(url, socket_timeout=timeout_s + self._block_ms / 1000, socket_connect_timeout=timeout_s)
        self._store_script = self._client.register_script(_STORE_ARTIFACT)
        self._restore_script = self._reader.register_script(_RESTORE_ARTIFACT)
        self.held: tuple[str, str] | None = None  # (document, sha256) of the artifact in use
        self._current = current
        self._on_artifact = on_artifact
        self._buffer: collections.deque[tuple[str, Any]] = collections.deque()
        self._publish_lock = threading.Lock()  # one writer at a time: batches, then an artifact
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.synced = threading.Event()  # the stored artifact was looked at once
        self._errors: dict[str, str | None] = {"publish": None, "read": None}
        self.published = 0
        self.dropped = 0
        self.applied = {"outcomes": 0, "feedback": 0, "artifacts": 0}
        self.skipped = 0  # events naming a deployment or request this node does not have
        self.last_id: str | None = None
        self.lag_s: float | None = None

    # -- request path (event loop thread) ------------------------------------------------
    def outcome(self, outcome: Outcome) -> None:
        self._push((OUTCOME, outcome))

    def feedback(self, request_id: str, score: float) -> None:
        self._push((FEEDBACK, {"request_id": request_id, "score": score}))

    def _push(self, event: tuple[str, Any]) -> None:
        # Only an append: serialising and writing happen on the publisher thread.
        if len(self._buffer) >= self.settings.max_buffered:
            try:
                self._buffer.popleft()
                self.dropped += 1
            except IndexError:
                pass
        self._buffer.append(event)

    async def wait_for(self, known: Callable[[], bool]) -> bool:
        """Poll `known()` while replicated events arrive, up to feedback_wait_s."""
        deadline = time.monotonic() + self.settings.feedback_wait_s
        while not known():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for name, target in (("publish", self._publish_loop), ("read", self._read_loop)):
            thread = threading.Thread(target=target, name=f"routeiq-routing-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        if self._stop.is_set():  # aclose() and close() both stop it
            return
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s + self._block_ms / 1000 + 1)
        self._threads = []
        if self._buffer:
            self.flush()  # what is left, once, bounded by the socket timeout
        self._client.close()
        self._reader.close()

    # -- writing ----------------------------------------------------------------------------
    def _publish_loop(self) -> None:
        while not self._stop.wait(self.settings.flush_interval_s):
            if not self.flush():
                self._stop.wait(min(1.0, self.timeout_s))  # Redis down: do not spin

    def _encode(self, kind: str, payload: Any) -> dict[str, str]:
        data = outcome_fields(payload) if kind == OUTCOME else payload
        return {"n": self.node, "t": kind, "d": json.dumps(data, separators=(",", ":"))}

    def flush(self) -> bool:
        """Write what is buffered; False if Redis failed (the events stay buffered)."""
        with self._publish_lock:
            while True:
                batch = []
                while self._buffer and len(batch) < _BATCH:
                    batch.append(self._buffer.popleft())
                if not batch:
                    if self._errors["publish"] is None:
                        return True
                    return self._attempt("publish", self._client.ping)[0]  # learn that Redis is back
                pipe = self._client.pipeline(transaction=False)
                for kind, payload in batch:
                    pipe.xadd(self.stream, self._encode(kind, payload), maxlen=self.settings.stream_max_len, approximate=True)
                if not self._attempt("publish", pipe.execute)[0]:
                    self._buffer.extendleft(reversed(batch))  # sent again later (at least once)
                    while len(self._buffer) > self.settings.max_buffered:
                        self._buffer.popleft()
                        self.dropped += 1
                    return False
                self.published += len(batch)

    def _attempt(self, what: str, fn: Callable[[], Any]) -> tuple[bool, Any]:
        """(True, result), or (False, None) with the failure noted: degraded until one succeeds."""
        try:
            result = fn()
        except self._redis_errors as exc:
            if self._errors[what] is None:
                log.error("routing replication: redis unavailable (%s): %s: %s; serving with local state", what, type(exc).__name__, exc)
            self._errors[what] = f"{type(exc).__name__}: {exc}"
            return False, None
        if self._errors[what] is not None:
            log.warning("routing replication: redis reachable again (%s)", what)
        self._errors[what] = None
        return True, result

    def hold(self, doc: Mapping[str, Any]) -> None:
        """The artifact this node now routes with (put back if Redis loses it)."""
        self.held = (json.dumps(dict(doc), sort_keys=True, separators=(",", ":")), str(doc["sha256"]))

    def store_artifact(self, doc: Mapping[str, Any], sha256: str) -> str:
        """Store a verified artifact and announce it on the stream (blocking; off the loop).
        This node's buffered events go first so every node sees them before the artifact."""
        document = json.dumps({**doc, "sha256": sha256}, sort_keys=True, separators=(",", ":"))
        self.flush()
        with self._publish_lock:
            try:
                entry = self._store_script(keys=[self.stream, self.artifact_key], args=[self.node, sha256, document, self.settings.stream_max_len])
            except self._redis_errors as exc:
                raise ArtifactNotStored(f"redis did not store it: {type(exc).__name__}: {exc}") from None
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    # -- reading ----------------------------------------------------------------------------
    def _read_loop(self) -> None:
        recovering = False
        while not self._stop.is_set():
            try:
                step = self._load_stored_artifact if self.last_id is None else self._read_once
                if recovering and self.last_id is not None:
                    step = self._restore_artifact
                ok, _ = self._attempt("read", step)
            except Exception:  # a bug here must not end replication for good
                log.exception("routing replication: reader failed")
                ok = False
            recovering = not ok  # the next read that works first checks what Redis lost
            if not ok:
                self._stop.wait(min(1.0, self.timeout_s))

    def _restore_artifact(self) -> None:
        """Redis is back after an outage: if it lost the stored artifact (no persistence),
        put back the one in use, so nodes starting later load it too. The stream is read
        on from where this node stopped."""
        if self.held is not None and self._restore_script(keys=[self.artifact_key], args=[self.held[0], self.held[1], self.last_id or "0"]):
            log.warning("routing replication: redis had lost the routing artifact; stored %s again", self.held[1])
        self._read_once()

    def _load_stored_artifact(self) -> None:
        """Before the first read: the stored artifact, and the stream position after it."""
        doc, after = self._reader.hmget(self.artifact_key, "doc", "after")
        self.last_id = after.decode() if after else "0"
        if doc:
            self._deliver([(ARTIFACT, self._parse_artifact(doc), 0.0)])
        self.synced.set()

    def _read_once(self) -> None:
        """One XREAD BLOCK; the position moves past an entry only once it is decoded, so a
        failure midway reads the rest again."""
        answer = self._reader.xread({self.stream: self.last_id}, count=_BATCH, block=self._block_ms)
        batch: list[tuple[str, Any, float]] = []
        try:
            for entry_id, fields in answer[0][1] if answer else ():
                event = self._decode(entry_id.decode(), fields)
                self.last_id = entry_id.decode()
                if event is not None:
                    batch.append(event)
        finally:
            if batch:
                self._deliver(batch)

    def _parse_artifact(self, raw: bytes) -> dict[str, Any] | None:
        try:
            return json.loads(raw)
        except ValueError:
            log.error("routing replication: the stored artifact is not JSON; ignored")
            return None

    def _decode(self, entry_id: str, fields: Mapping[bytes, bytes]) -> tuple[str, Any, float] | None:
        node = fields.get(b"n", b"").decode()
        kind = fields.get(b"t", b"").decode()
        sent_s = int(entry_id.split("-")[0]) / 1000
        if node == self.node:
            return None
        if kind == ARTIFACT:
            # The event names a sha256; the document is in the hash. A newer artifact that
            # replaced it has its own event further on: this one is skipped then.
            raw = self._reader.hmget(self.artifact_key, "doc", "sha256")
            if raw[1] is None or raw[1].decode() != fields.get(b"d", b"").decode():
                return None
            return ARTIFACT, self._parse_artifact(raw[0]), sent_s
        try:
            return kind, json.loads(fields.get(b"d", b"null")), sent_s
        except ValueError:
            return None

    def _deliver(self, batch: list[tuple[str, Any, float]]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._apply, batch)
        except RuntimeError:  # the loop closed meanwhile (shutdown)
            pass

    def _apply(self, batch: list[tuple[str, Any, float]]) -> None:
        """Other nodes' events, in stream order, on the event loop thread."""
        router = self._current()
        if router is None:
            return
        for kind, data, sent_s in batch:
            try:
                if kind == OUTCOME:
                    outcome = outcome_from(data, router)
                    if outcome is None:
                        self.skipped += 1
                        continue
                    router.learn(outcome)
                    self.applied["outcomes"] += 1
                elif kind == FEEDBACK:
                    if router.feedback(str(data["request_id"]), float(data["score"]), publish=False):
                        self.applied["feedback"] += 1
                    else:
                        self.skipped += 1
                elif kind == ARTIFACT and data is not None:
                    self._on_artifact(data, "redis")
                    self.applied["artifacts"] += 1
            except Exception:  # one bad event (or strategy bug) must not stop the others
                log.exception("routing replication: cannot apply a %r event", kind)
                self.skipped += 1
            if sent_s:
                self.lag_s = max(0.0, time.time() - sent_s)

    def status(self) -> dict[str, Any]:
        errors = {k: v for k, v in self._errors.items() if v}
        return {
            "node": self.node,
            "pid": os.getpid(),
            "status": "degraded" if errors else ("ok" if self.synced.is_set() else "starting"),
            "errors": errors,
            "stream": self.stream,
            "published": self.published,
            "buffered": len(self._buffer),
            "dropped": self.dropped,
            "applied": dict(self.applied),
            "skipped": self.skipped,
            "last_id": self.last_id,
            "lag_s": None if self.lag_s is None else round(self.lag_s, 3),
        }


class SharedRouting:
    """What the admin API, /health and the app see of routing state across nodes: the
    current artifact and, with Redis, the replication. Follows the router in service."""

    def __init__(self, current: Callable[[], LlmRouter | None], state_file: Path, replication_factory: Callable[["SharedRouting"], RoutingReplication] | None = None) -> None:
        self._current = current
        self.state_file = state_file  # memory backend: the artifact a restart loads
        self.artifact: dict[str, Any] | None = None  # the verified document in use (with sha256)
        self.artifact_source = ""
        self.replication = replication_factory(self) if replication_factory is not None else None
        router = current()
        if router is not None and self.replication is not None:
            router.replica = self.replication

    async def start(self) -> None:
        if self.replication is not None:
            self.replication.start(asyncio.get_running_loop())
            # Serve with the stored artifact from the first request if Redis answers soon.
            await asyncio.to_thread(self.replication.synced.wait, self.replication.timeout_s)
            return
        if self.state_file.exists():
            try:
                doc = json.loads(self.state_file.read_text(encoding="utf-8"))
                verified = verify_artifact(doc, str(self.state_file))
                self.install(doc, "state_dir")
            except (OSError, ValueError, ArtifactError) as exc:
                log.error("routing artifact kept in %s not loaded: %s", self.state_file, exc)
            else:
                log.info("routing artifact %s loaded from %s", verified.get("name"), self.state_file)

    def stop(self) -> None:
        if self.replication is not None:
            self.replication.stop()

    def adopt(self, router: LlmRouter) -> None:
        """A live reload built a new router: it replicates too and gets the artifact in use
        (if it runs that strategy)."""
        router.replica = self.replication
        if self.artifact is not None and self.artifact["name"] == router.strategy.name:
            install_artifact(router, verify_artifact(self.artifact))

    def install(self, doc: Mapping[str, Any], source: str) -> None:
        """Load a (re-verified) artifact document into the router in service."""
        verified = verify_artifact(doc)
        router = self._current()
        if router is None:
            return
        try:
            install_artifact(router, verified)
        except ArtifactError as exc:
            log.error("routing artifact from %s not loaded: %s", source, exc)
            return
        self.artifact = dict(doc)
        self.artifact_source = source
        if self.replication is not None:
            self.replication.hold(doc)

    async def put_artifact(self, doc: Any) -> dict[str, Any]:
        """Verify, store (Redis or the state dir), then load live. ArtifactError: refused;
        ArtifactNotStored: not acknowledged, nothing changed."""
        router = self._current()
        if router is None:
            raise ArtifactError("no LLM router (the config has no model_list)")
        verified = verify_artifact(doc, "the artifact")
        if verified["name"] != router.strategy.name:
            raise ArtifactError(f"the artifact holds a {verified['name']!r} strategy but router.strategy is {router.strategy.name!r}")
        try:  # built before storing: an artifact whose state does not load is refused, not kept
            strategy_from(verified, type(router.strategy), router.strategy_options)
        except Exception as exc:
            raise ArtifactError(f"the strategy refused the artifact's state: {type(exc).__name__}: {exc}") from None
        sha256 = str(doc["sha256"])
        if self.replication is not None:
            await asyncio.to_thread(self.replication.store_artifact, verified, sha256)
            source = "redis"
        else:
            try:
                await asyncio.to_thread(_atomic_write, self.state_file, json.dumps(doc, sort_keys=True).encode())
            except OSError as exc:
                raise ArtifactNotStored(f"the admin state dir did not keep it: {exc.strerror or exc}") from None
            source = "state_dir"
        self.install(doc, source)
        return {"ok": True, "strategy": verified["name"], "sha256": sha256, "stored": source}

    def describe(self, with_state: bool = False) -> dict[str, Any]:
        router = self._current()
        out: dict[str, Any] = {"pid": os.getpid()}
        if router is not None:
            state = router.strategy.state()
            canonical = json.dumps(state, sort_keys=True, separators=(",", ":"), default=_jsonable)
            out["strategy"] = router.strategy.name
            out["state_sha256"] = hashlib.sha256(canonical.encode()).hexdigest()
            if with_state:
                out["state"] = json.loads(canonical)
        artifact = self.artifact
        out["artifact"] = None if artifact is None else {"sha256": artifact.get("sha256"), "name": artifact.get("name"), "created": artifact.get("created"), "source": self.artifact_source}
        out["replication"] = self.replication.status() if self.replication is not None else {"status": "off"}
        return out


def _jsonable(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars in a strategy's state
    if tolist is not None:
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def build_shared_routing(config: LoadedConfig, current: Callable[[], LlmRouter | None]) -> SharedRouting:
    """Replication only with the redis backend (and router.replication.enabled)."""
    model = config.model
    kv = model.kv
    settings = model.router.replication
    state_file = config.resolve(model.admin.state_dir) / "routing" / "artifact.json"
    factory = None
    if kv.backend == "redis" and settings.enabled:
        assert kv.url is not None

        def factory(shared: SharedRouting) -> RoutingReplication:
            return RoutingReplication(kv.url or "", kv.prefix, kv.timeout_s, settings, current, shared.install)

    return SharedRouting(current, state_file, factory)
