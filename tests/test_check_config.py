"""`routeiq check-config` refuses exactly what `routeiq serve` refuses, with the same
message and exit code 2 (issue #11 item 14): both are real processes here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from support import free_port, with_manifest

ROOT = Path(__file__).resolve().parents[1]
UNSET = "ROUTEIQ_TEST_SURELY_UNSET_VARIABLE"
ZEROS = "0" * 64

Case = Callable[[Path, dict[str, Path]], dict[str, Any]]


def _tagger(tmp: Path, guests: dict[str, Path]) -> str:
    module = tmp / "tagger.wasm"
    shutil.copy(guests["tagger"], module)
    return str(module)


def _granted(name: str, **entry: Any) -> dict[str, Any]:
    return {"plugins": {name: {"unpinned": True, "capabilities": [], **entry}}}


def _deployments(*entries: dict[str, Any], **router: Any) -> dict[str, Any]:
    return {"model_list": list(entries), "router": router} if router else {"model_list": list(entries)}


MOCK = {"model_name": "chat", "litellm_params": {"model": "openai/mock-small", "api_base": "embedded"}}

# name -> (config builder, what the refusal says)
BAD: dict[str, tuple[Case, str]] = {
    "module missing": (lambda t, g: {"plugins": [{"name": "gone", "wasm": str(t / "missing.wasm")}]}, "cannot read module"),
    "module invalid": (
        lambda t, g: (t / "junk.wasm").write_bytes(b"\0asm\x01\0\0\0garbage") and {"plugins": [{"name": "junk", "wasm": str(t / "junk.wasm")}]},
        "is not a valid WebAssembly module",
    ),
    "config sha256 pin": (lambda t, g: {"policy": _granted("tagger"), "plugins": [{"name": "tagger", "wasm": _tagger(t, g), "sha256": ZEROS}]}, "sha256 mismatch"),
    "policy sha256 pin": (
        lambda t, g: {"policy": {"plugins": {"tagger": {"sha256": ZEROS, "capabilities": []}}}, "plugins": [{"name": "tagger", "wasm": _tagger(t, g)}]},
        "does not match the policy's pin",
    ),
    "manifest vs policy": (lambda t, g: {"plugins": [{"name": "rate_limiter", "wasm": str(g["rate_limiter"])}]}, "needs shared_kv"),
    "unknown host import": (lambda t, g: {"plugins": [{"name": "sneaky", "wasm": str(g["hostile_import"])}]}, "env.proxy_does_not_exist"),
    "dependency cycle": (
        lambda t, g: {
            "policy": {"plugins": {n: {"unpinned": True, "capabilities": []} for n in ("a", "b")}},
            "plugins": [{"name": "a", "wasm": _tagger(t, g), "depends_on": ["b"]}, {"name": "b", "wasm": _tagger(t, g), "depends_on": ["a"]}],
        },
        "cycle",
    ),
    "config vs the manifest's config_schema": (
        lambda t, g: (t / "schema.wasm").write_bytes(with_manifest(g["tagger"].read_bytes(), {"config_schema": {"properties": {"tag": {"type": "string"}}}}))
        and {"policy": _granted("tagger"), "plugins": [{"name": "tagger", "wasm": str(t / "schema.wasm"), "config": {"tag": 5}}]},
        "config.tag: 5 is not of type 'string'",
    ),
    "invalid config_schema in the manifest": (
        lambda t, g: (t / "bad-schema.wasm").write_bytes(with_manifest(g["tagger"].read_bytes(), {"config_schema": {"type": 5}}))
        and {"policy": _granted("tagger"), "plugins": [{"name": "tagger", "wasm": str(t / "bad-schema.wasm")}]},
        "config_schema: Value error, not a valid JSON Schema",
    ),
    "policy file missing": (lambda t, g: {"policy": str(t / "no-such-policy.yaml")}, "no-such-policy.yaml"),
    "policy grants an undefined cluster": (
        lambda t, g: {
            "policy": _granted("tagger", callouts=[{"cluster": "authz"}]),
            "plugins": [{"name": "tagger", "wasm": _tagger(t, g)}],
            "clusters": [{"name": "auth", "endpoints": ["127.0.0.1:9101"]}],
        },
        "plugins.tagger.callouts[0].cluster: 'authz' is not a cluster of",
    ),
    "cluster CA file missing": (
        lambda t, g: {"clusters": [{"name": "auth", "endpoints": ["127.0.0.1:9101"], "tls": {"ca_file": "no-such-ca.pem"}}]},
        "clusters[0].tls.ca_file: cannot load CA file",
    ),
    "unknown strategy": (lambda t, g: _deployments(MOCK, strategy="no_such_strategy"), "unknown strategy 'no_such_strategy'"),
    "tampered artifact": (
        lambda t, g: (t / "router.json").write_text('{"name": "weighted_round_robin", "version": 1, "state": {}, "sha256": "%s"}' % ZEROS)
        and _deployments(MOCK, strategy="weighted_round_robin", artifact=str(t / "router.json")),
        "router.artifact",
    ),
    "duplicate deployment ids": (
        lambda t, g: _deployments({**MOCK, "model_info": {"id": "same"}}, {**MOCK, "model_info": {"id": "same"}}),
        "model_info.id values must be unique ('same' used more than once)",
    ),
    "fallback to a group model_list does not have": (
        lambda t, g: {**_deployments(MOCK), "router_settings": {"fallbacks": [{"chat": ["no-such-group"]}]}},
        "router.fallbacks[0].chat: 'no-such-group' is not a model group of model_list",
    ),
    "unset os.environ reference in router_settings": (
        lambda t, g: {**_deployments(MOCK), "router_settings": {"redis_host": f"os.environ/{UNSET}"}},
        f"router_settings.redis_host: os.environ/{UNSET} is not set",
    ),
    "unset os.environ reference": (
        lambda t, g: _deployments({"model_name": "chat", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": "https://api.example.com/v1", "api_key": f"os.environ/{UNSET}"}}),
        f"model_list[0].litellm_params.api_key: os.environ/{UNSET} is not set",
    ),
}


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    data = {"server": {"host": "127.0.0.1", "port": free_port(), "watch_config": False}, "runtime": {"cache": False}, **data}
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != UNSET}
    return subprocess.run([sys.executable, "-m", "routeiq", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)


def _refusal(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("routeiq: ")]


@pytest.mark.parametrize("case", sorted(BAD))
def test_check_config_refuses_what_serve_refuses(case: str, tmp_path: Path, guests: dict[str, Path]) -> None:
    build, expected = BAD[case]
    config = _write(tmp_path, build(tmp_path, guests))
    served = _run("serve", "--config", str(config))
    assert served.returncode == 2, f"serve accepted it:\n{served.stdout}\n{served.stderr}"
    checked = _run("check-config", str(config))
    assert checked.returncode == 2, f"check-config accepted it:\n{checked.stdout}\n{checked.stderr}"
    assert expected in checked.stderr
    assert _refusal(checked.stderr) == _refusal(served.stderr) != []
    assert "ok" not in checked.stdout


def test_check_config_accepts_a_good_config(tmp_path: Path, guests: dict[str, Path]) -> None:
    config = _write(
        tmp_path,
        {
            "policy": _granted("tagger"),
            "plugins": [{"name": "tagger", "wasm": _tagger(tmp_path, guests), "config": {"tag": "x"}}],
            **_deployments({**MOCK, "litellm_params": {**MOCK["litellm_params"], "api_key": "os.environ/HOME"}}),
        },
    )
    checked = _run("check-config", str(config))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == f"{config}: ok (1 plugins)"
