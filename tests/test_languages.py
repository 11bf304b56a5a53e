"""Guests in C and AssemblyScript, and a filter built with a public proxy-wasm SDK.

Everything is built from source by the toolchain modules (zig's clang from PyPI or
clang+wasm-ld for C; Node.js + the npm-pinned assemblyscript for AssemblyScript) and run
through the real app. A missing toolchain fails these tests: it never skips them.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from starlette.testclient import TestClient

from routeiq.app import PluginStartupError
from routeiq.policy.manifest import custom_sections, load_manifest
from routeiq.toolchain.assemblyscript import build_assemblyscript_guests
from routeiq.toolchain.c import build_c_guests

from support import eventually, plugin

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def c_guests() -> dict[str, Path]:
    return {p.stem: p for p in build_c_guests(ROOT)}


@pytest.fixture(scope="session")
def as_guests() -> dict[str, Path]:
    return {p.stem: p for p in build_assemblyscript_guests(ROOT)}


def grant(**capabilities: list[str]) -> dict[str, Any]:
    """A policy naming each plugin with exactly the capabilities its manifest needs."""
    return {"plugins": {name: {"unpinned": True, "capabilities": caps} for name, caps in capabilities.items()}}


def pinned(name: str, wasm: Path, capabilities: list[str]) -> dict[str, Any]:
    return {"plugins": {name: {"sha256": hashlib.sha256(wasm.read_bytes()).hexdigest(), "capabilities": capabilities}}}


def upstream_headers(response: Any) -> dict[str, list[str]]:
    """Headers the embedded /echo upstream received, by name."""
    seen: dict[str, list[str]] = {}
    for key, value in response.json()["headers"]:
        seen.setdefault(key, []).append(value)
    return seen


def module_interface(path: Path) -> tuple[set[str], set[str]]:
    module = wasmtime.Module(wasmtime.Engine(), path.read_bytes())
    imports = {f"{i.module}.{i.name}" for i in module.imports}
    exports = {e.name for e in module.exports}
    return imports, exports


# ------------------------------------------------------------------------------ C


def test_c_modules_carry_the_abi_marker_allocator_and_manifest_section(c_guests: dict[str, Path]) -> None:
    assert set(c_guests) >= {"c_tagger", "c_chunk_counter"}
    expected = {"c_tagger": [], "c_chunk_counter": ["response_body"]}
    for name, capabilities in expected.items():
        wasm = c_guests[name]
        assert wasm == ROOT / "guest-examples" / "c" / "build" / f"{name}.wasm"
        section = custom_sections(wasm.read_bytes())["routeiq.manifest"]
        manifest = json.loads(section)  # exactly the JSON: no trailing NUL
        assert (manifest["name"], manifest["capabilities"]) == (name, capabilities)
        parsed, origin = load_manifest(wasm, wasm.read_bytes())
        assert origin == "custom section routeiq.manifest" and [c.value for c in parsed.capabilities] == capabilities
        imports, exports = module_interface(wasm)
        assert {"proxy_abi_version_0_2_1", "proxy_on_memory_allocate", "memory"} <= exports
        assert all(i.startswith("env.proxy_") for i in imports), imports  # no libc, no env.abort
        assert not (wasm.parent / f"{name}.manifest.json").exists()


def test_c_tagger_tags_the_request_and_the_response(make_app, c_guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    app = make_app(
        [plugin("blue", c_guests["c_tagger"], config={"tag": "blue"}), plugin("plain", c_guests["c_tagger"])],
        policy=grant(blue=[], plain=[]),
    )
    with TestClient(app) as client:
        response = client.get("/echo/hi")
    assert response.status_code == 200
    assert upstream_headers(response)["x-routeiq-tagged"] == ["blue", "c"]  # configured order; default tag "c"
    assert response.headers.get_list("x-routeiq-plugin") == ["c_tagger", "c_tagger"]


def test_c_tagger_answers_403_locally(make_app, c_guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    wasm = c_guests["c_tagger"]
    app = make_app(
        [plugin("c_tagger", wasm, config={"deny_paths": ["/echo/admin"], "deny_header": "X-Stop"})],
        policy=pinned("c_tagger", wasm, []),
    )
    body = b'{"error":{"message":"blocked by c_tagger","type":"forbidden"}}'
    with TestClient(app) as client:
        for path, headers in [("/echo", {"x-stop": "1"}), ("/echo", {"x-stop": ""}), ("/echo/admin/users", {}), ("/echo/administrator", {})]:
            response = client.get(path, headers=headers)
            assert response.status_code == 403, (path, headers)
            assert response.content == body
            assert response.headers["content-type"] == "application/json"
            assert response.headers.get_list("x-routeiq-plugin") == ["c_tagger"]  # a local reply runs the sender's response callbacks
        # x-block is no longer the deny header once deny_header is configured
        assert client.get("/echo", headers={"x-block": "1"}).status_code == 200

    default = make_app([plugin("c_tagger", wasm)], policy=grant(c_tagger=[]))
    with TestClient(default) as client:
        assert client.get("/echo", headers={"x-block": ""}).content == body
        assert client.get("/echo/admin").status_code == 200  # no deny_paths by default


@pytest.mark.parametrize(
    ("config", "tag"),
    [
        ({"tag": 'say "hi" \\/ \u00e9'}, 'say "hi" \\/ \u00e9'),  # escapes decoded, UTF-8 out
        ('{"tag": "a\\/b\\u0041", "tag2": 1}', "a/bA"),
        ({"tag": 5, "other": {"tag": "nested", "list": [1, {"x": "]"}]}}, "c"),  # wrong type, nested: ignored
        ({"tag": "first", "x": [], "tag ": "not it"}, "first"),
        ("{not json", "c"),
        ("", "c"),
    ],
)
def test_c_tagger_reads_its_json_configuration(make_app, c_guests: dict[str, Path], config: Any, tag: str) -> None:  # type: ignore[no-untyped-def]
    app = make_app([plugin("c_tagger", c_guests["c_tagger"], config=config)], policy=grant(c_tagger=[]))
    with TestClient(app) as client:
        response = client.get("/echo")
    raw = [v for k, v in response.headers.raw if k == b"x-routeiq-plugin"]
    assert raw == [b"c_tagger"]
    # header bytes reach the upstream as the guest wrote them; /echo shows them as latin-1
    assert upstream_headers(response)["x-routeiq-tagged"] == [tag.encode("utf-8").decode("latin-1")]


def test_c_chunk_counter_counts_streamed_chunks_and_bytes(make_app, c_guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    app = make_app([plugin("c_chunk_counter", c_guests["c_chunk_counter"])], policy=grant(c_chunk_counter=["response_body"]))
    chat = {"model": "routeiq-mock", "stream": True, "messages": [{"role": "user", "content": "one two three four five"}]}
    with TestClient(app) as client:
        streamed = client.post("/v1/chat/completions", json=chat)
        plain = client.get("/echo")
    events = [e for e in streamed.content.split(b"\n\n") if e]
    assert streamed.status_code == 200 and events[-1] == b"data: [DONE]" and len(events) == 9
    logs = app.state.gateway.logs.messages
    expected = {
        f"c_chunk_counter: chunks={len(events)} bytes={len(streamed.content)}",
        f"c_chunk_counter: chunks=1 bytes={len(plain.content)}",
    }
    assert eventually(lambda: expected <= set(logs("c_chunk_counter"))), logs("c_chunk_counter")


def test_c_chunk_counter_is_refused_without_the_response_body_grant(make_app, c_guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PluginStartupError, match=r"c_chunk_counter.*needs response_body"):
        make_app([plugin("c_chunk_counter", c_guests["c_chunk_counter"])], policy=grant(c_chunk_counter=[]))


@pytest.mark.parametrize("name", ["c_tagger", "as_tagger"])
def test_values_the_host_allocates_are_freed(make_app, c_guests: dict[str, Path], as_guests: dict[str, Path], name: str) -> None:  # type: ignore[no-untyped-def]
    """400 denials, each reading a 16 KiB x-block value the host writes into guest memory
    (6.4 MB in all), fit in a 2 MiB memory cap only if the guest frees what it reads."""
    wasm = {**c_guests, **as_guests}[name]
    app = make_app([plugin(name, wasm, limits={"memory_mb": 2})], policy=grant(**{name: []}))
    big = "v" * 16384
    with TestClient(app) as client:
        statuses = {client.get("/echo", headers={"x-block": big}).status_code for _ in range(400)}
        health = client.get("/health").json()["plugins"][0]
    assert statuses == {403}
    assert (health["state"], health["traps"]) == ("ready", 0)


def test_the_c_guide_example_builds_and_runs(tmp_path: Path, make_app) -> None:  # type: ignore[no-untyped-def]
    """docs/guide-c.md's filter, copied verbatim, built by build_c_guests in a scratch tree."""
    guide = (ROOT / "docs" / "guide-c.md").read_text()
    source = re.search(r"<!-- example: my_filter.c -->\s*```c\n(.*?)```", guide, re.S)
    assert source, "docs/guide-c.md lost its my_filter.c example"
    shutil.copytree(ROOT / "abi" / "sdk" / "c", tmp_path / "abi" / "sdk" / "c")
    (tmp_path / "guest-examples" / "c" / "my_filter").mkdir(parents=True)
    (tmp_path / "guest-examples" / "c" / "my_filter" / "my_filter.c").write_text(source.group(1))
    built = build_c_guests(tmp_path)
    assert [p.name for p in built] == ["my_filter.wasm"]
    app = make_app([plugin("my_filter", built[0])], policy=grant(my_filter=[]))
    with TestClient(app) as client:
        assert client.get("/echo", headers={"x-tenant": "blocked"}).status_code == 429
        ok = client.get("/echo", headers={"x-tenant": "acme"})
        assert upstream_headers(ok)["x-my-filter"] == ["acme"]


