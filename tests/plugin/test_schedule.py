"""--prune-schedule iterative:N and --prune-repeats N through the whole pipeline."""

from __future__ import annotations

import json

import pytest
import torch  # imported here, not in a test: pytester drops modules first imported inside a test
from plugin.conftest import FAST, records

FORGETFUL = """
import torch
from pytest_prune import prunable


def forgetful(model, amount, data):
    # removes `amount` of each layer at random, blind to weights an earlier round removed
    names = {module: name for name, module in model.named_modules()}
    masks = {}
    generator = torch.Generator().manual_seed(round(amount * 1e6))  # its own draws in every round
    for module, attr in prunable(model):
        scores = torch.rand(getattr(module, attr).shape, generator=generator)
        k = round(amount * scores.numel())
        masks[names[module] + "." + attr] = scores > scores.flatten().kthvalue(k).values
    return masks
"""


def test_iterative_rounds_follow_a_geometric_path(pytester):
    result = pytester.runpytest(
        "--prune-bench",
        *FAST,
        "--prune-pruner=global_magnitude,random,random_filter",
        "--prune-compression=8",
        "--prune-schedule=iterative:3",
        "--prune-max-drop=100",
        "--prune-latency=off",
        "--prune-json=out.json",
    )
    result.assert_outcomes(passed=3)
    document = json.loads((pytester.path / "out.json").read_text())
    assert document["environment"]["schedule"] == "iterative:3"
    for row in document["results"]:
        assert row["schedule"] == "iterative:3" and len(row["rounds"]) == 3
        assert [r["compression"] for r in row["rounds"]] == pytest.approx([2, 4, 8])
        for step in row["rounds"]:
            assert abs(step["compression_achieved"] / step["compression"] - 1) < 0.05
            assert 0 < step["pruned_top1"] <= 1 and 0 < step["top1"] <= 1
        assert row["rounds"][-1]["top1"] == row["top1"]
        assert row["threshold"] == "max_drop"


def test_a_pruner_blind_to_earlier_rounds_overshoots_with_a_clear_error(pytester):
    pytester.makepyfile(forgetful=FORGETFUL)
    args = ("--prune-bench", *FAST, "--prune-pruner=forgetful.py:forgetful", "--prune-compression=8")
    result = pytester.runpytest(*args, "--prune-schedule=iterative:3", "--prune-max-drop=100")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*digits-lenet300_100-forgetful-8x, round 2 of iterative:3: asked 4x, got *must rank weights that are "
            "already zero first*"
        ]
    )
    pytester.runpytest(*args, "--prune-max-drop=100").assert_outcomes(passed=1)  # one-shot is fine


def test_repeats_run_every_seed_and_summarise(pytester, xdist):
    result = pytester.runpytest(
        "--prune-bench",
        *FAST,
        "--prune-pruner=random",
        "--prune-compression=4",
        "--prune-repeats=3",
        "--prune-seed=7",
        "--prune-max-drop=100",
        "--prune-latency=off",
        "--prune-json=out.json",
        "-v",
        *xdist,
    )
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_prune?digits-lenet300_100-random-4x-seed9?*", "*random*4x*±*3/3 passed*"])
    rows = records(pytester.path / "out.json")
    assert [r["seed"] for r in rows] == [7, 8, 9]
    assert len({tuple(r["pruned_top1"] for r in rows)}) == 1 and len({r["pruned_top1"] for r in rows}) > 1
    (summary,) = json.loads((pytester.path / "out.json").read_text())["summary"]
    assert summary["n"] == 3 and summary["seeds"] == [7, 8, 9]
    assert summary["top1"] == pytest.approx(sum(r["top1"] for r in rows) / 3)
    assert torch.tensor([r["top1"] for r in rows]).std().item() == pytest.approx(summary["top1_std"])


RECORD_ORDERS = """
import pytest_prune.train as train


class Recorded(train.Batches):
    def __iter__(self):
        with open("orders.txt", "a") as out:
            out.write(f"{self.seed}\\n")
        return super().__iter__()


train.Batches = Recorded
"""


def test_repeats_and_rounds_finetune_on_batch_orders_of_their_own(pytester):
    """Epoch e trains on the order seeded ``seed + e``: consecutive repeat seeds would share an epoch order, and
    the rounds of a schedule would replay theirs, so every (seed, round) gets a training seed of its own."""
    pytester.makeconftest(RECORD_ORDERS)
    result = pytester.runpytest_subprocess(
        "--prune-bench",
        *FAST,
        "--prune-epochs=2",
        "--prune-pruner=random",
        "--prune-compression=4",
        "--prune-schedule=iterative:2",
        "--prune-repeats=2",
        "--prune-max-drop=100",
        "--prune-latency=off",
        "--prune-no-cache",
    )
    result.assert_outcomes(passed=2)
    orders = (pytester.path / "orders.txt").read_text().split()
    assert len(orders) == 2 * 2 * 2 and len(set(orders)) == len(orders), orders  # repeats × rounds × epochs
