"""Speed reporting: structural MACs, compaction and latency in records and tables, pytest-benchmark where active."""

from __future__ import annotations

import json

from plugin.conftest import FAST, records

SPEED = (
    *FAST,
    "--prune-pruner=l1_filter,random",
    "--prune-compression=4",
    "--prune-max-drop=100",
    "--prune-latency=1,8",
    "--prune-latency-repeats=3",
    "--prune-json=out.json",
)


def test_records_and_tables_label_every_kind_of_speedup(pytester, xdist):
    result = pytester.runpytest("--prune-bench", *SPEED, *xdist)
    result.assert_outcomes(passed=2)
    rows = {r["pruner"]: r for r in records(pytester.path / "out.json")}
    # random pruning leaves no unit whose every outgoing weight is pruned (0.75**100 per unit at 4x), so it stays
    # masked; magnitude pruning at high compression does leave such units, and their cells compact
    l1, unstructured = rows["l1_filter"], rows["random"]
    assert l1["compacted"] and l1["compacted_params"] == l1["nonzero_params"]
    assert l1["structural_speedup"] > 3 and l1["structural_macs"] < l1["dense_macs"]
    assert not unstructured["compacted"] and unstructured["structural_speedup"] == 1.0
    assert "no whole filter is zero" in unstructured["compaction"]
    for row in rows.values():
        assert set(row["latency_ms"]) == set(row["dense_latency_ms"]) == {"1", "8"}
        # the median of per-round ratios (unit-tested in test_latency), not a ratio of the medians
        assert all(0 < row["measured_speedup"][b] < float("inf") for b in ("1", "8"))
    assert l1["latency_ms"] == l1["compacted_latency_ms"]
    assert unstructured["latency_ms"] == unstructured["masked_latency_ms"]
    header = "*pruner*target*MACs M*theoretical*structural*structural*compacted*latency ms*measured*"
    lines = ["*l1_filter*4x*12,607*→*x*→*x", "*random*4x*1.00x*masked*→*x*→*x"]
    result.stdout.fnmatch_lines([header, *lines])


def test_pytest_benchmark_times_the_pruned_model_when_active(pytester, monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # pytest-benchmark turns off inside xdist workers
    result = pytester.runpytest("--prune-bench", *SPEED, "--benchmark-json=bench.json")
    result.assert_outcomes(passed=2)
    benchmarks = json.loads((pytester.path / "bench.json").read_text())["benchmarks"]
    assert {b["extra_info"]["compacted"] for b in benchmarks} == {True, False}
    assert all(b["group"] == "digits-lenet300_100 batch 1" and b["stats"]["rounds"] == 3 for b in benchmarks)


def test_latency_can_be_switched_off(pytester):
    result = pytester.runpytest("--prune-bench", *SPEED, "--prune-latency=off")
    result.assert_outcomes(passed=2)
    rows = records(pytester.path / "out.json")
    assert all(r["latency_ms"] == {} and r["compacted"] is not None for r in rows)
