"""Deployments and upstreams that misbehave (issue #11, "Upstreams and breakers"): answers
the host cannot use, trickling bodies, stalled streams; breakers that must neither stick
half-open nor trip on a handful of failures in a sea of successes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from support import FakeClock, eventually

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hello there"}]}
COMPLETION = {
    "id": "chatcmpl-fake",
    "object": "chat.completion",
    "created": 0,
    "model": "fake",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
}


class FakeDeployment:
    """An OpenAI-compatible upstream (raw ASGI, served by a real uvicorn) whose behaviour
    the test switches: `mode` is one of ok, error, list, garbage, trickle, stall_stream,
    silent_stream."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body"):
            pass
        self.calls += 1
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.ensure_future(watch())
        try:
            await self._answer(send, gone)
        finally:
            watcher.cancel()

    async def _answer(self, send: Any, gone: asyncio.Event) -> None:
        mode = self.mode
        if mode in ("ok", "error", "list", "garbage"):
            status, body = {
                "ok": (200, json.dumps(COMPLETION).encode()),
                "error": (500, b'{"error": {"message": "boom"}}'),
                "list": (200, b"[]"),
                "garbage": (200, b"\x80\x81 not json, not even UTF-8"),
            }[mode]
            await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json" if mode == "trickle" else b"text/event-stream")]})
        if mode == "trickle":  # a valid answer, one byte a second
            pieces = [bytes([b]) for b in json.dumps(COMPLETION).encode()]
        elif mode == "stall_stream":  # one event, then nothing
            pieces = [b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n']
        else:  # silent_stream: headers, then nothing at all
            pieces = []
        for i, piece in enumerate(pieces):
            if i and await _gone_within(gone, 1.0):
                return
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await _gone_within(gone, 60.0)


async def _gone_within(gone: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(gone.wait(), seconds)
        return True
    except asyncio.TimeoutError:
        return False


@pytest.fixture
def fake(live) -> tuple[FakeDeployment, str]:  # type: ignore[no-untyped-def]
    deployment = FakeDeployment()
    return deployment, live(deployment) + "/v1"


def routed_app(make_app, api_base: str, clock: FakeClock | None = None, **router: Any):  # type: ignore[no-untyped-def]
    deployment = {
        "model_name": "chat",
        "litellm_params": {"model": "openai/fake", "api_base": api_base, "api_key": "sk-test"},
        "model_info": {"id": "a"},
    }
    return make_app([], model_list=[deployment], router={"retries": 0, **router}, clock=clock)


def breaker_state(client: httpx.Client, url: str) -> str:
    return client.get(f"{url}/health").json()["breakers"]["deployment:a"]["state"]


# ------------------------------------------------------------------ item 9
@pytest.mark.parametrize("unusable", ["list", "garbage"])
def test_an_unusable_answer_to_the_half_open_probe_does_not_stick_the_breaker(make_app, live, fake, http: httpx.Client, unusable: str) -> None:  # type: ignore[no-untyped-def]
    deployment, api_base = fake
    clock = FakeClock()
    url = live(routed_app(make_app, api_base, clock, breaker={"consecutive_failures": 1, "cooldown_s": 0.3}))
    chat = f"{url}/v1/chat/completions"
    deployment.mode = "error"
    first = http.post(chat, json=CHAT)
    assert first.status_code == 500 and first.json()["error"]["message"] == "boom"  # the deployment's own error, as it answered it
    assert breaker_state(http, url) == "open"
    deployment.mode = unusable  # the half-open probe gets `[]` or bytes that are not JSON
    clock.now += 0.35  # past the cool-down
    probe = http.post(chat, json=CHAT)
    assert probe.status_code == 502, probe.text  # the deployment failed, OpenAI-shaped
    assert probe.json()["error"]["code"] == "upstream_error"
    assert breaker_state(http, url) == "open"  # that probe counted as a failure...
    deployment.mode = "ok"  # ...and once the deployment is healthy the next probe goes through
    clock.now += 0.35
    assert http.post(chat, json=CHAT).status_code == 200
    assert breaker_state(http, url) == "closed"


def test_a_cancelled_half_open_probe_hands_its_slot_back(make_app, fake) -> None:  # type: ignore[no-untyped-def]
    from routeiq.hostcalls.llm_exchange import LlmExchange

    deployment, api_base = fake
    clock = FakeClock()
    app = routed_app(make_app, api_base, clock, breaker={"consecutive_failures": 1, "cooldown_s": 0.2})
    api = app.state.gateway.llm
    breaker = api.router.breakers.get("deployment:a")

    async def scenario() -> None:
        try:
            deployment.mode = "error"
            call = api.router.plan("r1", CHAT, None)
            assert (await api._run(call, CHAT, LlmExchange(dict(CHAT)), False)).status_code == 500  # the deployment's own error
            assert breaker.state == "open"
            clock.now += 0.25  # past the cool-down
            deployment.mode = "trickle"  # the probe hangs...
            calls = deployment.calls
            task = asyncio.ensure_future(api._run(api.router.plan("r2", CHAT, None), CHAT, LlmExchange(dict(CHAT)), False))
            while deployment.calls == calls:
                await asyncio.sleep(0.01)
            task.cancel()  # ...and is cancelled (shutdown, a client gone): no outcome
            with pytest.raises(asyncio.CancelledError):
                await task
            assert breaker.state == "half_open" and breaker.available()  # the slot is free again
            deployment.mode = "ok"
            answer = await api._run(api.router.plan("r3", CHAT, None), CHAT, LlmExchange(dict(CHAT)), False)
            assert answer.status_code == 200
            assert breaker.state == "closed"
        finally:
            await app.state.gateway.http.aclose()  # its session belongs to this loop

    asyncio.run(scenario())


def test_a_client_gone_before_the_first_chunk_of_a_probe_does_not_stick_the_breaker(make_app, live, fake, http: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    deployment, api_base = fake
    clock = FakeClock()
    url = live(routed_app(make_app, api_base, clock, first_byte_timeout_s=1, breaker={"consecutive_failures": 1, "cooldown_s": 0.3}))
    chat = f"{url}/v1/chat/completions"
    deployment.mode = "error"
    assert http.post(chat, json=CHAT).status_code == 500  # the deployment's own error
    clock.now += 0.35  # past the cool-down
    deployment.mode = "silent_stream"  # the probe's stream never sends a byte
    with httpx.Client(timeout=httpx.Timeout(30, read=0.5), trust_env=False) as impatient:
        with pytest.raises(httpx.ReadTimeout):  # the client gives up and hangs up
            with impatient.stream("POST", chat, json={**CHAT, "stream": True}) as response:
                next(response.iter_raw())
    deployment.mode = "ok"

    def recovered() -> bool:
        clock.now += 0.35  # any cool-down the gone probe's outcome started is over
        return http.post(chat, json=CHAT).status_code == 200

    assert eventually(recovered, timeout=5)


# ------------------------------------------------------------------ item 11
def test_a_trickling_deployment_cannot_hold_a_request_past_timeout_s(make_app, live, fake) -> None:  # type: ignore[no-untyped-def]
    deployment, api_base = fake
    url = live(routed_app(make_app, api_base, timeout_s=1))
    deployment.mode = "trickle"  # headers at once, then the body a byte every 0.5 s
    with httpx.Client(timeout=10, trust_env=False) as client:  # main: held until this read timeout
        began = time.monotonic()
        response = client.post(f"{url}/v1/chat/completions", json=CHAT)
    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "upstream_error"
    assert "router.timeout_s" in response.json()["error"]["message"]
    assert time.monotonic() - began < 8  # ended by the deadline, not by the client giving up


def test_a_stream_without_a_first_chunk_fails_over_within_first_byte_timeout(make_app, live, fake) -> None:  # type: ignore[no-untyped-def]
    deployment, api_base = fake
    embedded = {"model_name": "chat", "litellm_params": {"model": "openai/mock-b", "api_base": "embedded"}, "model_info": {"id": "b"}}
    silent = {"model_name": "chat", "litellm_params": {"model": "openai/fake", "api_base": api_base, "api_key": "k"}, "model_info": {"id": "a", "cost_per_1k_tokens": 0}}
    embedded["model_info"]["cost_per_1k_tokens"] = 1
    app = make_app([], model_list=[silent, embedded], router={"strategy": "cheapest", "retries": 1, "first_byte_timeout_s": 1})
    url = live(app)
    deployment.mode = "silent_stream"  # a 200 and headers, then nothing
    with httpx.Client(timeout=10, trust_env=False) as client:
        response = client.post(f"{url}/v1/chat/completions", json={**CHAT, "stream": True})
    assert response.status_code == 200
    assert response.headers["x-routeiq-deployment"] == "b"  # the silent one was left in time
    assert response.headers["x-routeiq-attempts"] == "2"
    assert response.text.rstrip().endswith("data: [DONE]")


def test_a_stream_that_goes_quiet_is_cut_with_an_error_event(make_app, live, fake) -> None:  # type: ignore[no-untyped-def]
    deployment, api_base = fake
    url = live(routed_app(make_app, api_base, stream_idle_timeout_s=1))
    deployment.mode = "stall_stream"  # one event, then silence
    with httpx.Client(timeout=10, trust_env=False) as client:
        began = time.monotonic()
        response = client.post(f"{url}/v1/chat/completions", json={**CHAT, "stream": True})
        assert time.monotonic() - began < 8
        events = [e for e in response.text.split("\n\n") if e]
        assert response.status_code == 200
        assert json.loads(events[0][6:])["choices"][0]["delta"]["content"] == "hi"
        error = json.loads(events[-1][6:])["error"]
        assert "router.stream_idle_timeout_s" in error["message"] and error["code"] == "upstream_error"
        assert "data: [DONE]" not in response.text  # an OpenAI client raises on the error event


LLM_HOOKS = """
from routeiq.native.plugin import GatewayPlugin


class Hooks(GatewayPlugin):
    name = "hooks"

    def __init__(self, config):
        super().__init__(config)
        self.events = []

    async def on_llm_success(self, request_id, outcome):
        self.events.append(("success", outcome["status"]))

    async def on_llm_failure(self, request_id, error):
        self.events.append(("failure", error))
"""


@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_a_failed_request_is_logged_and_reported_the_same_streaming_or_not(make_app, live, fake, tmp_path, caplog, stream: bool) -> None:  # type: ignore[no-untyped-def]
    # Non-streaming: the deployment answers garbage. Streaming: one event, then silence
    # past stream_idle_timeout_s (bytes already sent: no failover). Either way the one
    # attempt loop logs the failure and tells the native plugins (on_llm_failure).
    deployment, api_base = fake
    hooks = tmp_path / "hooks.py"
    hooks.write_text(LLM_HOOKS)
    model = {"model_name": "chat", "litellm_params": {"model": "openai/fake", "api_base": api_base, "api_key": "sk-test"}, "model_info": {"id": "a"}}
    app = make_app(
        [{"name": "hooks", "python": f"{hooks}:Hooks"}],
        policy={"plugins": {"hooks": {"native": True, "module": f"{hooks}:Hooks"}}},
        model_list=[model],
        router={"retries": 0, "stream_idle_timeout_s": 1},
    )
    native = app.state.gateway.native[0][0]
    url = live(app)
    deployment.mode = "stall_stream" if stream else "garbage"
    with caplog.at_level("WARNING", logger="routeiq.llm"), httpx.Client(timeout=10, trust_env=False) as client:
        response = client.post(f"{url}/v1/chat/completions", json={**CHAT, "stream": stream})
        if stream:
            assert response.status_code == 200 and "router.stream_idle_timeout_s" in response.text
        else:
            assert response.status_code == 502
    assert eventually(lambda: [kind for kind, _ in native.events] == ["failure"]), native.events
    failed = [r.getMessage() for r in caplog.records if r.name == "routeiq.llm" and " failed (" in r.getMessage()]
    assert len(failed) == 1 and "a failed (" in failed[0], failed
    if stream:
        assert "stream_idle_timeout_s" in failed[0] and "no failover" in failed[0]


class Trickler:
    """A raw TCP upstream that answers `script` (bytes, or None: stay silent) a byte every
    `interval_s`, in its own thread; for slow-head / stalled-body attacks on the proxy."""

    def __init__(self, head: bytes, body: bytes = b"", stall: bool = True, interval_s: float = 0.5) -> None:
        import socket
        import threading

        self.head, self.body, self.stall, self.interval_s = head, body, stall, interval_s
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import threading

        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: Any) -> None:
        with conn:
            try:
                conn.recv(65536)
                for byte in self.head:  # the head a byte at a time
                    conn.sendall(bytes([byte]))
                    if self._stop.wait(self.interval_s):
                        return
                conn.sendall(self.body)
                self._stop.wait(30 if self.stall else 0)
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._server.close()


@pytest.fixture
def trickler():  # type: ignore[no-untyped-def]
    made: list[Trickler] = []
    yield lambda *a, **k: made.append(Trickler(*a, **k)) or made[-1]
    for t in made:
        t.close()


def test_the_reverse_proxy_bounds_a_trickled_response_head(make_app, live, trickler) -> None:  # type: ignore[no-untyped-def]
    upstream = trickler(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\n", b"ok")
    url = live(make_app([], upstream={"url": f"http://127.0.0.1:{upstream.port}", "timeout_s": 1}))
    with httpx.Client(timeout=10, trust_env=False) as client:
        began = time.monotonic()
        response = client.get(f"{url}/anything")
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - began < 8


def test_the_reverse_proxy_cuts_a_body_that_goes_quiet(make_app, live, trickler) -> None:  # type: ignore[no-untyped-def]
    upstream = trickler(b"", b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\nonly part of it")
    url = live(make_app([], upstream={"url": f"http://127.0.0.1:{upstream.port}", "timeout_s": 1}))
    with httpx.Client(timeout=10, trust_env=False) as client:
        began = time.monotonic()
        with pytest.raises(httpx.RemoteProtocolError):  # the response is cut, not completed
            client.get(f"{url}/anything")
    assert time.monotonic() - began < 8


# ------------------------------------------------------------------ item 10
def breaker(**settings: Any):  # type: ignore[no-untyped-def]
    from routeiq.services.breakers import BreakerSettings, CircuitBreaker

    clock = FakeClock()
    return CircuitBreaker("test", BreakerSettings(**settings), clock=clock), clock


def test_rare_failures_among_many_successes_never_open_a_breaker() -> None:
    b, clock = breaker()
    for i in range(2009):
        clock.now += 0.001  # all inside one 30 s window
        if i % 223 == 100:  # 9 failures, scattered
            b.failure()
        else:
            b.success()
        assert b.state == "closed", i
    assert b.transitions == {}


def test_consecutive_failures_open_a_breaker_whatever_the_volume() -> None:
    b, clock = breaker()
    for _ in range(500):
        b.success()
    for i in range(5):
        assert b.state == "closed"
        clock.now += 0.01
        b.failure()
    assert b.state == "open"


def test_a_failure_rate_over_the_window_opens_a_breaker_once_it_has_volume() -> None:
    b, clock = breaker()
    for i in range(19):  # alternating: never 5 in a row; 50% but fewer than 20 calls
        clock.now += 0.1
        b.success() if i % 2 else b.failure()
        assert b.state == "closed", i
    clock.now += 0.1
    b.success()  # the 20th call: 10 of 20 failed, but a success does not open it
    assert b.state == "closed"
    clock.now += 0.1
    b.failure()  # 11 of 21 (>= 50%) with volume: open
    assert b.state == "open"


def test_failures_leave_the_sliding_window() -> None:
    b, clock = breaker(minimum_requests=4, consecutive_failures=0)
    b.failure()
    b.failure()
    clock.now += 31  # those two are out of the 30 s window now
    for _ in range(3):
        b.success()
    b.failure()  # 1 of 4 in the window: below 50%
    assert b.state == "closed"


def test_the_old_failure_threshold_name_means_consecutive_failures(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from routeiq.config import ConfigError, parse_config

    config = parse_config({"router": {"breaker": {"failure_threshold": 3}}}, "gw.yaml", tmp_path / "gw.yaml")
    assert config.model.router.breaker.consecutive_failures == 3
    with pytest.raises(ConfigError, match="not both"):
        parse_config({"router": {"breaker": {"failure_threshold": 3, "consecutive_failures": 2}}}, "gw.yaml", tmp_path / "gw.yaml")


def test_rare_callout_failures_do_not_open_the_ext_auth_breaker(make_app, live, guests) -> None:  # type: ignore[no-untyped-def]
    from starlette.testclient import TestClient

    from support import plugin

    seen = {"calls": 0}

    async def check(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen["calls"] += 1
        status = 500 if seen["calls"] % 60 == 0 else 200  # 1 in 60 fails
        await send({"type": "http.response.start", "status": status, "headers": [(b"x-auth-user", b"alice")]})
        await send({"type": "http.response.body", "body": b"{}"})

    auth = live(check).removeprefix("http://")
    host, port = auth.rsplit(":", 1)
    policy = {"plugins": {"ext_auth": {"unpinned": True, "capabilities": ["http_callout"], "callouts": [{"scheme": "http", "host": host, "port": int(port), "methods": ["GET"]}]}}}
    app = make_app([plugin("ext_auth", guests["ext_auth"], config={"upstream": auth, "path": "/check", "timeout_ms": 2000})], policy=policy)
    with TestClient(app) as client:
        statuses = [client.get("/echo", headers={"authorization": "Bearer t"}).status_code for _ in range(600)]
        breakers = client.get("/health").json()["breakers"]
    assert statuses.count(401) == 10  # exactly the auth service's own failures...
    assert statuses.count(200) == 590  # ...and no request refused by an open breaker
    assert breakers[f"callout:{host}:{port}"]["transitions"] == {}


# ------------------------------------------------------------------ item 3
@pytest.fixture
def stoppable_redis():  # type: ignore[no-untyped-def]
    """A redis-server of this test's own (the session one is shared), to SIGSTOP."""
    import signal
    import subprocess

    import redis

    from support import free_port, redis_server_binary

    port = free_port()
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        assert eventually(lambda: _pings(client), timeout=10), "redis-server did not start"
        yield url, proc
    finally:
        client.close()
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=10)


def _pings(client: Any) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture(scope="module")
def py_rate_limiter() -> Any:
    from routeiq.toolchain.python import build_python_guests

    from conftest import ROOT

    return next(p for p in build_python_guests(ROOT) if p.stem == "py_rate_limiter")


@pytest.mark.parametrize("limiter", ["rate_limiter", "py_rate_limiter"], ids=["core_module", "component"])
def test_a_stalled_redis_is_a_status_for_the_rate_limiter_not_a_trap(make_app, live, guests, request, stoppable_redis, http: httpx.Client, caplog, limiter: str) -> None:  # type: ignore[no-untyped-def]
    import logging
    import signal

    from support import plugin

    redis_url, redis_proc = stoppable_redis
    module = guests["rate_limiter"] if limiter == "rate_limiter" else request.getfixturevalue("py_rate_limiter")
    clock = FakeClock()
    app = make_app(
        [plugin(limiter, module, config={"limit": 1000, "window_s": 86400}, limits={"timeout_ms": 100})],
        policy={"plugins": {limiter: {"unpinned": True, "capabilities": ["shared_kv"]}}},
        kv={"backend": "redis", "url": redis_url, "timeout_s": 0.5},  # > the plugin's 100 ms deadline
        router={"breaker": {"cooldown_s": 0.5}},
        clock=clock,
    )
    url = live(app)
    key = {"x-api-key": "alice"}
    first = http.get(f"{url}/echo", headers=key)
    assert first.status_code == 200 and first.headers["x-ratelimit-remaining"] == "999"
    caplog.set_level(logging.ERROR, logger="routeiq.services.store")
    redis_proc.send_signal(signal.SIGSTOP)  # Redis stalls: connections open, no answers
    try:
        stalled = [http.get(f"{url}/echo", headers=key) for _ in range(8)]
    finally:
        redis_proc.send_signal(signal.SIGCONT)
    # Each request's shared-data calls got INTERNAL_FAILURE (the limiter fails open on
    # it): no deadline_exceeded trap, so the fail-closed plugin answered no 503.
    assert [r.status_code for r in stalled] == [200] * 8, [r.text for r in stalled]
    assert all("x-ratelimit-remaining" not in r.headers for r in stalled)
    health = http.get(f"{url}/health").json()
    described = next(p for p in health["plugins"] if p["name"] == limiter)
    assert (described["state"], described["traps"], described["quarantines"]) == ("ready", 0, 0)
    assert health["breakers"]["redis"]["transitions"].get("closed->open", 0) >= 1  # stopped waiting on it
    unavailable = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(unavailable) == 1, [r.getMessage() for r in unavailable]  # rate-limited, not one per call
    # Redis is back: requests pass at once, and counting resumes after the breaker's probe.
    assert http.get(f"{url}/echo", headers=key).status_code == 200
    clock.now += 0.5  # the breaker's cool-down is over
    assert eventually(lambda: "x-ratelimit-remaining" in http.get(f"{url}/echo", headers=key).headers, timeout=5)


# ------------------------------------------------------------------ item 16
@pytest.mark.parametrize("limiter", ["rate_limiter", "py_rate_limiter"], ids=["core_module", "component"])
def test_a_slow_redis_counts_exactly_and_is_not_charged_to_the_plugin(make_app, live, guests, request, redis_url: str, http: httpx.Client, limiter: str) -> None:  # type: ignore[no-untyped-def]
    """Every Redis reply takes 150 ms, longer than the plugin's whole 100 ms deadline (as on
    a loaded CI machine): the wait is the dependency's, so the limiter still counts exactly
    and no request is lost to a deadline trap (the 503 a fail-closed plugin answers)."""
    from support import plugin, slow_tcp_proxy

    module = guests["rate_limiter"] if limiter == "rate_limiter" else request.getfixturevalue("py_rate_limiter")
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    with slow_tcp_proxy(port, delay_s=0.15) as slow_port:
        app = make_app(
            [plugin(limiter, module, config={"limit": 3, "window_s": 86400}, limits={"timeout_ms": 100})],
            policy={"plugins": {limiter: {"unpinned": True, "capabilities": ["shared_kv"]}}},
            kv={"backend": "redis", "url": f"redis://127.0.0.1:{slow_port}/0", "prefix": f"slow{time.monotonic_ns()}", "timeout_s": 2.0},
        )
        url = live(app)
        answers = [http.get(f"{url}/echo", headers={"x-api-key": "alice"}) for _ in range(5)]
        health = http.get(f"{url}/health").json()
    assert [r.status_code for r in answers] == [200, 200, 200, 429, 429], [r.text for r in answers]
    assert [r.headers.get("x-ratelimit-remaining") for r in answers] == ["2", "1", "0", "0", "0"]
    described = next(p for p in health["plugins"] if p["name"] == limiter)
    assert (described["state"], described["traps"]) == ("ready", 0)
