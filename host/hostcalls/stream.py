"""Stream control host calls: proxy_send_local_response, proxy_continue_stream,
proxy_close_stream, and the v0.2.0 names proxy_continue_request/proxy_continue_response."""

from __future__ import annotations

from routeiq.abi.proxy_wasm import Pairs, Status, StreamType

from .group import CallGroup
from .state import HostEnv, LocalResponse

_HTTP_STREAMS = (StreamType.HTTP_REQUEST, StreamType.HTTP_RESPONSE)
_TCP_STREAMS = (StreamType.DOWNSTREAM, StreamType.UPSTREAM)


class StreamCalls(CallGroup):
    def proxy_send_local_response(self, status_code: int, details: str, body: bytes, headers: Pairs, _grpc_status: int = -1) -> int:
        env = self.env
        stream = env.stream
        # Once the response head went out, Envoy still answers OK and then resets the
        # stream (headers cannot be taken back); once the exchange is over there is
        # nothing left to answer.
        if stream is None or stream.end_ns:
            return Status.BAD_ARGUMENT
        if not 200 <= status_code <= 599:
            return Status.BAD_ARGUMENT
        stream.local_response = LocalResponse(
            status=status_code,
            body=body,
            headers=[(k.lower(), v) for k, v in headers],
            details=details,
            plugin=env.plugin.name,
        )
        return Status.OK

    def _context_for_stream(self, stream_type: int) -> int | None:
        if stream_type in _TCP_STREAMS:
            return Status.UNIMPLEMENTED
        if stream_type not in _HTTP_STREAMS:
            return Status.BAD_ARGUMENT
        if self.env.active is None or self.env.active.stream is None:
            return Status.NOT_FOUND
        return None

    def proxy_continue_stream(self, stream_type: int) -> int:
        problem = self._context_for_stream(stream_type)
        if problem is not None:
            return problem
        self.env.active.request_resume(StreamType(stream_type))  # type: ignore[union-attr]
        return Status.OK

    def proxy_close_stream(self, stream_type: int) -> int:
        problem = self._context_for_stream(stream_type)
        if problem is not None:
            return problem
        self.env.active.request_close(StreamType(stream_type))  # type: ignore[union-attr]
        return Status.OK

    def proxy_continue_request(self) -> int:
        return self.proxy_continue_stream(StreamType.HTTP_REQUEST)

    def proxy_continue_response(self) -> int:
        return self.proxy_continue_stream(StreamType.HTTP_RESPONSE)

    def proxy_clear_route_cache(self) -> int:
        return clear_route_cache(self.env)


def clear_route_cache(env: HostEnv) -> int:
    """Envoy re-matches the stream's route after a header change (it clears the route
    cache on every request header change, and on this call): the gateway re-matches the
    route once the request headers have passed the chain. Both proxy_clear_route_cache
    and the foreign function `clear_route_cache` come here."""
    stream = env.stream
    if stream is not None:
        stream.route_cache_cleared = True
    return Status.OK
