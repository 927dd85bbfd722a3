"""The regression gate and results files: what regresses, what is noise, what is a bad file."""

from __future__ import annotations

import json

import pytest

from pytest_prune.gate import compare, verdict
from pytest_prune.results import SCHEMA
from pytest_prune.results_file import ResultsError, incomparable, load_results, matrix_differences


def rec(pruner="magnitude", compression=8.0, seed=0, top1=0.95, **extra):
    out = {
        "id": f"d-a-{pruner}-{compression:g}x-seed{seed}",
        "dataset": "d",
        "arch": "a",
        "pruner": pruner,
        "compression": compression,
        "seed": seed,
        "outcome": "passed",
        "error": None,
        "top1": top1,
        "dense_top1": 0.97,
        "compression_achieved": compression * 1.001,
        "macs": 1000.0 / compression,
        "structural_macs": 1000,
    }
    out.update(extra)
    return out


def regressions(baseline, current, tolerance=1.0):
    return [str(f) for f in compare(baseline, current, tolerance) if f.regression]


def test_identical_results_pass_and_new_cells_are_only_reported():
    base = [rec()]
    findings = compare(base, [rec(), rec(pruner="new")], 1.0)
    assert [(f.cell, f.regression) for f in findings] == [("d/a/new/8x", False)]
    assert verdict(findings, "base.json")[0] == "no regression against base.json; 1 new cell(s)"


def test_a_drop_beyond_the_tolerance_regresses_and_one_within_does_not():
    assert regressions([rec(top1=0.95)], [rec(top1=0.945)]) == []
    found = regressions([rec(top1=0.95)], [rec(top1=0.935)])
    assert found == ["d/a/magnitude/8x: top-1 95.00% → 93.50% (−1.50 points, beyond tolerance 1 points)"]
    assert regressions([rec(top1=0.95)], [rec(top1=0.935)], tolerance=2.0) == []
    assert regressions([rec(top1=0.90)], [rec(top1=0.99)]) == []  # improvements never fail


def test_with_repeats_the_allowed_drop_widens_by_the_noise():
    noisy_base = [rec(seed=0, top1=0.95), rec(seed=1, top1=0.93)]  # mean 94%, std 1.41 points
    noisy_now = [rec(seed=0, top1=0.93), rec(seed=1, top1=0.91)]  # mean 92%, std 1.41 points
    # drop 2 points; allowed 1 + 2·sqrt(1.41²/2 + 1.41²/2) = 1 + 2.83 points
    assert regressions(noisy_base, noisy_now) == []
    steady_base = [rec(seed=0, top1=0.94), rec(seed=1, top1=0.94)]
    steady_now = [rec(seed=0, top1=0.92), rec(seed=1, top1=0.92)]
    assert len(regressions(steady_base, steady_now)) == 1


def test_a_collapsed_seed_regresses_though_its_own_spread_would_hide_it_in_the_mean():
    """Seeds 96.6, 96.5, 96.7 → 96.6, 96.5, 10.0: the current run's spread (50 points) must not widen the
    allowance the drop of its mean is judged by; the baseline's spread (0.1 points) sets the noise."""
    base = [rec(seed=s, top1=t) for s, t in ((0, 0.966), (1, 0.965), (2, 0.967))]
    now = [rec(seed=s, top1=t) for s, t in ((0, 0.966), (1, 0.965), (2, 0.10))]
    assert regressions(base, now) == [
        "d/a/magnitude/8x: top-1 96.60% → 67.70% (−28.90 points, beyond tolerance 1 + noise 0.16 points)"
    ]
    # a seed that collapses while the mean stays within the tolerance (ten seeds, one falls by 3 points)
    base = [rec(seed=s, top1=0.96) for s in range(10)]
    now = [rec(seed=s, top1=0.93 if s == 7 else 0.96) for s in range(10)]
    assert regressions(base, now) == [
        "d/a/magnitude/8x: seed 7: top-1 96.00% → 93.00% (−3.00 points, beyond 1.00 points for one seed)"
    ]
    # a baseline of one seed has no spread: the current seeds' robust spread (0.15 points here) sets the noise
    collapsed = [rec(seed=s, top1=t) for s, t in ((0, 0.966), (1, 0.965), (2, 0.10))]
    assert regressions([rec(seed=0, top1=0.966)], collapsed) == [
        "d/a/magnitude/8x: top-1 96.60% → 67.70% (−28.90 points, beyond tolerance 1 + noise 0.34 points)"
    ]
    # a current seed the baseline lacks is judged against the baseline's mean
    now = [rec(seed=s, top1=0.96) for s in range(10)] + [rec(seed=12, top1=0.93)]
    assert regressions(base, now) == [
        "d/a/magnitude/8x: seed 12: top-1 96.00% (the baseline's mean: it lacks this seed) → 93.00% (−3.00 points, "
        "beyond 1.00 points for one seed)"
    ]


