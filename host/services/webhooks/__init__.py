"""Webhooks: `signing` (the wire contract, all a receiver needs), `outbox` (the durable
SQLite queue and its writer thread), `delivery` (the dispatcher: lanes, retries, breakers).

The names below are importable from here as before; the delivery side is imported only
when one of its names is first used, so `routeiq.services.webhooks.signing` stays free of
the HTTP client and the outbox.
"""

from __future__ import annotations

from typing import Any

from .signing import EVENT_TYPES, HEADER_ATTEMPT, HEADER_EVENT, HEADER_IDEMPOTENCY_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, SIGNATURE_VERSION, EventType, sign, verify_signature

__all__ = [
    "EVENT_TYPES",
    "HEADER_ATTEMPT",
    "HEADER_EVENT",
    "HEADER_IDEMPOTENCY_KEY",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "SIGNATURE_VERSION",
    "USER_AGENT",
    "EventType",
    "WebhookDispatcher",
    "WebhookTarget",
    "sign",
    "verify_signature",
]

_DELIVERY = ("USER_AGENT", "WebhookDispatcher", "WebhookTarget")


def __getattr__(name: str) -> Any:
    if name in _DELIVERY:
        from . import delivery

        return getattr(delivery, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
