"""Benchmarks of pytest-prune itself; targets are ratios against a baseline measured in the same run."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def medians():
    """Median seconds per benchmark, shared by the tests of one module so a later test can form ratios."""
    return {}
