"""Shared data (KV with compare-and-swap) and shared queues, in process or in Redis.

Both backends have the same semantics, so a plugin behaves the same with one worker or
several: a value carries a CAS version (1..2^32-2, per key); `set` with cas 0 is
unconditional, with a version it must match, and with CREATE_IF_ABSENT_CAS it succeeds
only if the key does not exist. Queues are FIFO lists with readiness callbacks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Protocol

from routeiq.abi.capabilities import CREATE_IF_ABSENT_CAS
from routeiq.abi.proxy_wasm import Status

from .breakers import BreakerBoard

log = logging.getLogger("routeiq.services.store")

MAX_CAS = 0xFFFFFFFE
QueueListener = Callable[[int], None]


def next_cas(cas: int) -> int:
    return cas + 1 if cas < MAX_CAS else 1


class StoreUnavailable(Exception):
    """The backend cannot be reached; the host call answers INTERNAL_FAILURE."""


@dataclass(frozen=True)
class QueueRef:
    namespace: str
    name: str


class SharedStore(Protocol):
    blocking: bool  # calls wait on another process: not charged to the plugin's deadline

    def get(self, namespace: str, key: str) -> tuple[bytes | None, int]: ...
    def set(self, namespace: str, key: str, value: bytes, cas: int) -> Status: ...
    def register_queue(self, namespace: str, name: str, listener: QueueListener | None) -> int: ...
    def resolve_queue(self, namespace: str, name: str) -> int | None: ...
    def queue(self, queue_id: int) -> QueueRef | None: ...
    def enqueue(self, queue_id: int, data: bytes, max_items: int) -> Status: ...
    def dequeue(self, queue_id: int) -> tuple[Status, bytes]: ...
    def drop_listener(self, listener: QueueListener) -> None: ...
    def close(self) -> None: ...


class _QueueDirectory:
    """Process-local queue ids and readiness listeners (both backends use it)."""

    def __init__(self) -> None:
        self._ids: dict[QueueRef, int] = {}
        self._refs: dict[int, QueueRef] = {}
        self._listeners: dict[int, list[QueueListener]] = {}
        self._lock = threading.Lock()

    def id_for(self, ref: QueueRef) -> int:
        with self._lock:
            qid = self._ids.get(ref)
            if qid is None:
                qid = len(self._ids) + 1
                self._ids[ref] = qid
                self._refs[qid] = ref
            return qid

    def known(self, ref: QueueRef) -> int | None:
        return self._ids.get(ref)

    def ref(self, qid: int) -> QueueRef | None:
        return self._refs.get(qid)

    def listen(self, qid: int, listener: QueueListener | None) -> None:
        if listener is None:
            return
        with self._lock:
            listeners = self._listeners.setdefault(qid, [])
            if listener not in listeners:
                listeners.append(listener)

    def drop(self, listener: QueueListener) -> None:
        with self._lock:
            for listeners in self._listeners.values():
                if listener in listeners:
                    listeners.remove(listener)

    def notify(self, qid: int) -> None:
        for listener in list(self._listeners.get(qid, ())):
            try:
                listener(qid)
            except Exception:  # a listener bug must not break the enqueuer
                log.exception("queue listener failed")


class InMemoryStore:
    """The embedded default: one process, no dependencies."""

    blocking = False

    def __init__(self) -> None:
        self._data: dict[tuple[str, str], tuple[bytes, int]] = {}
        self._queues: dict[int, deque[bytes]] = {}
        self._directory = _QueueDirectory()
        self._registered: set[int] = set()

    def get(self, namespace: str, key: str) -> tuple[bytes | None, int]:
        item = self._data.get((namespace, key))
        if item is None:
            return None, CREATE_IF_ABSENT_CAS
        return item

    def set(self, namespace: str, key: str, value: bytes, cas: int) -> Status:
        current = self._data.get((namespace, key))
        if cas == CREATE_IF_ABSENT_CAS:
            if current is not None:
                return Status.CAS_MISMATCH
        elif cas and (current is None or current[1] != cas):
            return Status.CAS_MISMATCH
        self._data[(namespace, key)] = (value, next_cas(current[1] if current else 0))
        return Status.OK

    def register_queue(self, namespace: str, name: str, listener: QueueListener | None) -> int:
        qid = self._directory.id_for(QueueRef(namespace, name))
        self._queues.setdefault(qid, deque())
        self._registered.add(qid)
        self._directory.listen(qid, listener)
        return qid

    def resolve_queue(self, namespace: str, name: str) -> int | None:
        qid = self._directory.known(QueueRef(namespace, name))
        return qid if qid in self._registered else None

    def queue(self, queue_id: int) -> QueueRef | None:
        return self._directory.ref(queue_id) if queue_id in self._registered else None

    def enqueue(self, queue_id: int, data: bytes, max_items: int) -> Status:
        items = self._queues.get(queue_id)
        if items is None:
            return Status.NOT_FOUND
        if len(items) >= max_items:
            return Status.BAD_ARGUMENT
        items.append(data)
        self._directory.notify(queue_id)
        return Status.OK

    def dequeue(self, queue_id: int) -> tuple[Status, bytes]:
        items = self._queues.get(queue_id)
        if items is None:
            return Status.NOT_FOUND, b""
        if not items:
            return Status.EMPTY, b""
        return Status.OK, items.popleft()

    def drop_listener(self, listener: QueueListener) -> None:
        self._directory.drop(listener)

    def close(self) -> None:
        pass


# KEYS[1] = hash key; ARGV[1] = value, ARGV[2] = cas (0 = unconditional,
# 4294967295 = create only), ARGV[3] = MAX_CAS. Returns 1 on success, 0 on mismatch.
_SET_SCRIPT = """
local cur = redis.call('HGET', KEYS[1], 'c')
local cas = tonumber(ARGV[2])
if cas == 4294967295 then
  if cur then return 0 end
