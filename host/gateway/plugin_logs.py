"""Recent plugin log lines kept in memory per plugin (bounded), beside Python logging."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from routeiq.abi.proxy_wasm import LogLevel


@dataclass(frozen=True)
class PluginLogRecord:
    plugin: str
    level: LogLevel
    message: str
    time: float


class PluginLogBook:
    def __init__(self, per_plugin: int = 1000) -> None:
        self._per_plugin = per_plugin
        self._records: dict[str, deque[PluginLogRecord]] = {}

    def __call__(self, plugin: str, level: LogLevel, message: str) -> None:
        book = self._records.get(plugin)
        if book is None:
            book = self._records[plugin] = deque(maxlen=self._per_plugin)
        book.append(PluginLogRecord(plugin, level, message, time.time()))

    def records(self, plugin: str) -> list[PluginLogRecord]:
        return list(self._records.get(plugin, ()))

    def messages(self, plugin: str) -> list[str]:
        return [r.message for r in self.records(plugin)]
