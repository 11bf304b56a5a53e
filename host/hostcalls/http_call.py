"""HTTP callout host calls: proxy_http_call (and its older name proxy_dispatch_http_call),
proxy_get_status. The response arrives later through proxy_on_http_call_response.

As in Envoy, proxy_http_call only dispatches: what needs no DNS is checked here (an
unparsable target, the allow-list, a literal address: a BAD_ARGUMENT at once); a name is
resolved by the callout task, and a name resolving to a refused address is a failed
callout (proxy_on_http_call_response with no headers), audited all the same.

The upstream is an operator's cluster first (Envoy's meaning: an unknown cluster, a cluster
the policy does not grant, or a call without :method, :path and :authority is BAD_ARGUMENT),
host:port second. Timeout 0 means the cluster's timeout_s (else the policy's cap), and the
policy's callout_timeout_ms caps every timeout."""

from __future__ import annotations

from typing import Callable

from routeiq.abi.proxy_wasm import Pairs, Status
from routeiq.services.callout import CalloutRefused

from .group import CallGroup
from .state import ContextState


class HttpCallCalls(CallGroup):
    def proxy_http_call(self, upstream: str, headers: Pairs, body: bytes, _trailers: object, timeout_ms: int) -> tuple[int, int]:
        """Start a callout from the active stream; answers its call id."""
        env = self.env
        origin = env.active
        if origin is None or env.scheduler is None:
            return Status.INTERNAL_FAILURE, 0
        limits = env.grant.limits
        if origin.callouts_made >= limits.callouts_per_request:
            return self.deny("proxy_http_call", "callout_limit", f"more than {limits.callouts_per_request} callouts in one request", Status.BAD_ARGUMENT), 0
        try:
            target = env.services.callouts.plan(env.grant, upstream, [(k.lower(), v) for k, v in headers], self._audit_later(origin))
        except CalloutRefused as refused:
            return self.deny("proxy_http_call", refused.reason, refused.detail, Status.BAD_ARGUMENT), 0
        origin.callouts_made += 1
        call_id = env.next_callout_id
        env.next_callout_id += 1
        cap = limits.callout_timeout_ms
        timeout = min(timeout_ms, cap) if timeout_ms else env.services.callouts.default_timeout_ms(target, cap)
        env.scheduler.start_callout(origin, call_id, target, body, timeout)
        return Status.OK, call_id

    def _audit_later(self, origin: ContextState) -> Callable[[CalloutRefused], None]:
        """Audits a refusal found once the name resolved (the call already answered OK;
        the plugin gets a failed callout), attributed like one found in the call."""
        env = self.env
        call = self._names.get("proxy_http_call", "proxy_http_call")
        request_id = origin.stream.request_id if origin.stream is not None else ""

        def audit(refused: CalloutRefused) -> None:
            env.services.audit.denied(env.plugin.name, call, refused.reason, refused.detail, request_id)

        return audit

    def proxy_get_status(self) -> tuple[int, tuple[int, bytes]]:
        """The (status code, message) of the callout response being delivered."""
        result = self.env.callout_response
        if result is None:
            return Status.NOT_FOUND, (0, b"")
        return Status.OK, (result.status_code, result.message.encode())
