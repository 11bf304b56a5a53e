"""The upstream as an ASGI app: forwards each request to a configured URL on the
gateway's HttpClient (routeiq.services.http_client).

The upstream URL is built from parts (the configured scheme, host and port, its base
path, then the request's origin-form path), never by joining strings, so no `:path`
can name another host. The client has no cookie jar, follows no redirects, takes no
proxies from the environment and adds no headers of its own; bodies stream both ways,
passed on as they came (no decompression).

Deadlines (`upstream.timeout_s`), bounded in wall-clock time, not per socket read (a
trickle of one byte a second defeats a read timeout): the response head must arrive
within timeout_s of the request having been sent (504 otherwise), and then every body
chunk within timeout_s of the previous one (otherwise the response is cut: the client
sees a truncated body and a closed connection). A proxy cannot bound a whole response
it streams through (downloads, event streams), so there is no total deadline.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator

import aiohttp
from starlette.types import Receive, Scope, Send
from yarl import URL

from routeiq.hostcalls.header_rules import valid_origin_form
from routeiq.services.clusters import Cluster, ClusterTable
from routeiq.services.http_client import HttpClient, latin1_headers

from routeiq.error_responses import send_error

log = logging.getLogger("routeiq.gateway.upstream")


HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"host"}
)


class ReverseProxy:
    def __init__(self, base_url: str, http: HttpClient | None = None, timeout_s: float = 60.0, connect_timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._base = URL(self.base_url)
        self._base_path = self._base.raw_path.rstrip("/")
        self._http = http
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s

    def url_for(self, path: bytes, query: bytes) -> URL:
        """The upstream URL: configured scheme/host/port + base path + `path`, which the
        caller has checked is origin-form."""
        return URL.build(
            scheme=self._base.scheme,
            host=self._base.raw_host or "",
            port=self._base.explicit_port,
            path=self._base_path + path.decode("latin-1"),
            query_string=query.decode("latin-1"),
            encoded=True,
        )

    forwards_host = False  # a URL upstream gets its own Host

    def target(self, path: bytes, query: bytes) -> tuple[URL, str | None, HttpClient]:
        """Where this request goes: the URL, the TLS server name (None: the URL's host),
        and the client (pool) to send it on."""
        assert self._http is not None, "a ReverseProxy that serves requests needs the gateway's HttpClient"
        return self.url_for(path, query), None, self._http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("raw_path") or scope["path"].encode("latin-1")
        if not valid_origin_form(path):
            await send_error(send, 400, "the request target must be an origin-form path", "invalid_request_error", "invalid_path")
            return
        url, server_hostname, http = self.target(path, scope.get("query_string", b""))
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP]
        # Host is the upstream's, unless a plugin rewrote :authority (host rewriting); a
        # cluster gets the request's own :authority, as Envoy forwards it.
        host = scope.get("routeiq.authority") or (next((v for k, v in scope["headers"] if k.lower() == b"host"), None) if self.forwards_host else None)
        if host:
            headers.insert(0, (b"host", host))
        has_length = any(k.lower() == b"content-length" for k, _ in headers)
        method = scope["method"]

        loop = asyncio.get_running_loop()
        # Armed once the request is sent: a slow client upload is not the upstream's time.
        head_deadline = asyncio.timeout(None)
        gone = False

        async def body() -> AsyncIterator[bytes]:
            nonlocal gone
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone = True
                    raise ClientDisconnected()
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    head_deadline.reschedule(loop.time() + self.timeout_s)
                    return

        content: Any
        if has_length or method in ("POST", "PUT", "PATCH"):
            content = body()
        else:
            content = None
            await _drain(receive)
        try:
            async with head_deadline:
                if content is None:
                    head_deadline.reschedule(loop.time() + self.timeout_s)
                response = await http.request(
                    method, url, headers=latin1_headers(headers), data=content, connect_timeout_s=self.connect_timeout_s, server_hostname=server_hostname
                )
        except ClientDisconnected:
            return
        except TimeoutError as exc:  # the head deadline, or the connect timeout
            if gone:
                return
            await send_error(send, 504, f"upstream timed out: no response head within {self.timeout_s:g} s ({type(exc).__name__})", "upstream_error", "upstream_timeout")
            return
        except aiohttp.ClientError as exc:
            if gone:  # the upload failed because the client left
                return
            log.warning("upstream %s failed: %s", url, exc)
            await send_error(send, 502, f"upstream unreachable: {exc}", "upstream_error", "upstream_unreachable")
            return
        try:
            out_headers = [(k, v) for k, v in response.raw_headers if k.lower() not in HOP_BY_HOP]
            await send({"type": "http.response.start", "status": response.status, "headers": out_headers})
            chunks = response.content.iter_any()
            while True:
                try:
                    async with asyncio.timeout(self.timeout_s):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    log.warning("upstream %s sent nothing for %g s (upstream.timeout_s); response cut", url, self.timeout_s)
                    raise ConnectionAbortedError("upstream stalled mid-response") from None
                except aiohttp.ClientError as exc:
                    log.warning("upstream %s failed mid-response: %s", url, exc)
                    raise ConnectionAbortedError("upstream failed mid-response") from None
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            response.release()  # back to the pool, or closed if not read to the end


class ClientDisconnected(Exception):
    """The downstream client went away while its body was being forwarded."""


async def _drain(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


class ClusterProxy(ReverseProxy):
    """A route's upstream that is an operator cluster: each request goes to the endpoint
    the cluster's load balancer picks, on the cluster's own pool and TLS settings, with
    the request's :authority as Host (Envoy's router forwards it unchanged)."""

    forwards_host = True

    def __init__(self, cluster: Cluster, table: ClusterTable) -> None:
        super().__init__(cluster.url(*cluster.endpoints[0], ""), None, cluster.timeout_s, cluster.connect_timeout_s)
        self.cluster = cluster
        self._table = table

    def target(self, path: bytes, query: bytes) -> tuple[URL, str | None, HttpClient]:
        host, port = self._table.pick(self.cluster)
        url = URL.build(scheme=self.cluster.scheme, host=host, port=port, path=path.decode("latin-1"), query_string=query.decode("latin-1"), encoded=True)
        return url, self.cluster.server_hostname(host), self._table.client(self.cluster)
