"""The main job: `pytest --prune-bench` on the embedded default passes on a healthy install."""

from __future__ import annotations

import json

import pytest

from pytest_prune.matrix import record_key
from pytest_prune.thresholds import load_expectations


@pytest.mark.slow
def test_default_benchmark_passes_its_shipped_expectations(pytester):
    # cold under xdist (two workers share the 30 cells), then serially from the cell cache it filled
    result = pytester.runpytest("--prune-bench", "--prune-json=results.json", "-n", "2")
    result.assert_outcomes(passed=30)
    rows = json.loads((pytester.path / "results.json").read_text())["results"]
    assert {r["threshold"] for r in rows} == {"expectation"}  # every cell judged by its shipped expectation
    expected = load_expectations()["cells"]
    for row in rows:
        assert row["top1"] >= expected[record_key(row)]["min_top1"]
    # the same matrix serially, served from the cache the xdist workers filled: same records and verdicts
    again = pytester.runpytest("--prune-bench", "--prune-json=results.json")
    again.assert_outcomes(passed=30)
    again.stdout.fnmatch_lines(["*30 cell(s): 30 passed; 30 from the cache*"])
    assert "Benchmark fixture was not used" not in again.stdout.str()  # cached cells time nothing, silently
    warm = json.loads((pytester.path / "results.json").read_text())["results"]
    assert [(r["id"], r["top1"], r["threshold"]) for r in warm] == [(r["id"], r["top1"], r["threshold"]) for r in rows]