# ------------------------------------------------------------------- AssemblyScript


def test_as_tagger_module_carries_its_manifest_section(as_guests: dict[str, Path]) -> None:
    wasm = as_guests["as_tagger"]
    assert wasm == ROOT / "guest-examples" / "assemblyscript" / "build" / "as_tagger.wasm"
    manifest = json.loads(custom_sections(wasm.read_bytes())["routeiq.manifest"])
    assert (manifest["name"], manifest["capabilities"]) == ("as_tagger", [])
    assert not (wasm.parent / "as_tagger.manifest.json").exists()  # the section is enough
    imports, exports = module_interface(wasm)
    assert {"proxy_abi_version_0_2_1", "proxy_on_memory_allocate"} <= exports
    assert all(i.startswith("env.proxy_") for i in imports), imports  # abort is routed in-module


def test_as_tagger_tags_denies_and_reads_configuration(make_app, as_guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    wasm = as_guests["as_tagger"]
    app = make_app(
        [plugin("as_tagger", wasm, config={"tag": "green", "deny_paths": ["/echo/admin"]}), plugin("plain", wasm)],
        policy={"plugins": {**pinned("as_tagger", wasm, [])["plugins"], "plain": {"unpinned": True, "capabilities": []}}},
    )
    body = b'{"error":{"message":"blocked by as_tagger","type":"forbidden"}}'
    with TestClient(app) as client:
        ok = client.get("/echo")
        assert ok.status_code == 200
        assert upstream_headers(ok)["x-routeiq-tagged"] == ["green", "as"]
        assert ok.headers.get_list("x-routeiq-plugin") == ["as_tagger", "as_tagger"]
        for path, headers in [("/echo", {"x-block": "yes"}), ("/echo", {"x-block": ""}), ("/echo/admin/x", {})]:
            denied = client.get(path, headers=headers)
            assert (denied.status_code, denied.content) == (403, body), (path, headers)
            assert denied.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("config", "tag"),
    [
        ('{"tag": "x\\"y\\/z\\u0041", "deny_header": "X-Other"}', 'x"y/zA'),
        ({"tag": ["no"], "deep": {"a": [{"tag": "inner"}]}}, "as"),
        ("[1, 2]", "as"),
        ("", "as"),
    ],
)
def test_as_tagger_json_configuration(make_app, as_guests: dict[str, Path], config: Any, tag: str) -> None:  # type: ignore[no-untyped-def]
    app = make_app([plugin("as_tagger", as_guests["as_tagger"], config=config)], policy=grant(as_tagger=[]))
    with TestClient(app) as client:
        assert upstream_headers(client.get("/echo"))["x-routeiq-tagged"] == [tag]


