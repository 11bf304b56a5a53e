"""Admin API keys: stored as sha256 hashes, compared in constant time, with roles."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

ROLES = ("viewer", "operator", "admin")


@dataclass(frozen=True)
class AdminKey:
    name: str
    sha256: str
    role: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh random key and its hash (the hash goes in the config, the key to its owner)."""
    key = "riq_" + secrets.token_urlsafe(32)
    return key, hash_key(key)


def authenticate(keys: list[AdminKey], presented: str | None) -> AdminKey | None:
    if not presented:
        return None
    digest = hash_key(presented).encode()
    found = None
    for key in keys:  # compare against every key, so timing says nothing about which matched
        if hmac.compare_digest(digest, key.sha256.lower().encode()):
            found = key
    return found


def allows(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)
