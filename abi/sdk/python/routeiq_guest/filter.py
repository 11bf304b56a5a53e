"""What plugin authors subclass: HttpFilter (one instance per HTTP exchange) and,
optionally, Plugin (one per VM: configuration and timers)."""

from __future__ import annotations

import json
from typing import Any, Iterable

from ._bindings import Action, Err, StreamType, host
from .errors import host_error
from .http import REQUEST_HEADERS, REQUEST_TRAILERS, RESPONSE_HEADERS, RESPONSE_TRAILERS, Body, CallResponse, Headers, Value, _wire


class Plugin:
    """The plugin as a whole (proxy-wasm's root context). The default parses a JSON
    object configuration into `self.config` ({} when empty or not an object)."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.config_bytes = b""

    def on_configure(self, config: bytes) -> bool:
        """Called once per VM with the plugin's `config`; False refuses the plugin."""
        self.config_bytes = config
        try:
            parsed = json.loads(config) if config.strip() else {}
        except ValueError:
            parsed = {}
        self.config = parsed if isinstance(parsed, dict) else {}
        return True

    def on_tick(self) -> None:
        """Called every period set with routeiq_guest.set_tick_period (needs `timers`)."""

    def on_queue_ready(self, queue_id: int) -> None:
        """Items arrived on a queue this plugin registered (routeiq_guest.queues.register;
        needs `shared_queue`). Dequeue them with routeiq_guest.queues.dequeue."""


class HttpFilter:
    """One HTTP exchange. Override the hooks you need; the host calls only those.
    A hook returns Action.CONTINUE (or None) or Action.PAUSE."""

    plugin: Plugin
    context_id: int
    request_headers: Headers = REQUEST_HEADERS
    response_headers: Headers = RESPONSE_HEADERS
    request_trailers: Headers = REQUEST_TRAILERS
    response_trailers: Headers = RESPONSE_TRAILERS

    @property
    def config(self) -> dict[str, Any]:
        """The plugin's parsed configuration (Plugin.config)."""
        return self.plugin.config

    # ------------------------------------------------------------------ hooks
    def on_request_headers(self, headers: Headers, end_of_stream: bool) -> Action | None:
        return Action.CONTINUE

    def on_request_body(self, body: Body, end_of_stream: bool) -> Action | None:
        """Needs `request_body`. Return PAUSE before end_of_stream to have the host
        buffer: you are called again with the grown body."""
        return Action.CONTINUE

    def on_request_trailers(self, trailers: Headers) -> Action | None:
        return Action.CONTINUE

    def on_response_headers(self, headers: Headers, end_of_stream: bool) -> Action | None:
        return Action.CONTINUE

    def on_response_body(self, body: Body, end_of_stream: bool) -> Action | None:
        """Needs `response_body`; called for every chunk as it streams."""
        return Action.CONTINUE

    def on_response_trailers(self, trailers: Headers) -> Action | None:
        return Action.CONTINUE

    def on_done(self) -> bool:
        """False holds on_log until self.done() is called (or the pause timeout)."""
        return True

    def on_log(self) -> None:
        """The exchange is over (also for streams): log, count, clean up."""

    def on_http_call_response(self, response: CallResponse) -> None:
        """A callout this exchange started finished (response.ok False: failed)."""

    # ---------------------------------------------------------------- helpers
    def respond(
        self,
        status: int,
        body: Value | dict[str, Any] | list[Any] = b"",
        headers: Iterable[tuple[str, Value]] = (),
        details: str = "",
    ) -> Action:
        """Answer locally instead of the upstream; returns Action.PAUSE so a hook can
        `return self.respond(403, ...)`. A dict or list body is sent as JSON."""
        pairs = [(k.lower(), _wire(v)) for k, v in headers]
        if isinstance(body, (dict, list)):
            body = json.dumps(body, separators=(",", ":"))
            if not any(k == "content-type" for k, _ in pairs):
                pairs.append(("content-type", "application/json"))
        try:
            host.send_local_response(status, details, _wire(body), pairs)
        except Err as err:
            raise host_error(err, "send-local-response") from None
        return Action.PAUSE

    def resume_request(self) -> None:
        """Let a paused request go on (e.g. from on_http_call_response)."""
        try:
            host.continue_stream(StreamType.REQUEST)
        except Err as err:
            raise host_error(err, "continue-stream") from None

    def resume_response(self) -> None:
        try:
            host.continue_stream(StreamType.RESPONSE)
        except Err as err:
            raise host_error(err, "continue-stream") from None

    def close(self, response: bool = False) -> None:
        """Abort the exchange (503 before the response started, a cut connection after)."""
        try:
            host.close_stream(StreamType.RESPONSE if response else StreamType.REQUEST)
        except Err as err:
            raise host_error(err, "close-stream") from None

    def done(self) -> None:
        """Finish an exchange whose on_done returned False."""
        try:
            host.done()
        except Err as err:
            raise host_error(err, "done") from None
