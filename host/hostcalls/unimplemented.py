"""proxy-wasm host calls this host knows but does not provide yet.

They answer UNIMPLEMENTED (12) so a guest can degrade gracefully; they never trap.
"""

from __future__ import annotations

from routeiq.abi.proxy_wasm import Status

from .state import HostEnv

# name -> parameter count (all i32 unless listed in I64_PARAMS)
UNIMPLEMENTED_CALLS: dict[str, int] = {
    "proxy_grpc_call": 12,
    "proxy_grpc_stream": 9,
    "proxy_grpc_send": 4,
    "proxy_grpc_cancel": 1,
    "proxy_grpc_close": 1,
}
I64_PARAMS: dict[str, tuple[int, ...]] = {}


class UnimplementedCalls:
    def __init__(self, env: HostEnv) -> None:
        self.env = env
        self._warned: set[str] = set()

    def answer(self, name: str) -> int:
        if name not in self._warned:
            self._warned.add(name)
            self.env.logger.warning("plugin called %s, which this host does not provide yet", name)
        return Status.UNIMPLEMENTED
