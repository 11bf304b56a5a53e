"""Gateway events for webhooks: which outbox this worker delivers from, and emitting."""

from __future__ import annotations

import logging
from typing import Any, Mapping

from routeiq.config import LoadedConfig
from routeiq.services.breakers import BreakerBoard
from routeiq.services.http_client import HttpClient
from routeiq.services.webhooks.delivery import WebhookDispatcher, WebhookTarget

log = logging.getLogger("routeiq.webhooks")
MAX_SLOTS = 64


class GatewayEvents:
    """Emits events to the configured webhook targets (a no-op with none configured).

    Each worker process delivers from its own outbox file: the first of `<outbox>`,
    `<outbox stem>.1<suffix>`, ... whose lock is free, so a restarted worker picks up the
    file a stopped one left behind."""

    def __init__(self, config: LoadedConfig, http: HttpClient) -> None:
        webhooks = config.model.webhooks
        self._targets = [WebhookTarget(**t.model_dump()) for t in webhooks.targets]
        self._base = config.resolve(webhooks.outbox)
        self._http = http
        self.dispatcher: WebhookDispatcher | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._targets)

    async def start(self, breakers: BreakerBoard) -> None:
        """Start delivering; each target's breaker (`webhook:<name>`) lives on `breakers`."""
        if not self._targets:
            return
        for slot in range(MAX_SLOTS):
            path = self._base if slot == 0 else self._base.with_name(f"{self._base.stem}.{slot}{self._base.suffix}")
            dispatcher = WebhookDispatcher(self._targets, path, breakers, http=self._http)
            try:
                await dispatcher.start()
            except RuntimeError:
                dispatcher.close()
                continue
            self.dispatcher = dispatcher
            log.info("webhooks: delivering from %s", path)
            return
        raise RuntimeError(f"no free webhook outbox slot beside {self._base}")

    def wants(self, event_type: str) -> bool:
        """Would emit() deliver this event? Callers on the request path ask first, so a
        gateway without webhooks builds no payloads."""
        return self.dispatcher is not None and any(t.wants(event_type) for t in self._targets)

    def emit(self, event_type: str, payload: Mapping[str, Any]) -> None:
        if not self.wants(event_type):
            return
        self.dispatcher.emit(event_type, dict(payload))

    async def stop(self) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.stop()
            self.dispatcher.close()
            self.dispatcher = None

    def stats(self) -> dict[str, Any] | None:
        return self.dispatcher.stats() if self.dispatcher is not None else None
