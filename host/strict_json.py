"""JSON from outside the host (clients, operators, plugins), parsed strictly.

The standard library accepts what RFC 8259 does not and turns some inputs into
exceptions other than ValueError: NaN/Infinity literals, floats that overflow to inf,
lone surrogates that later fail to encode, and nesting deep enough to raise
RecursionError. Here every such input is one `JsonInputError` naming where it is, so
callers answer 400 instead of 500 and never persist a value they cannot write back.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 64  # deeper than any real request or config; far below the recursion limit


class JsonInputError(ValueError):
    """Input that is not strict JSON; `param` says where, for the error's `param` field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def _refuse_constant(name: str) -> Any:
    raise JsonInputError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise JsonInputError(f"number {text[:32]} is out of range")
    return value


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def loads(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse `data` as strict JSON (UTF-8 when bytes) or raise JsonInputError."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonInputError(f"body is not valid UTF-8 (byte {exc.start})") from None
    else:
        text = data
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        value = _DECODER.decode(text)
    except JsonInputError:
        raise
    except json.JSONDecodeError as exc:
        raise JsonInputError(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise JsonInputError(f"JSON nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # an integer over the interpreter's digit limit, and the like
        raise JsonInputError(f"invalid JSON: {exc}") from None
    # The walk below is what most of a chat request's parse costs; it can find nothing
    # when the text has no \u escape (the only way to a lone surrogate: decoded UTF-8
    # holds none) and too few brackets to nest past max_depth.
    if "\\u" in text or text.count("[") + text.count("{") > max_depth:
        _check_values(value, "", 0, max_depth)
    return value


def _check_values(value: Any, where: str, depth: int, max_depth: int) -> None:
    """Nesting within `max_depth` (callers walk these values recursively), and no lone
    surrogates (\\ud800 decodes fine but cannot be encoded back to UTF-8)."""
    if depth > max_depth:
        raise JsonInputError(f"JSON nested deeper than {max_depth} levels", where or None)
    if isinstance(value, str):
        if not _encodable(value):
            raise JsonInputError("string holds a lone UTF-16 surrogate", where or None)
    elif isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if not _encodable(key):
                raise JsonInputError("object key holds a lone UTF-16 surrogate", where or None)
            _check_values(item, path, depth + 1, max_depth)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_values(item, f"{where}[{index}]", depth + 1, max_depth)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
