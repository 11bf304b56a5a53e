"""/mcp (MCP Streamable HTTP, stateful sessions, all protocol work by the official `mcp`
SDK) and GET /mcp/tools (a plain JSON listing), both scoped to what the caller may use.

Who the caller is comes from the request's credential, checked on every HTTP request (so a
revoked key stops working inside an open session): an admin API key (`admin.keys`, by
role), else a virtual key through the gateway's KeyAuthenticator when `keys.enabled`
(which then requires a key on /mcp), else nobody in particular (only `anyone` tools)."""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Sequence

import mcp.types as types
from mcp.server.lowlevel.server import Server
from mcp.server.sse import SseServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from routeiq.admin.auth import AdminKey, allows, authenticate
from routeiq.config import McpAllowConfig, McpConfig
from routeiq.error_responses import client_error_body, send_bytes
from routeiq.identity.authenticator import Consumer, KeyAuthenticator, Refusal, presented_key

from .long_calls import run_tool_call
from .tools import ToolInputError, ToolSet, WasmTool
from .upstream import UpstreamSet, UpstreamTool

log = logging.getLogger("routeiq.mcp")

CALLER_SCOPE_KEY = "routeiq.mcp.caller"
LEGACY_MESSAGES = "/mcp/messages/"  # where legacy SSE clients POST their messages


@dataclass(frozen=True)
class Caller:
    """Who is asking: an admin key (role), a virtual key (consumer), or neither."""

    admin: AdminKey | None = None
    consumer: Consumer | None = None

    @property
    def identity(self) -> str:
        """Who, for the audit trail and traces: `admin:<key name>`, `key:<consumer id>`
        (`key:master` for the master key) or `anonymous`."""
        if self.admin is not None:
            return f"admin:{self.admin.name}"
        if self.consumer is not None:
            if self.consumer.master:
                return "key:master"
            cid = self.consumer.id
            return cid if cid.startswith("key:") else f"key:{cid}"
        return "anonymous"

    def may_use(self, allow: McpAllowConfig) -> bool:
        """Default deny: only what the tool's `allow` names."""
        if allow.anyone:
            return True
        if self.admin is not None:
            return allow.admin_role is not None and allows(self.admin.role, allow.admin_role)
        consumer = self.consumer
        if consumer is None:
            return False
        if consumer.master:
            return True  # the master key authenticates as the operator
        names = {consumer.id, consumer.key_name, consumer.key_alias} - {None}
        teams = {consumer.team_id, consumer.team_alias} - {None}
        return bool(names & set(allow.keys)) or bool(teams & set(allow.teams))


def _caller_of(ctx: Any) -> Caller:
    request = getattr(ctx, "request", None)
    caller = request.scope.get(CALLER_SCOPE_KEY) if isinstance(request, Request) else None
    return caller if isinstance(caller, Caller) else Caller()


