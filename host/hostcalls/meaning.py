"""What every host call means, once for both ABIs: one CallGroup per concept.

`host_calls(env)` answers the meaning methods of one VM by proxy-wasm name; the adapters
(proxy_abi, component_abi) link them with their ABI's argument and result conversion.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from .buffers import BufferCalls
from .clock import ClockCalls
from .contexts import ContextCalls
from .foreign import ForeignCalls
from .group import CallGroup
from .headers import HeaderCalls
from .http_call import HttpCallCalls
from .llm import LlmCalls
from .log import LoggingCalls
from .metrics import MetricCalls
from .properties import PropertyCalls
from .shared_data import SharedDataCalls
from .shared_queue import SharedQueueCalls
from .state import HostEnv
from .stream import StreamCalls
from .timers import TimerCalls

GROUPS: tuple[type[CallGroup], ...] = (
    LoggingCalls,
    ClockCalls,
    HeaderCalls,
    BufferCalls,
    StreamCalls,
    PropertyCalls,
    ContextCalls,
    HttpCallCalls,
    SharedDataCalls,
    SharedQueueCalls,
    MetricCalls,
    TimerCalls,
    LlmCalls,
    ForeignCalls,
)


def _public(group: type[CallGroup]) -> list[str]:
    return [n for n, v in vars(group).items() if callable(v) and not n.startswith("_")]


def meaning_names() -> dict[str, type[CallGroup]]:
    """Every meaning method's name and the group that implements it (each exactly once)."""
    owners: dict[str, type[CallGroup]] = {}
    for group in GROUPS:
        for name in _public(group):
            if name in owners:
                raise TypeError(f"host call {name} is implemented by both {owners[name].__name__} and {group.__name__}")
            owners[name] = group
    return owners


def host_calls(env: HostEnv, names: Mapping[str, str] | None = None) -> dict[str, Callable[..., Any]]:
    """The bound meaning methods for one VM; `names` renames calls in the audit log."""
    calls: dict[str, Callable[..., Any]] = {}
    for group_class in GROUPS:
        group = group_class(env, names)
        for name in _public(group_class):
            calls[name] = getattr(group, name)
    return calls
