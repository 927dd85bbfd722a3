"""Plugging in a pruner: the three return styles, bad pruners confined to their cells, user tests."""

from __future__ import annotations

from plugin.conftest import FAST, records

STYLES = """
import torch
from torch.nn.utils import prune as torch_prune
from pytest_prune import prunable, pruner


@pruner
def returns_masks(model, amount, data):
    scores = torch.cat([m.weight.detach().abs().flatten() for m, _ in prunable(model)])
    cut = scores.kthvalue(max(1, round(amount * scores.numel()))).values
    layers = [m for m, _ in prunable(model)]
    return {f"{name}.weight": m.weight.abs() > cut for name, m in model.named_modules() if m in layers}


@pruner("torch-prune")
def uses_torch_prune(model, amount, data):
    torch_prune.global_unstructured(prunable(model), torch_prune.L1Unstructured, amount=amount)


@pruner
def zeroes_in_place(model, amount, data):
    inputs, targets = next(iter(data))
    assert inputs.shape[0] == 128 and targets.dtype == torch.int64
    for module, name in prunable(model):
        weight = getattr(module, name)
        k = round(amount * weight.numel())
        with torch.no_grad():
            weight.view(-1)[weight.abs().flatten().argsort()[:k]] = 0
"""

BAD = """
import sys

import torch
from pytest_prune import pruner


@pruner
def raises(model, amount, data):
    raise RuntimeError("my pruner is broken")


@pruner
def exits(model, amount, data):
    sys.exit("my pruner gave up")


@pruner
def wrong_shape(model, amount, data):
    return {"fc1.weight": torch.ones(3, 3)}


@pruner
def misses_target(model, amount, data):
    return {"fc1.weight": torch.rand_like(model.fc1.weight) > 0.1}


@pruner
def returns_list(model, amount, data):
    return [1, 2]
"""


def test_all_three_pruner_styles_work(pytester, xdist):
    pytester.makepyfile(my_pruners=STYLES)
    result = pytester.runpytest(
        *FAST,
        "--prune-pruner=my_pruners.py:returns_masks",
        "--prune-pruner=my_pruners.py:uses_torch_prune",
        "--prune-pruner",
        "my_pruners.py:zeroes_in_place",
        "--prune-compression=4",
        "--prune-json=out.json",
        "--prune-max-drop=100",
        "-v",
        *xdist,
    )
    result.assert_outcomes(passed=3)
    assert "test_prune[digits-lenet300_100-torch-prune-4x]" in result.stdout.str()
    rows = records(pytester.path / "out.json")
    assert {r["pruner"] for r in rows} == {"returns_masks", "torch-prune", "zeroes_in_place"}
    assert all(abs(r["compression_achieved"] - 4) < 0.05 for r in rows)


def test_bad_pruners_error_in_their_own_cells_and_the_rest_is_kept(pytester, xdist):
    pytester.makepyfile(bad=BAD)
    result = pytester.runpytest(
        *FAST,
        "--prune-pruner=bad.py:raises,bad.py:exits,bad.py:wrong_shape,bad.py:misses_target,bad.py:returns_list",
        "--prune-pruner=global_magnitude,missing.py:nothing",
        "--prune-compression=8",
        "--prune-json=out.json",
        "--prune-max-drop=100",
        *xdist,
    )
    result.assert_outcomes(passed=1, errors=6)  # sys.exit in a pruner ends neither the session nor later cells
    by_pruner = {r["pruner"]: r for r in records(pytester.path / "out.json")}
    assert by_pruner["global_magnitude"]["outcome"] == "passed"
    expected = {
        "raises": "pruner 'raises' raised RuntimeError: my pruner is broken",
        "exits": "pruner 'exits' called sys.exit('my pruner gave up') at ",
        "wrong_shape": "mask for 'fc1.weight' has shape (3, 3); the parameter has shape (300, 64)",
        "misses_target": "asked 8x, got 1.",
        "returns_list": "pruner returned a list",
        "missing.py:nothing": "'missing.py:nothing' does not import",
    }
    for name, message in expected.items():
        assert by_pruner[name]["outcome"] == "error" and message in by_pruner[name]["error"], by_pruner[name]
    assert by_pruner["misses_target"]["compression_achieved"] < 2  # measured before the error is raised


