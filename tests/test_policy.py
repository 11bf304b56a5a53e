"""Operator policy: default deny, pins, signatures, manifests, refusals before compiling."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from routeiq.config import ConfigError, parse_config
from routeiq.dispatch.plugin import ProxyWasmPlugin
from routeiq.dispatch.plugin_spec import PluginSpec
from routeiq.app import PluginStartupError, create_app
from routeiq.hostcalls.state import HostServices
from routeiq.policy.manifest import custom_sections
from routeiq.policy.model import PolicyError, parse_policy
from routeiq.policy.signing import generate_keypair, sign
from routeiq.runtime.engine import EngineSettings
from routeiq.runtime.errors import PluginLoadError
from routeiq.runtime.wasm_runtime import WasmRuntime

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def runtime(tmp_path: Path):  # type: ignore[no-untyped-def]
    rt = WasmRuntime(EngineSettings(), tmp_path / "cache")
    yield rt
    rt.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(runtime: WasmRuntime, name: str, path: Path, policy: dict | None) -> ProxyWasmPlugin:  # type: ignore[type-arg]
    model = parse_policy(policy, "policy.yaml") if policy is not None else None
    return ProxyWasmPlugin(PluginSpec(name, path), runtime, policy=model)


def test_manifests_travel_in_a_custom_section(guests: dict[str, Path]) -> None:
    manifest = json.loads(custom_sections(guests["redactor"].read_bytes())["routeiq.manifest"])
    assert manifest["capabilities"] == ["request_body"]


def test_no_policy_means_no_capabilities(runtime: WasmRuntime, guests: dict[str, Path]) -> None:
    with pytest.raises(PluginLoadError, match=r"'redactor' needs request_body .*the policy has no entry for it"):
        load(runtime, "redactor", guests["redactor"], None)
    assert runtime.cache.misses == 0  # refused before anything was compiled
    tagger = load(runtime, "tagger", guests["tagger"], None)  # needs nothing: loads, with nothing granted
    assert tagger.admission.grant.capabilities == frozenset()


def test_a_plugin_that_needs_more_than_granted_is_refused_naming_what(runtime: WasmRuntime, guests: dict[str, Path]) -> None:
    policy = {"plugins": {"probe": {"unpinned": True, "capabilities": ["request_body", "response_body"]}}}
    with pytest.raises(PluginLoadError) as info:
        load(runtime, "probe", guests["hostcall_probe"], policy)
    message = str(info.value)
    for missing in ("http_callout", "shared_kv", "shared_queue", "metrics", "timers"):
        assert missing in message
    assert "request_body" not in message.split("needs", 1)[1].split("(")[0]
    assert runtime.cache.misses == 0


def test_sha256_pin(runtime: WasmRuntime, guests: dict[str, Path], tmp_path: Path) -> None:
    good = {"plugins": {"redactor": {"sha256": digest(guests["redactor"]), "capabilities": ["request_body"]}}}
    plugin = load(runtime, "redactor", guests["redactor"], good)
    assert plugin.admission.grant.pinned_by == "sha256"

    tampered = tmp_path / "redactor.wasm"
    data = bytearray(guests["redactor"].read_bytes())
    data[-1] ^= 0xFF  # flip a bit in the last (custom/data) section
    tampered.write_bytes(bytes(data))
    services = HostServices()
    with pytest.raises(PluginLoadError, match="does not match the policy's pin"):
        ProxyWasmPlugin(PluginSpec("redactor", tampered), runtime, policy=parse_policy(good, "policy.yaml"), services=services)
    (record,) = services.audit.recent("redactor")
    assert (record.call, record.reason) == ("load", "pin")


def test_ed25519_signature_pin(runtime: WasmRuntime, guests: dict[str, Path]) -> None:
    private, public = generate_keypair()
    other_private, _ = generate_keypair()
    path = guests["redactor"]
    signed = {
        "trusted_keys": {"release": public},
        "plugins": {"redactor": {"signature": {"key": "release", "value": sign(private, digest(path))}, "capabilities": ["request_body"]}},
    }
    assert load(runtime, "redactor", path, signed).admission.grant.pinned_by == "signature (release)"
    forged = json.loads(json.dumps(signed))
    forged["plugins"]["redactor"]["signature"]["value"] = sign(other_private, digest(path))
    with pytest.raises(PluginLoadError, match="does not verify"):
        load(runtime, "redactor", path, forged)


def test_policy_entries_must_be_pinned_or_say_unpinned() -> None:
    with pytest.raises(PolicyError, match=r"plugins\.x: needs a pin"):
        parse_policy({"plugins": {"x": {"capabilities": ["metrics"]}}}, "p.yaml")
    with pytest.raises(PolicyError, match=r"plugins\.x\.capabilities\[0\]"):
        parse_policy({"plugins": {"x": {"unpinned": True, "capabilities": ["root_shell"]}}}, "p.yaml")
    with pytest.raises(PolicyError, match="not in trusted_keys"):
        parse_policy({"plugins": {"x": {"signature": {"key": "nope", "value": "AAAA"}}}}, "p.yaml")
    with pytest.raises(PolicyError, match=r"trusted_keys"):
        parse_policy({"trusted_keys": {"k": "not-a-key"}}, "p.yaml")


def test_sidecar_manifest_beside_the_module(runtime: WasmRuntime, guests: dict[str, Path], tmp_path: Path) -> None:
    module = tmp_path / "plain.wasm"
    shutil.copy(guests["hostile_loop"], module)  # SDK-free guest: no manifest section
    (tmp_path / "plain.manifest.json").write_text(json.dumps({"name": "plain", "capabilities": ["metrics"]}))
    with pytest.raises(PluginLoadError, match=r"needs metrics \(.*plain\.manifest\.json\)"):
        load(runtime, "plain", module, None)
    (tmp_path / "plain.manifest.json").write_text("{broken")
    with pytest.raises(PluginLoadError, match="bad manifest"):
        load(runtime, "plain", module, None)


def test_policy_limits_cap_the_plugin_config(runtime: WasmRuntime, guests: dict[str, Path]) -> None:
    policy = {"plugins": {"tagger": {"unpinned": True, "limits": {"fuel": 5000, "memory_mb": 2, "timeout_ms": 7}}}}
    plugin = load(runtime, "tagger", guests["tagger"], policy)
    limits = plugin.admission.limits
    assert (limits.fuel, limits.memory_bytes, limits.timeout_ms) == (5000, 2 * 1024 * 1024, 7)


def test_policy_file_errors_name_file_and_field(tmp_path: Path, guests: dict[str, Path]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("plugins:\n  tagger:\n    unpinned: true\n    callouts: [{host: x, port: 99999}]\n")
    config = parse_config({"policy": str(policy), "plugins": [{"name": "tagger", "wasm": str(guests["tagger"])}]}, "gw.yaml", tmp_path / "gw.yaml")
    with pytest.raises(ConfigError) as info:
        create_app(config)
    assert str(policy) in str(info.value) and "plugins.tagger.callouts[0].port" in str(info.value)


def test_policy_check_explains_and_flags_refusals(tmp_path: Path, guests: dict[str, Path]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"plugins:\n  redactor:\n    sha256: {digest(guests['redactor'])}\n    capabilities: [request_body]\n")
    config = tmp_path / "gw.yaml"
    config.write_text(f"plugins:\n  - {{name: redactor, wasm: {guests['redactor']}}}\n  - {{name: counter, wasm: {guests['chunk_counter']}}}\n")
    out = subprocess.run([sys.executable, "-m", "routeiq", "policy", "check", str(config), "--policy", str(policy)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "plugin redactor" in out.stdout and "pinned by:     sha256" in out.stdout and "capabilities:  request_body" in out.stdout
    assert "plugin counter" in out.stdout and "REFUSED: plugin 'counter' needs response_body" in out.stdout


def test_serve_refuses_a_plugin_the_policy_does_not_cover(tmp_path: Path, guests: dict[str, Path], module_cache_dir: Path) -> None:
    config = parse_config(
        {"plugins": [{"name": "redactor", "wasm": str(guests["redactor"])}], "runtime": {"cache_dir": str(module_cache_dir)}},
        "gw.yaml",
        tmp_path / "gw.yaml",
    )
    with pytest.raises(PluginStartupError, match="needs request_body"):
        create_app(config)
