"""--prune-conformance: hypothesis properties catch broken pruners in seconds and name the architecture."""

from __future__ import annotations

import re

BROKEN = '''
import os

import torch
from pytest_prune import prunable, pruner


@pruner
def only_linear(model, amount, data):
    """Assumes 2-D weights: fine on MLPs, wrong on conv nets."""
    masks = {}
    for name, module in model.named_modules():
        if (module, "weight") in prunable(model):
            w = module.weight.detach()
            k = round(amount * w.numel())
            if w.ndim != 2:
                raise TypeError(f"only_linear cannot score a {w.ndim}-D weight")
            keep = torch.ones(w.numel(), dtype=torch.bool)
            keep[w.abs().flatten().argsort()[:k]] = False
            masks[name + ".weight"] = keep.view_as(w)
    return masks


@pruner
def unseeded(model, amount, data):
    """Draws its randomness from the operating system: not reproducible."""
    generator = torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))
    masks = {}
    for name, module in model.named_modules():
        if (module, "weight") in prunable(model):
            masks[name + ".weight"] = torch.rand(module.weight.shape, generator=generator) >= amount
    return masks


@pruner
def rescales(model, amount, data):
    """Zeroes the smallest weights but also scales the kept ones."""
    with torch.no_grad():
        for module, attr in prunable(model):
            w = getattr(module, attr)
            k = round(amount * w.numel())
            w.view(-1)[w.abs().flatten().argsort()[:k]] = 0
            w.mul_(1.1)


def _lowest(model, amount, score):
    masks = {}
    for name, module in model.named_modules():
        if (module, "weight") in prunable(model):
            w = module.weight.detach()
            keep = torch.ones(w.numel(), dtype=torch.bool)
            keep[score(w).flatten().argsort()[: round(amount * w.numel())]] = False
            masks[name + ".weight"] = keep.view_as(w)
    return masks


@pruner
def forgets_zeros(model, amount, data):
    """Removes an exact count, but by random scores drawn anew for each amount, which rank the zeros of an earlier
    round with the rest."""
    generator = torch.Generator().manual_seed(round(amount * 10**6))
    return _lowest(model, amount, lambda w: torch.rand(w.shape, generator=generator))


@pruner
def tops_out(model, amount, data):
    """Layer magnitude that never removes more than 80% of a layer."""
    return _lowest(model, min(amount, 0.8), torch.abs)
'''


def test_builtin_pruners_conform(pytester):
    result = pytester.runpytest("--prune-conformance", "--prune-pruner=*", "-v")
    result.assert_outcomes(passed=10)
    assert "test_conformance[l1_filter]" in result.stdout.str()


def test_broken_pruners_fail_with_the_property_and_the_architecture(pytester, xdist):
    pytester.makepyfile(broken=BROKEN)
    result = pytester.runpytest(
        "--prune-conformance",
        "--prune-pruner=broken.py:only_linear,broken.py:unseeded,broken.py:rescales",
        "--prune-pruner=broken.py:forgets_zeros,broken.py:tops_out,global_magnitude",
        "--hypothesis-seed=0",  # the same examples every run: a pass or failure here is the code's, not the draw's
        *xdist,
    )
    result.assert_outcomes(passed=1, failed=5)
    out = result.stdout.str()
    sections = dict(re.findall(r"_+ test_conformance\[(\w+)\] _+\n(.*?)(?=\n_{3,} |\n=+ )", out, re.S))
    assert "rank weights that are already zero first" in sections["forgets_zeros"]  # the iterative property
    assert re.search(r"asked to remove 0\.(8[5-9]|9)\d* of", sections["tops_out"])  # high amounts are drawn
    assert "spec=ArchSpec(" in out and "kind='conv'" in out  # the shrunk counterexample names it
    assert "not deterministic for seed" in out
    assert "the pruner changed kept weights of" in out
    assert "test_prune[" not in out  # conformance does not start a benchmark run


COUNTING = """
import torch

from pytest_prune.pruners.magnitude import global_magnitude


def counted(model, amount, data):
    with open("threads.txt", "a") as out:
        out.write(f"{torch.get_num_threads()}\\n")
    return global_magnitude(model, amount, data)
"""


def test_conformance_runs_with_the_configured_thread_count(pytester):
    """As the benchmark's cells do: more threads than asked would oversubscribe the cores `-n` shares out (3, a count
    torch seldom picks by itself, so the test does not pass by chance)."""
    pytester.makepyfile(counting=COUNTING)
    args = ("--prune-conformance", "--prune-pruner=counting.py:counted", "--prune-threads=3")
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=1)
    assert set((pytester.path / "threads.txt").read_text().split()) == {"3"}
