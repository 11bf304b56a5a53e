"""Load shedding and graceful drain, through real processes on loopback."""

from __future__ import annotations

import concurrent.futures
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import yaml

from support import free_port

ROOT = Path(__file__).resolve().parents[1]
SLOW = {"model": "chat", "stream": True, "messages": [{"role": "user", "content": "one two three four five six"}]}


def gateway(tmp_path: Path, **server: object) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    config = {
        "server": {"host": "127.0.0.1", "port": port, **server},
        "model_list": [{"model_name": "chat", "litellm_params": {"model": "openai/mock", "api_base": "embedded"}}],
        "mock": {"models": {"mock": {"chunk_delay_ms": 150}}},
        "runtime": {"cache_dir": str(tmp_path / "cache")},
    }
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "routeiq", "serve", "--config", str(path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            if httpx.get(f"{url}/health", timeout=1, trust_env=False).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_concurrency_limit_sheds_with_503_and_retry_after(tmp_path: Path) -> None:
    proc, url = gateway(tmp_path, max_concurrency=2)
    try:
        def one(_: int) -> tuple[int, str | None]:
            with httpx.Client(timeout=30, trust_env=False) as client:
                response = client.post(f"{url}/v1/chat/completions", json=SLOW)
                return response.status_code, response.headers.get("retry-after")

        with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
            results = list(pool.map(one, range(6)))
        statuses = [s for s, _ in results]
        assert statuses.count(200) >= 2 and statuses.count(503) >= 1, statuses
        assert all(retry == "1" for status, retry in results if status == 503)
        assert httpx.get(f"{url}/health", timeout=5, trust_env=False).status_code == 200  # health is never shed
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_sigterm_drains_in_flight_requests(tmp_path: Path) -> None:
    proc, url = gateway(tmp_path, drain_timeout_s=10)
    result: dict[str, object] = {}

    def slow_request() -> None:
        with httpx.Client(timeout=30, trust_env=False) as client:
            response = client.post(f"{url}/v1/chat/completions", json=SLOW)
            result["status"] = response.status_code
            result["body"] = response.text

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.4)  # the stream is under way (it needs ~1.3 s)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    refused = False
    try:
        httpx.get(f"{url}/health", timeout=2, trust_env=False)
    except httpx.HTTPError:
        refused = True
    thread.join(timeout=20)
    assert proc.wait(timeout=20) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after draining
    assert refused  # new connections are refused while draining
    assert result["status"] == 200 and str(result["body"]).endswith("data: [DONE]\n\n")  # the in-flight one finished
