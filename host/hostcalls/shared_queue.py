"""Shared queue host calls: proxy_register_shared_queue, proxy_resolve_shared_queue,
proxy_enqueue_shared_queue, proxy_dequeue_shared_queue (readiness: proxy_on_queue_ready)."""

from __future__ import annotations

from routeiq.abi.capabilities import Capability
from routeiq.abi.proxy_wasm import Status
from routeiq.services.shared_store import StoreUnavailable

from .memory import return_bytes
from .state import HostEnv


class SharedQueueCalls:
    def __init__(self, env: HostEnv) -> None:
        self.env = env

    def _unavailable(self, exc: StoreUnavailable) -> int:
        return Status.INTERNAL_FAILURE  # logged (rate-limited) by the store

    def proxy_register_shared_queue(self, name: int, name_size: int, ret_id: int) -> int:
        env = self.env
        raw = env.vm.read(name, name_size)
        env.vm.check_writable((ret_id, 4))
        denied = env.require("proxy_register_shared_queue", Capability.SHARED_QUEUE)
        if denied is not None:
            return denied
        if not raw:
            return Status.BAD_ARGUMENT
        try:
            with env.store_wait():
                qid = env.services.store.register_queue(env.grant.namespace, raw.decode("utf-8", "replace"), env.queue_listener)
        except StoreUnavailable as exc:
            return self._unavailable(exc)
        env.vm.write_u32(ret_id, qid)
        return Status.OK

    def proxy_resolve_shared_queue(self, vm_id: int, vm_id_size: int, name: int, name_size: int, ret_id: int) -> int:
        env = self.env
        namespace = env.vm.read(vm_id, vm_id_size).decode("utf-8", "replace") or env.grant.namespace
        raw = env.vm.read(name, name_size)
        env.vm.check_writable((ret_id, 4))
        denied = env.require("proxy_resolve_shared_queue", Capability.SHARED_QUEUE)
        if denied is not None:
            return denied
        if not env.grant.can_read(namespace):
            return env.deny("proxy_resolve_shared_queue", "kv_namespace", f"namespace {namespace!r} is not granted", Status.BAD_ARGUMENT)
        try:
            with env.store_wait():
                qid = env.services.store.resolve_queue(namespace, raw.decode("utf-8", "replace"))
        except StoreUnavailable as exc:
            return self._unavailable(exc)
        if qid is None:
            return Status.NOT_FOUND
        env.vm.write_u32(ret_id, qid)
        return Status.OK

    def proxy_enqueue_shared_queue(self, queue_id: int, value: int, value_size: int) -> int:
        env = self.env
        data = env.vm.read(value, value_size)
        denied = env.require("proxy_enqueue_shared_queue", Capability.SHARED_QUEUE)
        if denied is not None:
            return denied
        store = env.services.store
        ref = store.queue(queue_id)
        if ref is None:
            return Status.NOT_FOUND
        if not env.grant.can_write(ref.namespace):
            return env.deny("proxy_enqueue_shared_queue", "kv_namespace", f"namespace {ref.namespace!r} is not writable", Status.BAD_ARGUMENT)
        limits = env.grant.limits
        if len(data) > limits.queue_item_bytes:
            return env.deny("proxy_enqueue_shared_queue", "queue_size", f"item of {len(data)} bytes exceeds {limits.queue_item_bytes}", Status.BAD_ARGUMENT)
        try:
            with env.store_wait():
                return store.enqueue(queue_id, data, limits.queue_max_items)
        except StoreUnavailable as exc:
            return self._unavailable(exc)

    def proxy_dequeue_shared_queue(self, queue_id: int, ret_data: int, ret_size: int) -> int:
        env = self.env
        env.vm.check_writable((ret_data, 4), (ret_size, 4))
        denied = env.require("proxy_dequeue_shared_queue", Capability.SHARED_QUEUE)
        if denied is not None:
            return denied
        store = env.services.store
        ref = store.queue(queue_id)
        if ref is None:
            return Status.NOT_FOUND
        if not env.grant.can_read(ref.namespace):
            return env.deny("proxy_dequeue_shared_queue", "kv_namespace", f"namespace {ref.namespace!r} is not readable", Status.BAD_ARGUMENT)
        try:
            with env.store_wait():
                status, item = store.dequeue(queue_id)
        except StoreUnavailable as exc:
            return self._unavailable(exc)
        if status != Status.OK:
            return status
        return return_bytes(env, item, ret_data, ret_size)