elseif cas ~= 0 then
  if (not cur) or tonumber(cur) ~= cas then return 0 end
end
local nxt = 1
if cur then nxt = tonumber(cur) + 1 end
if nxt > tonumber(ARGV[3]) then nxt = 1 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'c', nxt)
return 1
"""
# KEYS[1] = list key, ARGV[1] = item, ARGV[2] = max items, ARGV[3] = channel
_ENQUEUE_SCRIPT = """
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[3], KEYS[1])
return 1
"""


class FailureLog:
    """Logs a dependency's failures at most once per `interval_s`; the next line says
    how many were folded into it (a dead Redis must not log once per host call)."""

    def __init__(self, what: str, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._what = what
        self._interval_s = interval_s
        self._clock = clock
        self._last: float | None = None
        self._since = 0  # failures since the last line
        self.total = 0

    def note(self, detail: str) -> None:
        now = self._clock()
        self.total += 1
        self._since += 1
        if self._last is not None and now - self._last < self._interval_s:
            return
        folded = self._since - 1
        more = f" (and {folded} more failures in the last {now - self._last:.0f} s)" if folded and self._last is not None else ""
        log.error("%s unavailable: %s%s", self._what, detail, more)
        self._last = now
        self._since = 0


class RedisStore:
    """Several workers or replicas share state through one Redis, with the same CAS rules.

    A proxy-wasm host call is synchronous, so the calling callback waits for its answer;
    the I/O itself runs on the store's own thread and the wait is bounded as a whole by
    `timeout_s` (kv.timeout_s: connect, send, reply, whatever redis-py does inside).
    The host call layer does not charge the wait to the plugin's deadline (`blocking`).
    A failed or timed-out call raises StoreUnavailable (the plugin gets a status, never
    a trap) and counts on the `redis` breaker: while it is open calls fail at once
    instead of each waiting for a dead Redis. Failures are logged rate-limited.
    """

    blocking = True

    def __init__(self, url: str, prefix: str = "routeiq", timeout_s: float = 1.0, breakers: BreakerBoard | None = None) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._breaker = (breakers or BreakerBoard()).get("redis")
        self._redis_errors = (redis.RedisError, OSError)
        self._timeout_s = timeout_s
        # One reconnect for a pooled connection Redis closed (a restart); a timeout is
        # not retried: the caller's whole budget is timeout_s.
        retry = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=retry)
        self._io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="routeiq-redis")
        self.failures = FailureLog("shared data backend (redis)")
        self._prefix = prefix
        self._set = self._client.register_script(_SET_SCRIPT)
        self._enqueue = self._client.register_script(_ENQUEUE_SCRIPT)
        self._directory = _QueueDirectory()
        self._registered: set[int] = set()
        self._pubsub = None
        self._thread = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _call(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        """One Redis command on the store's thread, behind the breaker, within timeout_s."""
        breaker = self._breaker
        if not breaker.allow():
            self.failures.note("circuit open for redis")
            raise StoreUnavailable("circuit open for redis")
        probe_round = breaker.probe_round
        future = self._io.submit(fn, *args, **kwargs)
        try:
            result = future.result(timeout=self._timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()  # if it has not started, it never will
            detail = f"no answer within {self._timeout_s:g} s (kv.timeout_s)"
        except self._redis_errors as exc:
            detail = f"{type(exc).__name__}: {exc}"
        except BaseException:
            breaker.release(probe_round)
            raise
        else:
            breaker.success()
            return result
        breaker.failure()
        self.failures.note(detail)
        raise StoreUnavailable(detail)

    def _kv_key(self, namespace: str, key: str) -> str:
        return f"{self._prefix}:kv:{namespace}:{key}"

    def _queue_key(self, ref: QueueRef) -> str:
        return f"{self._prefix}:q:{ref.namespace}:{ref.name}"

    def _channel(self, ref: QueueRef) -> str:
        return f"{self._prefix}:qready:{ref.namespace}:{ref.name}"

    def get(self, namespace: str, key: str) -> tuple[bytes | None, int]:
        value, cas = self._call(self._client.hmget, self._kv_key(namespace, key), "v", "c")
        if cas is None:
            return None, CREATE_IF_ABSENT_CAS
        return value or b"", int(cas)

    def set(self, namespace: str, key: str, value: bytes, cas: int) -> Status:
        ok = self._call(self._set, keys=[self._kv_key(namespace, key)], args=[value, cas, MAX_CAS])
        return Status.OK if ok == 1 else Status.CAS_MISMATCH

    def register_queue(self, namespace: str, name: str, listener: QueueListener | None) -> int:
        ref = QueueRef(namespace, name)
        qid = self._directory.id_for(ref)
        # The registration is shared: other workers can resolve the queue by name.
        self._call(self._client.sadd, f"{self._prefix}:queues", f"{namespace}:{name}")
        self._registered.add(qid)
        if listener is not None:
            self._directory.listen(qid, listener)
            self._subscribe(ref)
        return qid

    def resolve_queue(self, namespace: str, name: str) -> int | None:
        exists = self._call(self._client.sismember, f"{self._prefix}:queues", f"{namespace}:{name}")
        if not exists:
            return None
        qid = self._directory.id_for(QueueRef(namespace, name))
        self._registered.add(qid)
        return qid

    def queue(self, queue_id: int) -> QueueRef | None:
        return self._directory.ref(queue_id) if queue_id in self._registered else None

    def enqueue(self, queue_id: int, data: bytes, max_items: int) -> Status:
        ref = self.queue(queue_id)
        if ref is None:
            return Status.NOT_FOUND
        ok = self._call(self._enqueue, keys=[self._queue_key(ref)], args=[data, max_items, self._channel(ref)])
        return Status.OK if ok == 1 else Status.BAD_ARGUMENT

    def dequeue(self, queue_id: int) -> tuple[Status, bytes]:
        ref = self.queue(queue_id)
        if ref is None:
            return Status.NOT_FOUND, b""
        item = self._call(self._client.lpop, self._queue_key(ref))
        if item is None:
            return Status.EMPTY, b""
        return Status.OK, item

    def _subscribe(self, ref: QueueRef) -> None:
        """Readiness crosses processes by pub/sub; listeners run on the event loop."""
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        channel = self._channel(ref)
        if self._pubsub is None:
            self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            self._pubsub.subscribe(**{channel: self._on_message})
            self._thread = self._pubsub.run_in_thread(sleep_time=0.05, daemon=True)
        else:
            self._pubsub.subscribe(**{channel: self._on_message})

    def _on_message(self, message: dict) -> None:  # type: ignore[type-arg]
        channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
        _, _, rest = channel.partition(":qready:")
        namespace, _, name = rest.partition(":")
        qid = self._directory.known(QueueRef(namespace, name))
        if qid is None:
            return
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self._directory.notify, qid)
        else:
            self._directory.notify(qid)

    def drop_listener(self, listener: QueueListener) -> None:
        self._directory.drop(listener)

    def close(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread.join(timeout=2)  # let it leave get_message before the socket closes
            self._thread = None
        if self._pubsub is not None:
            self._pubsub.close()
            self._pubsub = None
        self._io.shutdown(wait=False, cancel_futures=True)
        self._client.close()