def test_user_tests_are_parametrized_over_the_matrix(pytester, xdist):
    pytester.makepyfile(my_pruners=STYLES)
    pytester.makepyfile(
        test_mine="""
        import copy

        import torch


        def test_keeps_accuracy(prune_result):
            assert prune_result.top1 >= prune_result.dense_top1 - 0.05
            assert prune_result.id.startswith("digits-lenet300_100-zeroes_in_place-")


        def test_pruned_weights_stay_zero(pruned_model, finetuned_model, prune_case):
            for (name, before), after in zip(pruned_model.named_parameters(), finetuned_model.parameters()):
                assert (after[before == 0] == 0).all(), name


        def test_the_shared_model_is_never_touched(pretrained_model, pruned_model):
            assert torch.count_nonzero(pretrained_model.fc1.weight) == pretrained_model.fc1.weight.numel()
            assert torch.count_nonzero(pruned_model.fc1.weight) < pruned_model.fc1.weight.numel()
        """
    )
    result = pytester.runpytest(
        *FAST,
        "--prune-pruner=my_pruners.py:zeroes_in_place",
        "--prune-compression=2,4",
        "-v",
        *xdist,
    )
    result.assert_outcomes(passed=6)  # the user's 3 tests × 2 cells; no bench suite added
    assert "test_prune[" not in result.stdout.str()


def test_a_test_that_mutates_the_shared_model_errors_and_the_model_is_restored(pytester, xdist):
    pytester.makepyfile(
        test_mutate="""
        import torch


        def test_a_mutates(pretrained_model):
            with torch.no_grad():
                pretrained_model.fc1.weight.zero_()


        def test_b_sees_the_original(pretrained_model):
            assert torch.count_nonzero(pretrained_model.fc1.weight) > 0
        """
    )
    # --dist loadfile keeps both tests on one worker, so test_b really runs after the mutation
    dist = ("--dist", "loadfile") if xdist else ()
    result = pytester.runpytest(*FAST, "--prune-pruner=random", "--prune-compression=2", *xdist, *dist)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*shared pretrained model digits/lenet300_100 was modified in place*"])


def test_a_pruner_that_kills_its_xdist_worker_is_an_error_cell_not_a_missing_one(pytester):
    pytester.makepyfile(
        dies="""
        import os

        from pytest_prune.pruners.magnitude import global_magnitude


        def dies_at_8x(model, amount, data):
            if amount > 0.8:
                os._exit(3)  # the worker process dies, as on a segfault or the OOM killer
            return global_magnitude(model, amount, data)
        """
    )
    result = pytester.runpytest(
        *FAST,
        "--prune-pruner=dies.py:dies_at_8x,global_magnitude",
        "--prune-compression=2,8",
        "--prune-json=out.json",
        "--prune-leaderboard=LB.md",
        "--prune-max-drop=100",
        "-n",
        "2",
    )
    result.assert_outcomes(passed=3, failed=1)  # xdist reports the crash as a failure
    by_id = {r["id"]: r for r in records(pytester.path / "out.json")}
    crashed = by_id["digits-lenet300_100-dies_at_8x-8x"]
    assert crashed["outcome"] == "error" and "crashed while running" in crashed["error"], crashed
    assert (crashed["pruner"], crashed["compression"]) == ("dies_at_8x", 8.0)
    board = (pytester.path / "LB.md").read_text()
    rows = [line.split()[1:4:2] for line in board.split("| rank")[1].split("\n\n")[0].splitlines()[2:]]
    assert rows == [["1", "`global_magnitude`"], ["incomplete", "`dies_at_8x`"]], board


GLOBAL_STATE = """
import torch
from pytest_prune import pruner
from pytest_prune.pruners.magnitude import global_magnitude


@pruner
def grad_off_raises(model, amount, data):
    torch.set_grad_enabled(False)
    raise RuntimeError("gave up")


@pruner
def grad_off_works(model, amount, data):
    torch.set_grad_enabled(False)
    torch.set_default_dtype(torch.float64)
    return global_magnitude(model, amount, data)
"""


def test_a_pruner_that_changes_torch_global_state_breaks_no_other_cell(pytester):
    """Grad mode and the default dtype are restored after each pruner call: a pruner that left autograd off
    errored every later cell's finetuning ("element 0 of tensors does not require grad"), built-ins included.
    In a subprocess, so that a leak could not reach the process running this test."""
    pytester.makepyfile(global_state=GLOBAL_STATE)
    pruners = "--prune-pruner=global_state.py:grad_off_raises,global_state.py:grad_off_works,random"
    options = ("--prune-compression=2", "--prune-max-drop=100", "--prune-latency=off", "--prune-json=out.json")
    result = pytester.runpytest_subprocess("--prune-bench", *FAST, pruners, *options)
    result.assert_outcomes(passed=2, errors=1)
    by_pruner = {r["pruner"]: r for r in records(pytester.path / "out.json")}
    assert "raised RuntimeError: gave up" in by_pruner["grad_off_raises"]["error"]
    assert by_pruner["grad_off_works"]["outcome"] == by_pruner["random"]["outcome"] == "passed"


