"""The author toolkit: plugin new / build / inspect / test, and PluginTestHarness."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from routeiq.toolchain.paths import module_cache
from routeiq.toolkit.harness import PluginTestHarness, UpstreamReply

ROOT = Path(__file__).resolve().parents[1]


def routeiq(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "routeiq", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_rust_plugin_from_new_to_passing_tests(tmp_path: Path) -> None:
    created = routeiq("plugin", "new", "--lang", "rust", "--dir", str(tmp_path), "my_filter")
    assert created.returncode == 0, created.stderr
    project = tmp_path / "my_filter"
    assert {p.name for p in project.iterdir()} >= {"routeiq-plugin.yaml", "README.md", "tests.yaml", "src"}
    built = routeiq("plugin", "build", str(project))
    assert built.returncode == 0, built.stderr
    assert (project / "build" / "my_filter.wasm").exists()
    tested = routeiq("plugin", "test", str(project))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "PASS tags the request" in tested.stdout and "2 passed, 0 failed" in tested.stdout

    # A wrong expectation fails, saying what differed.
    cases = (project / "tests.yaml").read_text().replace("x-my-filter: hello", "x-my-filter: goodbye")
    (project / "tests.yaml").write_text(cases)
    failing = routeiq("plugin", "test", str(project))
    assert failing.returncode == 1
    assert "FAIL tags the request" in failing.stdout and "upstream header x-my-filter: 'hello', expected 'goodbye'" in failing.stdout


@pytest.mark.parametrize("lang", ["c", "assemblyscript", "python"])
def test_other_languages_from_new_to_passing_tests(tmp_path: Path, lang: str) -> None:
    assert routeiq("plugin", "new", "--lang", lang, "--dir", str(tmp_path), "my_plugin").returncode == 0
    built = routeiq("plugin", "build", str(tmp_path / "my_plugin"))
    assert built.returncode == 0, built.stdout + built.stderr
    tested = routeiq("plugin", "test", str(tmp_path / "my_plugin"))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "2 passed, 0 failed (my_plugin.wasm up to date" in tested.stdout  # the fresh build, not a rebuild
    module = tmp_path / "my_plugin" / "build" / "my_plugin.wasm"
    # The compiled module is cached for the next run (a component takes seconds to compile).
    cached = list(module_cache().glob(f"{hashlib.sha256(module.read_bytes()).hexdigest()}-*"))
    assert cached, f"nothing cached in {module_cache()}"
    stamp = cached[0].stat().st_mtime_ns
    again = routeiq("plugin", "test", str(tmp_path / "my_plugin"))
    assert again.returncode == 0 and "2 passed, 0 failed" in again.stdout
    assert cached[0].stat().st_mtime_ns == stamp  # deserialized, not compiled and stored again
    info = json.loads(routeiq("plugin", "inspect", "--json", str(tmp_path / "my_plugin" / "build" / "my_plugin.wasm")).stdout)
    assert info["manifest"]["name"] == "my_plugin"
    assert info["kind"] == ("component" if lang == "python" else "core module")


@pytest.mark.parametrize("lang", ["rust", "c", "python"])
def test_a_tool_from_new_to_passing_tests(tmp_path: Path, lang: str) -> None:
    created = routeiq("plugin", "new", "--kind", "tool", "--lang", lang, "--dir", str(tmp_path), "greeter")
    assert created.returncode == 0, created.stderr
    project = tmp_path / "greeter"
    tested = routeiq("plugin", "test", str(project))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "PASS greets" in tested.stdout and "3 passed, 0 failed" in tested.stdout
    info = json.loads(routeiq("plugin", "inspect", "--json", str(project / "build" / "greeter.wasm")).stdout)
    assert info["manifest"]["input_schema"]["required"] == ["name"]

    # A wrong expectation fails, saying what differed.
    cases = (project / "tests.yaml").read_text().replace('greeting: "Hi, Ada!"', 'greeting: "Bye, Ada!"')
    (project / "tests.yaml").write_text(cases)
    failing = routeiq("plugin", "test", str(project))
    assert failing.returncode == 1
    assert "FAIL greets" in failing.stdout and "result.greeting: 'Hi, Ada!', expected 'Bye, Ada!'" in failing.stdout


def test_a_tool_in_a_language_without_tool_support_is_refused(tmp_path: Path) -> None:
    refused = routeiq("plugin", "new", "--kind", "tool", "--lang", "assemblyscript", "--dir", str(tmp_path), "greeter")
    assert refused.returncode == 2 and "--kind tool supports --lang rust, python, c" in refused.stderr
    assert not (tmp_path / "greeter").exists()


def test_build_errors_are_shown(tmp_path: Path) -> None:
    routeiq("plugin", "new", "--lang", "rust", "--dir", str(tmp_path), "broken")
    lib = tmp_path / "broken" / "src" / "lib.rs"
    lib.write_text(lib.read_text() + "\nfn oops() -> u32 { \"not a number\" }\n")
    built = routeiq("plugin", "build", str(tmp_path / "broken"))
    assert built.returncode == 2
    assert "rustc failed" in built.stderr and "mismatched types" in built.stderr


def test_new_refuses_bad_names_and_existing_dirs(tmp_path: Path) -> None:
    assert routeiq("plugin", "new", "--lang", "rust", "--dir", str(tmp_path), "bad-name").returncode == 2
    routeiq("plugin", "new", "--lang", "rust", "--dir", str(tmp_path), "twice")
    again = routeiq("plugin", "new", "--lang", "rust", "--dir", str(tmp_path), "twice")
    assert again.returncode == 2 and "already exists" in again.stderr


def test_inspect_maps_imports_to_capabilities(guests: dict[str, Path], tmp_path: Path) -> None:
    text = routeiq("plugin", "inspect", str(guests["rate_limiter"]))
    assert text.returncode == 0
    assert "proxy-wasm 0.2.1" in text.stdout
    assert "env.proxy_get_shared_data" in text.stdout and "shared_kv" in text.stdout
    info = json.loads(routeiq("plugin", "inspect", "--json", str(guests["ext_auth"])).stdout)
    assert info["capabilities_needed_by_imports"] == ["http_callout"]
    assert info["manifest"]["capabilities"] == ["http_callout"]
    assert len(info["sha256"]) == 64 and info["size"] == guests["ext_auth"].stat().st_size
    junk = tmp_path / "junk.wasm"
    junk.write_bytes(b"\0asm\x01\0\0\0nonsense")
    assert routeiq("plugin", "inspect", str(junk)).returncode == 1


def test_harness_drives_a_plugin_without_a_gateway(guests: dict[str, Path]) -> None:
    with PluginTestHarness(guests["rate_limiter"], config={"limit": 2, "window_s": 86400, "header": "x-api-key"}) as h:
        first = h.request("GET", "/v1/models", headers={"x-api-key": "k"})
        assert first.status == 200 and first.upstream is not None and first.headers["x-ratelimit-remaining"] == "1"
        h.request("GET", "/v1/models", headers={"x-api-key": "k"})
        third = h.request("GET", "/v1/models", headers={"x-api-key": "k"})
        assert third.status == 429 and third.answered_locally
        window = int(time.time()) // 86400
        assert h.kv(f"rl:header:k:{window}") == b"2"  # KV effects are visible to the test
    with PluginTestHarness(guests["chunk_counter"]) as h:
        streamed = h.request("GET", "/", reply=UpstreamReply(chunks=["data: 1\n\n", "data: 2\n\n", "data: 3\n\n"]))
        assert streamed.body == b"data: 1\n\ndata: 2\n\ndata: 3\n\n"
        assert streamed.logs == ["chunk_counter: chunks=3 bytes=27 events=3"]


def test_harness_grants_only_what_the_manifest_declares(guests: dict[str, Path]) -> None:
    # Granting less than the manifest needs refuses the plugin, as the gateway would.
    try:
        PluginTestHarness(guests["rate_limiter"], capabilities=[])
    except Exception as exc:  # noqa: BLE001 - the load error type is the point
        assert "needs shared_kv" in str(exc)
    else:
        raise AssertionError("rate_limiter loaded without shared_kv")
