"""Per-VM sandbox limits."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SandboxLimits:
    fuel: int = 20_000_000  # wasm instructions (roughly) per callback
    memory_bytes: int = 16 * 1024 * 1024  # linear memory cap
    timeout_ms: int = 100  # wall clock per callback (epoch deadline)
    table_elements: int = 10_000
    instances: int = 1
    tables: int = 2
    memories: int = 1
