"""Per-deployment requests-per-minute budgets (model_list `rpm`, LiteLLM's setting).

Counted in this worker process only, in fixed clock minutes as LiteLLM counts them: with N
workers a deployment may take up to N x rpm. A deployment over its budget is not refused:
the router ranks it last (as an open breaker), so it is tried only when nothing else is left.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping


class RpmBudgets:
    def __init__(self, limits: Mapping[str, int], clock: Callable[[], float] = time.time) -> None:
        self.limits = {k: v for k, v in limits.items() if v}
        self._clock = clock
        self._used: dict[str, tuple[int, int]] = {}  # deployment id -> (minute, requests sent in it)

    def _minute(self) -> int:
        return int(self._clock() // 60)

    def over(self, deployment_id: str) -> bool:
        """Has the deployment used up this minute's budget?"""
        limit = self.limits.get(deployment_id)
        if limit is None:
            return False
        minute, used = self._used.get(deployment_id, (-1, 0))
        return minute == self._minute() and used >= limit

    def take(self, deployment_id: str) -> None:
        """A request is being sent to the deployment."""
        if deployment_id not in self.limits:
            return
        now = self._minute()
        minute, used = self._used.get(deployment_id, (now, 0))
        self._used[deployment_id] = (now, used + 1 if minute == now else 1)

    def describe(self, deployment_id: str) -> dict[str, int] | None:
        limit = self.limits.get(deployment_id)
        if limit is None:
            return None
        minute, used = self._used.get(deployment_id, (-1, 0))
        return {"rpm": limit, "used_this_minute": used if minute == self._minute() else 0}
