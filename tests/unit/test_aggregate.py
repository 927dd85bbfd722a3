"""Repeats fold into one summary row per cell: mean, sample std, outcome counts, errors kept."""

from __future__ import annotations

import statistics

import pytest

from pytest_prune.report.aggregate import summaries
from pytest_prune.report.tables import summary_tables


def record(seed, top1, outcome="passed", pruner="random", compression=8.0, error=None):
    rid = f"d-a-{pruner}-{compression:g}x-seed{seed}"
    return {
        "id": rid,
        "dataset": "d",
        "arch": "a",
        "pruner": pruner,
        "compression": compression,
        "seed": seed,
        "outcome": outcome,
        "error": error and f"{rid}: {error}",
        "top1": top1,
        "dense_top1": 0.95,
        "latency_ms": {"1": 2.0 + seed},
    }


def test_repeats_summarise_to_mean_and_sample_std():
    rows = [record(2, 0.80, "failed", error="too low"), record(0, 0.90), record(1, 0.85)]
    (summary,) = summaries(rows)
    assert summary["n"] == 3 and summary["seeds"] == [0, 1, 2]
    assert summary["top1"] == pytest.approx(0.85)
    assert summary["top1_std"] == pytest.approx(statistics.stdev([0.8, 0.85, 0.9]))
    assert summary["outcome"] == "failed" and summary["passed"] == 2
    assert summary["latency_ms"] == {"1": pytest.approx(3.0)}
    assert summary["latency_ms_std"] == {"1": pytest.approx(1.0)}
    assert summary["errors"] == ["d-a-random-8x-seed2: failed: too low"]


def test_a_single_run_has_no_std_and_cells_stay_apart():
    out = summaries([record(0, 0.9), record(0, 0.7, compression=16.0), record(0, 0.5, pruner="global")])
    assert [(s["pruner"], s["compression"], s["n"]) for s in out] == [
        ("global", 8.0, 1),
        ("random", 8.0, 1),
        ("random", 16.0, 1),
    ]
    assert all(s["top1_std"] is None for s in out)


def test_the_table_shows_mean_plus_minus_std_and_pass_counts():
    (_, text) = summary_tables([record(0, 0.90), record(1, 0.80, "failed", error="too low")])[0]
    assert "85.00 ± 7.07" in text and "1/2 passed" in text
    assert "repeats: mean ± sample std over seeds 0, 1" in text
    assert "d-a-random-8x-seed1: failed: too low" in text


def test_wide_pruner_names_keep_the_columns_aligned():
    """CJK names take two terminal cells a character: the table pads by display width (tabulate with wcwidth)."""
    from wcwidth import wcswidth

    (_, text) = summary_tables([record(0, 0.90, pruner="剪枝法"), record(0, 0.80, pruner="magnitude")])[0]
    lines = text.splitlines()
    wide, plain = (next(line for line in lines if name in line) for name in ("剪枝法", "magnitude"))
    assert wcswidth(wide[: wide.index("90.00")]) == wcswidth(plain[: plain.index("80.00")]), lines


def test_per_key_tables_get_a_std_where_two_repeats_have_the_key():
    rows = [record(0, 0.9), record(1, 0.8)]
    rows[0]["eps_agreement"] = {"0.1": 0.98, "0.5": 0.90}
    rows[1]["eps_agreement"] = {"0.1": 0.96}
    (summary,) = summaries(rows)
    assert summary["eps_agreement"] == {"0.1": pytest.approx(0.97), "0.5": pytest.approx(0.90)}
    assert summary["eps_agreement_std"] == {"0.1": pytest.approx(statistics.stdev([0.98, 0.96]))}
    (single,) = summaries([record(0, 0.9)])
    assert single["latency_ms_std"] is None and single["eps_agreement_std"] is None
