"""Plugin lifecycle: ordering by dependencies and priority, startup failure modes."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from routeiq.app import PluginStartupError
from support import plugin


def tags(app) -> list[str]:  # type: ignore[no-untyped-def]
    with TestClient(app) as client:
        return [v for k, v in client.get("/echo").json()["headers"] if k == "x-routeiq-tagged"]


def test_dependencies_then_priority_then_config_order(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    t = guests["tagger"]
    app = make_app(
        [
            plugin("a", t, config={"tag": "a"}, depends_on=["c"]),
            plugin("b", t, config={"tag": "b"}),
            plugin("c", t, config={"tag": "c"}),
            plugin("d", t, config={"tag": "d"}, priority=10),
        ]
    )
    # d (priority 10) first among the free ones, then b and c in config order, a after c.
    assert tags(app) == ["d", "b", "c", "a"]


def test_dependency_cycles_and_missing_dependencies_are_refused(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    t = guests["tagger"]
    with pytest.raises(PluginStartupError, match=r"cycle: a -> b -> a|cycle: b -> a -> b"):
        make_app([plugin("a", t, depends_on=["b"]), plugin("b", t, depends_on=["a"])])
    with pytest.raises(PluginStartupError, match="'a' depends on 'ghost', which is not configured"):
        make_app([plugin("a", t, depends_on=["ghost"])])


def test_startup_failure_continue(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    app = make_app([plugin("tagger", guests["tagger"]), plugin("broken", guests["hostile_trap"], vm_config="vm_start", on_startup_failure="continue")])
    with TestClient(app) as client:
        assert client.get("/echo").status_code == 200
        health = {p["name"]: p for p in client.get("/health").json()["plugins"]}
    assert health["broken"]["state"] == "failed" and "proxy_on_vm_start" in health["broken"]["last_error"]
    assert health["tagger"]["state"] == "ready"


def test_startup_failure_quarantine(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    app = make_app([plugin("broken", guests["hostile_trap"], vm_config="vm_start", on_startup_failure="quarantine", fail_open=False)])
    with TestClient(app) as client:
        response = client.get("/echo")
        assert response.status_code == 503 and response.json()["error"]["code"] == "quarantined"
    assert app.state.gateway.plugin("broken").state == "quarantined"


def test_startup_failure_abort_is_the_default(make_app, guests: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PluginStartupError, match="broken"):
        make_app([plugin("broken", guests["hostile_trap"], vm_config="vm_start")])


def test_config_file_is_reloaded_live(tmp_path: Path, guests: dict[str, Path], module_cache_dir: Path) -> None:
    import time

    import yaml

    from routeiq.config import load_config
    from routeiq.app import create_app

    def write(tag: str, extra: str = "") -> None:
        config = {
            "runtime": {"cache_dir": str(module_cache_dir)},
            "plugins": [{"name": "tagger", "wasm": str(guests["tagger"]), "config": {"tag": tag}}],
        }
        path.write_text(yaml.safe_dump(config) + extra)

    path = tmp_path / "gw.yaml"
    write("first")
    app = create_app(load_config(path))
    app.state.gateway.config_watcher.interval_s = 0.05
    with TestClient(app) as client:
        current = lambda: [v for k, v in client.get("/echo").json()["headers"] if k == "x-routeiq-tagged"]  # noqa: E731
        assert current() == ["first"]
        time.sleep(0.05)
        write("second")
        deadline = time.monotonic() + 5
        while current() != ["second"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert current() == ["second"]
        write("third", extra="server: {port: not-a-port}\n")  # invalid: nothing changes
        deadline = time.monotonic() + 5
        while client.get("/health").json()["config"]["last_error"] is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "server.port" in client.get("/health").json()["config"]["last_error"]
        assert current() == ["second"]
