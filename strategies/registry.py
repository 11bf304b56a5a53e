"""Strategy name -> class. The built-in table is a read-only constant; custom strategies go
into a `StrategyRegistry` instance owned by the gateway (no process-wide mutable state)."""

from __future__ import annotations

import inspect
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from .base import RoutingStrategy
from .bradley_terry import BradleyTerry
from .cheapest import Cheapest
from .contextual_bandit import ContextualBandit
from .cost_capped_quality import CostCappedQuality
from .knn import KNNStrategy
from .least_latency import LeastLatency
from .matrix_factorization import MatrixFactorization
from .quality_predictor import QualityPredictor
from .weighted_round_robin import WeightedRoundRobin

BUILTINS: Mapping[str, type[RoutingStrategy]] = MappingProxyType(
    {
        cls.name: cls
        for cls in (
            WeightedRoundRobin,
            LeastLatency,
            Cheapest,
            CostCappedQuality,
            KNNStrategy,
            MatrixFactorization,
            BradleyTerry,
            ContextualBandit,
            QualityPredictor,
        )
    }
)


class UnknownStrategyError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class StrategyRegistry:
    def __init__(self, strategies: Iterable[type[RoutingStrategy]] = ()) -> None:
        self._classes: dict[str, type[RoutingStrategy]] = {}
        for cls in strategies:
            self.register(cls)

    @classmethod
    def with_builtins(cls) -> "StrategyRegistry":
        return cls(BUILTINS.values())

    def register(self, cls: type[RoutingStrategy], *, replace: bool = False) -> type[RoutingStrategy]:
        if not (inspect.isclass(cls) and issubclass(cls, RoutingStrategy)):
            raise TypeError(f"{cls!r} is not a RoutingStrategy subclass")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{cls.__qualname__}: `name` must be a non-empty str")
        if name in self._classes and self._classes[name] is not cls and not replace:
            raise ValueError(f"strategy name {name!r} is already registered by {self._classes[name].__qualname__}")
        self._classes[name] = cls
        return cls

    def get(self, name: str) -> type[RoutingStrategy]:
        try:
            return self._classes[name]
        except KeyError:
            raise UnknownStrategyError(f"unknown routing strategy {name!r}; known: {', '.join(self.names())}") from None

    def create(self, name: str, **options: Any) -> RoutingStrategy:
        return self.get(name)(**options)

    def names(self) -> list[str]:
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes


def create(name: str, **options: Any) -> RoutingStrategy:
    """A built-in strategy by name (custom ones: use a StrategyRegistry)."""
    return StrategyRegistry.with_builtins().create(name, **options)


def names() -> list[str]:
    return sorted(BUILTINS)
