"""The toolkit from a wheel: `pip wheel` RouteIQ, install it into a fresh venv, and scaffold,
build and test a plugin in each language outside any source tree.

The wheel is built from a copy of the sources (so this checkout gets no build/ or
egg-info), offline with the setuptools of requirements.lock, and installed with
`--no-index --no-deps`: nothing comes from a package index; its dependencies come from this test run's environment through a
.pth line (as `--system-site-packages` would give them), which never sees the editable
install of this checkout. Caches must land in the user cache dir only: the test points
HOME and XDG_CACHE_HOME at scratch directories and checks the installed package is not
written to."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest

from support import free_port

ROOT = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(".venv", ".cache", ".git", "node_modules", "build", "__pycache__", "*.wasm", "*.egg-info", ".routeiq-state", "tests", "bench")


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    source = base / "src"
    shutil.copytree(ROOT, source, ignore=SKIP)
    # Offline: the build backend is the setuptools requirements.lock pins, nothing is fetched.
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-index", "--no-deps", "--no-build-isolation", ".", "-w", str(base / "dist")],
        cwd=source, capture_output=True, text=True, timeout=600,
    )
    assert built.returncode == 0, f"pip wheel failed (setuptools comes from requirements.lock: run `./dev setup`):\n{built.stderr[-3000:]}"
    wheel = next((base / "dist").glob("routeiq-*.whl"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], capture_output=True, text=True, check=True).stdout.strip())
    (site / "routeiq-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(wheel)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    where = subprocess.run([str(python), "-c", "import routeiq; print(routeiq.__file__)"], capture_output=True, text=True, cwd=base, check=True).stdout.strip()
    assert Path(where).is_relative_to(site), f"routeiq imported from {where}, not from the wheel"
    return venv


def _files(directory: Path) -> dict[str, float]:
    return {str(p.relative_to(directory)): p.stat().st_mtime for p in directory.rglob("*") if "__pycache__" not in p.parts}


# Filters in every language; MCP tools in C (the tool header) and Python (the routeiq:tool
# world and its SDK), what the wheel must carry beyond the filters' files.
@pytest.mark.parametrize("kind, lang", [("filter", "rust"), ("filter", "c"), ("filter", "assemblyscript"), ("filter", "python"), ("tool", "c"), ("tool", "python")])
def test_new_build_test_from_a_wheel_outside_the_repo(wheel_venv: Path, tmp_path: Path, kind: str, lang: str) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTEIQ_") and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PATH=f"{wheel_venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    package = Path(subprocess.run([str(wheel_venv / "bin" / "python"), "-c", "import routeiq, os; print(os.path.dirname(routeiq.__file__))"],
                                  capture_output=True, text=True, check=True, cwd=work).stdout.strip())
    before = _files(package)

    def routeiq(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(wheel_venv / "bin" / "routeiq"), *args], capture_output=True, text=True, cwd=work, env=env, timeout=900)

    created = routeiq("plugin", "new", "--kind", kind, "--lang", lang, "my_plugin")
    assert created.returncode == 0, created.stdout + created.stderr
    built = routeiq("plugin", "build", "my_plugin")
    assert built.returncode == 0, built.stdout + built.stderr
    tested = routeiq("plugin", "test", "my_plugin")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert ("3 passed, 0 failed" if kind == "tool" else "2 passed, 0 failed") in tested.stdout
    assert "my_plugin.wasm up to date" in tested.stdout, "plugin test rebuilt what plugin build had just built"
    assert (work / "my_plugin" / "build" / "my_plugin.wasm").exists()
    assert any((home / ".cache" / "routeiq" / "guests").iterdir()), "the build cache is not in the user cache dir"
    assert _files(package) == before, "a build wrote into the installed package"
    # componentize-py's CPython writes its own .pyc files into what it mounts: it must get a copy.
    foreign = [p for p in package.rglob("*.pyc") if sys.implementation.cache_tag not in p.name]
    assert not foreign, f"the guest toolchain wrote bytecode into the installed package: {foreign[:3]}"
    assert not list((work / "my_plugin").rglob("__pycache__")), "the build wrote bytecode into the plugin's sources"


def test_the_console_is_served_from_the_wheel(wheel_venv: Path, tmp_path: Path) -> None:
    """/ui's templates and static assets are package data: a gateway run from the wheel
    serves the login page, the script and the stylesheet (no CDN, no source tree)."""
    port = free_port()
    config = tmp_path / "gw.yaml"
    sha = hashlib.sha256(b"wheel-admin-key").hexdigest()
    config.write_text(f"server: {{host: 127.0.0.1, port: {port}}}\nadmin:\n  state_dir: {tmp_path / 'state'}\n  keys: [{{name: ops, sha256: {sha}, role: admin}}]\n")
    proc = subprocess.Popen([str(wheel_venv / "bin" / "routeiq"), "serve", "--config", str(config)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else "routeiq serve exited"
            try:
                login = httpx.get(base + "/ui/login", timeout=5, trust_env=False)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the gateway from the wheel did not answer"
                time.sleep(0.2)
        assert login.status_code == 200 and 'name="login_token"' in login.text
        script = httpx.get(base + "/ui/static/console.js", timeout=5, trust_env=False)
        assert script.status_code == 200 and "x-csrf-token" in script.text
        assert httpx.get(base + "/ui/static/console.css", timeout=5, trust_env=False).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
