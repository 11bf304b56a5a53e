"""Upstream MCP servers (Streamable HTTP) fronted by the gateway: their tools are listed as
`<prefix>_<tool>` beside the Wasm tools and forwarded with the official `mcp` client SDK.

Each server has one long-lived client session, held by its own task (the SDK's transport
and session are anyio task groups: they must be entered and left by one task). That task
connects, lists the server's tools, and then, every `retry_s`, lists them again; when the
server cannot be reached it keeps its last list and tries again every `retry_s`. A call
takes the session of the moment; a call that cannot reach the server (transport error,
`timeout_s`) counts a failure on the server's breaker (`mcp:<name>` on the gateway's
BreakerBoard) and drops the session, so the next call or round reconnects. While the
breaker is open, calls are answered at once with an error naming it.

An upstream that is down never takes /mcp down: a server never reached has no tools
listed; one that went away keeps its last list, and calls answer a tool error the model
can read. /health reports each server and says `degraded` while one is not connected."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterator, Sequence

import httpx2
import mcp.types as types
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from routeiq.config import McpAllowConfig, McpServerConfig
from routeiq.policy.config_schema import check_schema
from routeiq.services.breakers import CLOSED, BreakerBoard, CircuitBreaker

from .tools import ToolInputError, ToolStats, check_arguments

log = logging.getLogger("routeiq.mcp")

TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")  # what MCP clients accept as a tool name
SEPARATOR = "_"  # `<prefix>_<tool>`: also valid where clients allow only [A-Za-z0-9_-] (function names)

Progress = Callable[[float, float | None, str | None], Awaitable[None]]


class UpstreamUnavailable(Exception):
    """The server could not be reached, timed out, or its breaker is open (nothing ran there)."""


@dataclass
class UpstreamTool:
    """One upstream tool as the gateway lists it."""

    name: str  # the gateway's name: <prefix>_<upstream name>
    upstream_name: str
    server: "UpstreamServer"
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    allow: McpAllowConfig
    stats: ToolStats = field(default_factory=ToolStats)

    def describe(self) -> types.Tool:
        return types.Tool(name=self.name, description=self.description, input_schema=self.input_schema, output_schema=self.output_schema)

    def check_arguments(self, arguments: dict[str, Any]) -> None:
        """The upstream's input schema, checked here first, as for a Wasm tool."""
        check_arguments(self.name, self.input_schema, arguments, self.stats)


class _Connection:
    """One client session to the server, owned by one task (see the module docstring)."""

    def __init__(self, settings: McpServerConfig) -> None:
        self.settings = settings
        self.session: ClientSession | None = None
        self._close = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> ClientSession:
        ready: asyncio.Future[ClientSession] = asyncio.get_running_loop().create_future()
        self._task = asyncio.ensure_future(self._hold(ready))
        try:
            self.session = await asyncio.wait_for(asyncio.shield(ready), self.settings.connect_timeout_s)
        except BaseException:
            await self.close()
            raise
        return self.session

    async def _hold(self, ready: asyncio.Future[ClientSession]) -> None:
        s = self.settings
        try:
            async with httpx2.AsyncClient(headers=s.headers, timeout=httpx2.Timeout(s.timeout_s, connect=s.connect_timeout_s), trust_env=False) as http:
                async with streamable_http_client(s.url, http_client=http) as (read, write):
                    async with ClientSession(read, write) as session:
                        await session.initialize()
                        if not ready.done():
                            ready.set_result(session)
                        await self._close.wait()
        except BaseException as exc:  # the transport's task groups end with the server
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else UpstreamUnavailable("cancelled"))
            if not isinstance(exc, Exception):
                raise
        finally:
            self.session = None

    @property
    def alive(self) -> bool:
        return self.session is not None and self._task is not None and not self._task.done()

    async def close(self) -> None:
        self._close.set()
        task, self._task = self._task, None
        self.session = None
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(task, 2.0)
            except BaseException:  # a wedged transport: cancel what is left of it
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task


