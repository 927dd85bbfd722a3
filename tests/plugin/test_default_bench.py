"""The main job: `pytest --prune-bench` on the embedded default passes on a healthy install."""

from __future__ import annotations

import json

import pytest

from pytest_prune.thresholds import load_expectations


@pytest.mark.slow
def test_default_benchmark_passes_its_shipped_expectations(pytester, xdist):
    result = pytester.runpytest("--prune-bench", "--prune-json=results.json", *xdist)
    result.assert_outcomes(passed=30)
    rows = json.loads((pytester.path / "results.json").read_text())["results"]
    assert {r["threshold"] for r in rows} == {"expectation"}  # every cell judged by its shipped expectation
    expected = load_expectations()["cells"]
    for row in rows:
        key = f"{row['dataset']}/{row['arch']}/{row['pruner']}/{row['compression']:g}x"
        assert row["top1"] >= expected[key]["min_top1"]
