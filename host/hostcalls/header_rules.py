"""What a plugin may make a header map hold: valid names and values, pseudo-headers that
keep the request where the operator sent it, and a bounded size.

The pseudo-headers are the request's routing: the upstream URL is built from the
configured upstream plus `:path`, so `:path` must stay origin-form (`/` first, no
authority); `:authority` becomes the Host header only; `:scheme` is informational.
Every refusal is a HeaderRefused the host call turns into an audited BAD_ARGUMENT.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import chain

Pairs = list[tuple[bytes, bytes]]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Field values: visible ASCII, obs-text, space and tab; never CR, LF, NUL or other controls.
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_ORIGIN_FORM = re.compile(rb"/(?!/)[\x21-\x7e]*")
# Envoy checks only that :authority is made of authority characters (a canary filter
# appends "-canary" after the port); userinfo (`@`) is refused here on top.
_AUTHORITY = re.compile(rb"[A-Za-z0-9._~!$&'()*+,;=%:\[\]-]+")
_STATUS = re.compile(rb"[1-5][0-9]{2}")

REQUEST_PSEUDO = frozenset({b":method", b":path", b":authority", b":scheme"})
REQUIRED_REQUEST_PSEUDO = frozenset({b":method", b":path", b":scheme"})
RESPONSE_PSEUDO = frozenset({b":status"})

REQUEST, RESPONSE, TRAILERS = "request", "response", "trailers"


class HeaderRefused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason  # the audit record's reason
        self.detail = detail


@dataclass(frozen=True)
class HeaderLimits:
    """server.max_request_headers_count / _kb: the same caps as for client requests."""

    max_count: int = 100
    max_bytes: int = 60 * 1024


@dataclass(frozen=True)
class HeaderRules:
    kind: str  # REQUEST, RESPONSE or TRAILERS
    limits: HeaderLimits

    def check_pair(self, name: bytes, value: bytes) -> None:
        if name.startswith(b":"):
            self._check_pseudo(name, value)
        elif not _TOKEN.fullmatch(name):
            raise HeaderRefused("header_name", f"header name {name[:64]!r} is not an HTTP token")
        if _BAD_VALUE.search(value):
            raise HeaderRefused("header_value", f"value of {name[:64]!r} holds a control character (CR, LF, NUL, ...)")

    def check_remove(self, name: bytes) -> None:
        required = REQUIRED_REQUEST_PSEUDO if self.kind == REQUEST else RESPONSE_PSEUDO if self.kind == RESPONSE else frozenset()
        if name in required:
            raise HeaderRefused("pseudo_header", f"{name.decode('latin-1')} cannot be removed")

    def check_size(self, before: Pairs, after: Pairs) -> None:
        """Refuse growth past the caps; a map that arrived over them may still shrink."""
        limits = self.limits
        # Counting pseudo-headers too over-estimates both sizes; within the caps even
        # so, the exact walk (a Python loop, ~2 us for 20 headers) is not needed.
        if len(after) <= limits.max_count and sum(map(len, chain.from_iterable(after))) <= limits.max_bytes:
            return
        count, size = _size(after)
        if count > self.limits.max_count and count > _size(before)[0]:
            raise HeaderRefused("header_limit", f"the map would hold {count} headers (limit {self.limits.max_count})")
        if size > self.limits.max_bytes and size > _size(before)[1]:
            raise HeaderRefused("header_limit", f"the map would hold {size} bytes of headers (limit {self.limits.max_bytes})")

    def check_add(self, before: Pairs, size_after: int, name: bytes, value: bytes) -> None:
        """check_size for appending (name, value) to `before`, whose bytes after the
        append (names + values, pseudo-headers too) the caller knows: `size_after`."""
        limits = self.limits
        if len(before) < limits.max_count and size_after <= limits.max_bytes:
            return
        self.check_size(before, before + [(name, value)])

    def _check_pseudo(self, name: bytes, value: bytes) -> None:
        allowed = REQUEST_PSEUDO if self.kind == REQUEST else RESPONSE_PSEUDO if self.kind == RESPONSE else frozenset()
        shown = name[:32].decode("latin-1")
        if name not in allowed:
            raise HeaderRefused("pseudo_header", f"{shown} is not a pseudo-header of this map")
        if name == b":path":
            if not _ORIGIN_FORM.fullmatch(value) or b"#" in value or b"\\" in value:
                raise HeaderRefused("pseudo_header", f":path must be origin-form ('/' then visible ASCII, no '//' start, '#' or '\\\\'), got {value[:64]!r}")
        elif name == b":method":
            if not _TOKEN.fullmatch(value) or len(value) > 32:
                raise HeaderRefused("pseudo_header", f":method must be an HTTP token, got {value[:64]!r}")
        elif name == b":scheme":
            if value not in (b"http", b"https"):
                raise HeaderRefused("pseudo_header", f":scheme must be http or https, got {value[:64]!r}")
        elif name == b":authority":
            if not _AUTHORITY.fullmatch(value):
                raise HeaderRefused("pseudo_header", f":authority must be authority characters (no userinfo, path, query), got {value[:64]!r}")
        elif name == b":status":
            if not _STATUS.fullmatch(value):
                raise HeaderRefused("pseudo_header", f":status must be a status code 100-599, got {value[:64]!r}")


def valid_origin_form(path: bytes) -> bool:
    """The request target the reverse proxy may append to its upstream's base path."""
    return bool(_ORIGIN_FORM.fullmatch(path)) and b"#" not in path and b"\\" not in path


def _size(pairs: Pairs) -> tuple[int, int]:
    count = size = 0
    for k, v in pairs:
        if not k.startswith(b":"):
            count += 1
            size += len(k) + len(v)
    return count, size
