"""The audit trail of refused host calls and of MCP tool calls: JSON lines, a bounded
in-memory view, counts."""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("routeiq.audit")


@dataclass(frozen=True)
class AuditRecord:
    time: float
    plugin: str
    call: str
    reason: str
    detail: str
    request_id: str


@dataclass(frozen=True)
class ToolCallRecord:
    """One MCP tool call that ran: who called which tool and how it ended (never its
    arguments or result: they may carry a user's data)."""

    time: float
    tool: str
    caller: str
    outcome: str  # ok | error
    kind: str  # ok, tool_error, bad_output, call_timeout, or the trap (fuel_exhausted, ...)
    duration_ms: float


class AuditLog:
    """Every denial is counted, kept (the most recent `keep`) and, with a path, written as
    a JSON line. The log *warning* is rate-limited per (plugin, call, reason): a plugin
    retrying a refused call in a loop must not turn each retry into a formatted, flushed
    log line (that was ~80% of a denied call's cost); the next warning says how many
    were folded into it."""

    def __init__(self, path: Path | None = None, keep: int = 1000, warn_interval_s: float = 10.0) -> None:
        self.path = path
        self.warn_interval_s = warn_interval_s
        self._recent: deque[AuditRecord] = deque(maxlen=keep)
        self._tool_calls: deque[ToolCallRecord] = deque(maxlen=keep)
        self.counts: Counter[tuple[str, str, str]] = Counter()  # (plugin, call, reason)
        self._last_warning: dict[tuple[str, str, str], tuple[float, int]] = {}  # key -> (when, count then)
        self._lock = threading.Lock()
        # The file is written by a thread of its own through a kept-open handler: a
        # denial on the event loop costs a queue put, never a disk write.
        self._lines: queue.SimpleQueue[logging.LogRecord] | None = None
        self._writer: logging.handlers.QueueListener | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lines = queue.SimpleQueue()
            self._writer = logging.handlers.QueueListener(self._lines, logging.FileHandler(path, encoding="utf-8"))
            self._writer.start()

    def denied(self, plugin: str, call: str, reason: str, detail: str, request_id: str = "") -> None:
        now = time.time()
        record = AuditRecord(now, plugin, call, reason, detail, request_id)
        key = (plugin, call, reason)
        with self._lock:
            self._recent.append(record)
            self.counts[key] += 1
            count = self.counts[key]
            if self._lines is not None:
                line = json.dumps({"event": "hostcall_denied", **asdict(record)})
                self._lines.put(logging.makeLogRecord({"msg": line, "levelno": logging.WARNING}))
            last = self._last_warning.get(key)
            if last is not None and now - last[0] < self.warn_interval_s:
                return
            self._last_warning[key] = (now, count)
        folded = count - last[1] - 1 if last is not None else 0
        more = f" (and {folded} more like it in the last {now - last[0]:.0f} s)" if folded and last is not None else ""
        log.warning("denied %s to plugin %s (%s): %s [request %s]%s", call, plugin, reason, detail, request_id or "-", more)

    def tool_call(self, tool: str, caller: str, outcome: str, kind: str, duration_ms: float) -> None:
        """Record a tool call in the same trail (and file) as the denials."""
        record = ToolCallRecord(time.time(), tool, caller, outcome, kind, round(duration_ms, 3))
        with self._lock:
            self._tool_calls.append(record)
            if self._lines is not None:
                line = json.dumps({"event": "tool_call", **asdict(record)})
                self._lines.put(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))

    def tool_calls(self, tool: str | None = None) -> list[ToolCallRecord]:
        with self._lock:
            return [r for r in self._tool_calls if tool is None or r.tool == tool]

    def close(self) -> None:
        """Write out what is queued and close the file (the gateway's shutdown)."""
        writer, self._writer = self._writer, None
        self._lines = None
        if writer is not None:
            writer.stop()
            for handler in writer.handlers:
                handler.close()

    def recent(self, plugin: str | None = None) -> list[AuditRecord]:
        with self._lock:
            return [r for r in self._recent if plugin is None or r.plugin == plugin]