def test_any_change_of_compression_or_macs_regresses():
    found = regressions([rec()], [rec(compression_achieved=7.9)])
    assert found == ["d/a/magnitude/8x: achieved compression changed: 8.0080x → 7.9000x"]
    found = regressions([rec()], [rec(macs=130.0, structural_macs=900)])
    assert (
        found
        == [
            "d/a/magnitude/8x: MACs changed: 0.0001M → 0.0001M",
            "d/a/magnitude/8x: structural MACs changed: 0.0010M → 0.0009M",
        ]
        or len(found) == 2
    )


def test_exact_figures_are_compared_seed_by_seed_so_other_repeat_counts_do_not_regress():
    """A pruner whose masks depend on the seed has other MACs per seed: their mean over seeds 0 and 1 is not seed
    0's, though seed 0 removes exactly what it removed before."""
    base = [rec(seed=0, macs=100.0), rec(seed=1, macs=104.0)]
    assert regressions(base, [rec(seed=0, macs=100.0)]) == [
        "d/a/magnitude/8x: seed 1 missing: in the baseline (top-1 95.00%), not in the current results"
    ]
    assert regressions(base[:1], base) == []  # more repeats now: seed 0 is unchanged
    assert regressions(base, [rec(seed=0, macs=100.0), rec(seed=1, macs=103.0)]) == [
        "d/a/magnitude/8x: MACs changed (seed 1): 104.0 → 103.0"
    ]


def test_missing_and_errored_cells_regress():
    base = [rec(), rec(pruner="gone")]
    now = [rec(top1=None, outcome="error", error="d-a-magnitude-8x-seed0: pruner raised KeyError")]
    found = sorted(regressions(base, now), reverse=True)
    assert found[0].startswith("d/a/magnitude/8x: no result now (the baseline had top-1 95.00%)")
    assert "pruner raised KeyError" in found[0]
    assert found[1] == "d/a/gone/8x: missing: in the baseline but not in the current results"


def test_a_seed_that_errors_or_goes_missing_under_repeats_regresses():
    """The mean of the seeds that finished would pass for the cell: seed 2 (the one that collapsed) must not
    vanish from the verdict."""
    base = [rec(seed=0, top1=0.86), rec(seed=1, top1=0.34), rec(seed=2, top1=0.10)]
    errored = [*base[:2], rec(seed=2, top1=None, outcome="error", error="d-a-magnitude-8x-seed2: CUDA out of memory")]
    assert regressions(base, errored) == [
        "d/a/magnitude/8x: seed 2: no result now (the baseline had top-1 10.00%): CUDA out of memory"
    ]
    assert regressions(base, base[:2]) == [
        "d/a/magnitude/8x: seed 2 missing: in the baseline (top-1 10.00%), not in the current results"
    ]
    assert regressions(base, base) == []
    # a seed that had no result in the baseline either is no regression
    assert regressions([*base[:2], errored[2]], errored) == []


