"""What one access-log line costs the request that writes it: `access_line` as the
gateway runs it (TextFormatter / JsonFormatter, the scrubbing filter, a handler writing to
/dev/null) beside the plain stdlib path it replaced (`log.info`, `logging.Formatter`, the
four scrub substitutions on every line). Rounds alternate between the two; CPU time.

    .venv/bin/python bench/access_line.py [--lines 20000] [--rounds 8]
"""

from __future__ import annotations

import argparse
import logging
import os
import time

from routeiq import log_format
from routeiq.gateway import access_log
from routeiq.llm.telemetry import RequestRecord


class _StdlibScrub(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = message
        for pattern, replacement in log_format.SECRET_PATTERNS:
            cleaned = pattern.sub(replacement, cleaned)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def _handler(ours: bool, fmt: str, sink: object) -> logging.Handler:
    handler = logging.StreamHandler(sink)  # type: ignore[arg-type]
    handler.addFilter(log_format.ScrubbingFilter() if ours else _StdlibScrub())
    if fmt == "json":
        handler.setFormatter(log_format.JsonFormatter())
    else:
        handler.setFormatter(log_format.TextFormatter() if ours else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    record = RequestRecord("POST", "/v1/chat/completions")
    log = logging.getLogger("routeiq.access")
    root = logging.getLogger()
    root.setLevel(logging.INFO)

    def stdlib_line() -> None:
        log.info("%s %s %d %.3fms request_id=%s", record.method, record.path, 200, 1.23, "3f9a0c1b2d", extra={access_log.ACCESS_FIELDS: {"method": "POST"}})

    with open(os.devnull, "w") as sink:
        for fmt in ("text", "json"):
            results: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(args.rounds):
                for ours in (False, True):
                    root.handlers[:] = [_handler(ours, fmt, sink)]
                    start = time.process_time()
                    for _ in range(args.lines):
                        if ours:
                            access_log.access_line(record, 200, 0.00123, "3f9a0c1b2d")
                        else:
                            stdlib_line()
                    results[ours].append((time.process_time() - start) / args.lines * 1e6)
            for ours in (False, True):
                values = sorted(results[ours])
                name = "access_line" if ours else "stdlib log.info path"
                print(f"{fmt:4}  {name:22} min {values[0]:6.2f} µs  median {values[len(values) // 2]:6.2f} µs per line")
    root.handlers.clear()


if __name__ == "__main__":
    main()
