"""Progress lines: quiet for short work, throttled for long work, always past pytest's capture."""

from __future__ import annotations

import pytest

from pytest_prune import progress as progress_module
from pytest_prune.progress import Progress


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: now[0])
    return now


def test_short_activities_stay_silent(clock):
    lines: list[str] = []
    report = Progress(10.0, lines.append).callback("cell: finetuning", 3)
    for epoch in (1, 2, 3):
        clock[0] += 2.0
        report(epoch, 0.5)
    assert lines == []


def test_long_activities_report_at_most_every_interval_and_when_done(clock, monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    lines: list[str] = []
    report = Progress(10.0, lines.append).callback("ref: training", 20)
    for epoch in range(1, 21):
        clock[0] += 4.0
        report(epoch, 0.25)
    # 80 s of work: reports at 12, 24, 36, 48, 60, 72 s and the final epoch at 80 s
    assert len(lines) == 7
    assert lines[0].startswith("\n[pytest-prune] ref: training: 3/20 (12 s) epochs, loss 0.2500")
    assert not lines[1].startswith("\n") and lines[-1].startswith("[pytest-prune] ref: training: 20/20 (80 s)")


def test_zero_reports_every_epoch_and_off_reports_nothing(clock, monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    every, off = [], []
    each, never = Progress(0.0, every.append).callback("a", 2), Progress(None, off.append).callback("a", 2)
    for epoch in (1, 2):
        clock[0] += 0.1
        each(epoch, 1.0)
        never(epoch, 1.0)
    assert len(every) == 2 and "[pytest-prune gw1] a: 1/2" in every[0] and off == []
