"""One measured wrk phase, and lookups over a run's measurements."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .gateway_metrics import PhaseCost
from .wrk import WrkResult


@dataclass
class Measurement:
    scenario: str          # direct | routeiq-N | litellm-proxy
    curve: str             # main | body | concurrency | chunks
    stream: bool
    connections: int
    body_bytes: int
    chunks: int            # content events per streamed response (upstream setting)
    wrk: WrkResult
    cost: PhaseCost | None = None   # RouteIQ's own per-request view of the phase
    command: str = ""
    server_cpu_ms: float = float("nan")    # CPU per request of the server under test (the upstream for direct)
    upstream_cpu_ms: float = float("nan")  # CPU per request of the mock upstream

    @property
    def flagged(self) -> bool:
        """wrk saw errors, or a plugin trapped (fail-open plugins trap without a non-2xx)."""
        c = self.cost
        return self.wrk.flagged or (c is not None and (c.traps > 0 or bool(c.quarantined) or c.breaker_opened > 0))

    def error_text(self) -> str:
        if not self.flagged:
            return "0"
        parts = [self.wrk.error_text().strip("*")] if self.wrk.flagged else []
        if self.cost is not None and self.cost.traps:
            parts.append(f"{self.cost.traps:.0f} plugin traps")
        if self.cost is not None and self.cost.quarantined:
            parts.append("quarantined: " + ", ".join(self.cost.quarantined))
        if self.cost is not None and self.cost.breaker_opened:
            parts.append("circuit breaker opened")
        return "**" + "; ".join(parts) + "**"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["wrk"].pop("raw", None)
        d["flagged"] = self.flagged
        return d


@dataclass
class Run:
    measurements: list[Measurement] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)      # scenario -> verification notes
    commands: dict[str, str] = field(default_factory=dict)         # scenario -> server command
    configs: dict[str, str] = field(default_factory=dict)          # "scenario/file" -> generated YAML
    wall_s: float = 0.0

    def find(self, scenario: str, curve: str, stream: bool, connections: int, body_bytes: int | None = None,
             chunks: int | None = None) -> Measurement | None:
        for m in self.measurements:
            if (m.scenario, m.curve, m.stream, m.connections) == (scenario, curve, stream, connections) \
                    and (body_bytes is None or m.body_bytes == body_bytes) and (chunks is None or m.chunks == chunks):
                return m
        return None

    @property
    def flagged(self) -> list[Measurement]:
        return [m for m in self.measurements if m.flagged]


def added(m: Measurement | None, base: Measurement | None, attr: str) -> float:
    """`attr` of m minus the same of the direct baseline (nan when either is missing)."""
    if m is None or base is None:
        return math.nan
    return float(getattr(m.wrk, attr)) - float(getattr(base.wrk, attr))
