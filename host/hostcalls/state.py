"""State the host calls read and write: header maps, bodies, contexts, plugin identity."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from routeiq.abi.proxy_wasm import LogLevel, Pairs, StreamType, encode_map


class HeaderMap:
    """Ordered header pairs with lower-case names, like Envoy's header maps."""

    __slots__ = ("pairs", "writable")

    def __init__(self, pairs: Pairs | None = None, writable: bool = True) -> None:
        self.pairs: Pairs = list(pairs or [])
        self.writable = writable

    def get(self, name: bytes) -> bytes | None:
        name = name.lower()
        values = [v for k, v in self.pairs if k == name]
        if not values:
            return None
        return values[0] if len(values) == 1 else b",".join(values)

    def add(self, name: bytes, value: bytes) -> None:
        self.pairs.append((name.lower(), value))

    def replace(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        for i, (k, _) in enumerate(self.pairs):
            if k == name:
                self.pairs[i] = (k, value)
                self.pairs[i + 1 :] = [(k2, v2) for k2, v2 in self.pairs[i + 1 :] if k2 != name]
                return
        self.pairs.append((name, value))

    def remove(self, name: bytes) -> None:
        name = name.lower()
        self.pairs = [(k, v) for k, v in self.pairs if k != name]

    def set_all(self, pairs: Pairs) -> None:
        self.pairs = [(k.lower(), v) for k, v in pairs]

    def serialize(self) -> bytes:
        return encode_map(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)


@dataclass
class LocalResponse:
    status: int
    body: bytes
    headers: Pairs
    details: str = ""
    plugin: str = ""


@dataclass
class HttpStream:
    """One HTTP exchange as all plugins of the chain see it (maps and bodies are shared)."""

    request_headers: HeaderMap
    request_id: str = ""
    client: tuple[str, int] | None = None
    server: tuple[str, int] | None = None
    scheme: str = "http"
    protocol: str = "HTTP/1.1"
    start_ns: int = field(default_factory=time.time_ns)
    request_trailers: HeaderMap | None = None
    response_headers: HeaderMap | None = None
    response_trailers: HeaderMap | None = None
    # The body buffer a body callback currently exposes (None outside body callbacks).
    request_body: bytearray | None = None
    response_body: bytearray | None = None
    request_body_size: int = 0
    response_body_size: int = 0
    local_response: LocalResponse | None = None
    response_started: bool = False
    response_code: int = 0
    filter_state: dict[tuple[bytes, ...], bytes] = field(default_factory=dict)


@dataclass
class ContextState:
    """A proxy-wasm context inside one VM: the root context or one HTTP stream's."""

    context_id: int
    stream: HttpStream | None = None  # None for the root context
    resume_requested: set[int] = field(default_factory=set)
    close_requested: set[int] = field(default_factory=set)
    awaiting_done: bool = False
    done_called: bool = False
    wakeup: Callable[[], None] | None = None

    def request_resume(self, stream_type: StreamType) -> None:
        self.resume_requested.add(int(stream_type))
        if self.wakeup is not None:
            self.wakeup()

    def request_close(self, stream_type: StreamType) -> None:
        self.close_requested.add(int(stream_type))
        if self.wakeup is not None:
            self.wakeup()


LogSink = Callable[[str, LogLevel, str], None]

_PY_LEVELS = {
    LogLevel.TRACE: 5,
    LogLevel.DEBUG: logging.DEBUG,
    LogLevel.INFO: logging.INFO,
    LogLevel.WARN: logging.WARNING,
    LogLevel.ERROR: logging.ERROR,
    LogLevel.CRITICAL: logging.CRITICAL,
}


def python_log_level(level: LogLevel) -> int:
    return _PY_LEVELS[level]


@dataclass
class PluginIdentity:
    name: str
    root_id: str = ""
    vm_id: str = ""
    plugin_config: bytes = b""
    vm_config: bytes = b""
    environment: tuple[tuple[str, str], ...] = ()
    log_level: LogLevel = LogLevel.INFO


class HostEnv:
    """Everything the host calls of one VM need. `vm` is set once it is instantiated."""

    def __init__(self, plugin: PluginIdentity, log_sink: LogSink | None = None) -> None:
        self.plugin = plugin
        self.vm = None  # type: ignore[assignment]  # a routeiq.runtime.vm.WasmVM
        self.contexts: dict[int, ContextState] = {}
        self.active: ContextState | None = None
        self.logger = logging.getLogger(f"routeiq.plugin.{plugin.name}")
        self.log_sink = log_sink

    @property
    def stream(self) -> HttpStream | None:
        active = self.active
        return active.stream if active is not None else None

    def emit_log(self, level: LogLevel, message: str) -> None:
        if level < self.plugin.log_level:
            return
        self.logger.log(python_log_level(level), "%s", message)
        if self.log_sink is not None:
            self.log_sink(self.plugin.name, level, message)