def document(**changes):
    out = {"schema": SCHEMA, "environment": {"epochs": 2, "schedule": "oneshot"}, "results": [rec()]}
    out.update(changes)
    return out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such results file; write one with `pytest --prune-json"),
        (json.dumps(document())[:50], "truncated or not JSON"),
        (json.dumps(document(schema="pytest-prune/0")), "results schema 'pytest-prune/0'; this pytest-prune reads"),
        (json.dumps({"results": []}), "not a pytest-prune results JSON"),
        (json.dumps(document(results=[{"dataset": "d"}])), "'results' must be a list of records"),
        (json.dumps(document(results=[{**rec(), "compression": "8x"}])), r"record 0 \(d-a-magnitude-8x-seed0\): compr"),
        (json.dumps(document(results=[rec(outcome="ok")])), "outcome 'ok' is not one of passed, skipped, failed"),
        (json.dumps(document(results=[rec(top1=float("nan"))])), "top1 nan is not a fraction in"),
        (json.dumps(document(results=[rec(top1=95.0)])), r"top1 95.0 is not a fraction in \[0, 1\]"),
        (json.dumps(document(results=[rec(seed="0")])), "seed '0' is not an integer"),
        (json.dumps(document(results=[rec(compression_achieved="2x")])), "compression_achieved '2x' is not a number"),
        (json.dumps(document(results=[rec(macs=float("inf"))])), "macs inf is not a number"),
        (json.dumps(document(results=[rec(latency_ms={"1": "fast"})])), r"latency_ms \{'1': 'fast'\} is not a"),
    ],
    ids=[
        "missing",
        "truncated",
        "schema",
        "foreign",
        "bad-records",
        "compression",
        "outcome",
        "nan",
        "percent",
        "seed",
        "achieved",
        "macs",
        "latency",
    ],
)
def test_bad_results_files_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ResultsError, match=message) as info:
        load_results(path)
    assert str(path) in str(info.value)


def test_results_from_different_matrices_are_named():
    a = {"epochs": 2, "schedule": "oneshot", "threads": 1}
    assert matrix_differences(a, dict(a)) == []
    assert matrix_differences(a, {**a, "epochs": 5, "schedule": "iterative:3"}) == [
        "epochs 2 vs 5",
        "schedule 'oneshot' vs 'iterative:3'",
    ]


def test_gpus_of_one_kind_are_one_matrix():
    """Per-GPU slices of a run (cuda:0, cuda:1, or cuda:auto recorded as cuda:0) merge and compare."""
    assert matrix_differences({"device": "cuda:0"}, {"device": "cuda"}) == []
    assert matrix_differences({"device": "cuda:0"}, {"device": "cuda:1"}) == []
    assert matrix_differences({"device": "cuda:0"}, {"device": "cpu"}) == ["device 'cuda:0' vs 'cpu'"]


def test_merged_results_must_share_their_robustness_settings_too():
    a = {"epochs": 2, "robustness": {"corruptions": ["jpeg"], "severities": [1, 2]}, "delta_points": 0.5}
    assert incomparable("a.json", a, "b.json", dict(a), merging=True) is None
    b = {**a, "robustness": {"corruptions": ["jpeg", "pixelate"], "severities": [1, 2]}, "delta_points": 2.0}
    why = incomparable("a.json", a, "b.json", b, merging=True)
    assert why == (
        "a.json and b.json come from different matrices (robustness corruptions ['jpeg'] vs ['jpeg', 'pixelate']; "
        "delta_points 0.5 vs 2.0)"
    )
    assert incomparable("a.json", a, "b.json", b) is None  # the gate compares top-1 and MACs only
    assert incomparable("a.json", a, "b.json", {"epochs": 2}, merging=True) is None  # robustness off in one
    # δ sets the nominal prune potential on every board, robustness or not (a file without it predates it)
    why = incomparable("a.json", {"delta_points": 0.5}, "b.json", {"delta_points": 5}, merging=True)
    assert why == "a.json and b.json come from different matrices (delta_points 0.5 vs 5)"


@pytest.mark.parametrize(
    ("tolerance", "message"),
    [("nan", "'nan' is not a finite number"), ("-5", "'-5' must be ≥ 0"), ("inf", "'inf' is not a finite number")],
)
def test_the_compare_command_refuses_a_tolerance_that_would_pass_or_fail_everything(
    tmp_path, tolerance, message, capsys
):
    from pytest_prune.cli import main

    path = tmp_path / "r.json"
    path.write_text(json.dumps(document()))
    with pytest.raises(SystemExit) as info:
        main(["compare", str(path), str(path), "--tolerance", tolerance])
    assert info.value.code == 2 and f"argument --tolerance: {message}" in capsys.readouterr().err
    assert main(["compare", str(path), str(path), "--tolerance", "0"]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--threads", "0"], "argument --threads: '0' must be ≥ 1"),
        (["--epochs", "-3"], "argument --epochs: '-3' must be ≥ 1"),
        (["--epochs", "2.5"], "argument --epochs: '2.5' is not a whole number"),
    ],
)
def test_train_refuses_thread_and_epoch_counts_that_train_nothing(capsys, args, message):
    from pytest_prune.cli import build_parser

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["train", "--dataset", "digits", "--arch", "lenet5", *args])
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_train_refuses_an_out_folder_it_cannot_write_before_training(tmp_path, capsys):
    from pytest_prune.cli import main

    blocked = tmp_path / "a file"
    blocked.write_text("")
    code = main(["train", "--dataset", "digits", "--arch", "lenet300_100", "--epochs", "1", "--out", str(blocked)])
    captured = capsys.readouterr()
    assert code == 2 and f"--out {blocked}: cannot create the folder {blocked}" in captured.err
    assert "epoch" not in captured.out  # refused before any training


def test_leaderboard_refuses_an_output_under_a_file(tmp_path, capsys):
    from pytest_prune.cli import main

    results = tmp_path / "r.json"
    results.write_text(json.dumps(document()))
    (tmp_path / "a file").write_text("")
    assert main(["leaderboard", str(results), "-o", str(tmp_path / "a file" / "LB.md")]) == 2
    assert "-o " in capsys.readouterr().err and not (tmp_path / "LB.md").exists()


def test_a_merged_leaderboard_checks_every_pair_of_files_not_only_against_the_first(tmp_path, capsys):
    """plain.json measured no robustness, so it conflicts with neither; sev3.json and all.json conflict with
    each other, in whichever order the files come."""
    from pytest_prune.cli import main

    environments = {
        "plain": {"epochs": 2},
        "sev3": {"epochs": 2, "robustness": {"severities": [3]}},
        "all": {"epochs": 2, "robustness": {"severities": [1, 2, 3, 4, 5]}},
    }
    for name, environment in environments.items():
        records = [rec(pruner=name)]
        (tmp_path / f"{name}.json").write_text(json.dumps(document(environment=environment, results=records)))
    for order in (("plain", "sev3", "all"), ("sev3", "all", "plain")):
        paths = [str(tmp_path / f"{name}.json") for name in order]
        assert main(["leaderboard", *paths, "-o", str(tmp_path / "LB.md")]) == 2
        assert "robustness severities [3] vs [1, 2, 3, 4, 5]" in capsys.readouterr().err
    assert not (tmp_path / "LB.md").exists()


def test_a_regression_against_a_baseline_of_another_version_names_both_versions(tmp_path, capsys):
    from pytest_prune.cli import main

    base = document(environment={"epochs": 2, "pytest_prune": "0.2.9"}, results=[rec(structural_macs=1000)])
    now = document(environment={"epochs": 2, "pytest_prune": "0.2.10"}, results=[rec(structural_macs=800)])
    for name, doc in (("base", base), ("now", now)):
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    assert main(["compare", str(tmp_path / "base.json"), str(tmp_path / "now.json")]) == 1
    out = capsys.readouterr().out
    assert "structural MACs changed: 1,000.0 → 800.0" in out
    assert "note: the baseline was written by pytest-prune 0.2.9 and these results by 0.2.10" in out
    (tmp_path / "now.json").write_text(json.dumps({**now, "environment": base["environment"]}))
    main(["compare", str(tmp_path / "base.json"), str(tmp_path / "now.json")])
    assert "note:" not in capsys.readouterr().out  # one version: nothing to say


def test_a_folder_an_unreadable_file_and_an_empty_baseline_are_named(tmp_path, capsys):
    import os

    from pytest_prune.cli import main
    from pytest_prune.results_file import load_baseline

    with pytest.raises(ResultsError, match="a folder, not a results file; name the JSON"):
        load_results(tmp_path)
    unreadable = tmp_path / "locked.json"
    unreadable.write_text(json.dumps(document()))
    unreadable.chmod(0)
    try:
        if not os.access(unreadable, os.R_OK):  # root reads anything: nothing to check there
            with pytest.raises(ResultsError, match="locked.json: cannot be read"):
                load_results(unreadable)
    finally:
        unreadable.chmod(0o644)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps(document(results=[])))
    assert load_results(empty)["results"] == []  # a leaderboard or expect input may be empty-handed
    with pytest.raises(ResultsError, match="holds no result records, so a gate against it passes anything"):
        load_baseline(empty)
    (tmp_path / "now.json").write_text(json.dumps(document()))
    assert main(["compare", str(empty), str(tmp_path / "now.json")]) == 2
    assert "holds no result records" in capsys.readouterr().err


def test_train_says_when_its_folder_is_not_the_one_the_plugin_reads(tmp_path, capsys, monkeypatch):
    from pytest_prune import cli

    monkeypatch.setattr("pytest_prune.reference.write_reference", lambda *args, **kwargs: {"top1": 0.5, "file": "w.pt"})
    assert cli.main(["train", "--dataset", "digits", "--arch", "lenet300_100", "--out", str(tmp_path / "refs")]) == 0
    err = capsys.readouterr().err
    assert f"pytest-prune reads shipped weights and expectations from {cli_reference_dir()}, not {tmp_path}" in err


def cli_reference_dir():
    from pytest_prune.reference import reference_dir

    return reference_dir()
