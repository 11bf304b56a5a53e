"""Routing state shared across workers and replicas (issue #15 item 4), against real parts:
`routeiq serve --workers 2` processes sharing one real redis-server. Feedback works on a
node that did not serve the request, outcomes move least_latency's EWMAs everywhere, a
node started later catches up, an artifact PUT on one node is loaded by every worker, and
a Redis outage degrades (local state, `degraded`) and heals."""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
import yaml
from starlette.testclient import TestClient

from routeiq.admin.auth import hash_key
from routeiq.app import create_app
from routeiq.config import load_config
from routeiq.strategies.artifacts import save_artifact
from routeiq.strategies.base import TrainingExample
from routeiq.strategies.registry import create
from support import eventually, free_port, redis_server_binary

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "admin-key-0123456789"
AUTH = {"authorization": f"Bearer {ADMIN}"}
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "what is the capital of france"}]}
WAIT = 90.0  # generous: a loaded 2-core machine starts four workers at once


def deployments() -> list[dict[str, Any]]:
    return [
        {"model_name": "chat", "litellm_params": {"model": f"openai/mock-{d}", "api_base": "embedded", "api_key": "sk-test"}, "model_info": {"id": d}}
        for d in ("a", "b")
    ]


class Node:
    """One `routeiq serve` process (a replica) with its workers."""

    def __init__(self, tmp_path: Path, name: str, redis_url: str | None, prefix: str, strategy: str, workers: int = 2, router: dict[str, Any] | None = None) -> None:
        self.workers = workers
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config: dict[str, Any] = {
            "server": {"host": "127.0.0.1", "port": port, "workers": workers},
            "model_list": deployments(),
            "router": {"strategy": strategy, "replication": {"feedback_wait_s": 10}, **(router or {})},
            "runtime": {"cache_dir": str(tmp_path / "cache")},
            "admin": {"state_dir": str(tmp_path / name / "state"), "keys": [{"name": "ops", "sha256": hash_key(ADMIN), "role": "admin"}]},
        }
        if redis_url is not None:
            config["kv"] = {"backend": "redis", "url": redis_url, "prefix": prefix, "timeout_s": 0.5}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        self.proc = subprocess.Popen([sys.executable, "-m", "routeiq", "serve", "--config", str(path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.pids = set(self.each_worker("/health", lambda doc: True))

    def get(self, path: str, **kw: Any) -> httpx.Response:
        with httpx.Client(timeout=10, trust_env=False) as fresh:  # a new connection: any worker
            return fresh.get(f"{self.url}{path}", **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        with httpx.Client(timeout=20, trust_env=False) as fresh:
            return fresh.post(f"{self.url}{path}", **kw)

    def put(self, path: str, **kw: Any) -> httpx.Response:
        with httpx.Client(timeout=20, trust_env=False) as fresh:
            return fresh.put(f"{self.url}{path}", **kw)

    def each_worker(self, path: str, check: Callable[[dict[str, Any]], bool], timeout: float = WAIT, headers: dict[str, str] | None = None) -> dict[int, dict[str, Any]]:
        """Ask on fresh connections until every worker (by pid) answered `path` with a body
        `check` accepts; {pid: that body}."""
        good: dict[int, dict[str, Any]] = {}
        last: dict[int, Any] = {}
        deadline = time.monotonic() + timeout
        while len(good) < self.workers:
            assert self.proc.poll() is None, self.proc.stdout.read() if self.proc.stdout else ""
            assert time.monotonic() < deadline, f"{self.url}{path}: workers that never matched: {last}"
            try:
                doc = self.get(path, headers=headers).json()
            except (httpx.HTTPError, ValueError):
                time.sleep(0.1)
                continue
            pid = doc.get("pid")
            last[pid] = doc
            if check(doc):
                good[pid] = doc
            else:
                good.pop(pid, None)
                time.sleep(0.02)
        return good

    def routing(self, check: Callable[[dict[str, Any]], bool], state: bool = False, timeout: float = WAIT) -> dict[int, dict[str, Any]]:
        return self.each_worker("/admin/routing" + ("?state=1" if state else ""), check, timeout, AUTH)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        try:
            output, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            output, _ = self.proc.communicate()
        return output


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    started: list[Node] = []

    def start(*args: Any, **kw: Any) -> Node:
        node = Node(tmp_path, *args, **kw)
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop()


def replicated(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["replication"]


def trained_artifact(path: Path) -> tuple[dict[str, Any], str]:
    bandit = create("contextual_bandit")
    bandit.fit([TrainingExample(f"tell me about {w}", {"mock-a": (0.9, 1.0), "mock-b": (0.2, 1.0)}) for w in ("rome", "paris", "math", "cats")])
    sha256 = save_artifact(bandit, path)
    return json.loads(path.read_text()), sha256


def test_feedback_on_another_node_reaches_every_worker_and_a_late_node_catches_up(nodes: Callable[..., Node], redis_url: str, tmp_path: Path) -> None:
    prefix = f"fb{time.monotonic_ns()}"
    a = nodes("a", redis_url, prefix, "contextual_bandit")
    b = nodes("b", redis_url, prefix, "contextual_bandit")
    before = {doc["state_sha256"] for node in (a, b) for doc in node.routing(lambda d: replicated(d)["status"] == "ok").values()}
    assert len(before) == 1  # all cold: no arms yet

    answer = a.post("/v1/chat/completions", json=CHAT)
    assert answer.status_code == 200
    request_id = answer.headers["x-request-id"]
    # Another process, a fresh connection: it has not served the request.
    feedback = b.post("/v1/feedback", json={"request_id": request_id, "score": 1.0})
    assert feedback.status_code == 200, feedback.text

    # Every worker of both nodes learned the same thing from that one score.
    states = {pid: doc["state_sha256"] for node in (a, b) for pid, doc in node.routing(lambda d: d["state_sha256"] not in before).items()}
    assert len(states) == 4 and len(set(states.values())) == 1, states
    learned = next(iter(states.values()))

    unknown = b.post("/v1/feedback", json={"request_id": "never-served", "score": 1.0})
    assert unknown.status_code == 404
    assert "on any node" in unknown.json()["error"]["message"]

    # A node started later replays the stream and converges to the same state.
    c = nodes("c", redis_url, prefix, "contextual_bandit")
    caught_up = c.routing(lambda d: d["state_sha256"] == learned)
    assert all(replicated(d)["applied"]["feedback"] == 1 and replicated(d)["applied"]["outcomes"] == 1 for d in caught_up.values())


def test_quality_predictor_feedback_is_shared_and_bounded_on_every_worker(nodes: Callable[..., Node], redis_url: str, tmp_path: Path) -> None:
    prefix = f"qp{time.monotonic_ns()}"
    predictor = create("quality_predictor", dim=256)
    words = ("rome", "paris", "math", "cats", "dogs", "rain", "tea", "chess")
    predictor.fit([TrainingExample(f"tell me about {w} {i}", {"mock-a": (0.9, 1.0), "mock-b": (0.3, 1.0)}) for i, w in enumerate(words * 3)])
    artifact = tmp_path / "qp.json"
    save_artifact(predictor, artifact)
    # a fast learner, so that a short burst reaches the clamp: max_shift is what bounds it
    router = {"artifact": str(artifact), "strategy_options": {"online_rate": 1.0, "max_shift": 0.05}}
    a = nodes("a", redis_url, prefix, "quality_predictor", router=router)
    b = nodes("b", redis_url, prefix, "quality_predictor", router=router)
    ready = lambda d: replicated(d)["status"] == "ok"
    assert all(d["state"]["params"]["bias"] == [0.0, 0.0] for node in (a, b) for d in node.routing(ready, state=True).values())
    served = []
    for _ in range(8):  # a burst of "useless" scores, given on the node that did not answer
        answer = a.post("/v1/chat/completions", json=CHAT)
        assert answer.status_code == 200
        served.append(answer.headers["x-routeiq-deployment"])
        assert b.post("/v1/feedback", json={"request_id": answer.headers["x-request-id"], "score": 0.0}).status_code == 200
    assert set(served) == {"a"}  # mock-a was predicted better, and stays so: the burst is bounded
    clamped = lambda d: d["state"]["params"]["bias"][0] == pytest.approx(-0.05)
    states = {pid: doc["state_sha256"] for node in (a, b) for pid, doc in node.routing(clamped, state=True).items()}
    assert len(states) == 4 and len(set(states.values())) == 1, states


def test_outcomes_move_least_latency_ewmas_on_every_worker(nodes: Callable[..., Node], redis_url: str) -> None:
    prefix = f"ll{time.monotonic_ns()}"
    a = nodes("a", redis_url, prefix, "least_latency")
    b = nodes("b", redis_url, prefix, "least_latency")
    assert all(d["state"]["ewma"] == {} for d in b.routing(lambda d: True, state=True).values())
    served = set()
    for _ in range(6):
        answer = a.post("/v1/chat/completions", json=CHAT)
        assert answer.status_code == 200
        served.add(answer.headers["x-routeiq-deployment"])
    # b served nothing, yet each of its workers has an EWMA for every deployment a used,
    # and (applying the stream in the same order) the same values.
    ewmas = b.routing(lambda d: set(d["state"]["ewma"]) == served and replicated(d)["applied"]["outcomes"] == 6, state=True)
    values = [d["state"]["ewma"] for d in ewmas.values()]
    assert values[0] == values[1]
    assert all(v > 0 for v in values[0].values())
    # a's workers learn from each other too.
    a.routing(lambda d: set(d["state"]["ewma"]) == served, state=True)


def test_artifact_put_on_one_node_is_loaded_by_every_worker(nodes: Callable[..., Node], redis_url: str, tmp_path: Path) -> None:
    prefix = f"art{time.monotonic_ns()}"
    a = nodes("a", redis_url, prefix, "contextual_bandit")
    b = nodes("b", redis_url, prefix, "contextual_bandit")
    doc, sha256 = trained_artifact(tmp_path / "bandit.json")

    tampered = {**doc, "created": "yesterday"}
    refused = a.put("/admin/routing/artifact", json=tampered, headers=AUTH)
    assert refused.status_code == 400 and "sha256 mismatch" in refused.json()["error"]["message"]
    assert a.put("/admin/routing/artifact", json={**doc, "name": "knn"}, headers=AUTH).status_code == 400
    assert a.put("/admin/routing/artifact", json=doc).status_code == 401

    stored = a.put("/admin/routing/artifact", json=doc, headers=AUTH)
    assert stored.status_code == 200, stored.text
    assert stored.json() == {"ok": True, "strategy": "contextual_bandit", "sha256": sha256, "stored": "redis"}
    for node in (a, b):
        node.routing(lambda d: (d["artifact"] or {}).get("sha256") == sha256)
    # The trained arms route: mock-a was better on every training query.
    assert a.post("/v1/chat/completions", json={**CHAT, "messages": [{"role": "user", "content": "tell me about rome"}]}).headers["x-routeiq-deployment"] == "a"
    # A node started afterwards loads the stored artifact.
    c = nodes("c", redis_url, prefix, "contextual_bandit", workers=1)
    c.routing(lambda d: (d["artifact"] or {}).get("sha256") == sha256 and d["artifact"]["source"] == "redis")


class RestartableRedis:
    """A redis-server on a fixed port that the test kills and starts again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline and self.proc.poll() is None, "redis-server did not start"
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def restartable_redis() -> Iterator[RestartableRedis]:
    server = RestartableRedis()
    server.start()
    yield server
    with contextlib.suppress(AssertionError):
        server.kill()


def least_latency_artifact(ewma: dict[str, float]) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": "least_latency", "version": 1, "options": {}, "state": {"ewma": ewma}, "created": "now"}
    doc["sha256"] = hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return doc


def test_redis_down_nodes_keep_serving_degraded_then_converge(nodes: Callable[..., Node], restartable_redis: RestartableRedis) -> None:
    prefix = f"down{time.monotonic_ns()}"
    a = nodes("a", restartable_redis.url, prefix, "least_latency", workers=1)
    b = nodes("b", restartable_redis.url, prefix, "least_latency", workers=1)
    a.each_worker("/health", lambda d: d["status"] == "ok")
    artifact = least_latency_artifact({"a": 0.5, "b": 0.25})
    assert a.put("/admin/routing/artifact", json=artifact, headers=AUTH).status_code == 200
    b.routing(lambda d: (d["artifact"] or {}).get("sha256") == artifact["sha256"])

    restartable_redis.kill()
    for node in (a, b):
        node.each_worker("/health", lambda d: d["status"] == "degraded" and d["routing"]["replication"]["status"] == "degraded")
    during = a.post("/v1/chat/completions", json=CHAT)  # served with local state
    assert during.status_code == 200
    refused = a.put("/admin/routing/artifact", json=least_latency_artifact({"a": 9.0}), headers=AUTH)
    assert refused.status_code == 503, refused.text  # not stored, so not acknowledged ...
    a.routing(lambda d: d["artifact"]["sha256"] == artifact["sha256"])  # ... and not loaded

    restartable_redis.start()  # empty: it kept nothing
    for node in (a, b):
        node.each_worker("/health", lambda d: d["status"] == "ok")
    # The outcome a buffered during the outage arrives; new ones replicate again.
    after = a.post("/v1/chat/completions", json=CHAT)
    assert b.post("/v1/feedback", json={"request_id": after.headers["x-request-id"], "score": 0.5}).status_code == 200
    b.routing(lambda d: replicated(d)["applied"]["outcomes"] >= 2 and replicated(d)["dropped"] == 0)
    # The nodes put back the artifact Redis lost: a node starting now loads it.
    c = nodes("c", restartable_redis.url, prefix, "least_latency", workers=1)
    c.routing(lambda d: (d["artifact"] or {}).get("sha256") == artifact["sha256"])


def test_memory_backend_artifact_is_loaded_live_and_kept_across_restarts(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    state_dir = tmp_path / "state"
    doc, sha256 = trained_artifact(tmp_path / "bandit.json")
    top = {"model_list": deployments(), "router": {"strategy": "contextual_bandit"}, "admin": {"state_dir": str(state_dir), "keys": [{"name": "ops", "sha256": hash_key(ADMIN), "role": "admin"}]}}
    with TestClient(make_app([], **top)) as client:
        before = client.get("/admin/routing", headers=AUTH).json()
        assert before["artifact"] is None and before["replication"]["status"] == "off"
        assert "routing" in client.get("/health").json() and "replication" not in client.get("/health").json()["routing"]
        stored = client.put("/admin/routing/artifact", json=doc, headers=AUTH)
        assert stored.status_code == 200 and stored.json()["stored"] == "state_dir"
        after = client.get("/admin/routing", headers=AUTH).json()
        assert after["artifact"]["sha256"] == sha256 and after["state_sha256"] != before["state_sha256"]
        missing = client.post("/v1/feedback", json={"request_id": "nope", "score": 1})
        assert "worker that served it" in missing.json()["error"]["message"]
    with TestClient(make_app([], **top)) as client:
        again = client.get("/admin/routing", headers=AUTH).json()
        assert again["artifact"]["sha256"] == sha256 and again["artifact"]["source"] == "state_dir"
        assert again["state_sha256"] == after["state_sha256"]


def test_replication_follows_the_router_a_live_reload_builds(tmp_path: Path, redis_url: str, live: Callable[[Any], str]) -> None:
    prefix = f"reload{time.monotonic_ns()}"

    def write(name: str, retries: int) -> Path:
        path = tmp_path / f"{name}.yaml"
        config = {
            "runtime": {"cache": False},
            "model_list": deployments(),
            "router": {"strategy": "contextual_bandit", "retries": retries, "replication": {"feedback_wait_s": 10}},
            "kv": {"backend": "redis", "url": redis_url, "prefix": prefix},
            "admin": {"state_dir": str(tmp_path / name)},
        }
        path.write_text(yaml.safe_dump(config))
        return path

    apps = {name: create_app(load_config(write(name, 2))) for name in ("a", "b")}  # two nodes in one process
    b = apps["b"].state.gateway
    b.config_watcher.interval_s = 0.05
    urls = {name: live(app) for name, app in apps.items()}
    first = b.llm.router
    write("b", 1)  # router changed: b builds a new router and swaps it in
    assert eventually(lambda: b.llm.router is not first, timeout=30)
    with httpx.Client(timeout=20, trust_env=False) as http:
        answer = http.post(f"{urls['a']}/v1/chat/completions", json=CHAT)
        feedback = http.post(f"{urls['b']}/v1/feedback", json={"request_id": answer.headers["x-request-id"], "score": 1.0})
    assert feedback.status_code == 200, feedback.text  # the new router received a's outcome
    a = apps["a"].state.gateway
    assert eventually(lambda: a.routing.describe()["replication"]["applied"]["feedback"] == 1, timeout=30)  # and publishes
    assert a.routing.describe()["state_sha256"] == b.routing.describe()["state_sha256"]


def test_the_buffer_is_bounded_while_redis_is_unreachable() -> None:
    from routeiq.config import RoutingReplicationConfig
    from routeiq.llm.routing_replication import RoutingReplication

    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    replication = RoutingReplication(dead, "p", 0.2, RoutingReplicationConfig(max_buffered=3), lambda: None, lambda doc, source: None)
    try:
        for i in range(5):
            replication.feedback(f"r{i}", 1.0)
        assert (replication.status()["buffered"], replication.status()["dropped"]) == (3, 2)  # the oldest went
        assert replication.flush() is False  # nothing written, nothing lost beyond the bound
        status = replication.status()
        assert status["status"] == "degraded" and status["buffered"] == 3 and "publish" in status["errors"]
    finally:
        replication.stop()
