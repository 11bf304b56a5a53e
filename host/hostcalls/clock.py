"""Time host calls: proxy_get_current_time_nanoseconds (WASI clocks live in wasi.py)."""

from __future__ import annotations

import time

from routeiq.abi.proxy_wasm import Status

from .state import HostEnv


class ClockCalls:
    def __init__(self, env: HostEnv) -> None:
        self.env = env

    def proxy_get_current_time_nanoseconds(self, ret_time: int) -> int:
        self.env.vm.write_u64(ret_time, time.time_ns())
        return Status.OK
