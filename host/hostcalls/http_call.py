"""HTTP callout host calls: proxy_http_call (and its older name proxy_dispatch_http_call),
proxy_get_status. The response arrives later through proxy_on_http_call_response."""

from __future__ import annotations

from routeiq.abi.capabilities import Capability
from routeiq.abi.proxy_wasm import MapFormatError, Status, decode_map
from routeiq.services.callout import CalloutRefused, plan_callout

from .memory import return_bytes
from .state import HostEnv


class HttpCallCalls:
    def __init__(self, env: HostEnv) -> None:
        self.env = env

    def proxy_http_call(
        self,
        upstream: int,
        upstream_size: int,
        headers: int,
        headers_size: int,
        body: int,
        body_size: int,
        trailers: int,
        trailers_size: int,
        timeout_ms: int,
        ret_call_id: int,
    ) -> int:
        env = self.env
        vm = env.vm
        name = vm.read(upstream, upstream_size).decode("utf-8", "replace")
        raw_headers = vm.read(headers, headers_size)
        body_bytes = vm.read(body, body_size)
        vm.read(trailers, trailers_size)
        vm.check_writable((ret_call_id, 4))
        denied = env.require("proxy_http_call", Capability.HTTP_CALLOUT)
        if denied is not None:
            return denied
        origin = env.active
        if origin is None or env.start_callout is None:
            return Status.INTERNAL_FAILURE
        limits = env.grant.limits
        if origin.callouts_made >= limits.callouts_per_request:
            return env.deny("proxy_http_call", "callout_limit", f"more than {limits.callouts_per_request} callouts in one request", Status.BAD_ARGUMENT)
        try:
            pairs = decode_map(raw_headers)
        except MapFormatError:
            return Status.BAD_ARGUMENT
        try:
            target = plan_callout(env.grant, name, [(k.lower(), v) for k, v in pairs], env.services.callouts.resolver)
        except CalloutRefused as refused:
            return env.deny("proxy_http_call", refused.reason, refused.detail, Status.BAD_ARGUMENT)
        origin.callouts_made += 1
        call_id = env.next_callout_id
        env.next_callout_id += 1
        timeout = min(timeout_ms or limits.callout_timeout_ms, limits.callout_timeout_ms)
        env.start_callout(origin, call_id, target, body_bytes, timeout)
        vm.write_u32(ret_call_id, call_id)
        return Status.OK

    proxy_dispatch_http_call = proxy_http_call

    def proxy_get_status(self, ret_code: int, ret_message: int, ret_message_size: int) -> int:
        env = self.env
        vm = env.vm
        vm.check_writable((ret_code, 4), (ret_message, 4), (ret_message_size, 4))
        result = env.callout_response
        if result is None:
            return Status.NOT_FOUND
        vm.write_u32(ret_code, result.status_code)
        return return_bytes(env, result.message.encode(), ret_message, ret_message_size)
