"""RouteIQ guest SDK for Python: write HTTP filters as plain classes, run them as
WebAssembly components in the gateway's sandbox.

    import routeiq_guest as rg

    class Filter(rg.HttpFilter):
        def on_request_headers(self, headers, end_of_stream):
            if "x-block" in headers:
                return self.respond(403, {"error": "blocked"})
            headers.add("x-routeiq-tagged", self.config.get("tag", "routeiq"))

Build with `routeiq build-guests` (componentize-py against abi/wit/routeiq-filter.wit);
the componentize-py bindings stay inside this package (`_bindings.py`).
"""

from . import cbor, log
from ._bindings import Action, LogLevel, Status
from .errors import BadArgument, CasMismatch, HostError, NotFound, Unimplemented
from .filter import HttpFilter, Plugin
from .http import Body, CallResponse, Headers
from .services import Metric, call_status, get_property, http_call, kv, llm, metrics, now_ns, queues, set_property, set_tick_period

CONTINUE = Action.CONTINUE
PAUSE = Action.PAUSE

__all__ = [
    "Action", "CONTINUE", "PAUSE", "LogLevel", "Status",
    "HttpFilter", "Plugin", "Headers", "Body", "CallResponse",
    "HostError", "NotFound", "BadArgument", "CasMismatch", "Unimplemented",
    "log", "kv", "queues", "metrics", "Metric", "llm", "cbor",
    "get_property", "set_property", "http_call", "call_status", "now_ns", "set_tick_period",
]
