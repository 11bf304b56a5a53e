from __future__ import annotations

from pathlib import Path

import pytest

from routeiq.toolchain.rust import build_rust_guests

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def guests() -> dict[str, Path]:
    return {p.stem: p for p in build_rust_guests(ROOT)}
