"""Benchmarks of pytest-prune itself; targets are ratios against a baseline measured in the same run."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def medians():
    """Median seconds per benchmark, shared by the tests of one module so a later test can form ratios."""
    return {}


def both(medians: dict, first: tuple, second: tuple) -> tuple[float, float]:
    """The medians of two benchmarks of the same run; skips when either did not run."""
    if first not in medians or second not in medians:
        pytest.skip("needs both benchmarks of this module in the same run (not with --benchmark-disable)")
    return medians[first], medians[second]
