"""Outbound HTTP calls for plugins: allow-list, SSRF defence, pinned address, caps.

Two steps, as in Envoy: the host call (synchronous, inside the guest) checks what needs no
DNS (syntax, the allow-list, a literal address) and only dispatches; the callout task then
resolves the name with the event loop's resolver, checks every address it got, and
connects to the vetted one (the Host header and TLS SNI keep the name), so a DNS answer
cannot change between check and use and a slow resolver never holds the event loop. A
name resolving to a refused address is a failed callout, audited like a refused call.
Loopback, private, link-local (cloud metadata), multicast and other non-global addresses
are refused unless the policy rule names that exact address. Redirects are not followed:
the plugin gets the 3xx as is.

The upstream is first looked up as the name of an operator's cluster (services/clusters.py),
as Envoy reads it: a cluster the grant names is called on one of its endpoints, which the
operator named and which are therefore trusted (no SSRF check); an upstream that is not a
cluster name is read as host:port (or a URL) under the rules above, unchanged.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from dataclasses import dataclass, field, replace
from typing import Awaitable, Callable, Iterable

import aiohttp

from routeiq.policy.grants import CalloutRule, Grant

from .breakers import BreakerBoard
from .clusters import Cluster, ClusterTable
from .http_client import HttpClient, latin1_headers

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_DEFAULT_PORT = {"http": 80, "https": 443}


class CalloutRefused(Exception):
    """The call is not allowed; `reason` is a short audit code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


RefusalSink = Callable[[CalloutRefused], None]


@dataclass(frozen=True)
class CalloutTarget:
    """A checked callout. `address` is None until the name is resolved and vetted
    (pin_address); `named` are the addresses a matching rule allows even if non-public;
    `on_refused` audits a refusal found after the host call returned. `cluster`: the
    operator's cluster the call goes to (host and port are the endpoint picked for it;
    no pinning, no SSRF check), None for a host:port callout."""

    scheme: str
    host: str
    port: int
    address: str | None
    method: str
    path: str
    headers: tuple[tuple[bytes, bytes], ...]
    named: frozenset[IPAddress] = frozenset()
    on_refused: RefusalSink | None = field(default=None, compare=False, repr=False)
    cluster: Cluster | None = field(default=None, compare=False)

    @property
    def breaker_name(self) -> str:
        """Calls to one cluster share a breaker (Envoy's circuit breaking is per cluster)."""
        return f"cluster:{self.cluster.name}" if self.cluster is not None else f"callout:{self.host}:{self.port}"

    @property
    def url(self) -> str:
        where = self.address or self.host
        host = f"[{where}]" if ":" in where else where
        return f"{self.scheme}://{host}:{self.port}{self.path}"


@dataclass
class CalloutResult:
    ok: bool
    status_code: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    message: str = ""
    timed_out: bool = False


_V4_IN_LOW_BITS = (
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated), also :: and ::1
    ipaddress.IPv6Network("::ffff:0:0/96"),  # IPv4-mapped
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # SIIT (IPv4-translated)
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64 well-known prefix
)
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # local-use NAT64: embedding varies


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address carries (mapped, compatible, SIIT, NAT64,
    6to4, Teredo server and client), as the OWASP SSRF cheat sheet asks to unwrap."""
    found = [ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)] if any(ip in net for net in _V4_IN_LOW_BITS) else []
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def forbidden_address(ip: IPAddress) -> bool:
    """Only global unicast may be called, whatever form the address takes."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL:
            return True
        inner = embedded_ipv4(ip)
        if inner:
            return any(forbidden_address(v4) for v4 in inner)
    return not ip.is_global or ip.is_multicast


def _split_authority(upstream: str, scheme: str) -> tuple[str, int]:
    text = upstream.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("/", 1)[0]
    if "@" in text:
        raise CalloutRefused("bad_target", f"userinfo is not allowed in a callout target: {upstream!r}")
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise CalloutRefused("bad_target", f"malformed IPv6 literal in callout target {upstream!r}")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not host:
        raise CalloutRefused("bad_target", f"no host in callout target {upstream!r}")
    if port_text:
        # ASCII digits only: str.isdigit() and int() also take '²' and '٠١'.
        if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
            raise CalloutRefused("bad_target", f"invalid port {port_text!r} in callout target {upstream!r}")
        return host.lower(), int(port_text)
    return host.lower(), _DEFAULT_PORT[scheme]


