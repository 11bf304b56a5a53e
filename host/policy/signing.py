"""ed25519 signatures over a module's sha256 digest (verify; sign and keygen for operators)."""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class KeyFormatError(ValueError):
    pass


def _decode(text: str) -> bytes:
    text = text.strip()
    try:
        if len(text) in (64, 128) and all(c in "0123456789abcdefABCDEF" for c in text):
            return bytes.fromhex(text)
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyFormatError(f"not hex or base64: {exc}") from None


def public_key(text: str) -> Ed25519PublicKey:
    raw = _decode(text)
    if len(raw) != 32:
        raise KeyFormatError(f"an ed25519 public key is 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify(public_key_text: str, signature_text: str, sha256_hex: str) -> bool:
    """True if `signature` is the key's ed25519 signature of the 32-byte sha256 digest."""
    try:
        key = public_key(public_key_text)
        signature = _decode(signature_text)
        key.verify(signature, bytes.fromhex(sha256_hex))
        return True
    except (InvalidSignature, KeyFormatError, ValueError):
        return False


def generate_keypair() -> tuple[str, str]:
    """(private key, public key), both base64 of the raw 32 bytes."""
    private = Ed25519PrivateKey.generate()
    raw_private = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    raw_public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw_private).decode(), base64.b64encode(raw_public).decode()


def sign(private_key_text: str, sha256_hex: str) -> str:
    raw = _decode(private_key_text)
    if len(raw) != 32:
        raise KeyFormatError(f"an ed25519 private key is 32 bytes, got {len(raw)}")
    return base64.b64encode(Ed25519PrivateKey.from_private_bytes(raw).sign(bytes.fromhex(sha256_hex))).decode()
