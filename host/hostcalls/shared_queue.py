"""Shared queue host calls: proxy_register_shared_queue, proxy_resolve_shared_queue,
proxy_enqueue_shared_queue, proxy_dequeue_shared_queue (readiness: proxy_on_queue_ready)."""

from __future__ import annotations

from routeiq.abi.proxy_wasm import Status
from routeiq.services.shared_store import StoreUnavailable

from .group import CallGroup

# A store failure answers INTERNAL_FAILURE; the store logs it (rate-limited).
_UNAVAILABLE = Status.INTERNAL_FAILURE


class SharedQueueCalls(CallGroup):
    def proxy_register_shared_queue(self, name: str) -> tuple[int, int]:
        env = self.env
        if not name:
            return Status.BAD_ARGUMENT, 0
        try:
            listener = env.scheduler.queue_ready if env.scheduler is not None else None
            with env.store_wait():
                qid = env.services.store.register_queue(env.grant.namespace, name, listener)
        except StoreUnavailable:
            return _UNAVAILABLE, 0
        return Status.OK, qid

    def proxy_resolve_shared_queue(self, vm_id: str, name: str) -> tuple[int, int]:
        """The queue `name` registered by a module of VM `vm_id`, as in Envoy ("": the caller's own VM,
        its namespace); another VM's needs the policy's read grant of that namespace."""
        env = self.env
        namespace = vm_id or env.grant.namespace
        if not env.grant.can_read(namespace):
            return self.deny("proxy_resolve_shared_queue", "kv_namespace", f"namespace {namespace!r} is not granted", Status.BAD_ARGUMENT), 0
        try:
            with env.store_wait():
                qid = env.services.store.resolve_queue(namespace, name)
        except StoreUnavailable:
            return _UNAVAILABLE, 0
        if qid is None:
            return Status.NOT_FOUND, 0
        return Status.OK, qid

    def proxy_enqueue_shared_queue(self, queue_id: int, data: bytes) -> int:
        env = self.env
        store = env.services.store
        ref = store.queue(queue_id)
        if ref is None:
            return Status.NOT_FOUND
        if not env.grant.can_write(ref.namespace):
            return self.deny("proxy_enqueue_shared_queue", "kv_namespace", f"namespace {ref.namespace!r} is not writable", Status.BAD_ARGUMENT)
        limits = env.grant.limits
        if len(data) > limits.queue_item_bytes:
            return self.deny("proxy_enqueue_shared_queue", "queue_size", f"item of {len(data)} bytes exceeds {limits.queue_item_bytes}", Status.BAD_ARGUMENT)
        try:
            with env.store_wait():
                return store.enqueue(queue_id, data, limits.queue_max_items)
        except StoreUnavailable:
            return _UNAVAILABLE

    def proxy_dequeue_shared_queue(self, queue_id: int) -> tuple[int, bytes]:
        env = self.env
        store = env.services.store
        ref = store.queue(queue_id)
        if ref is None:
            return Status.NOT_FOUND, b""
        if not env.grant.can_read(ref.namespace):
            return self.deny("proxy_dequeue_shared_queue", "kv_namespace", f"namespace {ref.namespace!r} is not readable", Status.BAD_ARGUMENT), b""
        try:
            with env.store_wait():
                status, item = store.dequeue(queue_id)
        except StoreUnavailable:
            return _UNAVAILABLE, b""
        if status != Status.OK:
            return status, b""
        return Status.OK, item
