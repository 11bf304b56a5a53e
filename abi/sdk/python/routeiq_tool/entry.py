"""The module componentize-py builds for a tool: the author's `tool` module
(guest-examples/python/<name>/tool.py) as the routeiq:tool `tool` export."""

from __future__ import annotations

import json
import traceback

import tool as author  # the tool author's module

from . import ToolError, log
from ._bindings import AbortReason, Err, ToolExport, host


def _give_up(error: BaseException) -> None:
    """An uncaught exception traps the call (never returns): the host discards the VM."""
    if isinstance(error, MemoryError):
        host.abort(AbortReason.OUT_OF_MEMORY, "MemoryError")
    log.error("".join(traceback.format_exception(error)).rstrip())
    host.abort(AbortReason.EXCEPTION, f"{type(error).__name__}: {error}")
    raise RuntimeError("host.abort returned")  # pragma: no cover


class Tool(ToolExport):
    def call(self, arguments: str) -> str:
        try:
            result = author.call(json.loads(arguments))
            return json.dumps(result)
        except ToolError as error:
            raise Err(str(error)) from None
        except BaseException as error:  # noqa: BLE001 - every other failure is a trap
            _give_up(error)
            raise
