"""The gateway's one outbound HTTP stack: LLM pass-through, the reverse proxy, plugin
callouts and webhook deliveries all go through one `HttpClient` the gateway constructs
and owns (one aiohttp session, one connection pool).

aiohttp rather than httpx: for the gateway's calls it costs 4-16x less client CPU per
request (bench/results/http_client.md). Settings that hold for every user: no proxies
or netrc from the environment, no redirects followed, no cookie jar (a cookie one
upstream sets must never reach another), no headers the caller did not ask for (no
User-Agent, Accept, Accept-Encoding or Content-Type added), and an explicit connect
timeout on every request; the callers bound the rest of each call in wall-clock time.
"""

from __future__ import annotations

import ssl
from typing import Any, Iterable

import aiohttp
from yarl import URL

# What aiohttp would add on its own; a proxy must forward only what the client sent.
_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class HttpClient:
    """One pool for all outbound calls. `max_per_host` caps the connections to any one
    host:port (upstream.max_connections); `max_connections` caps them all together.
    `ssl_context`: the TLS client settings of every https request (None: aiohttp's
    default, the system's trust store); a cluster gives its own (services/clusters.py)."""

    def __init__(self, max_connections: int = 200, max_per_host: int = 100, dns_cache_s: float = 10.0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.max_connections = max_connections
        self.max_per_host = max_per_host
        self.dns_cache_s = dns_cache_s
        self.ssl_context = ssl_context
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Made on first use: a session belongs to the event loop it was made on.
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                limit_per_host=self.max_per_host,
                ttl_dns_cache=int(self.dns_cache_s),
                ssl=self.ssl_context if self.ssl_context is not None else True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=_NO_AUTO_HEADERS,
                auto_decompress=False,
            )
        return self._session

    async def request(
        self,
        method: str,
        url: str | URL,
        *,
        headers: Iterable[tuple[str, str]] | dict[str, str] | None = None,
        data: Any = None,
        connect_timeout_s: float,
        server_hostname: str | None = None,
        decompress: bool = False,
    ) -> aiohttp.ClientResponse:
        """Send a request and return once the response head is in (the body is the
        caller's to read and release). A `URL` is sent as it is (a string is parsed and
        normalised first). `server_hostname`: TLS SNI and certificate name
        when `url` names an address; `decompress`: undo Content-Encoding (the proxy and
        callouts pass bodies on as they came)."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s, sock_read=None)
        return await self.session().request(
            method,
            url,
            headers=list(headers.items()) if isinstance(headers, dict) else list(headers or ()),
            data=data,
            timeout=timeout,
            allow_redirects=False,
            server_hostname=server_hostname,
            auto_decompress=decompress,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def latin1_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """ASGI-style byte headers as aiohttp takes them (latin-1 keeps every byte)."""
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]
