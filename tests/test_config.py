"""Bad config names the file and the field; good config resolves paths like an operator expects."""

from __future__ import annotations

from pathlib import Path

import pytest

from routeiq.config import ConfigError, load_config, parse_config
from routeiq.app import PluginStartupError, create_app


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def test_issue_example_keys_are_accepted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
server: {host: 127.0.0.1, port: 8080}
upstream: {url: http://127.0.0.1:9000}
plugins:
  - name: tagger
    wasm: guest-examples/rust/tagger.wasm
    sha256: "0000000000000000000000000000000000000000000000000000000000000000"
    root_id: ""
    config: {any: json}
    fail_open: false
    limits: {fuel: 20000000, memory_mb: 16, timeout_ms: 100}
""",
    )
    config = load_config(path)
    (spec,) = config.plugin_specs()
    assert spec.wasm_path == tmp_path / "guest-examples/rust/tagger.wasm"  # relative to the config file
    assert spec.plugin_config == b'{"any":"json"}'
    assert spec.limits.memory_bytes == 16 * 1024 * 1024
    assert config.model.upstream.url == "http://127.0.0.1:9000"


def test_string_config_is_passed_verbatim(tmp_path: Path) -> None:
    config = parse_config({"plugins": [{"name": "p", "wasm": "x.wasm", "config": "raw text"}]}, "c.yaml", tmp_path / "c.yaml")
    assert config.plugin_specs()[0].plugin_config == b"raw text"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("plugins:\n  - name: a\n    wasm: a.wasm\n    limits: {fuel: lots}\n", "plugins[0].limits.fuel"),
        ("plugins:\n  - wasm: a.wasm\n", "plugins[0].name: Field required"),
        ("plugins:\n  - name: a\n    wasm: a.wasm\n    fail_closed: true\n", "plugins[0].fail_closed: unknown setting"),
        ("server: {port: 99999}\n", "server.port"),
        ("upstream: {url: ftp://x}\n", "upstream.url"),
        ("plugins:\n  - {name: a, wasm: a.wasm}\n  - {name: a, wasm: b.wasm}\n", "used twice"),
        ("plugins:\n  - name: a\n    wasm: a.wasm\n    sha256: nothex\n", "plugins[0].sha256"),
    ],
)
def test_errors_name_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert expected in message


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: [8080\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "line" in str(info.value)


def test_missing_module_names_plugin_and_path(tmp_path: Path, module_cache_dir: Path) -> None:
    config = parse_config({"plugins": [{"name": "ghost", "wasm": "nowhere.wasm"}], "runtime": {"cache_dir": str(module_cache_dir)}}, "c.yaml", tmp_path / "c.yaml")
    with pytest.raises(PluginStartupError) as info:
        create_app(config)
    assert "ghost" in str(info.value) and "nowhere.wasm" in str(info.value)


def test_sha256_pin_mismatch_refuses_to_load(tmp_path: Path, guests: dict[str, Path], module_cache_dir: Path) -> None:
    config = parse_config(
        {"plugins": [{"name": "tagger", "wasm": str(guests["tagger"]), "sha256": "ab" * 32}], "runtime": {"cache_dir": str(module_cache_dir)}},
        "c.yaml",
        tmp_path / "c.yaml",
    )
    with pytest.raises(PluginStartupError, match="sha256 mismatch"):
        create_app(config)


def test_matching_sha256_pin_loads(tmp_path: Path, guests: dict[str, Path], module_cache_dir: Path) -> None:
    import hashlib

    digest = hashlib.sha256(guests["tagger"].read_bytes()).hexdigest()
    config = parse_config(
        {"plugins": [{"name": "tagger", "wasm": str(guests["tagger"]), "sha256": digest.upper()}], "runtime": {"cache_dir": str(module_cache_dir)}},
        "c.yaml",
        tmp_path / "c.yaml",
    )
    app = create_app(config)
    try:
        assert app.state.gateway.plugins[0].sha256 == digest
    finally:
        app.state.gateway.close()


def test_demo_config_is_valid() -> None:
    root = Path(__file__).resolve().parents[1]
    config = load_config(root / "demo.yaml")
    assert [p.name for p in config.model.plugins] == ["tagger", "ext_auth", "rate_limiter", "pii_guard", "token_budget", "redactor", "chunk_counter", "request_counter"]
    assert config.load_policy() is not None


def test_a_bad_upstream_names_the_one_field_that_is_wrong(tmp_path: Path) -> None:
    for text, expected in [("upstream: {url: http://x, timeout_s: -1}\n", "upstream.timeout_s: Input should be greater than 0"), ("upstream: nope\n", "upstream: Input should be 'embedded'")]:
        with pytest.raises(ConfigError) as info:
            load_config(write(tmp_path, text))
        assert str(info.value) == f"{tmp_path / 'gateway.yaml'}: {expected}"


@pytest.mark.parametrize(
    "upstream, expected",
    [
        ("{url: ftp://x}", "routes[0].upstream.url: "),
        ("{url: http://x, timeout_s: -1}", "routes[0].upstream.timeout_s: Input should be greater than 0"),
        ("{cluster: 7}", "routes[0].upstream.cluster: Input should be a valid string"),
        ("{url: http://x, cluster: c}", "routes[0].upstream.cluster: unknown setting"),
        ("nowhere", "routes[0].upstream: Input should be 'default', 'llm' or 'embedded'"),
        ("{host: x}", "routes[0].upstream: expected `default`, `llm`, `embedded`, `{url: ...}` or `{cluster: NAME}`"),
    ],
)
def test_a_bad_route_upstream_names_the_one_field_that_is_wrong(tmp_path: Path, upstream: str, expected: str) -> None:
    # The upstream's form (a name, {url}, {cluster}) is read first: only that form's error
    # is reported, not one per form it could have been.
    path = write(tmp_path, f"routes:\n  - name: r\n    upstream: {upstream}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.count("\n") == 0, message
    assert message.startswith(f"{path}: {expected}"), message
