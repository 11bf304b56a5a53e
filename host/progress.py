"""Progress of long commands (build-guests, plugin build/test, bench stages).

On a terminal every step prints as it starts, with the elapsed time (and "n of m" where
the command knows m), so a 60 s build is never silent. When stdout is not a terminal (a
pipe, a CI log, a test) the steps stay quiet and the command prints one summary line,
which names the slowest step: what a log reader needs, without a line per step.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


class Progress:
    """Callable as `progress(message)`: the toolchains' progress callback."""

    def __init__(self, stream: TextIO | None = None, *, interactive: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self.interactive = _isatty(self._stream) if interactive is None else interactive
        self._clock = clock
        self._began = clock()
        self._current: tuple[float, str] | None = None  # the step under way: (start, message)
        self.steps = 0
        self.slowest: tuple[float, str] | None = None  # (seconds, message) of the longest finished step

    def elapsed(self) -> float:
        return self._clock() - self._began

    def __call__(self, message: str) -> None:
        self.step(message)

    def step(self, message: str, count: tuple[int, int] | None = None) -> None:
        """A step starts (and the previous one ends); `count` is (n, m) for "n of m"."""
        self._finish_step()
        self.steps += 1
        self._current = (self._clock(), message)
        if self.interactive:
            where = f"{count[0]}/{count[1]}, " if count else ""
            self.line(f"[{where}{self.elapsed():.1f} s] {message}")

    def done(self) -> None:
        """The last step ended (without starting another)."""
        self._finish_step()

    def line(self, text: str) -> None:
        print(text, file=self._stream, flush=True)

    def summary(self, text: str) -> None:
        """Printed whether or not stdout is a terminal; adds the elapsed time and, for a
        command that took several steps, the slowest of them."""
        self._finish_step()
        slow = f"; slowest: {self.slowest[1]} ({self.slowest[0]:.1f} s)" if self.slowest and self.steps > 1 else ""
        self.line(f"{text} in {self.elapsed():.1f} s{slow}")

    def _finish_step(self) -> None:
        if self._current is None:
            return
        began, message = self._current
        self._current = None
        took = self._clock() - began
        if self.slowest is None or took > self.slowest[0]:
            self.slowest = (took, message)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False