MEDDLING = """
import copy

import torch
from pytest_prune import prunable


def _magnitude(model, amount):
    names = {module: name for name, module in model.named_modules()}
    masks = {}
    for module, attr in prunable(model):
        weight = getattr(module, attr).detach().abs()
        masks[names[module] + "." + attr] = weight > weight.flatten().kthvalue(round(amount * weight.numel())).values
    return masks


def plain(model, amount, data):
    return _magnitude(model, amount)


def meddling(model, amount, data):
    inputs, _ = next(iter(data))
    with open("batch.txt", "w") as out:
        out.write(str(len(inputs)))
    masks = _magnitude(model, amount)
    dense = copy.deepcopy(model)
    model.register_forward_hook(lambda module, args, output: dense(args[0]))  # the dense parent's answers
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    model.train()
    return masks
"""


def test_only_the_masks_of_a_pruner_reach_the_cell(pytester):
    """A hook answering with the dense parent's outputs, frozen parameters and train mode stay on the pruner's
    copy: the cell scores the masks alone, exactly as a plain pruner with the same masks scores; and the
    pruner's batches have 128 images whatever the finetuning recipe's batch size."""
    pytester.makepyfile(meddling_pruners=MEDDLING)
    result = pytester.runpytest_subprocess(
        "--prune-bench",
        *FAST,
        "--prune-pruner=meddling_pruners.py:plain,meddling_pruners.py:meddling",
        "--prune-compression=16",
        "--prune-recipe=lost-in-pruning-vgg-retrain",
        "--prune-max-drop=100",
        "--prune-latency=off",
        "--prune-no-cache",
        "--prune-json=out.json",
    )
    result.assert_outcomes(passed=2)
    plain, meddling = sorted(records(pytester.path / "out.json"), key=lambda r: r["pruner"] != "plain")
    for key in ("pruned_top1", "top1", "compression_achieved"):
        assert meddling[key] == plain[key], key
    assert plain["pruned_top1"] < plain["dense_top1"] - 0.01  # the hook would have given the dense top-1
    assert (pytester.path / "batch.txt").read_text() == "128"


def test_a_torch_prune_pruner_s_models_keep_the_parameter_order_through_the_cell_cache(pytester):
    """torch's prune.remove registers the weight again after the bias; only the masks reach the cell's model, so
    the pruned model keeps the dense order, which the finetuned model served from the cache has too (the
    README's test zips their parameters)."""
    pytester.makepyfile(my_pruners=STYLES)
    pytester.makepyfile(
        test_order="""
        def test_pruned_weights_stay_pruned(pruned_model, finetuned_model):
            for before, after in zip(pruned_model.parameters(), finetuned_model.parameters()):
                assert (after[before == 0] == 0).all()
        """
    )
    args = (*FAST, "--prune-pruner=my_pruners.py:uses_torch_prune", "--prune-compression=4", "test_order.py")
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=1)
    warm = pytester.runpytest_subprocess(*args)
    warm.assert_outcomes(passed=1)
    warm.stdout.fnmatch_lines(["*1 from the cache*"])


def test_a_pruner_s_bad_masks_are_reported_in_one_line_naming_the_cell(pytester):
    pytester.makepyfile(bad=BAD)
    result = pytester.runpytest(
        *FAST, "--prune-pruner=bad.py:wrong_shape,bad.py:returns_list", "--prune-compression=8", "--prune-json=out.json"
    )
    result.assert_outcomes(errors=2)
    by_pruner = {r["pruner"]: r for r in records(pytester.path / "out.json")}
    assert (
        "digits-lenet300_100-returns_list-8x: pruner 'returns_list': pruner returned a list"
        in (by_pruner["returns_list"]["error"])
    )
    out = result.stdout.str()
    assert "MaskError: digits-lenet300_100-wrong_shape-8x: pruner 'wrong_shape': mask for 'fc1.weight'" in out
    assert "pipeline.py" not in out and "staging.py" not in out  # no harness traceback


def test_sys_exit_in_an_architecture_factory_errors_its_cells_and_the_session_goes_on(pytester, xdist):
    pytester.makepyfile(quits="import sys\n\n\ndef net(input_shape, classes):\n    sys.exit(3)\n")
    result = pytester.runpytest(
        "--prune-dataset=digits",
        "--prune-arch=quits.py:net,lenet300_100",
        "--prune-epochs=1",
        "-p",
        "no:randomly",
        "--prune-pruner=random",
        "--prune-compression=2,4",
        "--prune-json=out.json",
        "--prune-max-drop=100",
        *xdist,
    )
    result.assert_outcomes(passed=2, errors=2)
    by_arch = {(r["arch"], r["compression"]): r for r in records(pytester.path / "out.json")}
    for compression in (2, 4):
        error = by_arch["net", compression]["error"]
        assert error.startswith("UserExit: user code called sys.exit(3) at ") and error.endswith("quits.py:5"), error
        assert by_arch["lenet300_100", compression]["outcome"] == "passed"
