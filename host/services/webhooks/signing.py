"""The wire contract of a webhook delivery: event types, header names and the HMAC
signature. A receiver needs only this module (it imports the standard library alone, no
HTTP client, outbox or gateway):

    from routeiq.services.webhooks.signing import verify_signature
    ok = verify_signature(secret, request.headers, raw_body)
"""

from __future__ import annotations

import hashlib
import hmac
import time
from enum import StrEnum
from typing import Mapping

SIGNATURE_VERSION = "v1"
HEADER_EVENT = "x-routeiq-event"
HEADER_IDEMPOTENCY_KEY = "x-routeiq-idempotency-key"
HEADER_TIMESTAMP = "x-routeiq-timestamp"
HEADER_SIGNATURE = "x-routeiq-signature"
HEADER_ATTEMPT = "x-routeiq-attempt"


class EventType(StrEnum):
    REQUEST_COMPLETE = "request_complete"
    ERROR = "error"
    MODEL_SWITCH = "model_switch"
    PLUGIN_QUARANTINED = "plugin_quarantined"
    BREAKER_STATE_CHANGE = "breaker_state_change"


EVENT_TYPES: frozenset[str] = frozenset(t.value for t in EventType)


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The value of x-routeiq-signature: `v1=` + hex HMAC-SHA256(secret, "<timestamp>.<body>")."""
    mac = hmac.new(_key(secret), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify_signature(secret: str | bytes, headers: Mapping[str, str], body: bytes, tolerance_s: float = 300, now: float | None = None) -> bool:
    """Check a delivery on the receiving side: the signature over the raw body must match
    (constant-time compare) and the timestamp must be within `tolerance_s` of `now`, so a
    captured request cannot be replayed later. Header names are matched case-insensitively;
    the signature header may carry several comma-separated `v1=` values (secret rotation)."""
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    stamp, signatures = lowered.get(HEADER_TIMESTAMP, ""), lowered.get(HEADER_SIGNATURE, "")
    try:
        timestamp = int(stamp.strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).encode()
    ok = False
    for candidate in signatures.split(","):
        ok |= hmac.compare_digest(candidate.strip().encode(), expected)  # no early exit
    return ok
