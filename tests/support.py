"""Helpers shared by tests: config snippets, free ports, a real uvicorn in a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import uvicorn

from routeiq.abi.capabilities import Capability

ALL_GRANTED = object()


def grant_everything(names: list[str], **extra: Any) -> dict[str, Any]:
    """A policy granting every capability (but no callout targets) to each named plugin."""
    entry = {"unpinned": True, "capabilities": [c.value for c in Capability], **extra}
    return {"plugins": {name: dict(entry) for name in names}}


def plugin(name: str, wasm: Path, **extra: Any) -> dict[str, Any]:
    return {"name": name, "wasm": str(wasm), **extra}


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




def eventually(check: Any, timeout: float = 5.0) -> Any:
    """Poll `check()` until it returns something truthy (on_log runs after the client
    has its last byte, so log assertions must wait for it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.01)