# ----------------------------------------------- public SDK: @solo-io/proxy-runtime


def test_sdk_filter_is_an_abi_0_2_0_module_with_a_sidecar_manifest(as_guests: dict[str, Path]) -> None:
    wasm = as_guests["sdk_filter"]
    assert wasm == ROOT / "guest-examples" / "assemblyscript-sdk" / "build" / "sdk_filter.wasm"
    assert "routeiq.manifest" not in custom_sections(wasm.read_bytes())
    manifest, origin = load_manifest(wasm, wasm.read_bytes())
    assert origin == str(wasm.with_name("sdk_filter.manifest.json"))
    assert [c.value for c in manifest.capabilities] == ["request_body"]
    imports, exports = module_interface(wasm)
    assert "proxy_abi_version_0_2_0" in exports and "proxy_abi_version_0_2_1" not in exports
    assert "malloc" in exports and "proxy_on_memory_allocate" not in exports  # the host falls back to malloc
    assert "wasi_unstable.proc_exit" in imports  # the SDK's abort handler


@pytest.mark.parametrize("root_id", ["", "sdk_filter"])
def test_sdk_filter_does_everything_through_the_gateway(make_app, as_guests: dict[str, Path], root_id: str) -> None:  # type: ignore[no-untyped-def]
    wasm = as_guests["sdk_filter"]
    app = make_app([plugin("sdk_filter", wasm, config="blue", root_id=root_id)], policy=pinned("sdk_filter", wasm, ["request_body"]))
    with TestClient(app) as client:
        plain = client.get("/echo")
        assert plain.status_code == 200
        assert upstream_headers(plain)["x-sdk-filter"] == ["blue"]  # configuration, read at on_configure
        assert (plain.headers["x-sdk-seen"], plain.headers["x-sdk-body-bytes"]) == ("1", "0")

        posted = client.post("/echo", content=b"x" * 1234)
        assert posted.json()["body_length"] == 1234  # the body still went upstream whole
        assert (posted.headers["x-sdk-seen"], posted.headers["x-sdk-body-bytes"]) == ("1", "1234")

        for value in ("1", ""):
            denied = client.get("/echo", headers={"x-sdk-deny": value})
            assert denied.status_code == 403
            assert denied.json() == {"error": {"message": "denied by sdk_filter", "type": "forbidden"}}
            assert denied.headers["content-type"] == "application/json"
            assert denied.headers["x-sdk-seen"] == "1"  # its own local reply runs its response callbacks
        health = client.get("/health").json()["plugins"][0]
    assert (health["abi_version"], health["state"], health["traps"]) == ("0.2.0", "ready", 0)
    logs = app.state.gateway.logs.messages
    assert "sdk_filter: configuration=blue" in logs("sdk_filter")
    assert eventually(lambda: "sdk_filter: request body bytes=1234" in logs("sdk_filter"))


