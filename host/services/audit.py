"""The audit trail of refused host calls: JSON lines, a bounded in-memory view, counts."""

from __future__ import annotations

import json
import logging
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


class AuditLog:
    def __init__(self, path: Path | None = None, keep: int = 1000) -> None:
        self.path = path
        self._recent: deque[AuditRecord] = deque(maxlen=keep)
        self.counts: Counter[tuple[str, str, str]] = Counter()  # (plugin, call, reason)
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def denied(self, plugin: str, call: str, reason: str, detail: str, request_id: str = "") -> None:
        record = AuditRecord(time.time(), plugin, call, reason, detail, request_id)
        with self._lock:
            self._recent.append(record)
            self.counts[(plugin, call, reason)] += 1
            if self.path is not None:
                with self.path.open("a") as f:
                    f.write(json.dumps({"event": "hostcall_denied", **asdict(record)}) + "\n")
        log.warning("denied %s to plugin %s (%s): %s [request %s]", call, plugin, reason, detail, request_id or "-")

    def recent(self, plugin: str | None = None) -> list[AuditRecord]:
        with self._lock:
            return [r for r in self._recent if plugin is None or r.plugin == plugin]
