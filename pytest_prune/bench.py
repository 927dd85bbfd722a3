"""The built-in benchmark suite, collected by ``--prune-bench``: one test per matrix cell."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_prune.results import PruneResult


def test_prune(
    prune_result: PruneResult,
    _prune_record: dict[str, Any],
    _prune_expectations: dict[str, Any],
    pytestconfig: pytest.Config,
) -> None:
    """Prune, finetune and judge one cell: its top-1 must clear the thresholds that apply to it."""
    from pytest_prune.fixtures import _settings
    from pytest_prune.thresholds import judge

    verdict = judge(_prune_record, _settings(pytestconfig), _prune_expectations)
    _prune_record.update(threshold=verdict.threshold, required_top1=verdict.required_top1)
    if verdict.failures:
        pytest.fail(f"{prune_result.id}: " + "; ".join(verdict.failures), pytrace=False)
