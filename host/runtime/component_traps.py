"""Typed errors for component traps. The component C API reports a trap as a
`wasmtime_error_t` whose text ends in `Caused by: wasm trap: ...`, with no trap code to
read (core modules get one: vm.py), so the cause is matched on wasmtime's wording. The
wording is pinned by the wasmtime version in requirements.lock and checked by the sandbox
tests (tests/test_python_guests.py: fuel, deadline, stack, memory)."""

from __future__ import annotations

from .errors import GuestTrap, MemoryOutOfBounds, Unreachable
from .limits import SandboxLimits, out_of_fuel, out_of_stack, past_deadline


def classify_trap(message: str, callback: str, limits: SandboxLimits) -> GuestTrap:
    """The GuestTrap subclass a component trap message describes."""
    cause = message.rsplit("Caused by:", 1)[-1]
    if "all fuel consumed" in cause:
        return out_of_fuel(limits, callback, message)
    if "wasm trap: interrupt" in cause:
        return past_deadline(limits, callback, message)
    if "call stack exhausted" in cause:
        return out_of_stack(callback, message)
    if "out of bounds memory access" in cause:
        return MemoryOutOfBounds(f"accessed memory out of bounds in {callback}", callback=callback, detail=message)
    if "unreachable" in cause:
        return Unreachable(f"trapped (unreachable) in {callback}", callback=callback, detail=message)
    first = cause.strip().splitlines()[0] if cause.strip() else "trap"
    return GuestTrap(f"trapped in {callback}: {first}", callback=callback, detail=message)
