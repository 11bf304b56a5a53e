"""What one loaded plugin may do, resolved from the policy (the host calls read this)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from routeiq.abi.capabilities import Capability


@dataclass(frozen=True)
class CalloutRule:
    """A host rule (scheme, host, port) or, with `cluster` set, a cluster rule (scheme,
    host and port empty): the two never match each other's calls."""

    scheme: str
    host: str  # lower-case name or IP literal
    port: int
    methods: frozenset[str]
    cluster: str | None = None  # an operator-named cluster, granted by name

    @property
    def host_ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        if self.cluster is not None:
            return None
        try:
            return ipaddress.ip_address(self.host.strip("[]"))
        except ValueError:
            return None

    def describe(self) -> str:
        if self.cluster is not None:
            return f"{','.join(sorted(self.methods))} cluster {self.cluster}"
        return f"{','.join(sorted(self.methods))} {self.scheme}://{self.host}:{self.port}"


@dataclass(frozen=True)
class GrantLimits:
    callouts_per_request: int = 4
    callout_timeout_ms: int = 5_000
    callout_max_response_bytes: int = 1024 * 1024
    kv_key_bytes: int = 256
    kv_value_bytes: int = 64 * 1024
    queue_item_bytes: int = 64 * 1024
    queue_max_items: int = 10_000


@dataclass(frozen=True)
class Grant:
    plugin: str
    capabilities: frozenset[Capability] = frozenset()
    callouts: tuple[CalloutRule, ...] = ()
    kv_read: frozenset[str] = frozenset()
    kv_write: frozenset[str] = frozenset()
    limits: GrantLimits = field(default_factory=GrantLimits)
    pinned_by: str = "nothing"
    vm_id: str = ""  # the config's vm_id: modules with the same one share a namespace, as in Envoy
    kv_per_consumer: bool = False  # own-namespace keys get the request's consumer as prefix

    @property
    def namespace(self) -> str:
        """The plugin's own KV and queue namespace (always readable and writable): its
        vm_id (shared by every module of that VM id, as Envoy scopes shared data and
        queues), or its name when it has none."""
        return self.vm_id or self.plugin

    def allows(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def can_read(self, namespace: str) -> bool:
        return namespace == self.namespace or namespace in self.kv_read or namespace in self.kv_write

    def can_write(self, namespace: str) -> bool:
        return namespace == self.namespace or namespace in self.kv_write

    def split_key(self, key: str) -> tuple[str, str]:
        """`ns/rest` addresses namespace `ns` when the policy names it; anything else is
        a key in the plugin's own namespace."""
        head, sep, rest = key.partition("/")
        if sep and head != self.namespace and (head in self.kv_read or head in self.kv_write):
            return head, rest
        return self.namespace, key


def deny_all(plugin: str, vm_id: str = "") -> Grant:
    return Grant(plugin=plugin, vm_id=vm_id)
