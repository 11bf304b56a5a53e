"""Timer host call: proxy_set_tick_period_milliseconds (drives proxy_on_tick)."""

from __future__ import annotations

from routeiq.abi.capabilities import Capability
from routeiq.abi.proxy_wasm import Status

from .state import HostEnv


class TimerCalls:
    def __init__(self, env: HostEnv) -> None:
        self.env = env

    def proxy_set_tick_period_milliseconds(self, period_ms: int) -> int:
        env = self.env
        denied = env.require("proxy_set_tick_period_milliseconds", Capability.TIMERS)
        if denied is not None:
            return denied
        if env.set_tick_period is None:
            return Status.INTERNAL_FAILURE
        env.set_tick_period(period_ms)
        return Status.OK
