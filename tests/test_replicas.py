"""Several `routeiq serve --workers 2` processes sharing one real redis-server act as one
gateway for operators: an admin change made on any worker of any replica is live on every
worker of every replica (each asked on a fresh connection, its pid in the answer), a replica
started later catches up, and Redis going away (and coming back empty) loses nothing."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import yaml

from routeiq.admin.auth import hash_key
from support import free_port, redis_server

ROOT = Path(__file__).resolve().parents[1]
KEY = "admin-key-0123456789"
AUTH = {"authorization": f"Bearer {KEY}"}
WORKERS = 2


def write_config(tmp_path: Path, name: str, redis_url: str, module: Path, tag: str = "from-file", trapper: Path | None = None) -> Path:
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "workers": WORKERS},
        "kv": {"backend": "redis", "url": redis_url, "prefix": "rq", "timeout_s": 0.5},
        "replicas": {"poll_s": 0.5, "node_ttl_s": 3},
        "admin": {"state_dir": str(tmp_path / f"state-{name}"), "keys": [{"name": "ops", "sha256": hash_key(KEY), "role": "admin"}]},
        "policy": {"plugins": {"tagger": {"unpinned": True, "capabilities": ["response_body"]}}},
        "runtime": {"cache_dir": str(tmp_path / "cache")},
        "plugins": [{"name": "tagger", "wasm": str(module), "config": {"tag": tag}, "fail_open": False}],
    }
    if trapper is not None:  # traps on requests carrying x-hostile
        config["policy"]["plugins"]["trapper"] = {"unpinned": True, "capabilities": []}
        config["plugins"].append({"name": "trapper", "wasm": str(trapper), "config": "request_headers", "fail_open": True, "quarantine": {"max_traps": 2, "window_s": 60, "cooldown_s": 600}})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class Replica:
    """One `routeiq serve --workers 2` process tree on its own port."""

    def __init__(self, config: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "routeiq", "serve", "--config", str(config), "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        deadline = time.monotonic() + 90
        while True:
            assert self.proc.poll() is None, self.proc.stdout.read() if self.proc.stdout else ""
            try:
                if httpx.get(f"{self.url}/health", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "replica did not start"
            time.sleep(0.1)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        # A fresh connection each time, so the kernel may hand it to any worker.
        headers = {**AUTH, "connection": "close", **kw.pop("headers", {})}
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=10, trust_env=False, **kw)

    def send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}/admin{path}", headers={**AUTH, "connection": "close", **kw.pop("headers", {})}, timeout=30, trust_env=False, **kw)

    def per_worker(self, path: str, want: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[int, dict[str, Any]]:
        """Ask on fresh connections until every worker (by pid) answered `path` with a body
        for which `want` holds; returns the last body of each pid."""
        seen: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while True:
            body = self.get(path).json()
            seen[body["pid"]] = body
            if len(seen) >= WORKERS and all(want(b) for b in seen.values()):
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"not every worker of {self.url} answered as wanted on {path}: {json.dumps(seen)[:2000]}")
            if not want(body):
                time.sleep(0.05)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            import os

            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@contextlib.contextmanager
def replicas(*configs: Path) -> Iterator[list[Replica]]:
    started: list[Replica] = []
    try:
        for config in configs:
            started.append(Replica(config))
        yield started
    finally:
        for replica in started:
            replica.stop()


def tag_is(tag: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: json.loads(body["config"] or "{}").get("tag") == tag


def test_admin_changes_reach_every_worker_of_every_replica(tmp_path: Path, guests: dict[str, Path]) -> None:
    module = tmp_path / "tagger.wasm"
    shutil.copy(guests["tagger"], module)
    redis_port = free_port()
    with redis_server(redis_port) as url:
        with replicas(write_config(tmp_path, "a", url, module), write_config(tmp_path, "b", url, module)) as (a, b):
            for r in (a, b):
                r.per_worker("/admin/plugins/tagger", tag_is("from-file"))
            # Every worker of both replicas reports itself, all on the same version.
            _eventually(lambda: (v := a.get("/admin/nodes").json())["converged"] and len(v["nodes"]) == 2 * WORKERS)

            # Config: PUT on one worker of A, live on every worker of A and B.
            changed = a.send("PUT", "/plugins/tagger/config", json={"tag": "shared"})
            assert changed.status_code == 200, changed.text
            for r in (a, b):
                r.per_worker("/admin/plugins/tagger", tag_is("shared"))
            assert dict(b.get("/echo").json()["headers"]).get("x-routeiq-tagged") == "shared"

            # Module swap on B: the bytes travel through Redis, verified by sha256 on each node.
            swapped = b.send("POST", "/plugins/tagger/module", content=guests["chunk_counter"].read_bytes())
            assert swapped.status_code == 200, swapped.text
            sha = swapped.json()["sha256"]
            for r in (a, b):
                r.per_worker("/admin/plugins/tagger", lambda body: body["sha256"] == sha)

            # Manual quarantine on A: every worker refuses (fail_open: false); release on B.
            assert a.send("POST", "/plugins/tagger/quarantine").status_code == 200
            for r in (a, b):
                r.per_worker("/admin/plugins/tagger", lambda body: body["state"] == "quarantined")
            assert b.get("/echo").status_code == 503
            assert b.send("POST", "/plugins/tagger/release").status_code == 200
            for r in (a, b):
                r.per_worker("/admin/plugins/tagger", lambda body: body["state"] == "ready")

            # Undo on B: the file's module and config apply everywhere again.
            assert b.send("DELETE", "/plugins/tagger/module").status_code == 200
            assert b.send("DELETE", "/plugins/tagger/config").status_code == 200
            for r in (a, b):
                r.per_worker("/admin/plugins/tagger", lambda body: tag_is("from-file")(body) and body["sha256"] != sha)
            # Each node's view of the plugin is in the answer.
            assert len(a.get("/admin/plugins/tagger").json()["nodes"]) == 2 * WORKERS

            # Every node reports the same version and the same plugin; the view agrees.
            def converged() -> dict[str, Any] | None:
                view = a.get("/admin/nodes").json()
                return view if view["converged"] and len(view["nodes"]) == 2 * WORKERS else None

            view = _eventually(converged)
            assert {n["plugins"]["tagger"]["config_sha256"] for n in view["nodes"]} == {view["nodes"][0]["plugins"]["tagger"]["config_sha256"]}
            assert {n["pid"] for n in view["nodes"]} >= set(a.per_worker("/health", lambda _: True)) | set(b.per_worker("/health", lambda _: True))


def test_redis_down_keeps_last_state_refuses_writes_and_recovers(tmp_path: Path, guests: dict[str, Path]) -> None:
    module = tmp_path / "tagger.wasm"
    shutil.copy(guests["tagger"], module)
    redis_port = free_port()
    config_a, config_b = write_config(tmp_path, "a", f"redis://127.0.0.1:{redis_port}/0", module), write_config(tmp_path, "b", f"redis://127.0.0.1:{redis_port}/0", module)
    with contextlib.ExitStack() as stack:
        redis_cm = redis_server(redis_port)
        redis_cm.__enter__()
        redis_up = True
        try:
            a, b = stack.enter_context(replicas(config_a, config_b))
            assert a.send("PUT", "/plugins/tagger/config", json={"tag": "before-outage"}).status_code == 200
            for r in (a, b):
                r.per_worker("/admin/plugins/tagger", tag_is("before-outage"))

            redis_cm.__exit__(None, None, None)  # Redis goes away (and loses everything)
            redis_up = False
            for r in (a, b):  # serving the last good state, reporting degraded
                r.per_worker("/health", lambda h: h["status"] == "degraded" and h["replicas"]["store"] == "unreachable")
                assert dict(r.get("/echo").json()["headers"]).get("x-routeiq-tagged") == "before-outage"
            refused = a.send("PUT", "/plugins/tagger/config", json={"tag": "during-outage"})
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "state_not_stored", refused.text
            a.per_worker("/admin/plugins/tagger", tag_is("before-outage"))  # not applied anywhere
            assert a.send("POST", "/plugins/tagger/quarantine").status_code == 503
            a.per_worker("/admin/plugins/tagger", lambda body: body["state"] == "ready")

            redis_cm = redis_server(redis_port)  # back, empty: the nodes write their state back
            redis_cm.__enter__()
            redis_up = True
            for r in (a, b):
                r.per_worker("/health", lambda h: h["status"] == "ok" and h["replicas"]["converged"])
            assert a.send("PUT", "/plugins/tagger/config", json={"tag": "after-outage"}).status_code == 200
            for r in (a, b):
                r.per_worker("/admin/plugins/tagger", tag_is("after-outage"))

            # A replica that starts now (empty state dir) starts with what operators changed.
            late = stack.enter_context(replicas(write_config(tmp_path, "late", f"redis://127.0.0.1:{redis_port}/0", module)))[0]
            late.per_worker("/admin/plugins/tagger", tag_is("after-outage"), timeout=10)
        finally:
            if redis_up:
                stack.close()  # replicas stop before Redis does
                redis_cm.__exit__(None, None, None)


def test_a_restarted_replica_catches_up_on_changes_made_while_it_was_down(tmp_path: Path, guests: dict[str, Path]) -> None:
    module = tmp_path / "tagger.wasm"
    shutil.copy(guests["tagger"], module)
    with redis_server() as url:
        config_a, config_b = write_config(tmp_path, "a", url, module), write_config(tmp_path, "b", url, module)
        with replicas(config_a) as (a,):
            with replicas(config_b) as (b,):
                b.per_worker("/admin/plugins/tagger", tag_is("from-file"))
            # B is down: a config change and a quarantine happen meanwhile.
            assert a.send("PUT", "/plugins/tagger/config", json={"tag": "while-b-was-down"}).status_code == 200
            assert a.send("POST", "/plugins/tagger/quarantine").status_code == 200
            with replicas(config_b) as (b,):
                b.per_worker("/admin/plugins/tagger", lambda body: tag_is("while-b-was-down")(body) and body["state"] == "quarantined", timeout=10)


def test_automatic_quarantine_stays_per_node_and_every_node_shows_it(tmp_path: Path, guests: dict[str, Path]) -> None:
    module = tmp_path / "tagger.wasm"
    shutil.copy(guests["tagger"], module)
    with redis_server() as url:
        configs = [write_config(tmp_path, n, url, module, trapper=guests["hostile_trap"]) for n in ("a", "b")]
        with replicas(*configs) as (a, b):
            # Hostile requests reach A only: the worker that serves them quarantines its trapper.
            def a_quarantined() -> dict[str, Any] | None:
                for _ in range(3):
                    assert a.get("/echo", headers={"x-hostile": "1"}).status_code == 200  # fail_open: skipped
                view = b.get("/admin/nodes").json()  # asked on B: every node's view is there
                states = {n["node"]: n["plugins"]["trapper"] for n in view["nodes"]}
                return view if any(s["state"] == "quarantined" for s in states.values()) else None

            view = _eventually(a_quarantined)
            b_pids = set(b.per_worker("/health", lambda _: True))
            for node in view["nodes"]:
                trapper = node["plugins"]["trapper"]
                if node["pid"] in b_pids:
                    assert trapper["state"] == "ready" and trapper["traps"] == 0  # B never saw a trap
                if trapper["state"] == "quarantined":
                    assert node["pid"] not in b_pids and trapper["manual"] is False and trapper["traps"] >= 2
            assert view["converged"]  # a trap is not an operator change: versions still agree


def test_config_file_edits_reach_every_node_and_admin_changes_win_everywhere(tmp_path: Path, guests: dict[str, Path]) -> None:
    module = tmp_path / "tagger.wasm"
    shutil.copy(guests["tagger"], module)
    with redis_server() as url:
        # One file for both replicas (a ConfigMap mounted on each host, say).
        config = write_config(tmp_path, "shared", url, module)
        with replicas(config, config) as (a, b):
            for r in (a, b):
                r.per_worker("/admin/plugins/tagger", tag_is("from-file"))
            config.write_text(config.read_text().replace("tag: from-file", "tag: file-v2"))
            for r in (a, b):
                r.per_worker("/admin/plugins/tagger", tag_is("file-v2"))
            assert a.send("PUT", "/plugins/tagger/config", json={"tag": "admin"}).status_code == 200
            for r in (a, b):
                r.per_worker("/admin/plugins/tagger", tag_is("admin"))
            # The admin change wins on every node: a file edit is reported, not applied.
            config.write_text(config.read_text().replace("tag: file-v2", "tag: file-v3"))
            for r in (a, b):
                r.per_worker("/health", lambda h: any("tagger: config" in o for o in h["config"]["overridden"]))
                r.per_worker("/admin/plugins/tagger", tag_is("admin"))
            # Handed back on B: the file's latest value applies everywhere.
            assert b.send("DELETE", "/plugins/tagger/config").status_code == 200
            for r in (a, b):
                r.per_worker("/admin/plugins/tagger", tag_is("file-v3"))


def _eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)
