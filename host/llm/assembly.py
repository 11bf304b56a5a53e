"""Builds the LLM path of one gateway from its config (the app factory calls this)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from routeiq.config import ConfigError, LoadedConfig
from routeiq.services.breakers import BreakerBoard
from routeiq.services.http_client import HttpClient

from .telemetry import LlmTelemetry
from .api import Meter, Deadlines, EventEmitter, LlmApi, is_llm_path
from .backends import EmbeddedBackend, LitellmBackend, PassthroughBackend
from .deployments import build_deployments
from .mock_provider import MockBehaviour, MockProvider
from .rate_limits import RpmBudgets
from .router import Aliases, Fallbacks, LlmRouter

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer


def build_llm(
    config: LoadedConfig,
    breakers: BreakerBoard,
    mock: MockProvider,
    http: HttpClient,
    tracer: Tracer | None = None,
    events: EventEmitter | None = None,
    native: Sequence[Any] = (),
    telemetry: LlmTelemetry | None = None,
    clock: Callable[[], float] = time.monotonic,
    meter: "Meter | None" = None,
) -> LlmApi | None:
    """The LLM API of `config` (None without a model_list). `telemetry`: the metrics a
    reloaded LLM path keeps recording into (the /metrics collector holds them); `clock`
    times the deployments' rpm minutes (the breakers' clock)."""
    model = config.model
    if not model.model_list:
        return None
    from routeiq.strategies.registry import StrategyRegistry

    where = str(config.path or "<config>")
    try:
        deployments = build_deployments(model.model_list)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    registry = StrategyRegistry.with_builtins()
    router_cfg = model.router
    if router_cfg.custom_routers:
        from routeiq.strategies.custom import CustomStrategyError, load_custom_strategies

        try:
            load_custom_strategies(config.base_dir / router_cfg.custom_routers, registry)
        except CustomStrategyError as exc:
            raise ConfigError(f"{where}: router.custom_routers: {exc}") from None
    if router_cfg.strategy not in registry.names():
        raise ConfigError(f"{where}: router.strategy: unknown strategy {router_cfg.strategy!r}; known: {', '.join(sorted(registry.names()))}")
    from routeiq.strategies.learned import StrategyOptionError

    try:
        strategy = registry.create(router_cfg.strategy, **router_cfg.strategy_options)
    except StrategyOptionError as exc:
        raise ConfigError(f"{where}: router.strategy_options.{exc.field}: {exc.reason}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: router.strategy_options: {exc}") from None
    if router_cfg.artifact:
        from routeiq.strategies.artifacts import ArtifactError, load_artifact

        try:
            # the operator's options (a quality target, a budget) apply on top of the trained state
            trained = load_artifact(config.base_dir / router_cfg.artifact, registry, overrides=router_cfg.strategy_options)
        except StrategyOptionError as exc:
            raise ConfigError(f"{where}: router.strategy_options.{exc.field}: {exc.reason}") from None
        except ArtifactError as exc:
            raise ConfigError(f"{where}: router.artifact: {exc}") from None
        if trained.name != strategy.name:
            raise ConfigError(f"{where}: router.artifact holds a {trained.name!r} strategy but router.strategy is {strategy.name!r}")
        strategy = trained
    elif strategy.learned:
        # Learned strategies start from priors (and, for the bandit, learn online) until
        # `routeiq route-train` gives them an artifact.
        logging.getLogger("routeiq.routing").warning("strategy %s has no trained artifact (router.artifact): it starts untrained", strategy.name)
    for name, behaviour in model.mock.models.items():
        mock.behaviours[name] = MockBehaviour(**behaviour.model_dump())
    fallbacks = Fallbacks.of(router_cfg.fallbacks, router_cfg.context_window_fallbacks, router_cfg.content_policy_fallbacks)
    aliases = Aliases(
        {alias: t if isinstance(t, str) else t.model for alias, t in router_cfg.model_group_alias.items()},
        frozenset(alias for alias, t in router_cfg.model_group_alias.items() if not isinstance(t, str) and t.hidden),
    )
    router = LlmRouter(deployments, strategy, breakers, router_cfg.auto_model, strategy_options=router_cfg.strategy_options, fallback_groups=fallbacks, max_fallbacks=router_cfg.max_fallbacks, aliases=aliases, budgets=RpmBudgets({d.id: d.rpm for d in deployments if d.rpm}, clock))
    deadlines = Deadlines(router_cfg.timeout_s, router_cfg.first_byte_timeout_s or router_cfg.timeout_s, router_cfg.stream_idle_timeout_s)
    if telemetry is not None:
        telemetry.models = frozenset(router.models)  # the reloaded groups are the labels now
    return LlmApi(router, EmbeddedBackend(mock), PassthroughBackend(http), LitellmBackend(deployments), deadlines, router_cfg.retries, tracer, events, native, telemetry, meter)


class LlmSwitch:
    """The LLM API in service. A live reload of `model_list` / `router` builds a whole new
    LlmApi (router, deployments, backends, deadlines) and `swap`s it in at once: a request
    is handed to the API in service when it arrives and finishes on that one, so requests
    in flight complete on the old deployments while new ones take the new."""

    def __init__(self, api: LlmApi) -> None:
        self.api = api

    def swap(self, api: LlmApi) -> None:
        # The counters behind /metrics continue (Prometheus counters do not go back).
        api.router.decisions += self.api.router.decisions
        api.router.fallbacks += self.api.router.fallbacks
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.api.app(scope, receive, send)


def llm_dispatch(llm: LlmSwitch, fallback: ASGIApp) -> ASGIApp:
    """Sends the OpenAI routes to the LLM path in service and everything else to the upstream."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        target = llm if scope["type"] == "http" and is_llm_path(scope["path"]) else fallback
        await target(scope, receive, send)

    return app
