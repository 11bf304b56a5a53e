"""When a plugin that keeps trapping stops being used, and how it earns its way back.

Envoy has no such thing (a failing filter fails every request it sees); a gateway that
runs third-party plugins needs it: `max_traps` traps within `window_s` quarantine the
plugin (skipped if fail_open, else its requests answer 503); after `cooldown_s` one fresh
VM probes, and its first clean exchange restores the plugin while a trap re-quarantines
it. An operator's quarantine (manual) holds until released. Time comes from an injected
monotonic clock, so the windows are testable without sleeping.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

Clock = Callable[[], float]


class Quarantine:
    """The quarantine state of one plugin: pure bookkeeping, no VM or logging."""

    def __init__(self, max_traps: int, window_s: float, cooldown_s: float, clock: Clock = time.monotonic) -> None:
        self.max_traps = max_traps
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._traps: deque[float] = deque()
        self.since: float | None = None  # when it was (last) quarantined
        self.reason = ""
        self.manual = False
        self.probing = False

    @property
    def active(self) -> bool:
        return self.since is not None

    def trapped(self, kind: str) -> str | None:
        """Count a trap; the reason to quarantine now, if this trap is one too many."""
        now = self.clock()
        traps = self._traps
        traps.append(now)
        while traps and now - traps[0] > self.window_s:
            traps.popleft()
        if self.probing:
            return f"probe failed: {kind}"
        if self.since is None and len(traps) >= self.max_traps:
            return f"{len(traps)} traps in {self.window_s:g} s (last: {kind})"
        return None

    def enter(self, reason: str, manual: bool) -> bool:
        """Quarantine (again); True if this is a new quarantine (a failed probe re-enters)."""
        entering = self.since is None or self.probing
        self.since = self.clock()
        self.reason = reason
        self.manual = manual
        self.probing = False
        return entering

    def admits(self) -> tuple[bool, bool]:
        """(may run, starts probing now): a quarantined plugin runs again only as a probe
        once its cool-down is over, and never while an operator holds it."""
        if self.since is None:
            return True, False
        if self.manual or self.clock() - self.since < self.cooldown_s:
            return False, False
        if self.probing:
            return True, False
        self.probing = True
        return True, True

    def leave(self) -> bool:
        """Restore; False if it was not quarantined."""
        if self.since is None:
            return False
        self.since = None
        self.reason = ""
        self.manual = False
        self.probing = False
        self._traps.clear()
        return True
