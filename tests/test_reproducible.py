"""Reproducible builds: the same source gives the same bytes in any directory.

Each language is scaffolded in two unrelated directories (different depths and names) and
built there with a cache of its own (so both are real compiles); the modules must be
byte-identical and carry the toolchain that made them in their manifest. Python
components are not covered: componentize-py 0.25's pre-initialisation runs CPython with
host randomness (hash seed, allocator), so two builds of one source differ even in the
same directory (docs/guide-python.md, "Reproducibility")."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from routeiq.toolchain.rust import build_rust_guests, find_rustc

ROOT = Path(__file__).resolve().parents[1]


def routeiq(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROUTEIQ_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-m", "routeiq", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def build_in(parent: Path, lang: str) -> Path:
    parent.mkdir(parents=True)
    created = routeiq("plugin", "new", "--lang", lang, "--dir", str(parent), "same_plugin", cwd=parent, cache=parent / "cache")
    assert created.returncode == 0, created.stderr
    project = parent / "same_plugin"
    if lang == "c":  # a path the compiler would otherwise record as it is
        source = project / "same_plugin.c"
        source.write_text(source.read_text() + '\n__attribute__((used)) static const char built_from[] = __FILE__;\n')
    built = routeiq("plugin", "build", str(project), cwd=parent, cache=parent / "cache")
    assert built.returncode == 0, built.stdout + built.stderr
    assert "same_plugin.wasm (built," in built.stdout  # compiled here, not taken from a shared cache ("up to date")
    return project / "build" / "same_plugin.wasm"


@pytest.mark.parametrize("lang", ["rust", "c", "assemblyscript"])
def test_same_source_same_bytes_in_any_directory(tmp_path: Path, lang: str) -> None:
    first = build_in(tmp_path / "alice" / "src", lang)
    second = build_in(tmp_path / "b" / "deeper" / "checkout-2", lang)
    assert hashlib.sha256(first.read_bytes()).hexdigest() == hashlib.sha256(second.read_bytes()).hexdigest()
    assert str(tmp_path).encode() not in first.read_bytes()
    info = json.loads(routeiq("plugin", "inspect", "--json", str(first), cwd=tmp_path, cache=tmp_path / "cache").stdout)
    build = info["manifest"]["build"]
    assert build["lang"] == lang and build["toolchain"]  # e.g. "rustc 1.63.0"
    assert set(build) >= {"lang", "toolchain"} and not any("/" in str(v) for v in build.values())


def test_example_guests_rebuild_to_the_same_bytes_elsewhere(tmp_path: Path, guests: dict[str, Path]) -> None:
    """The repo's Rust examples (which include sources outside their crate through
    #[path]) built from a copy elsewhere match the repo's build, and the README's policy
    pin is the sha256 of ext_auth as built by the toolchain the README names."""
    shutil.copytree(ROOT / "abi" / "sdk" / "rust", tmp_path / "abi" / "sdk" / "rust")
    for crate in ("ext_auth", "tagger", "shared"):
        shutil.copytree(ROOT / "guest-examples" / "rust" / crate, tmp_path / "guest-examples" / "rust" / crate)
    (tmp_path / ".cache").mkdir()
    rebuilt = {p.stem: p for p in build_rust_guests(tmp_path)}
    for name in ("ext_auth", "tagger"):
        assert rebuilt[name].read_bytes() == guests[name].read_bytes(), name
    readme = (ROOT / "README.md").read_text()
    pin = re.search(r"ext_auth:\n\s+sha256: \"([0-9a-f]{64})\"", readme)
    toolchain = re.search(r"the pin above is ext_auth built with (rustc [0-9.]+)", readme)
    assert pin and toolchain, "README.md lost its ext_auth pin or the toolchain it names"
    rustc = find_rustc()
    assert rustc is not None
    if rustc.version.startswith(toolchain.group(1)):
        assert pin.group(1) == hashlib.sha256(guests["ext_auth"].read_bytes()).hexdigest()