def _reason(exc: BaseException) -> str:
    """A readable reason from what the SDK raises (often an exception group)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# Errors the client SDK makes up when no answer arrives (connection lost, timeout, the
# server's HTTP error, a session the server no longer knows - it restarted): the server
# did not answer, so they count against it and the session is opened again.
_SDK_TRANSPORT_CODES = (types.CONNECTION_CLOSED, types.REQUEST_TIMEOUT)
_SDK_TRANSPORT_MESSAGES = ("Session terminated", "Server returned an error response")


def _transport_failure(exc: MCPError) -> bool:
    return exc.error.code in _SDK_TRANSPORT_CODES or exc.error.message in _SDK_TRANSPORT_MESSAGES


class UpstreamServer:
    def __init__(self, settings: McpServerConfig, breaker: CircuitBreaker) -> None:
        self.settings = settings
        self.name = settings.name
        self.prefix = settings.prefix or settings.name
        self.breaker = breaker
        self.tools: dict[str, UpstreamTool] = {}
        self.error: str | None = "not connected yet"
        self.connected_at: float | None = None
        self._stats: dict[str, ToolStats] = {}  # by gateway name, kept across relistings
        self._conn: _Connection | None = None
        self._lock = asyncio.Lock()  # one connect at a time
        self._wake = asyncio.Event()

    # ------------------------------------------------------------ connection
    async def _session(self) -> ClientSession:
        if self._conn is not None and self._conn.alive and self._conn.session is not None:
            return self._conn.session
        async with self._lock:
            if self._conn is not None and self._conn.alive and self._conn.session is not None:
                return self._conn.session
            if self._conn is not None:
                await self._conn.close()
            conn = _Connection(self.settings)
            try:
                session = await conn.open()
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    raise
                self.error = _reason(exc)
                raise UpstreamUnavailable(f"upstream MCP server {self.name!r} ({self.settings.url}) cannot be reached: {self.error}") from None
            self._conn = conn
            self.connected_at = time.time()
            if self.error is not None:
                log.info("upstream MCP server %s connected (%s)", self.name, self.settings.url)
            self.error = None
            return session

    async def _drop(self, why: str) -> None:
        self.error = why
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
        self._wake.set()  # the supervisor reconnects in its next round

    async def refresh(self) -> None:
        """Connect if needed and list the server's tools (every page). An open breaker
        holds this back too, until its cool-down lets one probe through."""
        if self.breaker.state != CLOSED and not self.breaker.allow():
            return
        try:
            session = await self._session()
            listed: list[types.Tool] = []
            cursor: str | None = None
            while True:
                page = await asyncio.wait_for(session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None), self.settings.connect_timeout_s)
                listed += page.tools
                cursor = page.next_cursor
                if not cursor:
                    break
        except UpstreamUnavailable:
            self.breaker.failure()
            return
        except Exception as exc:
            self.breaker.failure()
            await self._drop(_reason(exc))
            log.warning("upstream MCP server %s: listing its tools failed (%s)", self.name, self.error)
            return
        self.breaker.success()
        self.tools = self._merge(listed)

    def _merge(self, listed: Sequence[types.Tool]) -> dict[str, UpstreamTool]:
        wanted = set(self.settings.tools)
        tools: dict[str, UpstreamTool] = {}
        for t in listed:
            if wanted and t.name not in wanted:
                continue
            name = f"{self.prefix}{SEPARATOR}{t.name}"
            if not TOOL_NAME.match(name):
                log.warning("upstream MCP server %s: tool %r skipped (%r is not a valid MCP tool name)", self.name, t.name, name)
                continue
            try:
                check_schema(dict(t.input_schema), "input_schema")
                if t.output_schema is not None:
                    check_schema(dict(t.output_schema), "output_schema")
            except ValueError as exc:
                log.warning("upstream MCP server %s: tool %r skipped (%s)", self.name, t.name, exc)
                continue
            stats = self._stats.setdefault(name, ToolStats())
            tools[name] = UpstreamTool(name, t.name, self, t.description or "", dict(t.input_schema), dict(t.output_schema) if t.output_schema else None, self.settings.allow, stats)
        return tools

    async def supervise(self) -> None:
        """The server's task: (re)connect and relist every `retry_s`, until cancelled."""
        while True:
            await self.refresh()
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.retry_s)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ calls
    async def call(self, tool: UpstreamTool, arguments: dict[str, Any], progress: Progress | None) -> types.CallToolResult:
        """Forward one call. UpstreamUnavailable: it did not reach the server (or got no
        answer in `timeout_s`); a result, including `isError`, is the server's answer."""
        if not self.breaker.allow():
            raise UpstreamUnavailable(f"upstream MCP server {self.name!r} is failing: its circuit breaker (mcp:{self.name}) is open; calls resume after router.breaker.cooldown_s")
        probe = self.breaker.probe_round
        try:
            session = await self._session()
        except UpstreamUnavailable:
            self.breaker.failure()
            raise
        try:
            result = await asyncio.wait_for(session.call_tool(tool.upstream_name, arguments, progress_callback=progress), self.settings.timeout_s)
        except MCPError as exc:
            if _transport_failure(exc):  # the SDK's stand-in for an answer that never came
                self.breaker.failure()
                await self._drop(exc.error.message)
                raise UpstreamUnavailable(f"upstream MCP server {self.name!r} did not answer tool {tool.upstream_name!r}: {exc.error.message}") from None
            self.breaker.success()  # the server answered a JSON-RPC error: it is up
            if exc.error.code == types.INVALID_PARAMS:
                raise ToolInputError(f"tool {tool.name!r} (upstream {self.name}): {exc.error.message}") from None
            return types.CallToolResult(content=[types.TextContent(text=f"upstream MCP server {self.name!r} answered an error: {exc.error.message}")], is_error=True)
        except asyncio.CancelledError:
            self.breaker.release(probe)  # the caller went away: no verdict on the server
            raise
        except Exception as exc:
            self.breaker.failure()
            why = "no answer within mcp.servers[].timeout_s" if isinstance(exc, asyncio.TimeoutError) else _reason(exc)
            await self._drop(why)
            raise UpstreamUnavailable(f"upstream MCP server {self.name!r} did not answer tool {tool.upstream_name!r}: {why}") from None
        self.breaker.success()
        return result

    def status(self) -> dict[str, Any]:
        connected = self._conn is not None and self._conn.alive
        return {"url": self.settings.url, "connected": connected, "error": None if connected else self.error, "tools": sorted(self.tools), "breaker": self.breaker.state}


