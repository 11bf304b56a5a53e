"""Outbound HTTP calls for plugins: allow-list, SSRF defence, pinned address, caps.

The upstream name is resolved once, here, and the connection goes to that address (the
Host header and TLS SNI keep the name), so a DNS answer cannot change between check and
use. Loopback, private, link-local (cloud metadata), multicast and other non-global
addresses are refused unless the policy rule names that exact address. Redirects are
not followed: the plugin gets the 3xx as is.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass, field
from typing import Iterable

import aiohttp

from routeiq.policy.grants import CalloutRule, Grant

from .breakers import BreakerBoard
from .http_client import HttpClient, latin1_headers

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_DEFAULT_PORT = {"http": 80, "https": 443}


class CalloutRefused(Exception):
    """The call is not allowed; `reason` is a short audit code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class CalloutTarget:
    scheme: str
    host: str
    port: int
    address: str
    method: str
    path: str
    headers: tuple[tuple[bytes, bytes], ...]

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
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


class Resolver:
    """getaddrinfo with a short cache (host calls are synchronous)."""

    def __init__(self, ttl_s: float = 10.0) -> None:
        self._ttl = ttl_s
        self._cache: dict[tuple[str, int], tuple[float, list[IPAddress]]] = {}

    def resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        now = time.monotonic()
        cached = self._cache.get((host, port))
        if cached and cached[0] > now:
            return cached[1]
        if not host.isascii():
            raise CalloutRefused("bad_target", f"callout host {host[:64]!r} is not ASCII (use its IDNA form)")
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos))
        except socket.gaierror as exc:
            raise CalloutRefused("dns", f"cannot resolve {host!r}: {exc.strerror}") from None
        except (OSError, UnicodeError, ValueError) as exc:  # over-long labels and the like
            raise CalloutRefused("dns", f"cannot resolve {host[:64]!r}: {exc}") from None
        self._cache[(host, port)] = (now + self._ttl, addresses)
        return addresses


def _host_matches(pattern: str, host: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return pattern == host


def _matching_rules(rules: Iterable[CalloutRule], scheme: str, host: str, port: int, method: str) -> list[CalloutRule]:
    return [r for r in rules if r.scheme == scheme and _host_matches(r.host, host) and r.port == port and method in r.methods]


def plan_callout(grant: Grant, upstream: str, headers: list[tuple[bytes, bytes]], resolver: Resolver) -> CalloutTarget:
    """Check a proxy_http_call against the grant and pick the address to connect to.
    Every refusal, including input that does not parse, is a CalloutRefused."""
    try:
        return _plan_callout(grant, upstream, headers, resolver)
    except CalloutRefused:
        raise
    except (ValueError, UnicodeError, OSError) as exc:
        raise CalloutRefused("bad_target", f"callout target {upstream[:64]!r} does not parse: {exc}") from None


def _plan_callout(grant: Grant, upstream: str, headers: list[tuple[bytes, bytes]], resolver: Resolver) -> CalloutTarget:
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
    addresses = resolver.resolve(host, port)
    if not addresses:
        raise CalloutRefused("dns", f"{host!r} has no addresses")
    named = {r.host_ip for r in rules if r.host_ip is not None}
    for ip in addresses:
        if forbidden_address(ip) and ip not in named:
            raise CalloutRefused(
                "ssrf",
                f"{host} resolves to {ip}, a non-public address; a policy rule must name that address explicitly",
            )
    authority = pseudo.get(":authority") or (host if port == _DEFAULT_PORT[scheme] else f"{host}:{port}")
    forwarded = tuple((k, v) for k, v in headers if not k.startswith(b":") and k.lower() not in (b"host", b"content-length", b"transfer-encoding", b"connection"))
    return CalloutTarget(scheme, host, port, str(addresses[0]), method, path, ((b"host", authority.encode()),) + forwarded)


class CalloutClient:
    """Runs planned callouts on the gateway's HttpClient (pooled, no redirects, no proxies
    from the environment; bodies passed on undecoded).

    Each target (host:port) has a circuit breaker: a target that keeps failing is not
    called while its breaker is open; the plugin gets a failed call at once."""

    def __init__(self, breakers: BreakerBoard | None = None, http: HttpClient | None = None) -> None:
        self._owned = http is None  # standalone (a test harness): its own client, closed by aclose
        self._http = http if http is not None else HttpClient()
        self.started = 0
        self.failed = 0
        self.resolver = Resolver()
        self.breakers = breakers or BreakerBoard()

    async def run(self, target: CalloutTarget, body: bytes, timeout_ms: int, max_bytes: int) -> CalloutResult:
        breaker = self.breakers.get(f"callout:{target.host}:{target.port}")
        if not breaker.allow():
            self.failed += 1
            return CalloutResult(False, message=f"circuit open for {target.host}:{target.port}")
        probe_round = breaker.probe_round
        try:
            result = await self._run(target, body, timeout_ms, max_bytes)
        except Exception as exc:  # a request the client cannot even build is the plugin's, not the target's
            breaker.release(probe_round)
            self.failed += 1
            return CalloutResult(False, message=f"{type(exc).__name__}: {exc}")
        except BaseException:  # cancelled (the stream ended): no outcome, the probe slot back
            breaker.release(probe_round)
            raise
        breaker.success() if result.ok and result.status_code < 500 else breaker.failure()
        return result

    async def _run(self, target: CalloutTarget, body: bytes, timeout_ms: int, max_bytes: int) -> CalloutResult:
        self.started += 1
        timeout_s = timeout_ms / 1000.0
        try:
            async with asyncio.timeout(timeout_s):
                # The URL names the pinned address; Host (in the headers) and SNI keep the name.
                response = await self._http.request(
                    target.method,
                    target.url,
                    headers=latin1_headers(target.headers),
                    data=body or None,
                    connect_timeout_s=timeout_s,
                    server_hostname=target.host if target.scheme == "https" else None,
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
