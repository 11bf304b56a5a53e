"""What is measured: request bodies, plugin sets, and how each server under test is
configured, started and checked before wrk touches it."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import httpx
import yaml

from .gateway_metrics import Snapshot, scrape
from .procs import Child, Processes, free_port

REPO = Path(__file__).resolve().parents[2]
GUEST_BUILD = REPO / "guest-examples" / "rust" / "build"
VENV_BIN = Path(sys.executable).parent
# The LiteLLM proxy peer's own venv (./dev bench makes it: its mcp<2 pin clashes with the gateway's mcp 2).
PEERS_BIN = Path(os.environ.get("ROUTEIQ_BENCH_PEERS_BIN") or VENV_BIN)
MODEL = "bench"  # the model group clients ask for, in RouteIQ and in the LiteLLM proxy
UPSTREAM_MODEL = "bench-mock"
CHAT_PATH = "/v1/chat/completions"

# The run plan (run_load.py executes it, report.py describes it).
BODY_KIB = (1, 16, 64, 256)
CHUNK_COUNTS = (1, 16, 64, 256)
CONNECTIONS = (1, 4, 16, 64)
THROUGHPUT_CONNECTIONS = 32
MAIN_CHUNKS = 32
BYTES_PER_CHUNK = 16   # reply content per SSE event, so a streamed reply grows with its chunks
CHUNK_GAP_MS = 1.0     # pacing of the chunk curve's upstream, so each event reaches the gateway alone

SYSTEM = "You are a concise assistant for an internal engineering team."
QUESTION = ("Summarise the trade-offs between running an LLM gateway as a sidecar and as a shared service, "
            "in three bullet points, for a design review next week.")
FILLER = "Background notes from the previous review follow, for context only. "


def chat_body(stream: bool, size: int | None = None) -> bytes:
    """A realistic chat request (~330 bytes), or padded with prose to `size` bytes exactly."""
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    body: dict[str, Any] = {"model": MODEL, "messages": messages, "max_tokens": 256, "temperature": 0.2}
    if stream:
        body["stream"] = True
    raw = json.dumps(body).encode()
    if size is None or size <= len(raw):
        return raw
    # Context goes into an earlier user turn: plain text with nothing to redact, so the
    # redactor scans the whole body but rewrites nothing (the common case).
    pad = size - len(raw) - len(json.dumps({"role": "user", "content": ""})) - 2
    context = (FILLER * (pad // len(FILLER) + 1))[: max(pad, 0)]
    body["messages"] = [messages[0], {"role": "user", "content": context}, messages[1]]
    raw = json.dumps(body).encode()
    assert len(raw) == size, (len(raw), size)
    return raw


@dataclass(frozen=True)
class Plugin:
    name: str                       # instance name in the gateway config (and the policy key)
    module: str                     # guest-examples/rust/build/<module>.wasm
    does: str                       # for the report
    capabilities: tuple[str, ...] = ()
    config: str | None = None       # compact JSON, handed to the guest as is (immutable, unlike a dict)
    policy_limits: tuple[tuple[str, int], ...] = ()
    limits: tuple[tuple[str, int], ...] = ()   # the plugin's sandbox limits in the gateway config
    response_header: str | None = None   # a header it adds to every response: proof it ran


TAGGER = Plugin("tagger", "tagger", "request headers: deny check + adds x-routeiq-tagged; response header x-routeiq-plugin",
                config='{"tag":"bench","deny_header":"x-block","deny_paths":["/admin"]}', response_header="x-routeiq-plugin")
# The default 20M fuel per callback runs out scanning a 256 KiB body (the redactor traps, is
# quarantined after 5 traps, and every request then gets 503): raised so the body curve can run.
REDACTOR_FUEL = 200_000_000
REDACTOR = Plugin("redactor", "redactor", "buffers and scans the whole request body for e-mails/API keys (rewrites on a hit)",
                  ("request_body",), response_header="x-routeiq-redactions", limits=(("fuel", REDACTOR_FUEL),))
CHUNK_COUNTER = Plugin("chunk_counter", "chunk_counter", "reads every response body chunk, counts SSE events", ("response_body",))
SEVEN_MORE = (
    Plugin("request_counter", "request_counter", "plugin metrics: counter, gauge, histogram per request", ("metrics",),
           response_header="x-requests-seen"),
    Plugin("bench_headers", "bench_headers", "reads x-api-key, adds x-routeiq-seen"),
    Plugin("pii_guard", "pii_guard", "LLM extension: reads the parsed chat messages, scans for forbidden text, e-mails, phones",
           ("llm_request",), '{"forbidden":["password:"],"redact":true}', response_header="x-routeiq-pii-redactions"),
    Plugin("rate_limiter", "rate_limiter", "shared-KV fixed-window counter (CAS) per x-api-key, limit never reached",
           ("shared_kv",), '{"limit":1000000000,"window_s":60}', (("kv_key_bytes", 128), ("kv_value_bytes", 32)),
           response_header="x-ratelimit-limit"),
    Plugin("token_budget", "token_budget", "LLM extension + shared KV: budget check, usage charged at on_log",
           ("llm_request", "shared_kv"), '{"budget_tokens":1000000000,"window_s":86400}',
           response_header="x-token-budget-remaining"),
    Plugin("tagger_2", "tagger", "a second tagger instance (tag bench2)", config='{"tag":"bench2"}'),
    Plugin("chunk_counter_2", "chunk_counter", "a second chunk_counter instance", ("response_body",)),
)
PLUGIN_SETS: Mapping[int, tuple[Plugin, ...]] = MappingProxyType({
    0: (),
    1: (TAGGER,),
    3: (TAGGER, REDACTOR, CHUNK_COUNTER),
    10: (TAGGER, REDACTOR, CHUNK_COUNTER, *SEVEN_MORE),
})


def wasm_path(plugin: Plugin) -> Path:
    path = GUEST_BUILD / f"{plugin.module}.wasm"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: build the guests first (./dev setup)")
    return path


def routeiq_config(directory: Path, port: int, upstream_url: str, plugins: tuple[Plugin, ...]) -> Path:
    """Gateway + policy YAML: one pass-through deployment to the mock upstream."""
    policy: dict[str, Any] = {"plugins": {}}
    specs = []
    for p in plugins:
        wasm = wasm_path(p)
        entry: dict[str, Any] = {"sha256": hashlib.sha256(wasm.read_bytes()).hexdigest(), "capabilities": list(p.capabilities)}
        if p.policy_limits:
            entry["limits"] = dict(p.policy_limits)
        policy["plugins"][p.name] = entry
        spec: dict[str, Any] = {"name": p.name, "wasm": str(wasm)}
        if p.config is not None:
            spec["config"] = p.config
        if p.limits:
            spec["limits"] = dict(p.limits)
        specs.append(spec)
    (directory / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    config = {
        # warn: no per-request log lines (uvicorn's access log is off below info too);
        # no config watcher, so a file poller is not part of what is measured.
        "server": {"host": "127.0.0.1", "port": port, "log_level": "warn", "workers": 1, "watch_config": False},
        "policy": "policy.yaml",
        "kv": {"backend": "memory"},
        "model_list": [{"model_name": MODEL, "litellm_params": {"model": f"openai/{UPSTREAM_MODEL}", "api_base": f"{upstream_url}/v1", "api_key": "bench"}}],
        "plugins": specs,
    }
    path = directory / "routeiq.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


UVICORN_QUIET_LOG: Mapping[str, Any] = MappingProxyType({
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
    "loggers": {
        "uvicorn": {"handlers": ["err"], "level": "WARNING", "propagate": False},
        "uvicorn.error": {"level": "WARNING"},
        "uvicorn.access": {"handlers": ["err"], "level": "WARNING", "propagate": False},
    },
})


def litellm_config(directory: Path, upstream_url: str) -> tuple[Path, Path]:
    config = {
        "model_list": [{"model_name": MODEL, "litellm_params": {"model": f"openai/{UPSTREAM_MODEL}", "api_base": f"{upstream_url}/v1", "api_key": "bench"}}],
        "litellm_settings": {"set_verbose": False, "telemetry": False},
    }
    path = directory / "litellm.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    log_config = directory / "litellm-log.json"  # the CLI has no flag for uvicorn's access log
    log_config.write_text(json.dumps(dict(UVICORN_QUIET_LOG)))
    return path, log_config


def litellm_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LITELLM_MASTER_KEY")}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", LITELLM_TELEMETRY="False", NO_DOCKER_ARGS="1")
    return env


@dataclass
class Target:
    """A server under test: where wrk sends requests, and what its processes are."""

    scenario: str
    url: str                    # base URL
    kind: str                   # direct | routeiq | litellm
    plugins: tuple[Plugin, ...] = ()
    upstream: Child | None = None
    server: Child | None = None
    argv: list[str] = field(default_factory=list)   # the command that started the server under test
    idle_cores: float = 0.0     # the server's CPU use with no requests (timers, epoch ticker), in cores

    @property
    def chat_url(self) -> str:
        return self.url + CHAT_PATH


def start_upstream(procs: Processes, chunks: int, reply_bytes: int, chunk_gap_ms: float = 0.0) -> Child:
    port = free_port()
    argv = [sys.executable, str(Path(__file__).with_name("mock_upstream.py")), "--port", str(port),
            "--chunks", str(chunks), "--reply-bytes", str(reply_bytes), "--model", UPSTREAM_MODEL]
    if chunk_gap_ms:
        argv += ["--chunk-gap-ms", f"{chunk_gap_ms:g}"]
    return procs.start("upstream", argv, f"http://127.0.0.1:{port}", "/v1/models", timeout_s=30)


def start_target(procs: Processes, kind: str, workdir: Path, chunks: int, reply_bytes: int, n_plugins: int = 0,
                 chunk_gap_ms: float = 0.0) -> Target:
    upstream = start_upstream(procs, chunks, reply_bytes, chunk_gap_ms)
    if kind == "direct":
        return Target(procs.scenario, upstream.url, kind, upstream=upstream, server=upstream, argv=list(upstream.proc.args))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    if kind == "routeiq":
        plugins = PLUGIN_SETS[n_plugins]
        config = routeiq_config(workdir, port, upstream.url, plugins)
        argv = [str(VENV_BIN / "routeiq"), "serve", "--config", str(config)]
        env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        server = procs.start("routeiq", argv, url, "/health", env=env, timeout_s=90)
        return Target(procs.scenario, url, kind, plugins, upstream, server, argv)
    if kind == "litellm":
        config, log_config = litellm_config(workdir, upstream.url)
        argv = [str(PEERS_BIN / "litellm"), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                "--num_workers", "1", "--telemetry", "False", "--log_config", str(log_config)]
        server = procs.start("litellm", argv, url, "/health/liveliness", env=litellm_env(), timeout_s=120, cwd=workdir)
        return Target(procs.scenario, url, kind, (), upstream, server, argv)
    raise ValueError(kind)


def verify(target: Target, chunks: int, reply_bytes: int) -> list[str]:
    """One real request of each kind before any load: 200s, the full reply, every SSE event,
    and for RouteIQ proof that each plugin ran. Returns notes for the report; raises on failure."""
    notes: list[str] = []
    where = f"scenario {target.scenario}"
    with httpx.Client(timeout=30, trust_env=False) as client:
        before = scrape(target.url) if target.kind == "routeiq" else Snapshot()
        # A secret in the prompt: the redactor must mask it (proves it read the body).
        secret_body = json.loads(chat_body(False))
        secret_body["messages"][1]["content"] += " My key is sk-abcdefghijklmnopqrstuvwx."
        r = client.post(target.chat_url, json=secret_body)
        if r.status_code != 200:
            raise RuntimeError(f"{where}: non-streaming check answered {r.status_code}: {r.text[:500]}")
        content = r.json()["choices"][0]["message"]["content"]
        if len(content) != max(reply_bytes, chunks):
            raise RuntimeError(f"{where}: reply has {len(content)} characters, expected {max(reply_bytes, chunks)}")
        for p in target.plugins:
            if p.response_header and p.response_header not in r.headers:
                raise RuntimeError(f"{where}: plugin {p.name} did not add {p.response_header} (headers: {dict(r.headers)})")
        if any(p.module == "redactor" for p in target.plugins):
            if r.headers.get("x-routeiq-redactions") != "1":
                raise RuntimeError(f"{where}: redactor reported {r.headers.get('x-routeiq-redactions')!r} redactions, expected 1")
            notes.append("redactor masked the key planted in the prompt")
        with client.stream("POST", target.chat_url, content=chat_body(True), headers={"content-type": "application/json"}) as s:
            if s.status_code != 200:
                raise RuntimeError(f"{where}: streaming check answered {s.status_code}: {s.read()[:500]!r}")
            text = b"".join(s.iter_raw()).decode()
        events = [e for e in text.split("\n\n") if e.strip().startswith("data:")]
        if not events or events[-1].strip() != "data: [DONE]":
            raise RuntimeError(f"{where}: stream did not end with data: [DONE]: {text[-300:]!r}")
        streamed = "".join((json.loads(e.strip()[5:])["choices"] or [{}])[0].get("delta", {}).get("content") or ""
                           for e in events[:-1])
        if len(streamed) != max(reply_bytes, chunks):
            raise RuntimeError(f"{where}: streamed {len(streamed)} characters, expected {max(reply_bytes, chunks)}")
        notes.append(f"{len(events)} SSE events reached the client (upstream sent {chunks + 2})")
        if target.kind == "routeiq":
            after = scrape(target.url)

            def calls(plugin: str, callback: str = "") -> float:
                return sum(v - before.callbacks.get(k, 0.0) for k, v in after.callbacks.items()
                           if k[0] == plugin and k[2] == "count" and callback in k[1])

            for p in target.plugins:
                if calls(p.name) <= 0:
                    raise RuntimeError(f"{where}: /metrics shows no callbacks for plugin {p.name}")
                if "response_body" in p.capabilities and calls(p.name, "response_body") <= 0:
                    raise RuntimeError(f"{where}: {p.name} saw no response body chunks")
                if "request_body" in p.capabilities and calls(p.name, "request_body") <= 0:
                    raise RuntimeError(f"{where}: {p.name} saw no request body")
            notes.append("plugins verified: " + (", ".join(p.name for p in target.plugins) or "none"))
    return notes
