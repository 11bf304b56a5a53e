"""Runs native plugins around the Wasm filter chain: on_request before it (in order; a
plugin may answer locally), on_response as response headers leave."""

from __future__ import annotations

import logging
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from routeiq.error_responses import send_bytes, send_error
from routeiq.services.request_ids import new_request_id

from .plugin import GatewayPlugin, NativeRequest, NativeResponseInfo

log = logging.getLogger("routeiq.native")


class NativePlugins:
    def __init__(self, app: ASGIApp, plugins: list[tuple[GatewayPlugin, bool]]) -> None:
        self.app = app
        self.plugins = plugins  # (plugin, fail_open)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.plugins:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.setdefault("x-request-id", new_request_id())
        request = NativeRequest(scope["method"], scope["path"], headers, request_id)
        for plugin, fail_open in self.plugins:
            try:
                answer = await plugin.on_request(request)
            except Exception as exc:  # trusted, but still not allowed to take requests down
                log.exception("native plugin %s failed in on_request", plugin.name)
                if fail_open:
                    continue
                await send_error(send, 503, f"plugin {plugin.name} failed ({type(exc).__name__})", "plugin_error", "native_exception", plugin=plugin.name)
                return
            if answer is not None:
                body = answer.body.encode() if isinstance(answer.body, str) else answer.body
                await send_bytes(send, answer.status, body, [(k.encode(), v.encode()) for k, v in answer.headers.items()] + [(b"x-request-id", request_id.encode())], b"text/plain")
                return
        scope = dict(scope)
        scope["headers"] = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.items()]

        async def native_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                info = NativeResponseInfo(int(message["status"]), {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message.get("headers", [])})
                for plugin, _ in reversed(self.plugins):
                    try:
                        await plugin.on_response(request, info)
                    except Exception:
                        log.exception("native plugin %s failed in on_response", plugin.name)
                message = {**message, "status": info.status, "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in info.headers.items()]}
            await send(message)

        await self.app(scope, receive, native_send)
