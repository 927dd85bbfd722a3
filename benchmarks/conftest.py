"""Benchmarks of pytest-prune itself; targets are ratios against a baseline measured in the same run."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from pytest_prune.metrics.latency import timed_rounds


@pytest.fixture(scope="module")
def medians():
    """Median seconds per benchmark, shared by the tests of one module so a later test can form ratios."""
    return {}


def record_median(benchmark, medians: dict, key: object) -> None:
    """Keep the benchmark's median for a later ratio; nothing with --benchmark-disable (it ran once, untimed)."""
    if benchmark.stats is not None:
        medians[key] = benchmark.stats.stats.median


def both(medians: dict, first: tuple, second: tuple) -> tuple[float, float]:
    """The medians of two benchmarks of the same run; skips when either did not run."""
    if first not in medians or second not in medians:
        pytest.skip("needs both benchmarks of this module in the same run (not with --benchmark-disable)")
    return medians[first], medians[second]


@dataclass(frozen=True)
class Paired:
    """Per-round ratios candidate / baseline of rounds that time the baseline, then the candidate."""

    ratios: list[float]
    baseline: float  # median seconds
    candidate: float

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    def describe(self) -> str:
        return (
            f"median of {len(self.ratios)} paired rounds; medians {self.candidate:.4g} s vs {self.baseline:.4g} s, "
            f"per-round ratios {min(self.ratios):.2f}..{max(self.ratios):.2f}"
        )


def paired(
    baseline: Callable[[], object],
    candidate: Callable[[], object],
    rounds: tuple[int, int] = (3, 9),
    seconds: float = 30.0,
) -> Paired:
    """Time ``baseline`` and ``candidate`` one after the other, round after round (at least ``rounds[0]``, at
    most ``rounds[1]``, as many as fit in ``seconds``), after one warm-up call of each: the harness's own
    ``timed_rounds``, which also times the dense and pruned models of every cell.

    A machine that speeds up or slows down during the run (a shared VM does) moves both sides of each
    round's ratio alike, which two separately timed benchmarks cannot promise.
    """
    baseline(), candidate()
    times: dict[str, list[float]] = {"baseline": [], "candidate": []}
    began = time.perf_counter()
    while (done := len(times["baseline"])) < rounds[0] or (done < rounds[1] and time.perf_counter() - began < seconds):
        for name, ms in timed_rounds({"baseline": baseline, "candidate": candidate}, 1).items():
            times[name] += [t / 1000 for t in ms]
    ratios = [c / b for b, c in zip(times["baseline"], times["candidate"], strict=True)]
    return Paired(ratios, statistics.median(times["baseline"]), statistics.median(times["candidate"]))


def skip_if_disabled(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("benchmark_disable", False):
        pytest.skip("a timing benchmark (not with --benchmark-disable)")
