"""Run wrk for one phase and parse its text report (latency distribution, RPS, errors)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

UNITS_MS: Mapping[str, float] = MappingProxyType({"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3})
_NUM_UNIT = r"([0-9.]+)\s*(us|ms|s|m|h)\b"


@dataclass
class WrkResult:
    connections: int
    duration_s: float
    requests: int = 0
    rps: float = 0.0
    p50_ms: float = float("nan")
    p75_ms: float = float("nan")
    p90_ms: float = float("nan")
    p99_ms: float = float("nan")
    non_2xx: int = 0          # wrk counts status > 399 here ("Non-2xx or 3xx responses")
    socket_errors: dict[str, int] = field(default_factory=dict)
    raw: str = ""

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())

    @property
    def flagged(self) -> bool:
        """Any error, or nothing measured: such a run must never be reported as clean."""
        return self.errors > 0 or self.requests == 0

    def error_text(self) -> str:
        if not self.flagged:
            return "0"
        parts = [f"non-2xx {self.non_2xx}"] if self.non_2xx else []
        parts += [f"{k} {v}" for k, v in self.socket_errors.items() if v]
        if self.requests == 0:
            parts.append("no requests")
        return "**" + ", ".join(parts) + "**"


def to_ms(value: str, unit: str) -> float:
    return float(value) * UNITS_MS[unit]


def parse(text: str, connections: int, duration_s: float) -> WrkResult:
    result = WrkResult(connections, duration_s, raw=text)
    for pct, value, unit in re.findall(r"^\s*(50|75|90|99)%\s+" + _NUM_UNIT, text, re.M):
        setattr(result, f"p{pct}_ms", to_ms(value, unit))
    m = re.search(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h)", text, re.M)
    if m:
        result.requests = int(m.group(1))
        result.duration_s = to_ms(m.group(2), m.group(3)) / 1e3
    m = re.search(r"^Requests/sec:\s*([0-9.]+)", text, re.M)
    if m:
        result.rps = float(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    if m:
        result.non_2xx = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        result.socket_errors = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    return result


def post_script(directory: Path, name: str, body: bytes) -> Path:
    """A wrk Lua script POSTing `body` (read from a file: 256 KiB does not belong in Lua source)."""
    body_path = directory / f"{name}.json"
    body_path.write_bytes(body)
    script = directory / f"{name}.lua"
    # json.dumps quoting is valid Lua string syntax for these plain paths.
    script.write_text(
        f"local f = assert(io.open({json.dumps(str(body_path))}, 'rb'))\n"
        "wrk.method = 'POST'\n"
        "wrk.body = f:read('*a')\n"
        "f:close()\n"
        "wrk.headers['Content-Type'] = 'application/json'\n"
    )
    return script


def wrk_binary() -> str:
    path = shutil.which("wrk") or "/usr/bin/wrk"
    if not Path(path).exists():
        raise RuntimeError("wrk not found (apt-get install wrk)")
    return path


def wrk_version() -> str:
    out = subprocess.run([wrk_binary(), "-v"], capture_output=True, text=True).stdout
    return out.splitlines()[0].split(" [")[0] if out else "unknown"


def command(url: str, script: Path, connections: int, duration_s: int, threads: int = 1) -> list[str]:
    # One wrk thread everywhere: the machine has 2 cores shared by wrk, gateway and upstream,
    # and one thread drives far more than a single-worker Python server can answer.
    return [wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{int(duration_s)}s", "--timeout", "10s",
            "--latency", "-s", str(script), url]


def run(url: str, script: Path, connections: int, duration_s: int) -> WrkResult:
    cmd = command(url, script, connections, duration_s)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
    return parse(done.stdout, connections, duration_s)
