"""Shared fixtures: built guests, apps built from config dicts, real uvicorn servers."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import uvicorn

from routeiq.config import parse_config
from routeiq.gateway.app import create_app
from routeiq.toolchain.rust import build_rust_guests

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def guests() -> dict[str, Path]:
    """Every Rust guest, built from source (cached by content hash)."""
    return {p.stem: p for p in build_rust_guests(ROOT)}


@pytest.fixture(scope="session")
def module_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("module-cache")


def plugin(name: str, wasm: Path, **extra: Any) -> dict[str, Any]:
    return {"name": name, "wasm": str(wasm), **extra}


@pytest.fixture
def make_app(tmp_path: Path, module_cache_dir: Path):  # type: ignore[no-untyped-def]
    """Build a gateway app from a config mapping (plugins, upstream, ...)."""
    apps = []

    def build(plugins: list[dict[str, Any]], upstream: Any = "embedded", **top: Any):  # type: ignore[no-untyped-def]
        data = {"upstream": upstream, "plugins": plugins, "runtime": {"cache_dir": str(module_cache_dir)}, **top}
        app = create_app(parse_config(data, "test-config.yaml", tmp_path / "test-config.yaml"))
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.state.gateway.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run `app` under a real uvicorn on loopback in a thread; yield its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


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