class UpstreamSet:
    """Every configured upstream server (the app owns it; started with the app's lifespan)."""

    def __init__(self, settings: Sequence[McpServerConfig], breakers: BreakerBoard, max_output_bytes: int) -> None:
        self.servers = [UpstreamServer(s, breakers.get(f"mcp:{s.name}")) for s in settings]
        self.max_output_bytes = max_output_bytes
        self._tasks: list[asyncio.Task[None]] = []

    def tools(self) -> dict[str, UpstreamTool]:
        merged: dict[str, UpstreamTool] = {}
        for server in self.servers:
            merged.update(server.tools)
        return merged

    def stats(self) -> Iterator[tuple[str, ToolStats]]:
        for server in self.servers:
            yield from server._stats.items()

    async def start(self) -> None:
        """Begin connecting (in the background: a server that is down does not hold up the start)."""
        self._tasks = [asyncio.ensure_future(s.supervise()) for s in self.servers]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks = []
        for server in self.servers:
            await server.close()

    async def call(self, tool: UpstreamTool, arguments: dict[str, Any], progress: Progress | None) -> types.CallToolResult:
        """Validate, forward, count; an unreachable server is a tool error naming it."""
        tool.check_arguments(arguments)
        stats = tool.stats
        stats.calls += 1
        began = time.perf_counter_ns()
        try:
            result = await tool.server.call(tool, arguments, progress)
        except UpstreamUnavailable as exc:
            stats.unavailable += 1
            return types.CallToolResult(content=[types.TextContent(text=str(exc))], is_error=True)
        except asyncio.CancelledError:
            stats.cancelled += 1
            raise
        finally:
            stats.latency.observe_ns(time.perf_counter_ns() - began)
        size = len(result.model_dump_json(by_alias=True, exclude_none=True))
        if size > self.max_output_bytes:
            stats.errors += 1
            return types.CallToolResult(content=[types.TextContent(text=f"tool {tool.name!r} answered {size} bytes, over mcp.max_output_bytes ({self.max_output_bytes})")], is_error=True)
        if result.is_error:
            stats.errors += 1
        return result

    def status(self) -> dict[str, Any]:
        return {s.name: s.status() for s in self.servers}

    def degraded(self) -> bool:
        return any(not s["connected"] for s in self.status().values())


__all__ = ["UpstreamSet", "UpstreamServer", "UpstreamTool", "UpstreamUnavailable", "SEPARATOR"]
