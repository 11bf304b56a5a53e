"""Tool calls off the event loop, with MCP progress and cancellation.

A Wasm tool call's guest code runs on worker threads (the guest releases the GIL;
WasmTool.call), so the event loop keeps serving and can hear the client meanwhile. While it runs,
a client that sent a `progressToken` gets `notifications/progress` every
`mcp.progress_interval_ms` (elapsed milliseconds out of the tool's `timeout_ms`: the host
cannot know how far a guest got, but it can say the call is alive and how long it may
take). When the client sends `notifications/cancelled`, the SDK cancels the handler; the
call's stop event is then set and the guest is stopped at its next epoch tick (the VM is
replaced, as after a trap)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any, Awaitable, Callable

from .tools import ToolOutcome, WasmTool

Progress = Callable[[float, float | None, str | None], Awaitable[None]]


async def run_tool_call(tool: WasmTool, arguments: dict[str, Any], caller: str, progress: Progress | None, interval_s: float) -> ToolOutcome:
    """`tool.call` (its guest code on worker threads); raises ToolInputError as `call`
    does, and CancelledError (after stopping the guest) when the caller is cancelled."""
    stop = threading.Event()
    began = time.monotonic()
    running = asyncio.ensure_future(tool.call(arguments, caller, stop))
    try:
        while True:
            done, _ = await asyncio.wait({running}, timeout=interval_s if progress is not None else None)
            if done:
                return running.result()
            assert progress is not None
            elapsed_ms = (time.monotonic() - began) * 1000
            await progress(elapsed_ms, float(tool.admission.limits.timeout_ms), f"tool {tool.name} running for {elapsed_ms:.0f} ms")
    except asyncio.CancelledError:
        stop.set()  # the guest stops at its next tick
        running.cancel()  # a call waiting on callouts stops waiting; one in guest code waits for it to leave
        # Shielded: a repeated cancel of this task must not cancel the call again (it
        # ends by itself once its guest has stopped).
        with contextlib.suppress(BaseException):
            await asyncio.shield(running)
        raise