Lookup = Callable[[str, int], Awaitable[list[str]]]
_CACHE_MAX = 4096  # names cached at once


async def loop_lookup(host: str, port: int) -> list[str]:
    """The event loop's getaddrinfo (run on the loop's executor, never on the loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


class Resolver:
    """Resolves callout names off the event loop through `lookup`, with a short cache;
    concurrent lookups of one name share one query."""

    def __init__(self, lookup: Lookup = loop_lookup, ttl_s: float = 10.0) -> None:
        self._lookup = lookup
        self._ttl = ttl_s
        self._cache: dict[tuple[str, int], tuple[float, list[IPAddress]]] = {}
        self._pending: dict[tuple[str, int], asyncio.Task[list[IPAddress]]] = {}

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        literal = _literal_address(host)
        if literal is not None:
            return [literal]
        key = (host, port)
        cached = self._cache.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        task = self._pending.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._query(host, port))
            self._pending[key] = task
            task.add_done_callback(lambda done: self._done(key, done))
        # Shielded: one caller giving up (its timeout) does not cancel the others' query.
        return await asyncio.shield(task)

    def _done(self, key: tuple[str, int], task: "asyncio.Task[list[IPAddress]]") -> None:
        self._pending.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: every caller may have given up (timeouts) meanwhile

    async def _query(self, host: str, port: int) -> list[IPAddress]:
        try:
            found = await self._lookup(host, port)
            addresses = list(dict.fromkeys(ipaddress.ip_address(a.split("%", 1)[0]) for a in found))
        except socket.gaierror as exc:
            raise CalloutRefused("dns", f"cannot resolve {host!r}: {exc.strerror}") from None
        except (OSError, UnicodeError, ValueError) as exc:
            raise CalloutRefused("dns", f"cannot resolve {host[:64]!r}: {exc}") from None
        now = time.monotonic()
        if len(self._cache) >= _CACHE_MAX:  # a `*` rule lets a plugin ask for any name
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
        self._cache[(host, port)] = (now + self._ttl, addresses)
        return addresses


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


def _check_name(host: str) -> None:
    """A DNS name that could be resolved at all (checked in the host call, before any
    lookup): ASCII (IDNA form), at most 253 characters, labels of 1-63."""
    if not host.isascii():
        raise CalloutRefused("bad_target", f"callout host {host[:64]!r} is not ASCII (use its IDNA form)")
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise CalloutRefused("bad_target", f"callout host {host[:64]!r} is not a valid DNS name")


def check_addresses(host: str, addresses: list[IPAddress], named: frozenset[IPAddress]) -> None:
    """Every address must be public or one a matching rule names: a name with one
    private answer among public ones is refused (the connection could use any)."""
    if not addresses:
        raise CalloutRefused("dns", f"{host!r} has no addresses")
    for ip in addresses:
        if forbidden_address(ip) and ip not in named:
            raise CalloutRefused(
                "ssrf",
                f"{host} resolves to {ip}, a non-public address; a policy rule must name that address explicitly",
            )


async def pin_address(target: CalloutTarget, resolver: Resolver) -> CalloutTarget:
    """The target with the address to connect to: resolved, and every answer checked."""
    if target.address is not None:
        return target
    addresses = await resolver.resolve(target.host, target.port)
    check_addresses(target.host, addresses, target.named)
    return replace(target, address=str(addresses[0]))


def _host_matches(pattern: str, host: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return pattern == host


def _matching_rules(rules: Iterable[CalloutRule], scheme: str, host: str, port: int, method: str) -> list[CalloutRule]:
    return [r for r in rules if r.cluster is None and r.scheme == scheme and _host_matches(r.host, host) and r.port == port and method in r.methods]


def plan_callout(
    grant: Grant, upstream: str, headers: list[tuple[bytes, bytes]], on_refused: RefusalSink | None = None, clusters: ClusterTable | None = None
) -> CalloutTarget:
    """Check a proxy_http_call against the grant without DNS (a literal address is checked
    here; a name is resolved and checked by the callout task, see pin_address). `upstream`
    is a cluster of `clusters` first, host:port second. Every refusal, including input
    that does not parse, is a CalloutRefused."""
    cluster = clusters.get(upstream) if clusters is not None else None
    if cluster is not None:
        assert clusters is not None
        return _plan_cluster_callout(grant, cluster, clusters, headers, on_refused)
    try:
        return _plan_callout(grant, upstream, headers, on_refused)
    except CalloutRefused:
        raise
    except (ValueError, UnicodeError, OSError) as exc:
        raise CalloutRefused("bad_target", f"callout target {upstream[:64]!r} does not parse: {exc}") from None


def _plan_callout(grant: Grant, upstream: str, headers: list[tuple[bytes, bytes]], on_refused: RefusalSink | None) -> CalloutTarget:
    pseudo = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k.startswith(b":")}
    scheme = pseudo.get(":scheme", "http").lower()
    if scheme not in _DEFAULT_PORT:
        raise CalloutRefused("bad_target", f"scheme {scheme!r} is not http or https")
    method = pseudo.get(":method", "").upper()
    path = pseudo.get(":path", "")
    if not method or not path.startswith("/"):
        raise CalloutRefused("bad_target", "headers need :method and a :path starting with '/'")
    host, port = _split_authority(upstream, scheme)
    rules = _matching_rules(grant.callouts, scheme, host, port, method)
    if not rules:
        raise CalloutRefused("not_allowed", f"{method} {scheme}://{host}:{port} is not in the plugin's callout allow-list")
    named = frozenset(r.host_ip for r in rules if r.host_ip is not None)
    literal = _literal_address(host)
    if literal is not None:
        check_addresses(host, [literal], named)
    else:
        _check_name(host)
    authority = pseudo.get(":authority") or (host if port == _DEFAULT_PORT[scheme] else f"{host}:{port}")
    address = str(literal) if literal is not None else None
    return CalloutTarget(scheme, host, port, address, method, path, _request_headers(authority, headers), named, on_refused)


def _request_headers(authority: str, headers: list[tuple[bytes, bytes]]) -> tuple[tuple[bytes, bytes], ...]:
    """Host from `:authority`, then the plugin's regular headers (framing is the client's)."""
    forwarded = tuple((k, v) for k, v in headers if not k.startswith(b":") and k.lower() not in (b"host", b"content-length", b"transfer-encoding", b"connection"))
    return ((b"host", authority.encode()),) + forwarded


def _plan_cluster_callout(
    grant: Grant, cluster: Cluster, clusters: ClusterTable, headers: list[tuple[bytes, bytes]], on_refused: RefusalSink | None
) -> CalloutTarget:
    """A call to an operator's cluster, as Envoy's Context::httpCall: `:path`, `:method`
    and `:authority` are required (BAD_ARGUMENT otherwise), the plugin's `:authority` is
    the Host, the cluster's scheme and TLS are used whatever `:scheme` says, and the
    request goes to the endpoint the cluster's lb_policy picks now. Only a rule naming
    the cluster grants it; its endpoints then need no SSRF check (the operator named
    them)."""
    pseudo = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k.startswith(b":")}
    method = pseudo.get(":method", "").upper()
    path = pseudo.get(":path", "")
    authority = pseudo.get(":authority", "")
    if not method or not path.startswith("/") or not authority:
        raise CalloutRefused("bad_target", f"a call to cluster {cluster.name!r} needs :method, :authority and a :path starting with '/'")
    if any(c in authority for c in "\r\n\0"):
        raise CalloutRefused("bad_target", f"invalid :authority {authority[:64]!r}")
    if not any(r.cluster == cluster.name and method in r.methods for r in grant.callouts):
        raise CalloutRefused("not_allowed", f"{method} to cluster {cluster.name!r} is not in the plugin's callout allow-list (a rule `cluster: {cluster.name}` grants it)")
    host, port = clusters.pick(cluster)
    return CalloutTarget(cluster.scheme, host, port, None, method, path, _request_headers(authority, headers), frozenset(), on_refused, cluster)


class CalloutClient:
    """Plans and runs callouts: host:port ones on the gateway's HttpClient (pooled, no
    redirects, no proxies from the environment; bodies passed on undecoded), cluster ones
    on the cluster's own pool from `clusters` (the gateway's ClusterTable, which the
    gateway closes).

    A name is resolved here, inside the callout's timeout (`resolver`, the loop's
    getaddrinfo unless one is given). Each target (host:port, or a whole cluster) has a
    circuit breaker: a target that keeps failing is not called while its breaker is open;
    the plugin gets a failed call at once."""

    def __init__(
        self, breakers: BreakerBoard | None = None, resolver: Resolver | None = None, http: HttpClient | None = None, clusters: ClusterTable | None = None
    ) -> None:
        self._owned = http is None  # standalone (a test harness): its own client, closed by aclose
        self._http = http if http is not None else HttpClient()
        self.clusters = clusters if clusters is not None else ClusterTable()
        self.started = 0
        self.failed = 0
        self.refused = 0  # refused once resolved (a name with a non-public address)
        self.resolver = resolver or Resolver()
        self.breakers = breakers or BreakerBoard()

    def plan(self, grant: Grant, upstream: str, headers: list[tuple[bytes, bytes]], on_refused: RefusalSink | None = None) -> CalloutTarget:
        """plan_callout against this client's clusters (the host call's one entry)."""
        return plan_callout(grant, upstream, headers, on_refused, self.clusters)

    def default_timeout_ms(self, target: CalloutTarget, cap_ms: int) -> int:
        """The bound of a call that gives no timeout (0): its cluster's timeout_s, or the
        policy's cap for a host:port call; never above the cap."""
        return min(target.cluster.timeout_ms, cap_ms) if target.cluster is not None else cap_ms

    async def run(self, target: CalloutTarget, body: bytes, timeout_ms: int, max_bytes: int) -> CalloutResult:
        deadline = asyncio.get_running_loop().time() + timeout_ms / 1000.0
        try:
            async with asyncio.timeout_at(deadline):
                if target.cluster is None:  # a cluster's endpoints are the operator's: trusted
                    target = await pin_address(target, self.resolver)
        except TimeoutError:
            self.failed += 1
            return CalloutResult(False, message=f"timed out after {timeout_ms} ms resolving {target.host}", timed_out=True)
        except CalloutRefused as refused:
            self.failed += 1
            self.refused += 1
            if target.on_refused is not None:
                target.on_refused(refused)
            return CalloutResult(False, message=f"refused ({refused.reason}): {refused.detail}")
        breaker = self.breakers.get(target.breaker_name)
        if not breaker.allow():
            self.failed += 1
            return CalloutResult(False, message=f"circuit open for {target.breaker_name.split(':', 1)[1]}")
        probe_round = breaker.probe_round
        try:
            result = await self._run(target, body, deadline, timeout_ms, max_bytes)
        except Exception as exc:  # a request the client cannot even build is the plugin's, not the target's
            breaker.release(probe_round)
            self.failed += 1
            return CalloutResult(False, message=f"{type(exc).__name__}: {exc}")
        except BaseException:  # cancelled (the stream ended): no outcome, the probe slot back
            breaker.release(probe_round)
            raise
        breaker.success() if result.ok and result.status_code < 500 else breaker.failure()
        return result

    async def _run(self, target: CalloutTarget, body: bytes, deadline: float, timeout_ms: int, max_bytes: int) -> CalloutResult:
        self.started += 1
        left_s = max(deadline - asyncio.get_running_loop().time(), 0.001)
        cluster = target.cluster
        if cluster is not None:  # the cluster's pool and TLS; SNI from tls.sni, else the endpoint
            http, connect_s, sni = self.clusters.client(cluster), min(left_s, cluster.connect_timeout_s), cluster.server_hostname(target.host)
        else:  # the URL names the pinned address; Host (in the headers) and SNI keep the name
            http, connect_s, sni = self._http, left_s, target.host if target.scheme == "https" else None
        try:
            async with asyncio.timeout_at(deadline):
                response = await http.request(
                    target.method,
                    target.url,
                    headers=latin1_headers(target.headers),
                    data=body or None,
                    connect_timeout_s=connect_s,
                    server_hostname=sni,
                )
                try:
                    chunks = []
                    size = 0
                    async for chunk in response.content.iter_any():
                        size += len(chunk)
                        if size > max_bytes:
                            self.failed += 1
                            return CalloutResult(False, message=f"response larger than {max_bytes} bytes")
                        chunks.append(chunk)
                finally:
                    response.release()  # back to the pool, or closed if not read to the end
        except TimeoutError:
            self.failed += 1
            return CalloutResult(False, message=f"timed out after {timeout_ms} ms", timed_out=True)
        except aiohttp.ClientError as exc:
            self.failed += 1
            return CalloutResult(False, message=f"{type(exc).__name__}: {exc}")
        headers = [(b":status", str(response.status).encode())] + [(k.lower(), v) for k, v in response.raw_headers]
        return CalloutResult(True, response.status, headers, b"".join(chunks), [], response.reason or "")

    async def aclose(self) -> None:
        if self._owned:
            await self._http.aclose()