def test_sdk_filter_gets_a_mapping_configuration_as_json_text(make_app, as_guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    app = make_app([plugin("sdk_filter", as_guests["sdk_filter"], config={"colour": "red"})], policy=grant(sdk_filter=["request_body"]))
    with TestClient(app) as client:
        sent = upstream_headers(client.get("/echo"))["x-sdk-filter"]
    assert json.loads(sent[0]) == {"colour": "red"}


def test_sdk_filter_without_the_body_grant_is_refused(make_app, as_guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PluginStartupError, match=r"sdk_filter.*needs request_body"):
        make_app([plugin("sdk_filter", as_guests["sdk_filter"], config="x")], policy=grant(sdk_filter=[]))


# -------------------------------------------------------------------------- builds


def test_builds_are_cached_by_content(c_guests: dict[str, Path], as_guests: dict[str, Path]) -> None:
    messages: list[str] = []
    assert {p.stem: p for p in build_c_guests(ROOT, messages.append)} == c_guests
    assert {p.stem: p for p in build_assemblyscript_guests(ROOT, messages.append)} == as_guests
    assert messages == []  # nothing rebuilt, no npm ci


def test_the_assemblyscript_guide_example_builds_and_runs(tmp_path: Path, make_app) -> None:  # type: ignore[no-untyped-def]
    """docs/guide-assemblyscript.md's filter and manifest, verbatim, built in a scratch copy
    of the project (sharing its installed node_modules) by build_assemblyscript_guests."""
    guide = (ROOT / "docs" / "guide-assemblyscript.md").read_text()
    blocks = dict(re.findall(r"<!-- example: (my_filter/[\w.]+) -->\s*```\w+\n(.*?)```", guide, re.S))
    assert set(blocks) == {"my_filter/index.ts", "my_filter/manifest.json"}, "the guide lost its example"
    real = ROOT / "guest-examples" / "assemblyscript"
    build_assemblyscript_guests(ROOT)  # node_modules installed (and stamped) in the real project
    project = tmp_path / "guest-examples" / "assemblyscript"
    project.mkdir(parents=True)
    for name in ("package.json", "package-lock.json", "asconfig.json", "routeiq-manifest-transform.mjs"):
        shutil.copy(real / name, project / name)
    shutil.copytree(real / "lib", project / "lib")
    (project / "node_modules").symlink_to(real / "node_modules", target_is_directory=True)
    for rel, text in blocks.items():
        (project / rel).parent.mkdir(exist_ok=True)
        (project / rel).write_text(text)
    built = build_assemblyscript_guests(tmp_path)
    assert [p.name for p in built] == ["my_filter.wasm"]
    manifest = json.loads(custom_sections(built[0].read_bytes())["routeiq.manifest"])
    assert manifest["name"] == "my_filter"
    app = make_app([plugin("my_filter", built[0])], policy=grant(my_filter=[]))
    with TestClient(app) as client:
        assert client.get("/echo", headers={"x-tenant": "blocked"}).text == "slow down"
        assert upstream_headers(client.get("/echo", headers={"x-tenant": "acme"}))["x-my-filter"] == ["acme"]
