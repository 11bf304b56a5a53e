"""The operator's routes (config `routes:`, Envoy's route table): which upstream a request
goes to, which plugins run on it and with which configuration, and the route properties
plugins read (`route_name`, `cluster_name`, `route_metadata`).

Matching follows Envoy's route match: the first route whose every test holds wins; path
tests look at the path before `?`; `domains` are a virtual host's domain patterns tested
on `:authority`; header tests see pseudo-headers too. `models` tests the requested model
of an LLM request, so the route of a chat request is decided once its body is parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from starlette.types import ASGIApp

from routeiq.config import HeaderMatchConfig, RouteConfig, RouteMatchConfig
from routeiq.hostcalls.state import HeaderMap, RouteInfo


@dataclass(frozen=True)
class _HeaderTest:
    name: bytes
    test: Callable[[bytes | None], bool]
    invert: bool

    def holds(self, headers: HeaderMap) -> bool:
        return self.test(headers.get(self.name)) != self.invert


def _header_test(spec: HeaderMatchConfig) -> _HeaderTest:
    def value_test(check: Callable[[str], bool]) -> Callable[[bytes | None], bool]:
        return lambda v: v is not None and check(v.decode("latin-1"))

    test: Callable[[bytes | None], bool]
    if spec.exact is not None:
        exact = spec.exact
        test = value_test(lambda v: v == exact)
    elif spec.prefix is not None:
        prefix = spec.prefix
        test = value_test(lambda v: v.startswith(prefix))
    elif spec.suffix is not None:
        suffix = spec.suffix
        test = value_test(lambda v: v.endswith(suffix))
    elif spec.contains is not None:
        part = spec.contains
        test = value_test(lambda v: part in v)
    elif spec.regex is not None:
        pattern = re.compile(spec.regex)
        test = value_test(lambda v: pattern.fullmatch(v) is not None)
    elif spec.present is False:
        test = lambda v: v is None  # noqa: E731
    else:
        test = lambda v: v is not None  # noqa: E731
    return _HeaderTest(spec.name.lower().encode("latin-1"), test, spec.invert)


def _domain_test(patterns: list[str]) -> Callable[[str], bool] | None:
    if not patterns:
        return None
    lowered = [p.lower() for p in patterns]

    def one(pattern: str, host: str) -> bool:
        if pattern == "*":
            return True
        if pattern.startswith("*"):
            return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
        if pattern.endswith("*"):
            return host.startswith(pattern[:-1]) and len(host) > len(pattern) - 1
        return host == pattern

    def holds(authority: str) -> bool:
        host = authority.lower()
        bare = host.rsplit(":", 1)[0] if ":" in host and not host.endswith("]") else host
        return any(one(p, host) or (bare != host and ":" not in p and one(p, bare)) for p in lowered)

    return holds


def _path_test(spec: RouteMatchConfig) -> Callable[[str], bool]:
    sensitive = spec.case_sensitive
    if spec.path is not None:
        path = spec.path if sensitive else spec.path.lower()
        return (lambda p: p == path) if sensitive else (lambda p: p.lower() == path)
    if spec.regex is not None:
        pattern = re.compile(spec.regex)
        return lambda p: pattern.fullmatch(p) is not None
    prefix = spec.prefix or "/"
    if prefix == "/":
        return lambda p: True
    if not sensitive:
        lowered = prefix.lower()
        return lambda p: p.lower().startswith(lowered)
    return lambda p: p.startswith(prefix)


@dataclass(frozen=True)
class RequestFacts:
    """What routes are matched on, as the request stands now (plugins may have changed it)."""

    method: str
    path: str  # before `?`
    authority: str
    headers: HeaderMap
    model: str | None  # the requested model of an LLM request, else None


@dataclass
class Route:
    """One configured route, compiled."""

    name: str
    upstream: ASGIApp
    info: RouteInfo
    disabled: frozenset[str] = frozenset()
    configs: dict[str, bytes] = field(default_factory=dict)  # plugin name -> this route's config
    auth: bool | None = None  # needs a virtual key (None: keys.require_on decides)
    _path: Callable[[str], bool] = lambda p: True
    _methods: frozenset[str] = frozenset()
    _domains: Callable[[str], bool] | None = None
    _headers: tuple[_HeaderTest, ...] = ()
    _models: frozenset[str] | None = None

    @property
    def customizes_plugins(self) -> bool:
        return bool(self.disabled or self.configs)

    def matches(self, facts: RequestFacts) -> bool:
        if self._methods and facts.method not in self._methods:
            return False
        if not self._path(facts.path):
            return False
        if self._domains is not None and not self._domains(facts.authority):
            return False
        if self._models is not None and facts.model not in self._models:
            return False
        return all(test.holds(facts.headers) for test in self._headers)


def compile_route(spec: RouteConfig, upstream: ASGIApp, cluster_name: str | None, config_bytes: Callable[[Any], bytes]) -> Route:
    """`upstream`: the ASGI app the route's requests go to; `cluster_name`: the operator
    cluster behind it, if any (the `cluster_name` property)."""
    match = spec.match
    disabled = frozenset(name for name, p in spec.plugins.items() if p.disabled)
    configs = {name: config_bytes(p.config) for name, p in spec.plugins.items() if not p.disabled and "config" in p.model_fields_set}
    return Route(
        name=spec.name,
        upstream=upstream,
        info=RouteInfo(spec.name, cluster_name, spec.metadata),
        disabled=disabled,
        configs=configs,
        auth=spec.auth,
        _path=_path_test(match),
        _methods=frozenset(match.methods),
        _domains=_domain_test(match.domains),
        _headers=tuple(_header_test(h) for h in match.headers),
        _models=frozenset(match.models) if match.models else None,
    )


class RouteTable:
    """The routes in config order; `match` answers the first that holds, or None."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = list(routes)
        self.wants_model = any(r._models is not None for r in self.routes)

    def __bool__(self) -> bool:
        return bool(self.routes)

    def match(self, facts: RequestFacts) -> Route | None:
        for route in self.routes:
            if route.matches(facts):
                return route
        return None
