"""The admin API through a real gateway process: auth and roles, live config with schema
validation, persistence across restarts, hot swap under load, quarantine and release."""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import yaml

from routeiq.admin.auth import hash_key
from support import FakeClock, eventually, free_port, with_manifest

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"viewer": "view-key-0123456789", "operator": "oper-key-0123456789", "admin": "admin-key-0123456789"}


def write_config(tmp_path: Path, guests: dict[str, Path], port: int, module_bytes: bytes | None = None, server: dict[str, Any] | None = None, **admin: Any) -> Path:
    module = tmp_path / "tagger.wasm"
    if module_bytes is None:
        shutil.copy(guests["tagger"], module)
    else:
        module.write_bytes(module_bytes)
    config = {
        "server": {"host": "127.0.0.1", "port": port, **(server or {})},
        "admin": {"state_dir": str(tmp_path / "state"), "keys": [{"name": role, "sha256": hash_key(key), "role": role} for role, key in KEYS.items()], **admin},
        "policy": {"plugins": {"tagger": {"unpinned": True, "capabilities": ["response_body"]}}},
        "runtime": {"cache_dir": str(tmp_path / "cache")},
        "plugins": [{"name": "tagger", "wasm": str(module), "config": {"tag": "from-file"}, "fail_open": False}],
    }
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class Gateway:
    def __init__(self, config: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "routeiq", "serve", "--config", str(config)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, self.proc.stdout.read() if self.proc.stdout else ""
            try:
                httpx.get(f"{self.url}/health", timeout=1, trust_env=False)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        self.client = httpx.Client(base_url=self.url, timeout=10, trust_env=False)

    def admin(self, method: str, path: str, role: str = "admin", headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        return self.client.request(method, f"/admin{path}", headers={"authorization": f"Bearer {KEYS[role]}", **(headers or {})}, **kw)

    def stop(self) -> None:
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


def test_auth_and_roles(tmp_path: Path, guests: dict[str, Path]) -> None:
    port = free_port()
    gw = Gateway(write_config(tmp_path, guests, port), port)
    try:
        assert gw.client.get("/admin/plugins").status_code == 401  # no key
        assert gw.client.get("/admin/plugins", headers={"authorization": "Bearer wrong"}).status_code == 401
        listed = gw.admin("GET", "/plugins", role="viewer")
        assert listed.status_code == 200 and listed.json()["plugins"][0]["name"] == "tagger"
        assert gw.admin("PUT", "/plugins/tagger/config", role="viewer", json={"tag": "x"}).status_code == 403
        assert gw.admin("POST", "/plugins/tagger/module", role="operator", content=b"\0asm").status_code == 403
        assert gw.admin("GET", "/plugins/nope").status_code == 404
        spec = gw.client.get("/admin/openapi.json").json()
        assert "/admin/plugins/{name}/config" in spec["paths"]
    finally:
        gw.stop()


def test_live_config_persists_across_restart(tmp_path: Path, guests: dict[str, Path]) -> None:
    port = free_port()
    config = write_config(tmp_path, guests, port)
    gw = Gateway(config, port)
    try:
        tagged = lambda: dict(gw.client.get("/echo").json()["headers"]).get("x-routeiq-tagged")  # noqa: E731
        assert tagged() == "from-file"
        changed = gw.admin("PUT", "/plugins/tagger/config", role="operator", json={"tag": "from-admin"})
        assert changed.status_code == 200, changed.text
        assert tagged() == "from-admin"  # applied live through proxy_on_configure
        assert gw.admin("PUT", "/plugins/tagger/config", role="operator", content=b"{not json").status_code == 400
        detail = gw.admin("GET", "/plugins/tagger", role="viewer").json()
        assert json.loads(detail["config"]) == {"tag": "from-admin"}
        assert detail["hooks"]["proxy_on_request_headers"]["count"] >= 2
        assert detail["hooks"]["proxy_on_request_headers"]["p50_us"] > 0
    finally:
        gw.stop()
    gw = Gateway(config, port)  # restart: the operator's change is still there
    try:
        assert dict(gw.client.get("/echo").json()["headers"]).get("x-routeiq-tagged") == "from-admin"
    finally:
        gw.stop()


def test_hot_swap_under_load_and_rollback(tmp_path: Path, guests: dict[str, Path]) -> None:
    port = free_port()
    config = write_config(tmp_path, guests, port)
    gw = Gateway(config, port)
    try:
        failures: list[int] = []

        def load(_: int) -> None:
            with httpx.Client(base_url=gw.url, timeout=10, trust_env=False) as client:
                for _ in range(40):
                    status = client.get("/echo").status_code
                    if status != 200:
                        failures.append(status)

        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(load, i) for i in range(4)]
            time.sleep(0.2)
            swapped = gw.admin("POST", "/plugins/tagger/module", content=guests["chunk_counter"].read_bytes())
            for f in futures:
                f.result()
        assert swapped.status_code == 200, swapped.text
        assert failures == []  # no request failed during the swap
        headers = dict(gw.client.get("/echo").json()["headers"])
        assert "x-routeiq-tagged" not in headers  # the new module (chunk_counter) serves now
        # A broken module is refused and the running one stays.
        refused = gw.admin("POST", "/plugins/tagger/module", content=guests["hostile_import"].read_bytes())
        assert refused.status_code == 400 and "proxy_does_not_exist" in refused.json()["error"]["message"]
        assert gw.client.get("/echo").status_code == 200
    finally:
        gw.stop()
    gw = Gateway(config, port)  # the swapped module survives a restart
    try:
        assert gw.admin("GET", "/plugins/tagger", role="viewer").json()["sha256"] != ""
        assert "x-routeiq-tagged" not in dict(gw.client.get("/echo").json()["headers"])
    finally:
        gw.stop()


def test_manual_quarantine_and_release(tmp_path: Path, guests: dict[str, Path]) -> None:
    port = free_port()
    gw = Gateway(write_config(tmp_path, guests, port), port)
    try:
        assert gw.admin("POST", "/plugins/tagger/quarantine", role="operator").json()["state"] == "quarantined"
        blocked = gw.client.get("/echo")
        assert blocked.status_code == 503 and blocked.json()["error"]["code"] == "quarantined"  # fail_open: false
        assert gw.admin("POST", "/plugins/tagger/release", role="operator").json()["state"] == "ready"
        assert gw.client.get("/echo").status_code == 200
    finally:
        gw.stop()


def test_repeated_traps_quarantine_then_probe_restores(make_app, guests: dict[str, Path], caplog) -> None:  # type: ignore[no-untyped-def]
    from starlette.testclient import TestClient

    clock = FakeClock()
    quarantine = {"max_traps": 3, "window_s": 60, "cooldown_s": 30}
    app = make_app([{"name": "flaky", "wasm": str(guests["hostile_trap"]), "config": "request_headers", "fail_open": True, "quarantine": quarantine}], clock=clock)
    flaky = app.state.gateway.plugin("flaky")
    with TestClient(app) as client:
        for _ in range(2):
            assert client.get("/echo", headers={"x-hostile": "1"}).status_code == 200  # fail_open
            clock.advance(61)  # traps further apart than the window never add up
        assert flaky.state == "restarting" and flaky.stats.quarantines == 0  # a fresh VM on the next request
        for _ in range(3):
            assert client.get("/echo", headers={"x-hostile": "1"}).status_code == 200
            clock.advance(1)
        assert flaky.state == "quarantined" and flaky.stats.traps == 5
        assert client.get("/echo", headers={"x-hostile": "1"}).status_code == 200  # skipped: no new trap
        assert flaky.stats.traps == 5
        assert "plugin flaky quarantined: 3 traps in 60 s (last: unreachable)" in caplog.text
        clock.advance(28)  # 29 s after the quarantine began
        assert client.get("/echo", headers={"x-hostile": "1"}).status_code == 200  # still cooling down: skipped
        assert flaky.state == "quarantined" and flaky.stats.traps == 5
        clock.advance(1)
        assert client.get("/echo", headers={"x-hostile": "1"}).status_code == 200  # the probe traps...
        assert flaky.state == "quarantined" and flaky.stats.traps == 6  # ...so it stays quarantined
        clock.advance(30)
        assert client.get("/echo").status_code == 200  # a clean probe
        assert flaky.state == "ready"
        metrics = client.get("/metrics").text
    assert 'routeiq_plugin_quarantines_total{plugin="flaky"} 2.0' in metrics


def test_admin_new_key_prints_a_working_hash() -> None:
    out = subprocess.run([sys.executable, "-m", "routeiq", "admin", "new-key", "--name", "ops", "--role", "operator"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0
    key = out.stdout.split("key (give it to its owner; it is not stored):", 1)[1].split()[0]
    assert hash_key(key) in out.stdout


TAGGER_SCHEMA = {
    "type": "object",
    "properties": {"tag": {"type": "string"}, "deny_header": {"type": "string"}, "deny_paths": {"type": "array", "items": {"type": "string"}}},
    "additionalProperties": False,
}
TAGGER_MANIFEST = {"name": "tagger", "version": "2.0.0", "capabilities": [], "config_schema": TAGGER_SCHEMA}


def _state_files(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_size for p in directory.rglob("*") if p.is_file()} if directory.exists() else {}


def test_config_schema_enforced_merge_patch_and_kept_across_swap(tmp_path: Path, guests: dict[str, Path]) -> None:
    port = free_port()
    config = write_config(tmp_path, guests, port, with_manifest(guests["tagger"].read_bytes(), TAGGER_MANIFEST))
    gw = Gateway(config, port)
    try:
        tagged = lambda: dict(gw.client.get("/echo").json()["headers"]).get("x-routeiq-tagged")  # noqa: E731
        schema = gw.admin("GET", "/plugins/tagger/schema", role="viewer")
        assert schema.status_code == 200 and schema.json() == TAGGER_SCHEMA
        refused = gw.admin("PUT", "/plugins/tagger/config", role="operator", json={"tag": 5})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == {"message": "config.tag: 5 is not of type 'string'", "type": "admin_error", "code": "schema_violation"}
        assert tagged() == "from-file"  # nothing applied
        # PATCH merges (RFC 7396) and validates the merged result.
        nested = gw.admin("PATCH", "/plugins/tagger/config", role="operator", json={"deny_paths": ["/ok", 7]})
        assert nested.status_code == 400 and nested.json()["error"]["message"] == "config.deny_paths[1]: 7 is not of type 'string'"
        merged = gw.admin("PATCH", "/plugins/tagger/config", role="operator", json={"deny_paths": ["/echo/secret"]}, headers={"content-type": "application/merge-patch+json"})
        assert merged.status_code == 200, merged.text
        assert merged.json()["config"] == {"tag": "from-file", "deny_paths": ["/echo/secret"]}
        assert gw.client.get("/echo/secret/x").status_code == 403 and tagged() == "from-file"
        removed = gw.admin("PATCH", "/plugins/tagger/config", role="operator", json={"deny_paths": None, "tag": "patched"})
        assert removed.json()["config"] == {"tag": "patched"}
        assert gw.client.get("/echo/secret/x").status_code == 200 and tagged() == "patched"
        wrong_type = gw.admin("PATCH", "/plugins/tagger/config", role="operator", content=b'{"tag": "x"}', headers={"content-type": "text/plain"})
        assert wrong_type.status_code == 415
        # PUT replaces the whole configuration.
        assert gw.admin("PUT", "/plugins/tagger/config", role="operator", json={"deny_header": "x-no"}).json()["config"] == {"deny_header": "x-no"}
        assert tagged() == "routeiq"  # the tag went with the rest: the guest's default
        # A swapped-in module without a manifest keeps the plugin's (name, version, schema).
        plain = with_manifest(guests["tagger"].read_bytes(), None)
        swapped = gw.admin("POST", "/plugins/tagger/module", content=plain)
        assert swapped.status_code == 200, swapped.text
        metadata = gw.admin("GET", "/plugins/tagger", role="viewer").json()["metadata"]
        assert (metadata["name"], metadata["version"], metadata["config_schema"]) == ("tagger", "2.0.0", TAGGER_SCHEMA)
        assert gw.admin("GET", "/plugins/tagger/schema", role="viewer").json() == TAGGER_SCHEMA
        assert gw.admin("PUT", "/plugins/tagger/config", role="operator", json={"tag": 5}).status_code == 400
    finally:
        gw.stop()
    gw = Gateway(config, port)  # the kept manifest is persisted with the swapped module
    try:
        assert gw.admin("GET", "/plugins/tagger", role="viewer").json()["metadata"]["version"] == "2.0.0"
        assert gw.admin("PATCH", "/plugins/tagger/config", role="operator", json={"tag": 5}).json()["error"]["code"] == "schema_violation"
        # A new module that carries its own manifest brings its own schema.
        own = with_manifest(guests["tagger"].read_bytes(), {**TAGGER_MANIFEST, "version": "3.0.0", "config_schema": {"type": "object"}})
        assert gw.admin("POST", "/plugins/tagger/module", content=own).status_code == 200
        assert gw.admin("GET", "/plugins/tagger/schema", role="viewer").json() == {"type": "object"}
        assert gw.admin("PUT", "/plugins/tagger/config", role="operator", json={"tag": "any"}).status_code == 200
    finally:
        gw.stop()


def _chunked(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body httpx sends with Transfer-Encoding: chunked (no Content-Length)."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_admin_json_is_strict_and_refusals_leave_nothing(tmp_path: Path, guests: dict[str, Path]) -> None:
    port = free_port()
    gw = Gateway(write_config(tmp_path, guests, port), port)  # default limits
    state = tmp_path / "state"
    try:
        assert gw.admin("PUT", "/plugins/tagger/config", role="operator", json={"tag": "kept"}).status_code == 200
        before = _state_files(state)
        config_before = gw.admin("GET", "/plugins/tagger", role="viewer").json()["config"]
        malformed = {
            "invalid UTF-8": b'{"tag": "\xff\xfe"}',
            "deep nesting": b'{"tag": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "NaN": b'{"tag": NaN}',
            "Infinity": b'{"tag": -Infinity}',
            "overflowing number": b'{"tag": 1e999}',
            "lone surrogate": b'{"tag": "\\ud800"}',
        }
        for what, body in malformed.items():
            for method in ("PUT", "PATCH"):
                answer = gw.admin(method, "/plugins/tagger/config", role="operator", content=body, headers={"content-type": "application/json"})
                assert answer.status_code == 400, (what, method, answer.text)
                assert answer.json()["error"]["code"] == "invalid_json", (what, answer.text)
        # Over the default admin.max_config_bytes (1 MiB): refused before it is buffered.
        huge = json.dumps({"tag": "x" * (1024 * 1024)}).encode()
        assert gw.admin("PUT", "/plugins/tagger/config", role="operator", content=huge).status_code == 413
        assert gw.admin("GET", "/plugins/tagger", role="viewer").json()["config"] == config_before
        # Refused uploads: not Wasm, truncated, an unknown host import.
        refusals = [b"not wasm at all", b"\0asm\x01\0\0\0junk" * 100, guests["tagger"].read_bytes()[:-100], guests["hostile_import"].read_bytes()]
        for _ in range(3):
            for body in refusals:
                answer = gw.admin("POST", "/plugins/tagger/module", content=body)
                assert answer.status_code == 400 and answer.json()["error"]["code"] == "module_refused", answer.text
        assert _state_files(state) == before  # nothing written, nothing left behind
        assert dict(gw.client.get("/echo").json()["headers"])["x-routeiq-tagged"] == "kept"
    finally:
        gw.stop()


def test_admin_body_limits_by_length_and_while_streaming(tmp_path: Path, guests: dict[str, Path]) -> None:
    port = free_port()
    module_size = guests["tagger"].stat().st_size
    # The client-side body cap does not apply to /admin (its own limits do).
    server = {"max_request_body_bytes": 1024}
    gw = Gateway(write_config(tmp_path, guests, port, server=server, max_config_bytes=2048, max_module_bytes=module_size + 1024), port)
    state = tmp_path / "state"
    try:
        big = json.dumps({"tag": "x" * 4096}).encode()
        for method in ("PUT", "PATCH"):
            for body in (big, _chunked(big, 512)):  # by Content-Length, and counted while streaming
                answer = gw.admin(method, "/plugins/tagger/config", role="operator", content=body, headers={"content-type": "application/json"})
                assert answer.status_code == 413, answer.text
                assert answer.json()["error"] == {"message": "the body is larger than 2048 bytes (admin.max_config_bytes)", "type": "admin_error", "code": "body_too_large"}
        oversized = guests["tagger"].read_bytes() + b"\0" * 2048
        for body in (oversized, _chunked(oversized)):
            answer = gw.admin("POST", "/plugins/tagger/module", content=body)
            assert answer.status_code == 413 and "admin.max_module_bytes" in answer.json()["error"]["message"], answer.text
        assert _state_files(state) == {}
        assert gw.admin("PUT", "/plugins/tagger/config", role="operator", json={"tag": "small"}).status_code == 200
        assert gw.admin("POST", "/plugins/tagger/module", content=guests["tagger"].read_bytes()).status_code == 200
    finally:
        gw.stop()


def test_manual_quarantine_survives_restart_until_released(tmp_path: Path, guests: dict[str, Path]) -> None:
    port = free_port()
    config = write_config(tmp_path, guests, port)
    gw = Gateway(config, port)
    try:
        assert gw.admin("POST", "/plugins/tagger/quarantine", role="operator").json()["state"] == "quarantined"
    finally:
        gw.stop()
    gw = Gateway(config, port)
    try:
        plugin = gw.admin("GET", "/plugins/tagger", role="viewer").json()
        assert plugin["state"] == "quarantined" and plugin["quarantine_reason"] == "by operator operator"
        assert gw.client.get("/echo").status_code == 503  # fail_open: false
        # A module swap does not lift it either.
        assert gw.admin("POST", "/plugins/tagger/module", content=guests["chunk_counter"].read_bytes()).status_code == 200
        assert gw.admin("GET", "/plugins/tagger", role="viewer").json()["state"] == "quarantined"
        assert gw.admin("POST", "/plugins/tagger/release", role="operator").json()["state"] == "ready"
    finally:
        gw.stop()
    gw = Gateway(config, port)
    try:
        assert gw.admin("GET", "/plugins/tagger", role="viewer").json()["state"] == "ready"
        assert gw.client.get("/echo").status_code == 200
    finally:
        gw.stop()


def test_config_watcher_does_not_undo_admin_changes(tmp_path: Path, guests: dict[str, Path]) -> None:
    """watch_config (the default) with the real 1 s watcher of a real `serve` process."""
    port = free_port()
    modules = {}
    for name in ("a", "b", "c", "a2"):
        modules[name] = tmp_path / f"{name}.wasm"
        shutil.copy(guests["tagger"], modules[name])
    path = tmp_path / "gw.yaml"

    def write(a_module: str = "a", b_tag: str = "b-file", c_tag: str = "c-file") -> None:
        config = {
            "server": {"host": "127.0.0.1", "port": port},
            "admin": {"state_dir": str(tmp_path / "state"), "keys": [{"name": role, "sha256": hash_key(key), "role": role} for role, key in KEYS.items()]},
            "policy": {"plugins": {n: {"unpinned": True, "capabilities": ["response_body"]} for n in "abc"}},
            "runtime": {"cache_dir": str(tmp_path / "cache")},
            "plugins": [
                {"name": "a", "wasm": str(modules[a_module]), "config": {"tag": "a-file"}},
                {"name": "b", "wasm": str(modules["b"]), "config": {"tag": b_tag}},
                {"name": "c", "wasm": str(modules["c"]), "config": {"tag": c_tag}},
            ],
        }
        path.write_text(yaml.safe_dump(config))

    def touch() -> None:
        later = path.stat().st_mtime + 5
        os.utime(path, (later, later))

    write()
    gw = Gateway(path, port)
    try:
        tags = lambda: [v for k, v in gw.client.get("/echo").json()["headers"] if k == "x-routeiq-tagged"]  # noqa: E731
        watch = lambda: gw.client.get("/health").json()["config"]  # noqa: E731
        assert tags() == ["a-file", "b-file", "c-file"]
        swapped = gw.admin("POST", "/plugins/a/module", content=guests["chunk_counter"].read_bytes())
        assert swapped.status_code == 200, swapped.text
        assert gw.admin("PUT", "/plugins/b/config", role="operator", json={"tag": "b-admin"}).status_code == 200
        assert tags() == ["b-admin", "c-file"]  # a is chunk_counter now: it tags nothing

        touch()  # the no-op that used to revert both admin changes
        assert eventually(lambda: watch().get("unchanged") == 1 or watch()["reloads"] > 0, timeout=10)
        assert tags() == ["b-admin", "c-file"]
        assert watch()["reloads"] == 0
        assert gw.admin("GET", "/plugins/a", role="viewer").json()["sha256"] == swapped.json()["sha256"]

        # A real edit: c's config (no admin change: applies), b's config and a's module
        # (both overridden through /admin: reported, not applied).
        write(a_module="a2", b_tag="b-edited", c_tag="c-edited")
        assert eventually(lambda: watch()["reloads"] == 1, timeout=10)
        assert tags() == ["b-admin", "c-edited"]
        assert gw.admin("GET", "/plugins/a", role="viewer").json()["sha256"] == swapped.json()["sha256"]
        report = watch()
        assert report["last_error"] is None
        assert [m.split(":")[0:2] for m in report["overridden"]] == [["plugin a", " module"], ["plugin b", " config"]]
        assert "DELETE /admin/plugins/b/config" in report["overridden"][1]

        touch()
        assert eventually(lambda: watch()["unchanged"] == 2, timeout=10)
        assert watch()["reloads"] == 1 and tags() == ["b-admin", "c-edited"]

        # Undoing the admin changes returns each field to the file's (current) value.
        assert gw.admin("DELETE", "/plugins/b/config", role="operator").status_code == 200
        assert tags() == ["b-edited", "c-edited"]
        assert gw.admin("DELETE", "/plugins/a/module").status_code == 200
        assert tags() == ["a-file", "b-edited", "c-edited"]
        assert watch()["overridden"] == []
    finally:
        gw.stop()
    gw = Gateway(path, port)  # and a restart agrees: nothing left from the admin changes
    try:
        assert [v for k, v in gw.client.get("/echo").json()["headers"] if k == "x-routeiq-tagged"] == ["a-file", "b-edited", "c-edited"]
    finally:
        gw.stop()


def test_a_schema_with_a_dangling_ref_answers_400_not_500(make_app, live, http, tmp_path: Path, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    module = tmp_path / "ref.wasm"
    module.write_bytes(with_manifest(guests["tagger"].read_bytes(), {"config_schema": {"properties": {"tag": {"$ref": "http://127.0.0.1:9/t.json"}}}}))
    admin = {"state_dir": str(tmp_path / "state"), "keys": [{"name": "ops", "sha256": hash_key(KEYS["operator"]), "role": "operator"}]}
    base = live(make_app([{"name": "tagger", "wasm": str(module)}], admin=admin))
    answer = http.put(base + "/admin/plugins/tagger/config", json={"tag": "x"}, headers={"authorization": f"Bearer {KEYS['operator']}"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "schema_violation"
    assert "cannot resolve" in answer.json()["error"]["message"]


def test_a_module_upload_compiles_off_the_event_loop(tmp_path: Path, guests: dict[str, Path]) -> None:
    """A multi-MB module (the Go SDK's, ~1 s to compile) is compiled on a thread: a /health
    sent after the upload's body answers while the upload is still being worked on."""
    import select
    import socket

    go_module = ROOT.parent / "shared" / "data" / "proxy-wasm-sdk" / "go-sdk-44c7d58" / "http_headers.wasm"
    wasm = go_module.read_bytes()
    port = free_port()
    gw = Gateway(write_config(tmp_path, guests, port), port)  # its own module cache: a real compile
    try:
        upload = socket.create_connection(("127.0.0.1", port))
        head = f"POST /admin/plugins/tagger/module HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEYS['admin']}\r\ncontent-length: {len(wasm)}\r\n\r\n"
        upload.sendall(head.encode() + wasm)
        # Wait until the gateway has read the whole body (its socket's receive queue is
        # empty), so the compile is what it works on next.
        assert eventually(lambda: _unread_bytes(port, upload.getsockname()[1]) == 0, timeout=30)
        health = gw.client.get("/health")  # a new connection, served while the upload compiles
        assert health.status_code == 200
        readable, _, _ = select.select([upload], [], [], 0)
        assert not readable, "the upload was answered before /health: the compile held the event loop"
        upload.settimeout(60)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += upload.recv(65536)
        upload.close()
        # Whether a Go module links is the Envoy-compatibility issue's; either way the
        # gateway answered the upload with a status and kept serving.
        assert answer.split(b" ", 2)[1] in (b"200", b"400"), answer[:300]
        assert gw.client.get("/echo").status_code == 200
    finally:
        gw.stop()


def _unread_bytes(server_port: int, client_port: int) -> int | None:
    """The server side's receive queue for this connection, from /proc/net/tcp."""
    want = (f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}")
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (fields[1], fields[2]) == want:
            return int(fields[4].split(":")[1], 16)
    return None


def test_a_config_reload_compiles_off_the_event_loop(tmp_path: Path, guests: dict[str, Path]) -> None:
    """The watcher swaps in a multi-MB module the edited file names (the Go SDK's) on a
    thread: /health answers while the reload is still being applied."""
    go_module = ROOT.parent / "shared" / "data" / "proxy-wasm-sdk" / "go-sdk-44c7d58" / "http_headers.wasm"
    port = free_port()
    path = write_config(tmp_path, guests, port)
    gw = Gateway(path, port)  # its own module cache: a real compile
    try:
        config = yaml.safe_load(path.read_text())
        config["plugins"][0]["wasm"] = str(go_module)
        path.write_text(yaml.safe_dump(config))
        seen: list[dict[str, Any]] = []

        def reload_seen_in_progress() -> bool:
            seen.append(gw.client.get("/health").json()["config"])
            return seen[-1]["reloading"]

        assert eventually(reload_seen_in_progress, timeout=30), f"no /health answered during the reload: {seen[-3:]}"
        assert eventually(lambda: gw.client.get("/health").json()["config"]["reloads"] == 1, timeout=60)
        # Whether a Go module links is the Envoy-compatibility issue's; either way the
        # reload finished with an outcome and the gateway kept serving.
        assert gw.client.get("/echo").status_code in (200, 503)
        assert gw.client.get("/health").json()["config"]["reloading"] is False
    finally:
        gw.stop()
