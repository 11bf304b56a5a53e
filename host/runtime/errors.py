"""Typed failures of the sandbox. Every trap a guest can cause maps to one of these."""

from __future__ import annotations


class PluginError(Exception):
    """Base class for anything a plugin did wrong, at load time or at run time."""

    kind = "plugin_error"


class PluginLoadError(PluginError):
    """The module cannot be loaded: bad file, hash mismatch, unknown import, failed start."""

    kind = "load_error"


class GuestTrap(PluginError):
    """The guest trapped while running a callback; its VM must be discarded."""

    kind = "trap"

    def __init__(self, message: str, *, callback: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.callback = callback
        self.detail = detail


class FuelExhausted(GuestTrap):
    kind = "fuel_exhausted"


class DeadlineExceeded(GuestTrap):
    kind = "deadline_exceeded"


class MemoryLimitExceeded(GuestTrap):
    kind = "memory_limit"


class StackOverflow(GuestTrap):
    kind = "stack_overflow"


class MemoryOutOfBounds(GuestTrap):
    kind = "memory_out_of_bounds"


class Unreachable(GuestTrap):
    kind = "unreachable"


class Interrupted(GuestTrap):
    """Another thread stopped the running call (an MCP client cancelled it)."""

    kind = "cancelled"


class GuestExit(GuestTrap):
    """The guest called WASI proc_exit."""

    kind = "proc_exit"


class HostCallFailure(GuestTrap):
    """A host call implementation failed in a way the guest cannot be told by status."""

    kind = "host_failure"
