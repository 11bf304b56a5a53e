"""Tests use the tools `./dev setup` installs and never install anything themselves; a
missing tool fails (not skips) with the fix named (issue #12 item 11)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support import redis_server_binary

TESTS = Path(__file__).resolve().parent
# apt-get/apt/dpkg, pip (python -m pip or a pip binary), npm/brew global installs.
_INSTALLS = re.compile(r"""["'](?:apt-get|apt|dpkg|brew)["']|["']-m["']\s*,\s*["']pip["']|["']pip3?["']\s*,\s*["']install["']|\bpip3? install\b|\bapt-get install\b""")


def test_no_test_module_installs_packages() -> None:
    offenders = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(TESTS.rglob("*.py"))
        if path != Path(__file__).resolve()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        # --no-index: nothing can come from a registry (test_wheel.py installs the wheel it
        # built into a throwaway venv; that is the artifact under test, not a tool).
        if _INSTALLS.search(line) and "--no-index" not in line
    ]
    assert not offenders, "tests must not install packages (`./dev setup` does):\n" + "\n".join(offenders)


def test_a_missing_redis_server_fails_naming_the_fix(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"redis-server .* run `\./dev setup`"):
        redis_server_binary(search_path=str(tmp_path))


def test_redis_server_is_found_where_dev_setup_puts_it() -> None:
    assert Path(redis_server_binary()).name.startswith("redis-server")
