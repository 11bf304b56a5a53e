from __future__ import annotations

from pathlib import Path

import pytest

from routeiq.runtime.engine import EngineSettings
from routeiq.runtime.wasm_runtime import WasmRuntime
from routeiq.toolchain.assemblyscript import build_assemblyscript_guests
from routeiq.toolchain.c import build_c_guests
from routeiq.toolchain.python import build_python_guests
from routeiq.toolchain.rust import build_rust_guests

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def guests() -> dict[str, Path]:
    return {p.stem: p for p in build_rust_guests(ROOT)}


@pytest.fixture(scope="session")
def all_guests(guests: dict[str, Path]) -> dict[str, Path]:
    """Every guest example, in every language, by module name."""
    built = {p.stem: p for p in build_c_guests(ROOT) + build_assemblyscript_guests(ROOT) + build_python_guests(ROOT)}
    built.update(guests)
    return built


@pytest.fixture(scope="module")
def runtime():  # type: ignore[no-untyped-def]
    rt = WasmRuntime(EngineSettings(), ROOT / ".cache" / "bench-modules")
    yield rt
    rt.close()
