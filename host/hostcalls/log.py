"""Logging host calls: proxy_log, proxy_get_log_level."""

from __future__ import annotations

from routeiq.abi.proxy_wasm import LogLevel, Status

from .group import CallGroup

_LEVELS = {int(level): level for level in LogLevel}


class LoggingCalls(CallGroup):
    def proxy_log(self, level: int, message: str) -> int:
        log_level = _LEVELS.get(level)
        if log_level is None:
            return Status.BAD_ARGUMENT
        self.env.emit_log(log_level, message)
        return Status.OK

    def proxy_get_log_level(self) -> tuple[int, int]:
        return Status.OK, int(self.env.plugin.log_level)
