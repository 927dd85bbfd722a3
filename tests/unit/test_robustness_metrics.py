"""Excess error, functional similarity and prune potential on hand-made inputs with known answers."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from pytest_prune.robustness.corruptions import BATCH, CORRUPTIONS, corrupted_batches
from pytest_prune.robustness.measure import (
    EVAL_SEED,
    eps_agreement,
    eps_sample,
    excess_error,
    functional_similarity,
    shifted_top1,
    similarity,
)
from pytest_prune.robustness.pixels import PixelSpace
from pytest_prune.robustness.potential import NOMINAL, SUITE, potential_summary, prune_potential


def test_excess_error_is_the_extra_error_the_shift_costs_the_pruned_model():
    # pruned: 90% → 70% (20 points lost); dense: 92% → 80% (12 points lost)
    assert excess_error(0.90, 0.70, 0.92, 0.80) == pytest.approx(0.08)
    assert excess_error(0.9, 0.8, 0.9, 0.8) == pytest.approx(0.0)


def model(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 10)).eval()


def test_shifted_top1_counts_what_each_corrupted_stream_gives():
    """The batch-by-batch evaluation (every corruption of one batch in turn) equals corruption-by-corruption streams."""
    space = PixelSpace({"mean": [0.5], "std": [0.25]}, 1)
    x = space.normalised(torch.rand(BATCH + 30, 1, 4, 4, generator=torch.Generator().manual_seed(3)))
    net = model(2)
    with torch.no_grad():
        y = net(x).argmax(1)  # labels the clean model gets right, so the corruptions cost accuracy
    names, severities = ["gaussian_noise", "jpeg", "rotation"], [1, 5]
    table = shifted_top1(net, x, y, space, names, severities)
    for name in names:
        for severity in severities:
            with torch.no_grad():
                correct = sum(
                    int((net(batch).argmax(1) == y[start : start + len(batch)]).sum())
                    for start, batch in corrupted_batches(x, space, CORRUPTIONS[name], severity, EVAL_SEED)
                )
            assert table[name][str(severity)] == correct / len(x)
    assert table["gaussian_noise"]["5"] < 1.0
    with pytest.raises(ValueError, match="severity 0 is outside 1–5"):
        shifted_top1(net, x, y, space, names, [0])


def test_similarity_of_a_model_with_itself_and_with_another():
    x = torch.randn(300, 1, 4, 4)
    a = model(0)
    same = similarity(copy.deepcopy(a), a, x, batch_size=64)
    assert same == {"agreement": 1.0, "softmax_l2": 0.0}
    other = similarity(model(1), a, x)
    with torch.no_grad():
        expected = (model(1)(x).argmax(1) == a(x).argmax(1)).float().mean().item()
    assert other["agreement"] == pytest.approx(expected) and 0 < other["softmax_l2"] < 2**0.5


def test_eps_agreement_falls_with_the_noise_and_is_reproducible():
    x = torch.randn(200, 1, 4, 4)
    a, b = model(0), copy.deepcopy(model(0))
    with torch.no_grad():
        b[1].weight.add_(0.3 * torch.randn_like(b[1].weight))
    sample = eps_sample(x, 100)
    assert len(sample) == 100 and torch.equal(sample, eps_sample(x, 100))
    result = eps_agreement(b, a, sample, [0.0, 0.5, 3.0], draws=4)
    assert result == eps_agreement(b, a, sample, [0.0, 0.5, 3.0], draws=4)
    assert eps_agreement(a, a, sample, [3.0], draws=2) == {"3": 1.0}
    assert set(result) == {"0", "0.5", "3"} and result["0"] >= result["3"]


def test_an_eps_sample_larger_than_the_test_set_takes_it_all_and_says_how_many():
    from types import SimpleNamespace

    x = torch.randn(30, 1, 4, 4)
    sample = eps_sample(x, 250)
    assert len(sample) == 30 and sorted(sample.flatten().tolist()) == sorted(x.flatten().tolist())
    settings = SimpleNamespace(eps_images=250, eps=[0.1], eps_draws=1)
    assert functional_similarity(model(0), model(0), x, settings)["eps_images"] == 30


def record(pruner, sparsity, top1, dense=0.95, seed=0, corrupted=None, dense_corrupted=None):
    r = {"dataset": "d", "arch": "a", "pruner": pruner, "seed": seed, "sparsity": sparsity, "top1": top1}
    r["compression"] = round(1 / (1 - sparsity), 6)
    r["dense_top1"] = dense
    if corrupted is not None:
        r["corruption_top1"] = {"gaussian_noise": {"1": corrupted, "3": corrupted}}
        r["dense_corruption_top1"] = {"gaussian_noise": {"1": dense_corrupted, "3": dense_corrupted}}
        r["corruption_mean_top1"], r["dense_corruption_mean_top1"] = corrupted, dense_corrupted
    return r


def potentials(records, delta=0.5):
    return {(e["pruner"], e["distribution"]): e for e in prune_potential(records, delta)}


def test_prune_potential_is_the_largest_passing_sparsity_per_distribution():
    rows = [
        record("m", 0.50, 0.950, corrupted=0.80, dense_corrupted=0.80),
        record("m", 0.75, 0.946, corrupted=0.70, dense_corrupted=0.80),  # within 0.5 points nominal
        record("m", 0.90, 0.900, corrupted=0.60, dense_corrupted=0.80),
    ]
    out = potentials(rows)
    assert out[("m", NOMINAL)]["prune_potential"] == 0.75 and not out[("m", NOMINAL)]["capped"]
    assert out[("m", "gaussian_noise")]["prune_potential"] == 0.50
    assert out[("m", SUITE)]["prune_potential"] == 0.50


def test_a_passing_largest_sparsity_is_capped_and_gaps_do_not_stop_the_search():
    rows = [record("m", 0.5, 0.90), record("m", 0.75, 0.95), record("r", 0.5, 0.2), record("r", 0.75, None)]
    out = potentials(rows)
    assert out[("m", NOMINAL)]["prune_potential"] == 0.75 and out[("m", NOMINAL)]["capped"]
    # no cell passes: potential 0 (only the dense network itself); the errored cell takes no part
    assert out[("r", NOMINAL)]["prune_potential"] == 0.0 and out[("r", NOMINAL)]["cells"] == 1
    assert potentials([record("m", 0.5, 0.944)], delta=0.5)[("m", NOMINAL)]["prune_potential"] == 0.0
    assert potentials([record("m", 0.5, 0.945)], delta=0.5)[("m", NOMINAL)]["prune_potential"] == 0.5


def test_cells_without_a_result_are_named_never_passed_over():
    """Seed 1's 4x cell errored and seed 2 errored everywhere: seed 1's potential stands at 50% without it and
    must say so, and the summary must not read as the mean over complete sweeps."""
    rows = [record("m", 0.5, 0.95, seed=s) for s in (0, 1, 2)]
    rows += [record("m", 0.75, 0.95, seed=0), record("m", 0.75, None, seed=1)]
    rows = [r for r in rows if r["seed"] != 2] + [{**record("m", 0.5, None, seed=2), "sparsity": None}]
    entries = {e["seed"]: e for e in prune_potential(rows, 0.5) if e["distribution"] == NOMINAL}
    assert entries[0]["missing"] == [] and entries[0]["capped"]
    assert entries[1]["missing"] == ["4x"] and entries[1]["prune_potential"] == 0.5 and 2 not in entries
    (summary,) = potential_summary(e for e in entries.values())
    assert summary["missing"] == ["4x (seed 1)", "every compression (seed 2)"]
    from pytest_prune.report.robustness import potential_table

    table = potential_table(prune_potential(rows, 0.5), [NOMINAL])
    assert "≥62.50 ± 17.68*" in table
    assert table.endswith("so possibly too low: m: 4x (seed 1), every compression (seed 2)")


def test_capped_is_judged_on_the_cells_measured_on_that_distribution():
    """The 4x cell's robustness stage failed after finetuning: it has a nominal top-1 but no corrupted one. On
    gaussian noise the largest sparsity measured is 50%, which passes: capped, with 4x named as missing, as
    when the whole 4x cell fails."""
    rows = [record("m", 0.5, 0.95, corrupted=0.8, dense_corrupted=0.8), record("m", 0.75, 0.95)]
    noise = potentials(rows)[("m", "gaussian_noise")]
    assert noise["prune_potential"] == 0.5 and noise["capped"] and noise["largest_sparsity"] == 0.5
    assert noise["missing"] == ["4x"]
    whole = potentials([rows[0], {**rows[1], "top1": None}])[("m", "gaussian_noise")]
    assert (whole["capped"], whole["largest_sparsity"], whole["missing"]) == (True, 0.5, ["4x"])
    assert potentials(rows)[("m", NOMINAL)]["largest_sparsity"] == 0.75


def test_a_compression_of_the_configured_sweep_that_did_not_run_is_missing(tmp_path):
    """``-k 8x`` (or ``--lf``) runs part of the sweep: the potential is then computed without 2x, which must be
    said, not pass for a potential of 0 (only 8x ran, and it fails)."""
    import json

    from pytest_prune.report.robustness import robustness_tables
    from pytest_prune.results import write_json

    rows = [{**record("m", 0.875, 0.90), "id": "d-a-m-8x-seed0", "outcome": "passed"}]
    (alone,) = prune_potential(rows, 0.5)
    assert alone["missing"] == [] and alone["prune_potential"] == 0.0
    (entry,) = prune_potential(rows, 0.5, sweep=[2, 8])
    assert entry["missing"] == ["2x"] and entry["prune_potential"] == 0.0
    (_, text), *_ = robustness_tables(rows, 0.5, (2.0, 8.0))
    assert "0.00*" in text and "possibly too low: m: 2x (seed 0)" in text
    write_json(tmp_path / "r.json", {"delta_points": 0.5, "compressions": [2.0, 8.0]}, rows)
    (written,) = json.loads((tmp_path / "r.json").read_text())["prune_potential"]
    assert written["missing"] == ["2x"]


def test_seeds_fold_into_mean_and_std():
    rows = [record("m", 0.5, 0.95, seed=0), record("m", 0.75, 0.95, seed=0), record("m", 0.5, 0.95, seed=1)]
    rows.append(record("m", 0.75, 0.90, seed=1))
    (summary,) = potential_summary(prune_potential(rows, 0.5))
    assert summary["prune_potential"] == pytest.approx(0.625) and summary["n"] == 2
    assert summary["prune_potential_std"] == pytest.approx(0.1767767, rel=1e-5) and summary["capped"]


def test_flat_inputs_are_told_that_corruptions_need_images():
    from pytest_prune.data.base import ImageDataset
    from pytest_prune.data.disk import DataError  # a user error: its message is the cell's whole report
    from pytest_prune.robustness.stage import pixel_space

    x, y = torch.rand(20, 64), torch.zeros(20, dtype=torch.long)
    flat = ImageDataset(x, y, x, y, 10, normalisation={"mean": [0.5], "std": [0.25]})
    with pytest.raises(DataError, match=r"dataset 'flat': corruptions work on images, \(N, C, H, W\) tensors"):
        pixel_space(flat, "flat")
    grey = ImageDataset(x.view(20, 1, 8, 8), y, x.view(20, 1, 8, 8), y, 10, normalisation={"mean": [0.5, 0.5]})
    with pytest.raises(ValueError, match="dataset 'grey': normalisation .* does not match 1 channels"):
        pixel_space(grey, "grey")


def test_the_terminal_table_marks_errored_cells_signs_excess_error_and_gives_the_reference_top1():
    from pytest_prune.report.robustness import robustness_tables

    finished = {
        **record("m", 0.5, 0.94, corrupted=0.80, dense_corrupted=0.82),
        "id": "d-a-m-2x-seed0",
        "outcome": "passed",
        "excess_error": 0.0217,
        "agreement": 0.97,
        "softmax_l2": 0.05,
        "reference_agreement": 0.96,
        "reference_softmax_l2": 0.07,
        "reference_top1": 0.9512,
    }
    errored = {**record("m", 0.875, None), "id": "d-a-m-8x-seed0", "outcome": "error", "sparsity": None}
    (_, text), *_ = robustness_tables([finished, errored], 0.5)
    rows = {line.split()[1]: line for line in text.splitlines() if line.startswith("m ")}
    assert "+2.17" in rows["2x"] and rows["8x"].split()[2:] == ["error"]
    (reference,) = [line for line in text.splitlines() if line.startswith("separately trained dense")]
    assert reference.split()[3:6] == ["1x", "0.00", "95.12"]


def test_the_terminal_table_gives_eps_agreement_over_seeds_with_its_std():
    from pytest_prune.report.robustness import robustness_tables

    def repeat(seed, eps):
        return {
            **record("m", 0.5, 0.94, seed=seed, corrupted=0.80, dense_corrupted=0.82),
            "id": f"d-a-m-2x-seed{seed}",
            "outcome": "passed",
            "agreement": 0.97,
            "softmax_l2": 0.05,
            "eps_agreement": {"0.5": eps},
        }

    (_, text), *_ = robustness_tables([repeat(0, 0.90), repeat(1, 0.80)], 0.5)
    (row,) = [line for line in text.splitlines() if line.startswith("m ")]
    assert row.endswith("85.00 ± 7.07"), row
