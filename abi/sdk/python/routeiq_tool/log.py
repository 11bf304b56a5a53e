"""Tool logging into the gateway's plugin log (`routeiq.plugin.<tool>`)."""

from __future__ import annotations

from ._bindings import Err, LogLevel, host


def _emit(level: LogLevel, message: str) -> None:
    try:
        host.log(level, message)
    except Err:
        pass


def debug(message: str) -> None:
    _emit(LogLevel.DEBUG, message)


def info(message: str) -> None:
    _emit(LogLevel.INFO, message)


def warn(message: str) -> None:
    _emit(LogLevel.WARN, message)


def error(message: str) -> None:
    _emit(LogLevel.ERROR, message)
