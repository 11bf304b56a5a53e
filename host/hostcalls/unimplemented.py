"""proxy-wasm host calls this host knows but does not provide yet.

They answer UNIMPLEMENTED (12) so a guest can degrade gracefully; they never trap.
HTTP callouts, shared data and queues, metrics and timers arrive with the capability
policy that gates them.
"""

from __future__ import annotations

from routeiq.abi.proxy_wasm import Status

from .state import HostEnv

# name -> parameter count (all i32 unless listed in I64_PARAMS)
UNIMPLEMENTED_CALLS: dict[str, int] = {
    "proxy_http_call": 10,
    "proxy_dispatch_http_call": 10,
    "proxy_get_shared_data": 5,
    "proxy_set_shared_data": 5,
    "proxy_register_shared_queue": 3,
    "proxy_resolve_shared_queue": 5,
    "proxy_enqueue_shared_queue": 3,
    "proxy_dequeue_shared_queue": 3,
    "proxy_define_metric": 4,
    "proxy_increment_metric": 2,
    "proxy_record_metric": 2,
    "proxy_get_metric": 2,
    "proxy_set_tick_period_milliseconds": 1,
    "proxy_grpc_call": 12,
    "proxy_grpc_stream": 9,
    "proxy_grpc_send": 4,
    "proxy_grpc_cancel": 1,
    "proxy_grpc_close": 1,
    "proxy_get_status": 3,
    "proxy_call_foreign_function": 6,
}
I64_PARAMS: dict[str, tuple[int, ...]] = {
    "proxy_increment_metric": (1,),
    "proxy_record_metric": (1,),
}


class UnimplementedCalls:
    def __init__(self, env: HostEnv) -> None:
        self.env = env
        self._warned: set[str] = set()

    def answer(self, name: str) -> int:
        if name not in self._warned:
            self._warned.add(name)
            self.env.logger.warning("plugin called %s, which this host does not provide yet", name)
        return Status.UNIMPLEMENTED
