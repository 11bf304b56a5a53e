"""Context host calls: proxy_set_effective_context, proxy_done."""

from __future__ import annotations

from routeiq.abi.proxy_wasm import Status

from .group import CallGroup


class ContextCalls(CallGroup):
    def proxy_set_effective_context(self, context_id: int) -> int:
        context = self.env.contexts.get(context_id)
        if context is None:
            return Status.BAD_ARGUMENT
        self.env.active = context
        return Status.OK

    def proxy_done(self) -> int:
        active = self.env.active
        if active is None or not active.awaiting_done:
            return Status.NOT_FOUND
        active.done_called = True
        if active.wakeup is not None:
            active.wakeup()
        return Status.OK
