"""RouteIQ tool SDK for Python: write an MCP tool as one function, run it as a
WebAssembly component of the routeiq:tool world (abi/wit/tool/routeiq-tool.wit).

    # tool.py
    import routeiq_tool as rt

    def call(arguments: dict) -> dict:
        # `arguments` already match the manifest's input_schema (the host checked them)
        if not arguments["text"]:
            raise rt.ToolError("text is empty")   # a tool error the model can read
        return {"length": len(arguments["text"])}

The returned value (JSON-serializable, an object when the manifest has an
output_schema) is the result; a ToolError is an MCP `isError` answer with its message;
any other exception traps the call (the host replaces the VM and answers a tool error
naming the exception). Build with `routeiq build-guests` or `routeiq plugin build`.
"""

from . import log
from ._bindings import LogLevel
from .services import HostError, config, config_json, kv_get, kv_set, metric, now_ns


class ToolError(Exception):
    """Raised by a tool: the call answers `isError: true` with this message."""


__all__ = ["ToolError", "HostError", "LogLevel", "log", "config", "config_json", "kv_get", "kv_set", "metric", "now_ns"]
