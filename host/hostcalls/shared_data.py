"""Shared data host calls: proxy_get_shared_data, proxy_set_shared_data (with CAS)."""

from __future__ import annotations

from routeiq.abi.capabilities import Capability
from routeiq.abi.proxy_wasm import Status
from routeiq.services.shared_store import StoreUnavailable

from .memory import return_bytes
from .state import HostEnv


class SharedDataCalls:
    def __init__(self, env: HostEnv) -> None:
        self.env = env

    def _key(self, call: str, raw: bytes) -> tuple[str, str] | int:
        env = self.env
        limit = env.grant.limits.kv_key_bytes
        if not raw:
            return Status.BAD_ARGUMENT
        if len(raw) > limit:
            return env.deny(call, "kv_size", f"key of {len(raw)} bytes exceeds {limit}", Status.BAD_ARGUMENT)
        return env.grant.split_key(raw.decode("utf-8", "replace"))

    def fetch(self, call: str, raw_key: bytes) -> tuple[int, bytes | None, int]:
        """Policy checks and the store read, shared by the core and component host calls.
        OK with value None means absent (the cas is then the create-if-absent token)."""
        env = self.env
        denied = env.require(call, Capability.SHARED_KV)
        if denied is not None:
            return denied, None, 0
        parsed = self._key(call, raw_key)
        if isinstance(parsed, int):
            return parsed, None, 0
        namespace, name = parsed
        if not env.grant.can_read(namespace):
            return env.deny(call, "kv_namespace", f"namespace {namespace!r} is not readable", Status.BAD_ARGUMENT), None, 0
        try:
            with env.store_wait():
                value, cas = env.services.store.get(namespace, name)
        except StoreUnavailable:  # logged (rate-limited) by the store
            return Status.INTERNAL_FAILURE, None, 0
        env.services.kv_ops[(env.plugin.name, "get")] += 1
        return Status.OK, value, cas

    def put(self, call: str, raw_key: bytes, raw_value: bytes, cas: int) -> int:
        """Policy checks and the store write (with CAS), shared like `fetch`."""
        env = self.env
        denied = env.require(call, Capability.SHARED_KV)
        if denied is not None:
            return denied
        parsed = self._key(call, raw_key)
        if isinstance(parsed, int):
            return parsed
        namespace, name = parsed
        limit = env.grant.limits.kv_value_bytes
        if len(raw_value) > limit:
            return env.deny(call, "kv_size", f"value of {len(raw_value)} bytes exceeds {limit}", Status.BAD_ARGUMENT)
        if not env.grant.can_write(namespace):
            return env.deny(call, "kv_namespace", f"namespace {namespace!r} is not writable", Status.BAD_ARGUMENT)
        try:
            with env.store_wait():
                status = env.services.store.set(namespace, name, raw_value, cas)
        except StoreUnavailable:  # logged (rate-limited) by the store
            return Status.INTERNAL_FAILURE
        env.services.kv_ops[(env.plugin.name, "set")] += 1
        return status

    def proxy_get_shared_data(self, key: int, key_size: int, ret_value: int, ret_size: int, ret_cas: int) -> int:
        vm = self.env.vm
        raw_key = vm.read(key, key_size)
        vm.check_writable((ret_value, 4), (ret_size, 4), (ret_cas, 4))
        status, value, cas = self.fetch("proxy_get_shared_data", raw_key)
        if status != Status.OK:
            return status
        vm.write_u32(ret_cas, cas)
        if value is None:
            return Status.NOT_FOUND
        return return_bytes(self.env, value, ret_value, ret_size)

    def proxy_set_shared_data(self, key: int, key_size: int, value: int, value_size: int, cas: int) -> int:
        vm = self.env.vm
        raw_key, raw_value = vm.read(key, key_size), vm.read(value, value_size)
        return self.put("proxy_set_shared_data", raw_key, raw_value, cas)
