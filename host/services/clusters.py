"""The operator's clusters: named upstreams, as Envoy's `clusters:` (name -> endpoints,
scheme and TLS, timeouts, a connection pool of their own).

A `Cluster` is the resolved, immutable settings of one cluster (its SSL context built once,
at startup); a `ClusterTable` holds every cluster of one gateway with the state they need
while serving: the load-balancer position of each and one `HttpClient` (pool) per cluster.
Users (plugin callouts, and routes proxied to a cluster) look a name up with `get`, choose
an endpoint with `pick`, and send on `client(cluster)`:

    cluster = table.get("web_service")
    host, port = table.pick(cluster)
    response = await table.client(cluster).request(
        "GET", cluster.url(host, port, "/ok"), headers=..., connect_timeout_s=cluster.connect_timeout_s,
        server_hostname=cluster.server_hostname(host))

An operator names these endpoints, so they are trusted destinations (no SSRF check, which
guards only against destinations a plugin chose itself).
"""

from __future__ import annotations

import random
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

from .http_client import HttpClient

LbPolicy = Literal["round_robin", "random"]


class ClusterSettingError(ValueError):
    """A cluster setting that cannot be used; `field` names it (`tls.ca_file`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def split_endpoint(text: str) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets: `[::1]:8080`) -> (host, port); ValueError if not."""
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or not rest.startswith(":"):
            raise ValueError(f"{text!r} is not [ipv6]:port")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"{text!r} is not host:port (an IPv6 address goes in brackets: [::1]:8080)")
    if not host or any(c in host for c in "/@ \t"):
        raise ValueError(f"{text!r} has no valid host")
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: the port must be 1-65535")
    return host.lower(), int(port_text)


def client_ssl_context(verify: bool = True, ca_file: Path | None = None) -> ssl.SSLContext:
    """The TLS client context of a cluster: the system's trust store, or `ca_file` alone
    when given; `verify=False` accepts any certificate (an operator's explicit choice)."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True)
class Cluster:
    """One cluster's settings, resolved. `ssl_context` is set exactly when `scheme` is https."""

    name: str
    endpoints: tuple[tuple[str, int], ...]
    scheme: str = "http"
    connect_timeout_s: float = 5.0
    timeout_s: float = 60.0
    max_connections: int = 100
    lb_policy: LbPolicy = "round_robin"
    sni: str | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)

    @classmethod
    def build(
        cls,
        name: str,
        endpoints: Iterable[str],
        scheme: str = "http",
        *,
        tls: bool = False,
        sni: str | None = None,
        verify: bool = True,
        ca_file: Path | None = None,
        connect_timeout_s: float = 5.0,
        timeout_s: float = 60.0,
        max_connections: int = 100,
        lb_policy: LbPolicy = "round_robin",
    ) -> "Cluster":
        """A cluster from operator settings (`tls`: TLS settings were given, which implies
        https). ClusterSettingError names the setting that cannot be used."""
        parsed = []
        for i, text in enumerate(endpoints):
            try:
                parsed.append(split_endpoint(text))
            except ValueError as exc:
                raise ClusterSettingError(f"endpoints[{i}]", str(exc)) from None
        if not parsed:
            raise ClusterSettingError("endpoints", "a cluster needs at least one endpoint")
        scheme = "https" if tls else scheme
        context = None
        if scheme == "https":
            try:
                context = client_ssl_context(verify, ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ClusterSettingError("tls.ca_file", f"cannot load CA file {ca_file}: {getattr(exc, 'strerror', None) or exc}") from None
        return cls(name, tuple(parsed), scheme, connect_timeout_s, timeout_s, max_connections, lb_policy, sni, context)

    @property
    def timeout_ms(self) -> int:
        return max(int(self.timeout_s * 1000), 1)

    def url(self, host: str, port: int, path: str) -> str:
        """The URL of `path` on one endpoint of this cluster."""
        where = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{where}:{port}{path}"

    def server_hostname(self, host: str) -> str | None:
        """TLS SNI and certificate name for an endpoint: `tls.sni`, else the endpoint's host
        (None for plain http)."""
        if self.scheme != "https":
            return None
        return self.sni or host


class ClusterTable:
    """Every cluster of one gateway, by name, each with its own connection pool (its
    `max_connections`, its TLS context) and its load-balancer position. Built once per
    app by the composition root, which closes it on shutdown."""

    def __init__(self, clusters: Iterable[Cluster] = (), rng: random.Random | None = None) -> None:
        self._clusters: dict[str, Cluster] = {}
        for cluster in clusters:
            if cluster.name in self._clusters:
                raise ValueError(f"cluster {cluster.name!r} is defined twice")
            self._clusters[cluster.name] = cluster
        self._next = {name: 0 for name in self._clusters}  # round-robin positions
        self._rng = rng or random.Random()
        self._clients = {
            name: HttpClient(max_connections=c.max_connections, max_per_host=c.max_connections, ssl_context=c.ssl_context) for name, c in self._clusters.items()
        }

    def __contains__(self, name: object) -> bool:
        return name in self._clusters

    def __len__(self) -> int:
        return len(self._clusters)

    def names(self) -> list[str]:
        return sorted(self._clusters)

    def get(self, name: str) -> Cluster | None:
        """The cluster named exactly `name`, or None."""
        return self._clusters.get(name)

    def pick(self, cluster: Cluster) -> tuple[str, int]:
        """The endpoint (host, port) the next request to `cluster` goes to, by its lb_policy."""
        endpoints = cluster.endpoints
        if cluster.lb_policy == "random":
            return self._rng.choice(endpoints)
        position = self._next.get(cluster.name, 0)
        self._next[cluster.name] = (position + 1) % len(endpoints)
        return endpoints[position % len(endpoints)]

    def client(self, cluster: Cluster) -> HttpClient:
        """The connection pool of `cluster` (at most its max_connections, with its TLS)."""
        return self._clients[cluster.name]

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
