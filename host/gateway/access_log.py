"""One access-log line per request (logger `routeiq.access`, `server.access_log`):
method, path, status, latency and request id, and for model-routed LLM requests the
model, deployment and tokens. Text lines are formatted lazily by the handler; with
`server.log_format: json` the fields are keys of the line's object (JsonFormatter reads
them from the record), so nothing is serialized twice."""

from __future__ import annotations

import logging
from typing import Any

from routeiq.llm.telemetry import RequestRecord

log = logging.getLogger("routeiq.access")

ACCESS_FIELDS = "routeiq_access"  # the LogRecord attribute JsonFormatter merges


def access_line(record: RequestRecord, status: int, latency_s: float, request_id: str) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    latency_ms = round(latency_s * 1000.0, 3)
    outcome = record.exchange.outcome if record.exchange is not None else None
    fields: dict[str, Any] = {"method": record.method, "path": record.path, "status": status, "latency_ms": latency_ms, "request_id": request_id}
    if not record.llm:
        _emit("%s %s %d %.3fms request_id=%s", (record.method, record.path, status, latency_ms, request_id), fields)
        return
    deployment = outcome.deployment if outcome is not None else ""
    prompt = outcome.prompt_tokens if outcome is not None else 0
    completion = outcome.completion_tokens if outcome is not None else 0
    fields.update(model=record.model, deployment=deployment, prompt_tokens=prompt, completion_tokens=completion)
    _emit(
        "%s %s %d %.3fms request_id=%s model=%s deployment=%s prompt_tokens=%d completion_tokens=%d",
        (record.method, record.path, status, latency_ms, request_id, record.model, deployment or "-", prompt, completion),
        fields,
    )


def _emit(msg: str, args: tuple[Any, ...], fields: dict[str, Any]) -> None:
    # log.info would walk the stack for the caller's file and line (findCaller) on every
    # request; an access line's origin is always this module.
    log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, msg, args, None, "access_line", {ACCESS_FIELDS: fields}))
