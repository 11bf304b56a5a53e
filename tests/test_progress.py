"""Progress of long commands: every step (n of m, elapsed) on a terminal, one summary line
when stdout is a pipe. The commands run for real, once on a pseudo-terminal (the `pty`
module) and once on a pipe."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from routeiq.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
ROUTEIQ = [sys.executable, "-m", "routeiq"]


def on_terminal(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 900) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal; (exit code, what it printed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=cwd, env=env)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def on_pipe(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_steps_show_on_a_terminal_with_n_of_m_and_elapsed() -> None:
    out, clock = io.StringIO(), FakeClock()
    progress = Progress(out, interactive=True, clock=clock)
    progress.step("rust guests", count=(1, 2))
    clock.now += 2.0
    progress("building tagger.wasm")
    clock.now += 30.0
    progress.step("python guests", count=(2, 2))
    clock.now += 1.0
    progress.summary("build-guests: done")
    assert out.getvalue().splitlines() == [
        "[1/2, 0.0 s] rust guests",
        "[2.0 s] building tagger.wasm",
        "[2/2, 32.0 s] python guests",
        "build-guests: done in 33.0 s; slowest: building tagger.wasm (30.0 s)",
    ]
    assert progress.steps == 3


def test_off_a_terminal_only_the_summary_prints() -> None:
    out, clock = io.StringIO(), FakeClock()
    progress = Progress(out, interactive=False, clock=clock)
    progress("building a.wasm")
    clock.now += 5.0
    progress("building b.wasm")
    clock.now += 1.0
    progress.summary("2 built")
    assert out.getvalue() == "2 built in 6.0 s; slowest: building a.wasm (5.0 s)\n"


def test_a_pipe_is_not_a_terminal_and_a_pty_is() -> None:
    assert Progress(io.StringIO()).interactive is False
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as stream:
            assert Progress(stream).interactive is True
    finally:
        os.close(master)
        os.close(slave)


def test_plugin_build_and_test_on_a_terminal_and_on_a_pipe(tmp_path: Path) -> None:
    # A build cache of its own, so the first build really builds.
    env = {**os.environ, "ROUTEIQ_CACHE_DIR": str(tmp_path / "cache")}
    assert on_pipe([*ROUTEIQ, "plugin", "new", "--lang", "c", "--dir", str(tmp_path), "progress_demo"], ROOT, env).returncode == 0
    project = str(tmp_path / "progress_demo")

    code, text = on_terminal([*ROUTEIQ, "plugin", "build", project], ROOT, env)
    assert code == 0, text
    assert re.search(r"^\[\d+\.\d s\] building progress_demo\.wasm", text, re.M), text  # the step, as it started
    assert re.search(r"build/progress_demo\.wasm \(built, [\d.]+ MB\) in [\d.]+ s", text), text

    # Right after the build, the test run reuses it: no build step, and it says so.
    piped = on_pipe([*ROUTEIQ, "plugin", "test", project], ROOT, env)
    assert piped.returncode == 0, piped.stdout + piped.stderr
    lines = piped.stdout.splitlines()
    assert lines[:2] == ["PASS tags the request (1/2)", "PASS blocks x-block (2/2)"]  # results print on a pipe too
    assert len(lines) == 3 and re.fullmatch(r"2 passed, 0 failed \(progress_demo\.wasm up to date, [\d.]+ MB\) in [\d.]+ s; slowest: .+", lines[2]), lines
    assert not any(line.startswith("[") for line in lines)  # no progress steps on a pipe

    code, text = on_terminal([*ROUTEIQ, "plugin", "test", project], ROOT, env)
    assert code == 0, text
    assert re.search(r"^\[\d+\.\d s\] loading progress_demo\.wasm .* and 2 cases$", text, re.M), text
    assert re.search(r"^\[\d+\.\d s\] running 2 cases$", text, re.M), text
    assert "building" not in text and "2 passed, 0 failed (progress_demo.wasm up to date" in text

    # A failing build stays loud on a pipe (stderr), naming the error.
    source = tmp_path / "progress_demo" / "progress_demo.c"
    source.write_text(source.read_text() + "\nint oops( {\n")
    broken = on_pipe([*ROUTEIQ, "plugin", "build", project], ROOT, env)
    assert broken.returncode == 2 and "progress_demo.c" in broken.stderr and broken.stdout == ""


def test_build_guests_on_a_terminal_and_on_a_pipe() -> None:
    code, text = on_terminal([*ROUTEIQ, "build-guests", "--lang", "c", "--lang", "rust"], ROOT)
    assert code == 0, text
    assert re.search(r"^\[1/2, \d+\.\d s\] c guests$", text, re.M), text
    assert re.search(r"^\[2/2, \d+\.\d s\] rust guests$", text, re.M), text
    assert "  guest-examples/c/build/c_tagger.wasm" in text  # what was built, listed on a terminal
    assert re.search(r"^build-guests: c \d+, rust \d+ guests; \d+ build step\(s\) ran", text, re.M), text

    piped = on_pipe([*ROUTEIQ, "build-guests", "--lang", "c", "--lang", "rust"], ROOT)
    assert piped.returncode == 0, piped.stderr
    # Nothing changed since the run above: one line, saying so.
    assert re.fullmatch(r"build-guests: c \d+, rust \d+ guests; 0 build step\(s\) ran \(all up to date\) in [\d.]+ s; slowest: .+\n", piped.stdout), piped.stdout
