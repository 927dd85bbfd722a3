"""Progress lines for long work (reference training, finetuning) that reach the terminal through capture.

pytest captures everything a test prints, and pytest-xdist workers have no terminal reporter of their own,
so a line is written to the process's real stderr with capture suspended: in a plain run that is the
terminal, and xdist workers inherit the controller's stderr. Reports are throttled per activity: the
first after ``every`` seconds of work and then at most one per ``every`` seconds (0 reports every epoch),
so a fast cell prints nothing and an hour of training prints a line every few seconds, not per step.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any


class Progress:
    """Throttled progress reporting; ``every=None`` turns it off."""

    def __init__(self, every: float | None, write: Callable[[str], None] | None = None) -> None:
        self.every = every
        self._write = write or _stderr_writer(None)
        self._started: dict[str, float] = {}
        self._last: dict[str, float] = {}

    def start(self, activity: str) -> None:
        """Mark the start of ``activity`` (its first report waits ``every`` seconds from here)."""
        now = time.monotonic()
        self._started[activity] = self._last[activity] = now

    def update(self, activity: str, done: int, total: int, detail: str = "") -> None:
        """Report ``done``/``total`` of ``activity`` if ``every`` seconds passed since its last report."""
        if self.every is None:
            return
        now = time.monotonic()
        started = self._started.setdefault(activity, now)
        last = self._last.setdefault(activity, started)
        if now - started < self.every or (done < total and now - last < self.every):
            return  # a short activity stays silent; a long one reports every `every` seconds and when done
        first = last == started
        self._last[activity] = now
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        prefix = f"[pytest-prune{' ' + worker if worker else ''}]"
        line = f"{prefix} {activity}: {done}/{total} ({now - started:.0f} s){' ' + detail if detail else ''}"
        self._write(("\n" if first else "") + line)  # the first line of an activity leaves pytest's dots

    def callback(self, activity: str, total: int) -> Callable[[int, float], None]:
        """An epoch callback ``(epoch, loss)`` for ``train`` that reports under ``activity``."""
        self.start(activity)
        return lambda epoch, loss: self.update(activity, epoch, total, f"epochs, loss {loss:.4f}")


def _stderr_writer(config: Any) -> Callable[[str], None]:
    capture = None if config is None else config.pluginmanager.getplugin("capturemanager")

    def write(line: str) -> None:
        if capture is None:
            print(line, file=sys.__stderr__, flush=True)
            return
        with capture.global_and_fixture_disabled():
            print(line, file=sys.__stderr__, flush=True)

    return write


def for_config(config: Any, every: float | None) -> Progress:
    """A Progress that writes past pytest's capture of ``config``'s session."""
    return Progress(every, _stderr_writer(config))
