"""The process's wasmtime Engine and the epoch ticker that drives wall-clock deadlines."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

import wasmtime


@dataclass(frozen=True)
class EngineSettings:
    """Engine-wide settings. They change generated code, so they key the module cache."""

    epoch_tick_ms: int = 5
    max_wasm_stack_bytes: int = 512 * 1024
    cranelift_opt_level: str = "speed"

    def fingerprint(self) -> str:
        text = f"wasmtime={wasmtime_version()};stack={self.max_wasm_stack_bytes};opt={self.cranelift_opt_level};fuel=1;epoch=1;move=0"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def wasmtime_version() -> str:
    from importlib.metadata import version

    return version("wasmtime")


def create_engine(settings: EngineSettings) -> wasmtime.Engine:
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    config.max_wasm_stack = settings.max_wasm_stack_bytes
    config.cranelift_opt_level = settings.cranelift_opt_level
    # A linear memory that never moves lets the host keep one base pointer per VM.
    config.memory_may_move = False
    return wasmtime.Engine(config)


class EpochTicker:
    """Advances the engine's epoch every `tick_ms` so running guests hit their deadlines.

    wasmtime releases the GIL while guest code runs, so this thread keeps ticking even
    when a guest spins forever inside a callback on the event loop thread.
    """

    def __init__(self, engine: wasmtime.Engine, tick_ms: int) -> None:
        self._engine = engine
        self._interval = tick_ms / 1000.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="routeiq-epoch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._engine.increment_epoch()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
