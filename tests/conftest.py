"""Shared fixtures: built guests, apps built from config dicts, real uvicorn servers."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from routeiq.config import parse_config
from routeiq.app import create_app
from routeiq.toolchain.python import COMPONENTIZE_PY_PIN, build_python_guests, componentize_version
from routeiq.toolchain.rust import build_rust_guests
from support import ALL_GRANTED, grant_everything, redis_server, serve

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def guests() -> dict[str, Path]:
    """Every Rust guest, built from source (cached by content hash)."""
    return {p.stem: p for p in build_rust_guests(ROOT)}


@pytest.fixture(scope="session")
def py_guests() -> dict[str, Path]:
    """Every Python guest, built with componentize-py (never installed from a test)."""
    if componentize_version() is None:
        pytest.fail(f"componentize-py is required and is not installed: run `./dev setup` (it installs {COMPONENTIZE_PY_PIN} from requirements.lock)")
    return {p.stem: p for p in build_python_guests(ROOT, print)}


@pytest.fixture(scope="session")
def module_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("module-cache")


@pytest.fixture
def make_app(tmp_path: Path, module_cache_dir: Path):  # type: ignore[no-untyped-def]
    """Build a gateway app from a config mapping (plugins, upstream, ...)."""
    apps = []

    def build(plugins: list[dict[str, Any]], upstream: Any = "embedded", policy: Any = ALL_GRANTED, resolver: Any = None, clock: Any = None, **top: Any):  # type: ignore[no-untyped-def]
        """`policy` defaults to granting every capability to every plugin (unpinned), for
        tests about the ABI; pass a mapping (or None: no policy at all) to test policy.
        `resolver` (a routeiq.services.callout.Resolver) resolves callout names; `clock`
        (support.FakeClock) drives circuit breakers and quarantine windows."""
        if policy is ALL_GRANTED:
            policy = grant_everything([p["name"] for p in plugins])
        data = {"upstream": upstream, "plugins": plugins, "runtime": {"cache_dir": str(module_cache_dir)}, "policy": policy, **top}
        app = create_app(parse_config(data, "test-config.yaml", tmp_path / "test-config.yaml"), resolver=resolver, clock=clock or time.monotonic)
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.state.gateway.close()


@pytest.fixture
def live():  # type: ignore[no-untyped-def]
    """live(app) -> base URL of a real uvicorn serving it (stopped after the test)."""
    stack = contextlib.ExitStack()
    yield lambda app: stack.enter_context(serve(app))
    stack.close()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30, trust_env=False) as client:
        yield client


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server on loopback for the whole session."""
    with redis_server() as url:
        yield url
