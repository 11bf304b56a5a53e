"""Logging host calls: proxy_log, proxy_get_log_level."""

from __future__ import annotations

from routeiq.abi.proxy_wasm import LogLevel, Status

from .state import HostEnv

_LEVELS = {int(level): level for level in LogLevel}


class LoggingCalls:
    def __init__(self, env: HostEnv) -> None:
        self.env = env

    def proxy_log(self, level: int, message: int, size: int) -> int:
        text = self.env.vm.read(message, size)
        log_level = _LEVELS.get(level)
        if log_level is None:
            return Status.BAD_ARGUMENT
        self.env.emit_log(log_level, text.decode("utf-8", "replace"))
        return Status.OK

    def proxy_get_log_level(self, ret_level: int) -> int:
        self.env.vm.write_u32(ret_level, int(self.env.plugin.log_level))
        return Status.OK