class AsgiEndpoint:
    """A bound ASGI coroutine as an app object (Starlette's Route would treat a method as a
    request -> response handler; the SDK's transport needs the raw scope and send)."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handler(scope, receive, send)


class McpGateway:
    """The MCP server over the gateway's tools; mounted by the app (host/app.py)."""

    def __init__(self, tools: ToolSet, settings: McpConfig, admin_keys: Sequence[AdminKey], authenticator: KeyAuthenticator | None, version: str = "", upstreams: UpstreamSet | None = None, stateless: bool = False) -> None:
        self.tools = tools
        self.upstreams = upstreams
        self.admin_keys = list(admin_keys)
        self.authenticator = authenticator
        self.progress_interval_s = settings.progress_interval_ms / 1000
        self.server: Server[Any] = Server("routeiq", version=version, on_list_tools=self._list_tools, on_call_tool=self._call_tool)
        protect = bool(settings.allowed_hosts or settings.allowed_origins)
        security = TransportSecuritySettings(enable_dns_rebinding_protection=protect, allowed_hosts=settings.allowed_hosts, allowed_origins=settings.allowed_origins)
        self.sessions = StreamableHTTPSessionManager(
            app=self.server, security_settings=security, stateless=stateless, session_idle_timeout=settings.session_idle_timeout_s, max_sessions=settings.max_sessions
        )
        # The 2024-11-05 HTTP+SSE transport, for clients that predate Streamable HTTP.
        self.legacy = SseServerTransport(LEGACY_MESSAGES, security_settings=security)
        self._running: contextlib.AsyncExitStack | None = None

    # --------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """The SDK's session task group lives as long as the app (its lifespan)."""
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(self.sessions.run())
        self._running = stack
        if self.upstreams is not None:
            await self.upstreams.start()

    async def stop(self) -> None:
        if self.upstreams is not None:
            await self.upstreams.stop()
        if self._running is not None:
            running, self._running = self._running, None
            await running.aclose()

    # ------------------------------------------------------------- the caller
    async def _caller(self, scope: Scope, send: Send) -> Caller | None:
        """The caller, or None once a refusal (401/403) was sent."""
        headers = list(scope.get("headers") or [])
        token = presented_key(headers) or Request(scope).headers.get("x-routeiq-admin-key")
        admin = authenticate(self.admin_keys, token)
        if admin is not None:
            return Caller(admin=admin)
        if self.authenticator is not None:
            try:
                return Caller(consumer=await self.authenticator.authenticate(headers, scope["path"], None))
            except Refusal as refusal:
                await self._refuse(scope, send, refusal.status, refusal.message, refusal.code)
                return None
        if token:  # a credential that is nobody's: say so rather than serve it as anonymous
            await self._refuse(scope, send, 401, "invalid API key", "invalid_api_key")
            return None
        return Caller()

    async def _refuse(self, scope: Scope, send: Send, status: int, message: str, code: str) -> None:
        body = client_error_body(scope["path"], status, message, "invalid_request_error", code)
        extra = [(b"www-authenticate", b'Bearer realm="routeiq"')] if status == 401 else []
        await send_bytes(send, status, body, extra)

    def _all_tools(self) -> dict[str, WasmTool | UpstreamTool]:
        """Wasm tools, then upstream servers' tools (a Wasm tool's name wins a clash)."""
        upstream: dict[str, WasmTool | UpstreamTool] = dict(self.upstreams.tools()) if self.upstreams is not None else {}
        return {**upstream, **self.tools.tools}

    def visible(self, caller: Caller) -> list[WasmTool | UpstreamTool]:
        return [t for t in self._all_tools().values() if caller.may_use(t.allow)]

    # ------------------------------------------------------------ ASGI entries
    async def mcp_endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        """/mcp: the SDK's Streamable HTTP transport, with the caller in the scope."""
        caller = await self._caller(scope, send)
        if caller is None:
            return
        scope = dict(scope)
        scope[CALLER_SCOPE_KEY] = caller
        await self.sessions.handle_request(scope, receive, send)

    async def legacy_sse_endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        """GET /mcp/sse: the legacy transport's event stream; one server loop per connection."""
        caller = await self._caller(scope, send)
        if caller is None:
            return
        async with self.legacy.connect_sse(scope, receive, send) as (read, write):
            await self.server.run(read, write, self.server.create_initialization_options())

    async def legacy_messages_endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        """POST /mcp/messages/?session_id=...: the legacy transport's client messages,
        each authenticated like a /mcp request (its caller decides what the call may use)."""
        caller = await self._caller(scope, send)
        if caller is None:
            return
        scope = dict(scope)
        scope[CALLER_SCOPE_KEY] = caller
        await self.legacy.handle_post_message(scope, receive, send)

    async def tools_endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        """GET /mcp/tools: the tools this caller may use, as MCP lists them."""
        caller = await self._caller(scope, send)
        if caller is None:
            return
        listing = {"tools": [self._describe(t).model_dump(by_alias=True, exclude_none=True, mode="json") for t in self.visible(caller)]}
        await send_bytes(send, 200, json.dumps(listing).encode(), [])

    # --------------------------------------------------------- MCP handlers
    @staticmethod
    def _describe(tool: WasmTool | UpstreamTool) -> types.Tool:
        return types.Tool(name=tool.name, description=tool.description, input_schema=tool.input_schema, output_schema=tool.output_schema)

    async def _list_tools(self, ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[self._describe(t) for t in self.visible(_caller_of(ctx))])

    async def _call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = self._all_tools().get(params.name)
        caller = _caller_of(ctx)
        # A tool the caller may not use is answered like one that does not exist.
        if tool is None or not caller.may_use(tool.allow):
            raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name!r}")
        meta = getattr(ctx, "meta", None) or {}
        progress = ctx.session.report_progress if meta.get("progress_token") is not None else None
        if isinstance(tool, UpstreamTool):
            assert self.upstreams is not None
            try:
                return await self.upstreams.call(tool, params.arguments or {}, progress)
            except ToolInputError as exc:
                raise MCPError(types.INVALID_PARAMS, str(exc)) from None
        try:
            outcome = await run_tool_call(tool, params.arguments or {}, caller.identity, progress, self.progress_interval_s)
        except ToolInputError as exc:
            raise MCPError(types.INVALID_PARAMS, str(exc)) from None
        if outcome.is_error:
            return types.CallToolResult(content=[types.TextContent(text=outcome.text)], is_error=True)
        structured = outcome.structured if tool.output_schema is not None or isinstance(outcome.structured, dict) else None
        return types.CallToolResult(content=[types.TextContent(text=outcome.text)], structured_content=structured)
