"""Per-VM sandbox limits.

The defaults run the public SDKs' examples on multi-MB bodies (docs/limits-and-failures.md
"Choosing limits" has the measurements): a Go SDK filter (standard Go, 2.5-5 MB modules)
that reads a whole body into a string holds about 2.2 x the body plus 3 MiB, and spends
about 3.5 M fuel per MiB of body.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import DeadlineExceeded, FuelExhausted, MemoryLimitExceeded, StackOverflow


@dataclass(frozen=True)
class SandboxLimits:
    fuel: int = 250_000_000  # wasm instructions (roughly) per callback
    memory_bytes: int = 64 * 1024 * 1024  # linear memory cap
    timeout_ms: int = 500  # wall clock per callback (epoch deadline)
    table_elements: int = 10_000
    instances: int = 1
    tables: int = 2
    memories: int = 1


# The trap a limit causes names the limit and the operator setting that raises it (the
# policy's `fuel` / `memory_mb` / `timeout_ms` may cap the plugin's own setting).
def out_of_fuel(limits: SandboxLimits, callback: str, detail: str) -> FuelExhausted:
    return FuelExhausted(f"ran out of fuel ({limits.fuel} units, limits.fuel) in {callback}; raise plugins[].limits.fuel (the policy may cap it)", callback=callback, detail=detail)


def past_deadline(limits: SandboxLimits, callback: str, detail: str) -> DeadlineExceeded:
    return DeadlineExceeded(
        f"exceeded its {limits.timeout_ms} ms deadline (limits.timeout_ms) in {callback}; raise plugins[].limits.timeout_ms (the policy may cap it)", callback=callback, detail=detail
    )


def out_of_memory(limits: SandboxLimits, callback: str, detail: str) -> MemoryLimitExceeded:
    mib = limits.memory_bytes // (1024 * 1024)
    return MemoryLimitExceeded(f"hit its {mib} MiB memory limit (limits.memory_mb) in {callback}; raise plugins[].limits.memory_mb (the policy may cap it)", callback=callback, detail=detail)


def out_of_stack(callback: str, detail: str) -> StackOverflow:
    return StackOverflow(f"overflowed its stack in {callback}; raise runtime.max_wasm_stack_kb", callback=callback, detail=detail)


def memory_use_hint(limits: SandboxLimits, used_bytes: int) -> str:
    """For a trap that may be a failed allocation (an abort, Go's `fatal error: out of
    memory`, which a guest reports as unreachable or exit): how full memory was, when more
    than half of the cap is in use. A Go heap grows 4 MiB arenas at a time and a large
    object at once, so a refused growth can leave memory well under the cap."""
    if used_bytes * 2 < limits.memory_bytes:
        return ""
    mib = 1024 * 1024
    return f" ({used_bytes / mib:.1f} of {limits.memory_bytes // mib} MiB in use: if it ran out of memory, raise plugins[].limits.memory_mb)"
