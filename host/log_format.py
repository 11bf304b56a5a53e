"""Structured logs: one JSON object per line with the trace and span ids of the current
span, and secrets (bearer tokens, API keys) scrubbed from every message."""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Callable

from opentelemetry import trace

SECRET_PATTERNS = [
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1[REDACTED]"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), "sk-[REDACTED]"),
    (re.compile(r"\bAKIA[A-Z0-9]{16}\b"), "[REDACTED_AWS_KEY]"),
    (re.compile(r"(?i)((?:api[_-]?key|authorization|secret|password|token)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+"), r"\1[REDACTED]"),
]


# Every secret pattern needs one of these words: one search tells the (usual) line that
# holds none, instead of four substitutions over it.
MAY_HOLD_SECRET = re.compile(r"(?i)bearer|sk-|akia|api[_-]?key|authorization|secret|password|token")


def scrub(text: str) -> str:
    if MAY_HOLD_SECRET.search(text) is None:
        return text
    for pattern, replacement in SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class _SecondCache:
    """The formatted second of a timestamp, computed once per second: strftime on every
    line is a good part of a log record's cost at gateway request rates."""

    def __init__(self, convert: Callable[[float], time.struct_time], fmt: str) -> None:
        self._convert, self._fmt = convert, fmt
        self._second, self._text = -1, ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second, self._text = second, time.strftime(self._fmt, self._convert(second))
        return self._text


class TextFormatter(logging.Formatter):
    """`%(asctime)s %(levelname)s %(name)s: %(message)s` with local times, as
    logging.Formatter writes them."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._seconds = _SecondCache(time.localtime, self.default_time_format)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self.default_msec_format % (self._seconds(record.created), record.msecs)


class ScrubbingFilter(logging.Filter):
    """Rewrites the rendered message so no handler ever sees the secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._seconds = _SecondCache(time.gmtime, "%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": f"{self._seconds(record.created)}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = format(context.trace_id, "032x")
            entry["span_id"] = format(context.span_id, "016x")
        access = getattr(record, "routeiq_access", None)  # an access line: its fields as keys
        if access is not None:
            entry.update(access)
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# litellm's loggers (litellm/_logging.py): each gets a coloured StreamHandler of its own.
LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")


class AnsiStripping(logging.Filter):
    """Removes terminal colour codes some libraries (litellm) put in their messages."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "\x1b" in message:
            record.msg, record.args = ANSI_ESCAPE.sub("", message), None
        return True


def adopt_litellm_loggers() -> None:
    """Call once litellm is imported: its loggers lose their own (coloured) handlers, so
    each line is written once, by the gateway's handler (format, scrubbing), without ANSI
    codes. Their levels stay litellm's (LITELLM_LOG)."""
    for name in LITELLM_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler):
                logger.removeHandler(handler)
        logger.propagate = True
        if not any(isinstance(f, AnsiStripping) for f in logger.filters):
            logger.addFilter(AnsiStripping())


def configure_logging(level: int, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(ScrubbingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
