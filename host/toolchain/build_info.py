"""Record how a guest was built in its manifest: `"build": {"lang", "toolchain", "sdk"}`.

The record goes into the module's `routeiq.manifest` section (so the sha256 pin covers it
and `plugin inspect` shows it), and holds nothing machine-specific: no paths, no times.
Anyone with the same toolchain versions and source rebuilds the same bytes."""

from __future__ import annotations

import json
from typing import Any

from routeiq import strict_json
from routeiq.abi.capabilities import MANIFEST_SECTION
from routeiq.policy.manifest import ManifestError, custom_sections


def _leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_leb(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def custom_section(name: str, payload: bytes) -> bytes:
    raw = name.encode()
    body = _leb128(len(raw)) + raw + payload
    return b"\x00" + _leb128(len(body)) + body


def _without_section(wasm: bytes, name: str) -> bytes:
    """`wasm` with every top-level custom section called `name` removed."""
    out, pos = bytearray(wasm[:8]), 8
    while pos < len(wasm):
        start = pos
        section_id = wasm[pos]
        size, body = _read_leb(wasm, pos + 1)
        pos = body + size
        if section_id == 0:
            name_len, name_pos = _read_leb(wasm, body)
            if wasm[name_pos : name_pos + name_len] == name.encode():
                continue
        out += wasm[start:pos]
    return bytes(out)


def stamp_build(wasm: bytes, build: dict[str, Any]) -> bytes:
    """The module with `build` merged into its manifest section; unchanged without one
    (a sidecar manifest is the author's file, not rewritten)."""
    try:
        section = custom_sections(wasm).get(MANIFEST_SECTION)
    except ManifestError:
        return wasm
    if section is None:
        return wasm
    try:
        manifest = strict_json.loads(section)
    except strict_json.JsonInputError:
        return wasm  # admission reports the broken manifest; do not hide it
    if not isinstance(manifest, dict):
        return wasm
    manifest["build"] = build
    payload = json.dumps(manifest, separators=(",", ": ")).encode()
    return _without_section(wasm, MANIFEST_SECTION) + custom_section(MANIFEST_SECTION, payload)
