"""The one interface every routing strategy implements.

A strategy ranks candidate deployments for one request. The gateway calls `choose` on the
hot path (keep it well under 1 ms), then reports what happened with `observe` (latency,
success, usage, cost) and, later, any client feedback with `feedback`. Learned strategies
are trained offline with `fit` on routing examples and persist what they learned with
`state`/`load_state` (saved with its sha256 by routeiq.strategies.artifacts).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence


@dataclass(frozen=True)
class Deployment:
    """One place a model can be served from."""

    id: str  # unique in the gateway, e.g. "gpt-4o-mini#0" or the config's model_info.id
    model: str  # the model group clients ask for (litellm's model_name)
    provider_model: str = ""  # what the provider calls it (litellm_params.model)
    weight: float = 1.0  # for weighted strategies
    cost_per_1k_tokens: float = 0.0  # blended input/output price, relative units
    quality: float = 0.5  # prior quality estimate in [0, 1] (cost-capped quality uses it)
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class RoutingRequest:
    request_id: str
    model: str  # requested model group (may be a router alias such as "auto")
    query: str  # the text the features come from (last user message)
    messages: tuple[Mapping[str, Any], ...] = ()
    api_key: str = ""  # caller identity, for per-key strategies (hashed by the gateway)


@dataclass(frozen=True)
class Decision:
    """Candidates best first; the gateway tries them in order (skipping open breakers)."""

    ranked: tuple[Deployment, ...]
    strategy: str
    scores: Mapping[str, float] = field(default_factory=dict)  # deployment id -> score, for logs
    context: Any = None  # whatever the strategy needs back in observe/feedback (e.g. features)


@dataclass(frozen=True)
class Outcome:
    request: RoutingRequest
    decision: Decision
    deployment: Deployment  # the one that actually answered (or failed last)
    success: bool
    latency_s: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0


@dataclass(frozen=True)
class TrainingExample:
    """One query of an offline routing data set: every model's performance and cost on it."""

    query: str
    results: Mapping[str, tuple[float, float]]  # model -> (performance 0..1, cost)


class RoutingStrategy(ABC):
    name: ClassVar[str]  # registry key, e.g. "knn"
    learned: ClassVar[bool] = False  # True if `fit` learns from examples

    def __init__(self, **options: Any) -> None:
        self.options = options

    @abstractmethod
    def choose(self, request: RoutingRequest, candidates: Sequence[Deployment]) -> Decision:
        """Rank `candidates` (never empty) for this request."""

    def observe(self, outcome: Outcome) -> None:
        """Learn from what happened (online). Default: nothing."""

    def feedback(self, outcome: Outcome, score: float) -> None:
        """A client's score (0..1) for an answered request. Default: nothing."""

    def fit(self, examples: Sequence[TrainingExample]) -> None:
        """Train offline. Default: nothing to learn."""

    def state(self) -> dict[str, Any]:
        """What `fit` learned, JSON-serializable (saved as an artifact)."""
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore what `state` returned."""
