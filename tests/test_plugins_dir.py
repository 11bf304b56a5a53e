"""plugins_dir: every module in a directory is a plugin, with the policy, pins and ordering
rules of any plugin; with watching on, a new file is loaded and a changed one hot-swapped."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from routeiq.app import PluginStartupError, create_app
from routeiq.config import ConfigError, load_config

from support import eventually


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_config(tmp_path: Path, policy: dict[str, Any], plugins: list[dict[str, Any]] | None = None, watch: bool = False) -> Path:
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump({
        "server": {"watch_config": watch},
        "upstream": "embedded",
        "plugins_dir": "plugins",  # relative to the config file, like every path
        "plugins": plugins or [],
        "policy": {"plugins": policy},
        "runtime": {"cache_dir": str(tmp_path / "cache")},
    }))
    return path


def tags(client: TestClient) -> list[str]:
    return [v for k, v in client.get("/echo/x").json()["headers"] if k == "x-routeiq-tagged"]


def test_every_module_in_the_directory_loads_with_policy_pins_and_order(tmp_path: Path, guests: dict[str, Path]) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    for name in ("b_tagger", "a_tagger"):
        shutil.copy(guests["tagger"], plugins / f"{name}.wasm")
    (plugins / "a_tagger.config.json").write_text(json.dumps({"tag": "from-a"}))
    (plugins / "b_tagger.config.yaml").write_text("tag: from-b\n")
    (plugins / "notes.txt").write_text("not a module")
    policy = {"a_tagger": {"sha256": sha(guests["tagger"]), "capabilities": []}, "b_tagger": {"unpinned": True, "capabilities": []},
              "explicit": {"unpinned": True, "capabilities": []}}
    explicit = [{"name": "explicit", "wasm": str(guests["tagger"]), "config": {"tag": "explicit"}}]
    app = create_app(load_config(write_config(tmp_path, policy, explicit)))
    try:
        assert [p.spec.name for p in app.state.gateway.plugin_set.plugins] == ["explicit", "a_tagger", "b_tagger"]
        with TestClient(app) as client:
            assert tags(client) == ["explicit", "from-a", "from-b"]
    finally:
        app.state.gateway.close()

    # Same pins as any plugin: a module that is not the pinned one is refused.
    shutil.copy(guests["ext_auth"], plugins / "a_tagger.wasm")
    with pytest.raises(PluginStartupError, match="a_tagger.*sha256"):
        create_app(load_config(write_config(tmp_path, policy, explicit)))
    # Default deny: a file the policy does not name gets nothing (loads, or is refused if it needs more).
    (plugins / "a_tagger.wasm").unlink()
    shutil.copy(guests["rate_limiter"], plugins / "c_limiter.wasm")
    with pytest.raises(PluginStartupError, match="c_limiter.*shared_kv"):
        create_app(load_config(write_config(tmp_path, policy, explicit)))
    # A file name that is not a plugin name is a config error naming it.
    (plugins / "c_limiter.wasm").unlink()
    shutil.copy(guests["tagger"], plugins / "bad name.wasm")
    with pytest.raises(ConfigError, match="plugins_dir: bad name.wasm"):
        create_app(load_config(write_config(tmp_path, policy, explicit)))


def test_new_and_changed_files_are_picked_up_live(tmp_path: Path, guests: dict[str, Path]) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(guests["tagger"], plugins / "first.wasm")
    (plugins / "first.config.json").write_text(json.dumps({"tag": "first"}))
    policy = {"first": {"unpinned": True, "capabilities": ["metrics"]}, "second": {"unpinned": True, "capabilities": []}}
    app = create_app(load_config(write_config(tmp_path, policy, watch=True)))
    try:
        with TestClient(app) as client:
            assert tags(client) == ["first"]
            # A new file: loaded live, after the ones already there (ordering rules as at startup).
            (plugins / "second.config.json").write_text(json.dumps({"tag": "second"}))
            shutil.copy(guests["tagger"], plugins / "second.wasm")
            assert eventually(lambda: tags(client) == ["first", "second"], timeout=15), tags(client)
            # A changed file: hot-swapped (here to a module that tags nothing).
            before = app.state.gateway.plugin_set.plugin("first").sha256
            staged = plugins / "first.wasm.tmp"
            shutil.copy(guests["request_counter"], staged)
            os.replace(staged, plugins / "first.wasm")
            assert eventually(lambda: app.state.gateway.plugin_set.plugin("first").sha256 != before, timeout=15)
            assert app.state.gateway.plugin_set.plugin("first").sha256 == sha(guests["request_counter"])
            assert eventually(lambda: tags(client) == ["second"], timeout=5)
            health = client.get("/health").json()["config"]
            assert health["last_error"] is None and health["needs_restart"] == []
    finally:
        app.state.gateway.close()
