"""Webhooks from a real gateway process: events survive a gateway restart while the
receiver is down, and arrive once each when it comes back."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from routeiq.services.webhooks import verify_signature
from support import eventually, free_port

ROOT = Path(__file__).resolve().parents[1]
SECRET = "receiver-shared-secret-0123456789"


def receiver(deliveries: list[dict]) -> Starlette:  # type: ignore[type-arg]
    async def hook(request: Request) -> Response:
        body = await request.body()
        if not verify_signature(SECRET, dict(request.headers), body):
            return Response(status_code=401)
        deliveries.append({"key": request.headers["x-routeiq-idempotency-key"], "event": request.headers["x-routeiq-event"], "body": body})
        return Response(status_code=204)

    return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


def start_gateway(config_path: Path, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "routeiq", "serve", "--config", str(config_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1, trust_env=False)
            return proc
        except httpx.HTTPError:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def test_events_survive_a_restart_and_arrive_once(tmp_path: Path) -> None:
    hook_port, gw_port = free_port(), free_port()
    config = {
        "server": {"host": "127.0.0.1", "port": gw_port},
        "model_list": [
            {"model_name": "chat", "litellm_params": {"model": "openai/mock-a", "api_base": "embedded"}, "model_info": {"id": "a"}},
        ],
        "webhooks": {
            "outbox": str(tmp_path / "outbox.sqlite"),
            "targets": [{"name": "ops", "url": f"http://127.0.0.1:{hook_port}/hook", "secret": SECRET, "events": ["request_complete"], "backoff_initial_s": 0.2, "backoff_max_s": 0.5}],
        },
        "router": {"breaker": {"cooldown_s": 0.3}},
        "runtime": {"cache_dir": str(tmp_path / "cache")},
    }
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(config))
    gateway = start_gateway(path, gw_port)
    request_ids = []
    try:
        for i in range(8):  # the receiver is down: events pile up in the outbox
            response = httpx.post(f"http://127.0.0.1:{gw_port}/v1/chat/completions", json={"model": "chat", "messages": [{"role": "user", "content": f"q{i}"}]}, timeout=10, trust_env=False)
            assert response.status_code == 200
            request_ids.append(response.headers["x-request-id"])
        pending = httpx.get(f"http://127.0.0.1:{gw_port}/health", timeout=5, trust_env=False).json()["webhooks"]["pending"]
        assert pending == 8
    finally:
        stop(gateway)
    gateway = start_gateway(path, gw_port)  # a new process on the same outbox
    deliveries: list[dict] = []  # type: ignore[type-arg]
    try:
        with serve_on(receiver(deliveries), hook_port):
            assert eventually(lambda: len({d["key"] for d in deliveries}) >= 8, timeout=20)
            time.sleep(0.5)
    finally:
        stop(gateway)
    keys = [d["key"] for d in deliveries]
    assert len(set(keys)) == 8 and len(keys) == 8  # every event, none twice
    assert sorted(json.loads(d["body"])["payload"]["request_id"] for d in deliveries) == sorted(request_ids)


def test_a_locked_outbox_file_does_not_hold_up_requests(make_app, live, http: httpx.Client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Another process holds the outbox's write lock (a backup, a stuck worker): requests
    are still answered, their events wait in memory (counted as pending), and once the
    file is free again every one is written and delivered."""
    deliveries: list[dict] = []  # type: ignore[type-arg]
    hook = live(receiver(deliveries))
    outbox = tmp_path / "outbox.sqlite"
    app = make_app(
        [],
        model_list=[{"model_name": "chat", "litellm_params": {"model": "openai/mock-a", "api_base": "embedded"}, "model_info": {"id": "a"}}],
        webhooks={"outbox": str(outbox), "targets": [{"name": "ops", "url": f"{hook}/hook", "secret": SECRET, "events": ["request_complete"]}]},
    )
    url = live(app)
    chat = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    assert http.post(f"{url}/v1/chat/completions", json=chat).status_code == 200
    assert eventually(lambda: len(deliveries) == 1, timeout=20)
    locker = sqlite3.connect(outbox, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # the write lock, held until we let go
    try:
        request_ids = []
        for i in range(5):
            response = http.post(f"{url}/v1/chat/completions", json={**chat, "messages": [{"role": "user", "content": f"q{i}"}]})
            assert response.status_code == 200
            request_ids.append(response.headers["x-request-id"])
        webhooks = http.get(f"{url}/health").json()["webhooks"]
        assert webhooks["pending"] == 5 and webhooks["emit_errors"] == 0
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert eventually(lambda: len(deliveries) == 6, timeout=20)
    assert [json.loads(d["body"])["payload"]["request_id"] for d in deliveries[1:]] == request_ids
    assert http.get(f"{url}/health").json()["webhooks"]["pending"] == 0


def serve_on(app: Starlette, port: int):  # type: ignore[no-untyped-def]
    """support.serve, on a chosen port (the receiver comes back where it was)."""
    import contextlib
    import threading

    import uvicorn

    @contextlib.contextmanager
    def run():  # type: ignore[no-untyped-def]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        try:
            yield
        finally:
            server.should_exit = True
            thread.join(timeout=10)

    return run()
