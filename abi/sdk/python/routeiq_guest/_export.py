"""The component's `filter` export, built around the author's classes.

componentize-py calls the export class generated from the WIT world with context ids;
this adapter keeps one HttpFilter per context, hands hooks their Headers/Body objects,
and turns an uncaught exception into host.abort (a typed trap: the host discards the VM
and applies the plugin's fail_open) after logging the traceback.
"""

from __future__ import annotations

import traceback
import types as _types
from typing import Any

from . import log
from ._bindings import AbortReason, Action, BufferType, FilterExport, Hooks, from_wire, host
from .filter import HttpFilter, Plugin
from .http import CALL_RESPONSE_HEADERS, REQUEST_HEADERS, REQUEST_TRAILERS, RESPONSE_HEADERS, RESPONSE_TRAILERS, Body, CallResponse, buffer_bytes

CONTINUE = Action.CONTINUE
PAUSE = Action.PAUSE

_HOOKS = {
    "on_request_headers": Hooks.REQUEST_HEADERS,
    "on_request_body": Hooks.REQUEST_BODY,
    "on_request_trailers": Hooks.REQUEST_TRAILERS,
    "on_response_headers": Hooks.RESPONSE_HEADERS,
    "on_response_body": Hooks.RESPONSE_BODY,
    "on_response_trailers": Hooks.RESPONSE_TRAILERS,
    "on_done": Hooks.DONE,
    "on_log": Hooks.LOG,
    "on_http_call_response": Hooks.HTTP_CALL_RESPONSE,
}


def _fail(error: BaseException) -> None:
    """Report an uncaught exception and give up on the call (never returns)."""
    if isinstance(error, MemoryError):
        host.abort(AbortReason.OUT_OF_MEMORY, "MemoryError")
    else:
        text = "".join(traceback.format_exception(error))
        log.error(text.rstrip())
        host.abort(AbortReason.EXCEPTION, f"{type(error).__name__}: {error}")
    raise RuntimeError("host.abort returned")  # pragma: no cover


def _action(value: Any) -> Action:
    if value is None or value is CONTINUE:
        return CONTINUE
    if value is PAUSE:
        return PAUSE
    if isinstance(value, Action):
        return value
    raise TypeError(f"a hook must return Action.CONTINUE, Action.PAUSE or None, not {value!r}")


def find_classes(module: _types.ModuleType) -> tuple[type[HttpFilter], type[Plugin]]:
    """The author's HttpFilter subclass (the one named `FILTER`, else the only one, else
    the one named `Filter`) and Plugin subclass (optional)."""

    def pick(base: type, explicit: str, default_name: str) -> Any:
        chosen = getattr(module, explicit, None)
        if chosen is not None:
            return chosen
        found = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, base) and v is not base and v.__module__ == module.__name__]
        if len(found) == 1:
            return found[0]
        named = getattr(module, default_name, None)
        if isinstance(named, type) and issubclass(named, base):
            return named
        if not found:
            return None
        raise TypeError(f"{module.__name__} defines several {base.__name__} subclasses; name the one to use {explicit} = ...")

    filter_cls = pick(HttpFilter, "FILTER", "Filter")
    if filter_cls is None:
        raise TypeError(f"{module.__name__} defines no routeiq_guest.HttpFilter subclass")
    plugin_cls = pick(Plugin, "PLUGIN", "Plugin") or Plugin
    return filter_cls, plugin_cls


