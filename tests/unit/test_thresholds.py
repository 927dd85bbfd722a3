from __future__ import annotations

import dataclasses
import json

import pytest

from pytest_prune.cli import main
from pytest_prune.results import SCHEMA as RESULTS_SCHEMA
from pytest_prune.settings import build
from pytest_prune.thresholds import conditions, expectations_from_results, floor_for, judge

FINETUNE = {"optimizer": "sgd", "lr": 0.01}


def record(top1, dense=0.98, seed=0, schedule="oneshot"):
    return {
        "seed": seed,
        "schedule": schedule,
        "dataset": "mnist5k",
        "arch": "lenet5",
        "pruner": "random",
        "compression": 8.0,
        "top1": top1,
        "dense_top1": dense,
        "finetune": FINETUNE,
        "weights_sha256": "abc",
    }


def expectations(settings, sha="abc"):
    return {
        "conditions": conditions(settings, record(0.9)),
        "cells": {"mnist5k/lenet5/random/8x": {"top1": 0.95, "min_top1": 0.935, "weights_sha256": sha}},
    }


def test_a_matching_expectation_sets_the_floor():
    settings = build({})
    verdict = judge(record(0.930), settings, expectations(settings))
    assert verdict.threshold == "expectation" and abs(verdict.required_top1 - 0.935) < 1e-9
    assert "top-1 93.00% is below the expected floor 93.50%" in verdict.failures[0]
    assert not judge(record(0.936), settings, expectations(settings)).failures


def test_other_conditions_or_weights_fall_back_to_max_drop():
    settings = build({"epochs": "5"})
    verdict = judge(record(0.92), settings, expectations(build({})))
    assert verdict.threshold == "max_drop"
    assert "6.00 points below the dense model's 98.00%; allowed drop 5 points" in verdict.failures[0]
    assert "does not apply: it was measured with epochs 2 (this run: 5)" in verdict.failures[0]
    newer = {**expectations(build({})), "conditions": {**conditions(build({}), record(0.9)), "precision": "bf16"}}
    assert "conditions this version does not know (precision)" in judge(record(0.92), build({}), newer).failures[0]
    assert judge(record(0.94), build({}), expectations(build({}), sha="other")).threshold == "max_drop"


def results_file(path, top1_by_seed, dense=0.966, epochs=2, device="cpu"):
    rows = [
        {**record(top1, dense=dense, seed=seed), "id": f"cell-seed{seed}", "outcome": "passed"}
        for seed, top1 in top1_by_seed.items()
    ]
    env = {"epochs": epochs, "threads": 1, "device": device}
    path.write_text(json.dumps({"schema": RESULTS_SCHEMA, "environment": env, "results": rows}))
    return path


def test_a_cell_measured_with_several_seeds_is_held_to_what_every_seed_reached(tmp_path):
    """LeNet-5 with random pruning at 8x reached 85.9, 33.5 and 10.0% with seeds 0-2 on the CPU and 62.5% with
    seed 0 on an H100: a floor from seed 0 alone (83.3%) failed a healthy GPU run."""
    out = tmp_path / "expectations.json"
    assert expectations_from_results([results_file(tmp_path / "r.json", {0: 0.859, 1: 0.335, 2: 0.1})], out, 1.5) == 1
    document = json.loads(out.read_text())
    cell = document["cells"]["mnist5k/lenet5/random/8x"]
    assert cell["min_top1"] == 0.0 and cell["top1_by_seed"] == {"0": 0.859, "1": 0.335, "2": 0.1}
    assert document["conditions"]["seeds"] == [0, 1, 2] and document["measured_on"] == ["cpu"]
    gpu = dataclasses.replace(build({}), device="cuda:0")  # the device is provenance, not a condition
    assert judge(record(0.625, dense=0.966), gpu, document).threshold == "expectation"
    verdict = judge(record(0.625, dense=0.966, seed=3), build({}), document)  # a seed it was not measured with
    assert verdict.threshold == "max_drop"
    assert verdict.failures[0].endswith("does not apply: it was measured with seed(s) 0, 1, 2 (this run: 3)")


def test_a_steady_cell_keeps_a_tight_floor_and_names_its_seeds_when_it_fails(tmp_path):
    out = tmp_path / "expectations.json"
    expectations_from_results([results_file(tmp_path / "r.json", {0: 0.952, 1: 0.950, 2: 0.951})], out, 1.5)
    document = json.loads(out.read_text())
    assert document["cells"]["mnist5k/lenet5/random/8x"]["min_top1"] == pytest.approx(0.950 - 0.015 - 0.0016)
    verdict = judge(record(0.90, dense=0.966), build({}), document)
    assert verdict.failures == (
        "top-1 90.00% is below the expected floor 93.34% (shipped expectation for mnist5k/lenet5/random/8x: "
        "95.00%–95.20% over seeds 0, 1, 2 measured, floor 1.66 points below the lowest)",
    )


def test_expectations_need_results_of_one_set_of_conditions(tmp_path):
    first = results_file(tmp_path / "a.json", {0: 0.95})
    with pytest.raises(ValueError, match="results come from different conditions"):
        expectations_from_results([first, results_file(tmp_path / "b.json", {1: 0.95}, epochs=5)], tmp_path / "o", 1.5)
    with pytest.raises(ValueError, match="no finished cell in the results"):
        expectations_from_results([results_file(tmp_path / "c.json", {})], tmp_path / "o", 1.5)


def test_results_without_what_expectations_need_are_named(tmp_path):
    path = results_file(tmp_path / "r.json", {0: 0.95})
    document = json.loads(path.read_text())
    del document["environment"]["epochs"], document["results"][0]["weights_sha256"]
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"r.json: no environment 'epochs', .* 'weights_sha256': expectations need"):
        expectations_from_results([path], tmp_path / "o", 1.5)


def test_the_expect_command_names_bad_input_and_warns_of_a_single_seed(tmp_path, capsys):
    out = tmp_path / "expectations.json"
    assert main(["expect", str(tmp_path / "missing.json"), "-o", str(out)]) == 2
    assert "pytest-prune expect: " in capsys.readouterr().err and not out.exists()
    assert main(["expect", str(results_file(tmp_path / "one.json", {0: 0.95})), "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert "wrote 1 expectations" in printed.out and "measured with one seed" in printed.err
    three = results_file(tmp_path / "three.json", {0: 0.95, 1: 0.94, 2: 0.95})
    assert main(["expect", str(three), "-o", str(out)]) == 0
    assert "one seed" not in capsys.readouterr().err


@pytest.mark.parametrize("changed", [{"seed": 1}, {"schedule": "iterative:3"}])
def test_another_seed_or_schedule_falls_back_to_max_drop(changed):
    settings = build({})
    verdict = judge(record(0.97, **changed), settings, expectations(settings))
    assert verdict.threshold == "max_drop" and not verdict.failures
    assert judge(record(0.97), settings, expectations(settings)).threshold == "expectation"


def test_explicit_thresholds_apply_everywhere():
    settings = build({"max_drop": "1", "min_top1": "97.5"})
    verdict = judge(record(0.93), settings, expectations(settings))
    assert len(verdict.failures) == 3 and verdict.threshold == "min_top1"
    assert "below --prune-min-top1 97.5%" in verdict.failures[-1]


def test_the_floor_widens_with_the_drop_below_dense():
    assert floor_for(0.95, 0.95, margin=1.5) == pytest.approx(0.935)
    assert abs(floor_for(0.50, 0.95, margin=1.5) - (0.50 - 0.015 - 0.045)) < 1e-12
    assert floor_for(0.01, 0.95, margin=1.5) == 0.0
