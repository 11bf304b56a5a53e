"""HTTP callouts from MCP tools, the proxy-wasm way (abi/mcp_tool.md, "Callouts").

A tool dispatches `proxy_http_call` inside `routeiq_tool_call` (the filters' host call:
same grant, clusters, SSRF checks and audit) and answers TOOL_PAUSED; the host waits for
the responses and delivers each through `proxy_on_http_call_response` into the call's
context, where the tool may dispatch more and ends the call with `routeiq_tool_finish`.
ToolCallouts is the VMScheduler of a tool VM: it runs the dispatched callouts on the
event loop and hands their results to the waiting call, whose deadline (the tool's
`call_timeout_ms`) also caps every callout's own timeout."""

from __future__ import annotations

import asyncio
import logging
import time

from routeiq.hostcalls.state import ContextState, HostServices
from routeiq.services.callout import CalloutResult, CalloutTarget

log = logging.getLogger("routeiq.mcp")


CAP_SLACK_MS = 250


class CallDeadline(Exception):
    """The call's deadline passed while it waited for its callouts."""


class ToolCallouts:
    """The callouts of one tool VM: at most one call at a time uses it (WasmTool holds its
    lock), so the results queue belongs to the running call."""

    def __init__(self, tool: str, services: HostServices, max_response_bytes: int) -> None:
        self.tool = tool
        self.services = services
        self.max_response_bytes = max_response_bytes
        self._deadline = 0.0  # time.monotonic() when the running call must be over
        self._results: asyncio.Queue[tuple[ContextState, int, CalloutResult]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None  # the running call's

    def begin(self, deadline: float) -> None:
        """A call starts (on the event loop; its guest code then runs on a worker thread)."""
        self._deadline = deadline
        self._results = asyncio.Queue()
        self._loop = asyncio.get_running_loop()

    def left_ms(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    # ---------------------------------------------------------- VMScheduler
    def start_callout(self, origin: ContextState, call_id: int, target: CalloutTarget, body: bytes, timeout_ms: int) -> bool:
        """Called from the guest's thread: the callout itself starts on the call's loop."""
        loop, results = self._loop, self._results
        if loop is None or results is None:
            return False  # outside a call (a start function): nothing would receive it
        # Never far past the call's deadline; a little past, so that when the cap is what
        # ends it, the call answers call_timeout (its own deadline) rather than the guest
        # reading a timed-out callout.
        timeout_ms = max(1, min(timeout_ms, self.left_ms() + CAP_SLACK_MS))
        origin.pending_callouts.add(call_id)

        def start() -> None:
            if self._results is not results:
                return  # the call ended before the loop got here
            task = loop.create_task(self._run(results, origin, call_id, target, body, timeout_ms))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        loop.call_soon_threadsafe(start)
        return True

    def set_tick_period(self, period_ms: int) -> None:
        return None  # timers are refused for tools at load

    def queue_ready(self, queue_id: int) -> None:
        return None  # queues are refused for tools at load

    # ----------------------------------------------------------- the call
    async def _run(
        self, results: "asyncio.Queue[tuple[ContextState, int, CalloutResult]]", origin: ContextState, call_id: int, target: CalloutTarget, body: bytes, timeout_ms: int
    ) -> None:
        result = await self.services.callouts.run(target, body, timeout_ms, self.max_response_bytes)
        if not result.ok:
            log.warning("tool %s: callout %d to %s failed: %s", self.tool, call_id, target.url, result.message)
        results.put_nowait((origin, call_id, result))

    async def next_result(self) -> tuple[ContextState, int, CalloutResult]:
        """The next finished callout of the running call (CallDeadline once its time is up)."""
        assert self._results is not None
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise CallDeadline()
        try:
            return await asyncio.wait_for(self._results.get(), left)
        except TimeoutError:
            raise CallDeadline() from None

    def end(self) -> None:
        """The call is over: callouts it left running are cancelled (nobody waits for them)."""
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
        self._results = None
        self._loop = None
