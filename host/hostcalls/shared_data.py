"""Shared data host calls: proxy_get_shared_data, proxy_set_shared_data (with CAS)."""

from __future__ import annotations

from routeiq.abi.proxy_wasm import Status
from routeiq.services.shared_store import StoreUnavailable

from .group import CallGroup


class SharedDataCalls(CallGroup):
    def _key(self, call: str, raw: bytes) -> tuple[str, str] | int:
        env = self.env
        limit = env.grant.limits.kv_key_bytes
        if not raw:
            return Status.BAD_ARGUMENT
        if len(raw) > limit:
            return self.deny(call, "kv_size", f"key of {len(raw)} bytes exceeds {limit}", Status.BAD_ARGUMENT)
        namespace, name = env.grant.split_key(raw.decode("utf-8", "replace"))
        if env.grant.kv_per_consumer and namespace == env.grant.namespace:
            # The gateway's authentication, not anything the plugin or client says, picks the slice.
            stream = env.stream
            consumer = stream.consumer.get("id") if stream is not None and stream.consumer is not None else None
            if consumer is not None:
                name = f"@{consumer}/{name}"
        return namespace, name

    def proxy_get_shared_data(self, raw_key: bytes) -> tuple[int, tuple[bytes | None, int]]:
        """OK with (value, cas); value None means absent (the cas is then the
        create-if-absent token, see abi.capabilities.CREATE_IF_ABSENT_CAS)."""
        env = self.env
        parsed = self._key("proxy_get_shared_data", raw_key)
        if isinstance(parsed, int):
            return parsed, (None, 0)
        namespace, name = parsed
        if not env.grant.can_read(namespace):
            return self.deny("proxy_get_shared_data", "kv_namespace", f"namespace {namespace!r} is not readable", Status.BAD_ARGUMENT), (None, 0)
        try:
            with env.store_wait():
                value, cas = env.services.store.get(namespace, name)
        except StoreUnavailable:  # logged (rate-limited) by the store
            return Status.INTERNAL_FAILURE, (None, 0)
        env.services.kv_ops[(env.plugin.name, "get")] += 1
        return Status.OK, (value, cas)

    def proxy_set_shared_data(self, raw_key: bytes, raw_value: bytes, cas: int) -> int:
        env = self.env
        parsed = self._key("proxy_set_shared_data", raw_key)
        if isinstance(parsed, int):
            return parsed
        namespace, name = parsed
        limit = env.grant.limits.kv_value_bytes
        if len(raw_value) > limit:
            return self.deny("proxy_set_shared_data", "kv_size", f"value of {len(raw_value)} bytes exceeds {limit}", Status.BAD_ARGUMENT)
        if not env.grant.can_write(namespace):
            return self.deny("proxy_set_shared_data", "kv_namespace", f"namespace {namespace!r} is not writable", Status.BAD_ARGUMENT)
        try:
            with env.store_wait():
                status = env.services.store.set(namespace, name, raw_value, cas)
        except StoreUnavailable:  # logged (rate-limited) by the store
            return Status.INTERNAL_FAILURE
        env.services.kv_ops[(env.plugin.name, "set")] += 1
        return status
