"""Timer host call: proxy_set_tick_period_milliseconds (drives proxy_on_tick)."""

from __future__ import annotations

from routeiq.abi.proxy_wasm import Status

from .group import CallGroup


class TimerCalls(CallGroup):
    def proxy_set_tick_period_milliseconds(self, period_ms: int) -> int:
        env = self.env
        if env.scheduler is None:
            return Status.INTERNAL_FAILURE
        env.scheduler.set_tick_period(period_ms)
        return Status.OK
