"""Child processes of a load run: start, wait for readiness, and always kill.

Each child runs in its own session (process group) so a server that forks (uvicorn, the
litellm CLI) goes down with it, and so Ctrl-C reaches only us: the cleanup below then
stops the children in order instead of racing them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Mapping

import httpx


class StartupError(RuntimeError):
    """A server did not come up; the message names the scenario and has the log tail."""


def free_port() -> int:
    """A port the kernel just handed out (free now; the child binds it moments later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Child:
    name: str
    proc: subprocess.Popen  # type: ignore[type-arg]
    log: Path
    url: str

    def cpu_seconds(self) -> float:
        """User + system CPU of every live process in the child's process group (a server
        that forks workers is counted whole)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # exited while we looked
            if int(fields[2]) == self.proc.pid:  # fields[2] is pgrp (field 5 of stat)
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / tick


@dataclass
class Processes:
    """Context manager owning every child of one scenario; exiting kills them all."""

    log_dir: Path
    scenario: str
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: list[str], url: str, ready_path: str, env: Mapping[str, str] | None = None,
              timeout_s: float = 60.0, cwd: Path | None = None) -> Child:
        log = self.log_dir / f"{self.scenario}.{name}.log"
        handle = log.open("wb")
        try:
            proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True)
        finally:
            handle.close()  # the child holds its own copy
        child = Child(name, proc, log, url)
        self.children.append(child)
        self._wait_ready(child, url + ready_path, timeout_s)
        return child

    def _wait_ready(self, child: Child, url: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                code = child.proc.poll()
                if code is not None:
                    raise StartupError(f"scenario {self.scenario}: {child.name} exited with code {code} before it was ready "
                                       f"({' '.join(child.proc.args)})\n--- log tail ({child.log}) ---\n{log_tail(child.log)}")
                try:
                    if client.get(url).status_code < 500:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise StartupError(f"scenario {self.scenario}: {child.name} not ready at {url} within {timeout_s:.0f} s\n"
                           f"--- log tail ({child.log}) ---\n{log_tail(child.log)}")

    def check_alive(self) -> None:
        """Raise if a child died (e.g. crashed under load), with its log tail."""
        for child in self.children:
            code = child.proc.poll()
            if code is not None:
                raise RuntimeError(f"scenario {self.scenario}: {child.name} exited with code {code} during the run\n"
                                   f"--- log tail ({child.log}) ---\n{log_tail(child.log)}")

    def stop_all(self) -> None:
        # Reverse order: the gateway goes before its upstream, so it logs no upstream errors.
        for child in reversed(self.children):
            _kill(child.proc)
        self.children.clear()

    def __enter__(self) -> "Processes":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop_all()


def _kill(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """SIGTERM the child's process group, SIGKILL it if it lingers. Only our own children."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # pgid == pid: start_new_session made it a leader
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=8)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


class TerminateAsInterrupt:
    """While active, SIGTERM/SIGHUP raise KeyboardInterrupt, so `with Processes(...)` cleans up."""

    def __init__(self) -> None:
        self._previous: dict[int, object] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def __enter__(self) -> "TerminateAsInterrupt":
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
