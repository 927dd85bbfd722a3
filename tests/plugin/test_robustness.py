"""--prune-robustness end to end: record fields, prune potential across workers, tables, usage errors."""

from __future__ import annotations

import json

import pytest
import torch  # imported here, not in a test: pytester drops modules first imported inside a test
from plugin.conftest import FAST

ROBUST = (
    "--prune-bench",
    *FAST,
    "--prune-pruner=global_magnitude,random",
    "--prune-compression=2,8",
    "--prune-robustness",
    "--prune-corruptions=gaussian_noise,contrast,saturate",
    "--prune-severities=1,3",
    "--prune-eps=0.1,0.5",
    "--prune-eps-images=50",
    "--prune-eps-draws=2",
    "--prune-latency=off",
    "--prune-max-drop=100",
    "--prune-json=out.json",
)


def test_robustness_fields_potential_and_tables(pytester):
    result = pytester.runpytest(*ROBUST)
    result.assert_outcomes(passed=4)
    document = json.loads((pytester.path / "out.json").read_text())
    assert document["environment"]["robustness"]["severities"] == [1, 3]
    for row in document["results"]:
        assert set(row["corruption_top1"]) == {"gaussian_noise", "contrast"}
        assert set(row["corruption_top1"]["contrast"]) == {"1", "3"}
        assert row["corruptions_skipped"] == {"saturate": "saturate needs 3-channel images; the data has 1"}
        assert row["dense_corruption_top1"]["contrast"]["3"] <= 1
        mean = torch.tensor([v for d in row["corruption_top1"].values() for v in d.values()]).mean().item()
        assert row["corruption_mean_top1"] == pytest.approx(mean)
        expected = (row["top1"] - row["corruption_mean_top1"]) - (row["dense_top1"] - row["dense_corruption_mean_top1"])
        assert row["excess_error"] == pytest.approx(expected)
        assert set(row["eps_agreement"]) == {"0.1", "0.5"} and 0 <= row["agreement"] <= 1
        assert 0 < row["reference_agreement"] <= 1 and set(row["reference_eps_agreement"]) == {"0.1", "0.5"}
    potential = document["prune_potential"]
    assert {(e["pruner"], e["distribution"]) for e in potential} >= {
        ("random", "nominal"),
        ("global_magnitude", "gaussian_noise"),
        ("global_magnitude", "corruption mean"),
    }
    assert all(e["prune_potential"] in (0.0, *(r["sparsity"] for r in document["results"])) for e in potential)
    result.stdout.fnmatch_lines(
        [
            "*pytest-prune robustness: digits / lenet300_100*",
            "*excess*",
            "*separately trained dense*1x*",
            "*distribution*global_magnitude*random*",
            "*nominal*",
            "*corruption mean*",
            "*prune potential = largest sparsity % whose top-1 error is within 0.5 points*",
            "skipped: saturate: saturate needs 3-channel images; the data has 1",
        ]
    )


def test_serial_and_xdist_robustness_agree(pytester):
    pytester.runpytest(*ROBUST, "--prune-no-cache").assert_outcomes(passed=4)
    serial = json.loads((pytester.path / "out.json").read_text())
    pytester.runpytest(*ROBUST, "--prune-no-cache", "-n", "2").assert_outcomes(passed=4)
    parallel = json.loads((pytester.path / "out.json").read_text())
    assert serial["prune_potential"] == parallel["prune_potential"]
    keys = ("corruption_top1", "excess_error", "eps_agreement", "reference_eps_agreement", "softmax_l2")
    assert [[r[k] for k in keys] for r in serial["results"]] == [[r[k] for k in keys] for r in parallel["results"]]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            "--prune-corruptions=gaussian,fog",
            "*unknown corruption 'gaussian', 'fog'; valid: gaussian_noise, shot_noise*",
        ),
        ("--prune-severities=0,6", "*--prune-severities: '0', '6' outside 1-5; valid severities: 1, 2, 3, 4, 5*"),
    ],
)
def test_bad_corruption_options_are_usage_errors(pytester, option, message):
    result = pytester.runpytest("--prune-bench", "--prune-robustness", option)
    assert result.ret == 4
    result.stderr.fnmatch_lines([message])


def test_robustness_choices_without_robustness_are_usage_errors_on_the_command_line_only(pytester):
    result = pytester.runpytest("--prune-bench", "--prune-severities=3", "--prune-eps-draws=2", "--collect-only")
    assert result.ret == 4
    result.stderr.fnmatch_lines(
        ["*--prune-severities and --prune-eps-draws choose what --prune-robustness measures, but it is off: add*"]
    )
    pytester.makeini("[pytest]\nprune_corruptions = jpeg\n")  # waits in the ini file for a run that turns it on
    assert pytester.runpytest("--prune-bench", "--collect-only").ret == 0


def test_own_tests_without_prune_result_are_told_robustness_was_not_measured(pytester):
    pytester.makepyfile(
        test_own_models="""
        def test_pruned_weights_stay_pruned(pruned_model, finetuned_model):
            for before, after in zip(pruned_model.parameters(), finetuned_model.parameters()):
                assert (after[before == 0] == 0).all()
        """
    )
    result = pytester.runpytest(
        *FAST, "--prune-pruner=random", "--prune-compression=2", "--prune-robustness", "--prune-corruptions=contrast"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["pytest-prune: --prune-robustness measured nothing in 1 cell(s) whose tests do not request prune_result*"]
    )


def test_data_corruptions_cannot_use_errors_its_cells_before_any_training(pytester):
    """Flat inputs: a DataError naming the dataset, as the cell's whole report, raised when the data is loaded."""
    pytester.makeconftest(
        """
        import torch
        from pytest_prune import ImageDataset, dataset

        @dataset
        def flat():
            x, y = torch.rand(40, 64), torch.arange(40) % 10
            return ImageDataset(x, y, x, y, 10, normalisation={"mean": [0.5], "std": [0.25]})
        """
    )
    cell = ("--prune-dataset=flat", "--prune-arch=lenet300_100", "--prune-pruner=random", "--prune-compression=2")
    result = pytester.runpytest("--prune-bench", *cell, "--prune-robustness", "--prune-json=out.json")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*DataError: dataset 'flat': corruptions work on images*without --prune-robustness*"])
    assert "Traceback" not in result.stdout.str() and "epoch" not in result.stdout.str()
    (record,) = json.loads((pytester.path / "out.json").read_text())["results"]
    assert record["outcome"] == "error" and record.get("top1") is None