def make_export(module: _types.ModuleType) -> type:
    filter_cls, plugin_cls = find_classes(module)
    hooks = Hooks(0)
    for name, flag in _HOOKS.items():
        if getattr(filter_cls, name) is not getattr(HttpFilter, name):
            hooks |= flag
    if plugin_cls.on_tick is not Plugin.on_tick:
        hooks |= Hooks.TICK
    if plugin_cls.on_queue_ready is not Plugin.on_queue_ready:
        hooks |= Hooks.QUEUE_READY
    state: dict[str, Any] = {"plugin": None}
    contexts: dict[int, HttpFilter] = {}

    class Filter(FilterExport):
        def implemented(self) -> Hooks:
            return hooks

        def configure(self, plugin_config: str) -> bool:
            try:
                log.redirect_stdio()
                plugin = plugin_cls()
                state["plugin"] = plugin
                filter_cls.plugin = plugin
                return bool(plugin.on_configure(from_wire(plugin_config)))
            except BaseException as error:
                _fail(error)
                return False

        def create_context(self, ctx: int) -> None:
            try:
                instance = filter_cls()
                instance.context_id = ctx
                contexts[ctx] = instance
            except BaseException as error:
                _fail(error)

        def on_request_headers(self, ctx: int, end_of_stream: bool) -> Action:
            try:
                return _action(contexts[ctx].on_request_headers(REQUEST_HEADERS, end_of_stream))
            except BaseException as error:
                _fail(error)
                return CONTINUE

        def on_request_body(self, ctx: int, body_size: int, end_of_stream: bool) -> Action:
            try:
                body = Body(BufferType.REQUEST_BODY, body_size, end_of_stream)
                return _action(contexts[ctx].on_request_body(body, end_of_stream))
            except BaseException as error:
                _fail(error)
                return CONTINUE

        def on_request_trailers(self, ctx: int) -> Action:
            try:
                return _action(contexts[ctx].on_request_trailers(REQUEST_TRAILERS))
            except BaseException as error:
                _fail(error)
                return CONTINUE

        def on_response_headers(self, ctx: int, end_of_stream: bool) -> Action:
            try:
                return _action(contexts[ctx].on_response_headers(RESPONSE_HEADERS, end_of_stream))
            except BaseException as error:
                _fail(error)
                return CONTINUE

        def on_response_body(self, ctx: int, body_size: int, end_of_stream: bool) -> Action:
            try:
                body = Body(BufferType.RESPONSE_BODY, body_size, end_of_stream)
                return _action(contexts[ctx].on_response_body(body, end_of_stream))
            except BaseException as error:
                _fail(error)
                return CONTINUE

        def on_response_trailers(self, ctx: int) -> Action:
            try:
                return _action(contexts[ctx].on_response_trailers(RESPONSE_TRAILERS))
            except BaseException as error:
                _fail(error)
                return CONTINUE

        def on_done(self, ctx: int) -> bool:
            try:
                return bool(contexts[ctx].on_done())
            except BaseException as error:
                _fail(error)
                return True

        def on_log(self, ctx: int) -> None:
            try:
                contexts[ctx].on_log()
            except BaseException as error:
                _fail(error)

        def on_delete(self, ctx: int) -> None:
            contexts.pop(ctx, None)

        def on_http_call_response(self, ctx: int, call_id: int, num_headers: int, body_size: int, num_trailers: int) -> None:
            try:
                instance = contexts.get(ctx)
                if instance is None:
                    return
                ok = num_headers > 0
                headers = CALL_RESPONSE_HEADERS.items() if ok else []
                status_text = next((v for k, v in headers if k == ":status"), None)
                body = buffer_bytes(BufferType.HTTP_CALL_RESPONSE_BODY) if ok and body_size else b""
                status = int(status_text) if status_text and status_text.isdigit() else None
                instance.on_http_call_response(CallResponse(call_id, ok, status, headers, body))
            except BaseException as error:
                _fail(error)

        def on_tick(self) -> None:
            try:
                plugin = state["plugin"]
                if plugin is not None:
                    plugin.on_tick()
            except BaseException as error:
                _fail(error)

        def on_queue_ready(self, queue_id: int) -> None:
            try:
                plugin = state["plugin"]
                if plugin is not None:
                    plugin.on_queue_ready(queue_id)
            except BaseException as error:
                _fail(error)

    return Filter


__all__ = ["make_export", "find_classes"]
