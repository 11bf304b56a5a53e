"""Plugin logging: records go to the gateway's plugin log (and `routeiq.plugin.<name>`).

    import routeiq_guest as rg
    rg.log.info("tagger: tagged")
"""

from __future__ import annotations

from ._bindings import Err, LogLevel, host


def _emit(level: LogLevel, message: str) -> None:
    try:
        host.log(level, message)
    except Err:
        pass


def trace(message: str) -> None:
    _emit(LogLevel.TRACE, message)


def debug(message: str) -> None:
    _emit(LogLevel.DEBUG, message)


def info(message: str) -> None:
    _emit(LogLevel.INFO, message)


def warn(message: str) -> None:
    _emit(LogLevel.WARN, message)


warning = warn


def error(message: str) -> None:
    _emit(LogLevel.ERROR, message)


def critical(message: str) -> None:
    _emit(LogLevel.CRITICAL, message)


def level() -> LogLevel:
    """The plugin's configured log level (records below it are dropped by the host)."""
    return host.get_log_level()


class _Writer:
    """sys.stdout / sys.stderr of a running guest: one log record per line."""

    def __init__(self, level: LogLevel) -> None:
        self._level = level
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            _emit(self._level, line)
        return len(text)

    def flush(self) -> None:
        if self._pending:
            line, self._pending = self._pending, ""
            _emit(self._level, line)

    def isatty(self) -> bool:
        return False


def redirect_stdio() -> None:
    """print() goes to the plugin log at INFO, sys.stderr at ERROR (as fd_write does for
    core modules). Installed at configure time: host calls exist only at run time."""
    import sys

    sys.stdout = _Writer(LogLevel.INFO)
    sys.stderr = _Writer(LogLevel.ERROR)
