"""Routing one chat request: strategy decision, breakers, failover, outcomes, feedback."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Protocol, Sequence

from routeiq.services.breakers import BreakerBoard
from routeiq.strategies.base import Decision, Outcome, RoutingRequest, RoutingStrategy

from .deployments import LiveDeployment
from .mock_provider import last_user_text
from .rate_limits import RpmBudgets

log = logging.getLogger("routeiq.routing")


class NoSuchModel(Exception):
    pass


@dataclass
class RoutedCall:
    """What the API needs to run a routed request: candidates in order and the decision."""

    request: RoutingRequest
    decision: Decision
    order: list[LiveDeployment]
    decide_s: float
    requested: str = ""  # set on a fallback group's call: the group the client asked for


@dataclass(frozen=True)
class Fallbacks:
    """router.fallbacks / context_window_fallbacks / content_policy_fallbacks: group -> groups."""

    generic: Mapping[str, Sequence[str]]
    context_window: Mapping[str, Sequence[str]]
    content_policy: Mapping[str, Sequence[str]]

    @classmethod
    def of(cls, generic: Sequence[Mapping[str, Sequence[str]]], context_window: Sequence[Mapping[str, Sequence[str]]], content_policy: Sequence[Mapping[str, Sequence[str]]]) -> "Fallbacks":
        def merged(entries: Sequence[Mapping[str, Sequence[str]]]) -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            for entry in entries:
                for group, targets in entry.items():
                    out.setdefault(group, []).extend(t for t in targets if t not in out.get(group, []))
            return out

        return cls(merged(generic), merged(context_window), merged(content_policy))

    def groups(self, model: str, kind: str) -> list[str]:
        """The groups to try after `model` failed with a failure of `kind` (LiteLLM's rule:
        the specific list if it names the group, else the generic one; a client error
        other than those two falls back nowhere)."""
        specific = {"context_window": self.context_window, "content_policy": self.content_policy}.get(kind)
        if specific is not None and (model in specific or "*" in specific):
            return list(specific.get(model) or specific["*"])
        if kind == "client":
            return []
        return list(self.generic.get(model) or self.generic.get("*") or [])


@dataclass(frozen=True)
class Aliases:
    """router.model_group_alias: alias -> group; `hidden` ones are not in /v1/models."""

    groups: Mapping[str, str]
    hidden: frozenset[str] = frozenset()


class OutcomeSink(Protocol):
    """Where a router sends what it learns, for other nodes (llm/routing_replication.py)."""

    def outcome(self, outcome: Outcome) -> None: ...
    def feedback(self, request_id: str, score: float) -> None: ...
    def status(self) -> dict[str, Any]: ...
    async def wait_for(self, known: Callable[[], bool]) -> bool: ...


class LlmRouter:
    def __init__(
        self,
        deployments: Sequence[LiveDeployment],
        strategy: RoutingStrategy,
        breakers: BreakerBoard,
        auto_model: str = "auto",
        remember: int = 10_000,
        fallback_groups: Fallbacks | None = None,
        max_fallbacks: int = 5,
        aliases: Aliases | None = None,
        budgets: RpmBudgets | None = None,
        strategy_options: Mapping[str, Any] | None = None,
    ) -> None:
        # router.strategy_options: kept so an artifact installed later (PUT
        # /admin/routing/artifact, another node's) routes with the operator's knobs too
        self.strategy_options: Mapping[str, Any] = dict(strategy_options or {})
        self.fallback_groups = fallback_groups or Fallbacks({}, {}, {})
        self.max_fallbacks = max_fallbacks
        self.aliases = aliases or Aliases({})
        budgets = budgets if budgets is not None else RpmBudgets({d.id: d.rpm for d in deployments if d.rpm})
        self.budgets = budgets if budgets.limits else None  # None: no deployment has an rpm
        self.deployments = {d.id: d for d in deployments}
        self.groups: dict[str, list[LiveDeployment]] = {}
        for d in deployments:
            self.groups.setdefault(d.routing.model, []).append(d)
        self.strategy = strategy
        self.breakers = breakers
        self.auto_model = auto_model
        self._outcomes: OrderedDict[str, Outcome] = OrderedDict()
        self._remember = remember
        self.decisions = 0
        self.fallbacks = 0
        self.replica: OutcomeSink | None = None  # set when routing state is shared (kv: redis)

    @property
    def models(self) -> list[str]:
        """What /v1/models lists: the groups, the aliases not hidden, the auto model."""
        listed = sorted(self.groups) + sorted(a for a in self.aliases.groups if a not in self.aliases.hidden)
        return listed + ([self.auto_model] if self.auto_model and self.auto_model not in self.groups else [])

    def breaker(self, deployment: LiveDeployment):  # type: ignore[no-untyped-def]
        return self.breakers.get(f"deployment:{deployment.id}")

    def plan(self, request_id: str, body: Mapping[str, Any], pinned: str | None, api_key: str = "") -> RoutedCall:
        model = pinned or str(body.get("model") or "")
        model = self.aliases.groups.get(model, model)  # an alias is routed as its group
        if model == self.auto_model and self.auto_model not in self.groups:
            pool = list(self.deployments.values())
        else:
            pool = self.groups.get(model, [])
        if not pool:
            raise NoSuchModel(model)
        messages = tuple(m for m in body.get("messages", []) if isinstance(m, dict))
        request = RoutingRequest(
            request_id=request_id,
            model=model,
            query=last_user_text(list(messages)),
            messages=messages,
            api_key=hashlib.sha256(api_key.encode()).hexdigest()[:16] if api_key else "",
        )
        return self._rank(request, pool)

    def fallback(self, call: RoutedCall, tried: set[str], kind: str, why: str) -> RoutedCall | None:
        """The next fallback group's call once `call`'s group is exhausted (None: no group
        left). Fallbacks are those of the group the client asked for, in order, each once."""
        requested = call.requested or call.request.model
        for group in self.fallback_groups.groups(requested, kind):
            if group in tried or not self.groups.get(group):
                continue
            if len(tried) - 1 >= self.max_fallbacks:  # `tried` holds the requested group too
                log.info("fallback request=%s model=%s stopped: router.max_fallbacks=%d groups tried", call.request.request_id, requested, self.max_fallbacks)
                return None
            tried.add(group)
            log.info("fallback request=%s model=%s from=%s to=%s reason=%s error=%s", call.request.request_id, requested, call.request.model, group, kind, why)
            planned = self._rank(replace(call.request, model=group), self.groups[group])
            planned.requested = requested
            return planned
        return None

    def _rank(self, request: RoutingRequest, pool: list[LiveDeployment]) -> RoutedCall:
        model = request.model
        request_id = request.request_id
        began = time.perf_counter()
        decision = self.strategy.choose(request, [d.routing for d in pool])
        decide_s = time.perf_counter() - began
        self.decisions += 1
        # Candidates whose breaker is open go last: tried only if nothing else is left.
        by_id = {d.id: d for d in pool}
        ranked = [by_id[r.id] for r in decision.ranked if r.id in by_id]
        ranked += [d for d in pool if d not in ranked]
        open_ = [d for d in ranked if not self.breaker(d).available()]
        order = [d for d in ranked if d not in open_]
        if self.budgets is not None:
            # Over its rpm this minute: tried after the others, as an open breaker is.
            spent = [d for d in order if self.budgets.over(d.id)]
            order = [d for d in order if d not in spent] + spent
        order += open_
        if log.isEnabledFor(logging.INFO):  # the candidates line is built only to be logged
            log.info(
                "routing request=%s model=%s strategy=%s chosen=%s candidates=%s decide_us=%.0f",
                request_id,
                model,
                decision.strategy,
                order[0].id,
                ",".join(f"{d.id}:{decision.scores.get(d.id, 0):.3f}" for d in ranked),
                decide_s * 1e6,
            )
        return RoutedCall(request, decision, order, decide_s)

    def record(self, call: RoutedCall, deployment: LiveDeployment, success: bool, latency_s: float, usage: Mapping[str, int] | None = None) -> None:
        usage = usage or {}
        prompt, completion = int(usage.get("prompt_tokens", 0) or 0), int(usage.get("completion_tokens", 0) or 0)
        outcome = Outcome(
            request=call.request,
            decision=call.decision,
            deployment=deployment.routing,
            success=success,
            latency_s=latency_s,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost=(prompt + completion) / 1000.0 * deployment.routing.cost_per_1k_tokens,
        )
        breaker = self.breaker(deployment)
        breaker.success() if success else breaker.failure()
        self.learn(outcome)
        if self.replica is not None:
            self.replica.outcome(outcome)

    def learn(self, outcome: Outcome) -> None:
        """Observe `outcome` and remember a success for feedback (also one another node served)."""
        try:
            self.strategy.observe(outcome)
        except Exception:  # a strategy bug must not fail the request
            log.exception("strategy %s failed in observe", outcome.decision.strategy)
        if outcome.success:
            request_id = outcome.request.request_id
            self._outcomes[request_id] = outcome
            self._outcomes.move_to_end(request_id)
            while len(self._outcomes) > self._remember:
                self._outcomes.popitem(last=False)

    def knows(self, request_id: str) -> bool:
        return request_id in self._outcomes

    def feedback(self, request_id: str, score: float, publish: bool = True) -> bool:
        """Feed a client's score to the strategy; False if the request is not remembered.
        `publish`: also send it to the other nodes (not for feedback they sent)."""
        outcome = self._outcomes.get(request_id)
        if outcome is None:
            return False
        self.strategy.feedback(outcome, score)
        if publish and self.replica is not None:
            self.replica.feedback(request_id, score)
        return True

    def describe(self) -> dict[str, Any]:
        return {
            "strategy": getattr(self.strategy, "name", type(self.strategy).__name__),
            "deployments": {d.id: {"model": d.routing.model, "kind": d.kind, "breaker": self.breaker(d).describe(), **self._budget(d)} for d in self.deployments.values()},
        } | ({"replication": self.replica.status()} if self.replica is not None else {})

    def _budget(self, d: LiveDeployment) -> dict[str, Any]:
        """/health's view of a deployment's rpm budget (none without an rpm)."""
        budget = self.budgets.describe(d.id) if self.budgets is not None else None
        return {"rpm": budget} if budget is not None else {}
