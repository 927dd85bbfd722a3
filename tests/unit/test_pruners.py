from __future__ import annotations

import copy

import pytest
import torch

from pytest_prune.masks import count_to_remove, derive_masks, prunable_names
from pytest_prune.pruners.magnitude import global_magnitude, layer_magnitude
from pytest_prune.pruners.random import random_pruner

PRUNERS = [global_magnitude, layer_magnitude, random_pruner]


@pytest.mark.parametrize("fn", PRUNERS)
@pytest.mark.parametrize("amount", [0.0, 0.3, 0.9])
def test_removes_the_requested_amount_and_leaves_the_model_alone(tiny_cnn, fn, amount):
    before = copy.deepcopy(tiny_cnn.state_dict())
    masks = fn(tiny_cnn, amount, [])
    assert all(torch.equal(v, tiny_cnn.state_dict()[k]) for k, v in before.items())
    assert list(masks) == prunable_names(tiny_cnn)
    total = sum(m.numel() for m in masks.values())
    removed = sum(int((~m).sum()) for m in masks.values())
    if fn is layer_magnitude:
        assert removed == sum(count_to_remove(amount, m.numel()) for m in masks.values())
    else:
        assert removed == count_to_remove(amount, total)


def test_global_magnitude_removes_the_smallest_weights_overall(tiny_mlp):
    masks = global_magnitude(tiny_mlp, 0.5, [])
    kept = torch.cat([tiny_mlp[0].weight[masks["0.weight"]], tiny_mlp[2].weight[masks["2.weight"]]]).abs()
    gone = torch.cat([tiny_mlp[0].weight[~masks["0.weight"]], tiny_mlp[2].weight[~masks["2.weight"]]]).abs()
    assert gone.max() <= kept.min()


def test_layer_magnitude_prunes_each_layer_by_the_same_fraction(tiny_mlp):
    masks = layer_magnitude(tiny_mlp, 0.25, [])
    assert [int((~m).sum()) for m in masks.values()] == [32, 48]


def test_random_is_reproducible_for_a_seed_and_differs_across_seeds(tiny_mlp):
    def draw(seed):
        torch.manual_seed(seed)
        return random_pruner(tiny_mlp, 0.5, [])["0.weight"]

    assert torch.equal(draw(1), draw(1)) and not torch.equal(draw(1), draw(2))


def test_masks_from_builtins_pass_validation(tiny_cnn):
    state = {n: p.detach().clone() for n, p in tiny_cnn.named_parameters()}
    derive_masks(tiny_cnn, global_magnitude(tiny_cnn, 0.7, []), state)
    assert int((tiny_cnn[0].weight == 0).sum()) > 0
