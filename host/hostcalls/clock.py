"""Time host calls: proxy_get_current_time_nanoseconds (WASI clocks live in wasi.py)."""

from __future__ import annotations

import time

from routeiq.abi.proxy_wasm import Status

from .group import CallGroup


class ClockCalls(CallGroup):
    def proxy_get_current_time_nanoseconds(self) -> tuple[int, int]:
        return Status.OK, time.time_ns()
