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
    """Lines are kept as plain tuples (a plugin may log on every callback; a frozen
    dataclass per line cost more than the rest of proxy_log) and become records on read."""

    def __init__(self, per_plugin: int = 1000) -> None:
        self._per_plugin = per_plugin
        self._records: dict[str, deque[tuple[LogLevel, str, float]]] = {}

    def __call__(self, plugin: str, level: LogLevel, message: str) -> None:
        book = self._records.get(plugin)
        if book is None:
            book = self._records[plugin] = deque(maxlen=self._per_plugin)
        book.append((level, message, time.time()))

    def records(self, plugin: str) -> list[PluginLogRecord]:
        return [PluginLogRecord(plugin, level, message, at) for level, message, at in self._records.get(plugin, ())]

    def messages(self, plugin: str) -> list[str]:
        return [message for _, message, _ in self._records.get(plugin, ())]
