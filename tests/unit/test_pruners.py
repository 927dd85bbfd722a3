from __future__ import annotations

import copy

import pytest
import torch

from pytest_prune.data.base import Batches
from pytest_prune.masks import count_to_remove, derive_masks, prunable_names
from pytest_prune.pruners.activation import global_activation, layer_activation
from pytest_prune.pruners.gradient import global_gradient, layer_gradient, snip
from pytest_prune.pruners.magnitude import global_magnitude, layer_magnitude
from pytest_prune.pruners.random import random_pruner

PRUNERS = [
    global_magnitude,
    layer_magnitude,
    random_pruner,
    global_gradient,
    layer_gradient,
    snip,
    global_activation,
    layer_activation,
]
LAYERWISE = {layer_magnitude, layer_gradient, layer_activation}


def batches(shape, classes=5, n=24):
    generator = torch.Generator().manual_seed(0)
    return Batches(
        torch.randn(n, *shape, generator=generator), torch.randint(0, classes, (n,), generator=generator), 8, 0
    )


@pytest.mark.parametrize("fn", PRUNERS)
@pytest.mark.parametrize("amount", [0.0, 0.3, 0.9])
def test_removes_the_requested_amount_and_leaves_the_model_alone(tiny_cnn, fn, amount):
    before = copy.deepcopy(tiny_cnn.state_dict())
    masks = fn(tiny_cnn, amount, batches((3, 8, 8)))
    assert all(torch.equal(v, tiny_cnn.state_dict()[k]) for k, v in before.items())  # BN statistics too
    assert all(p.grad is None for p in tiny_cnn.parameters())
    assert list(masks) == prunable_names(tiny_cnn)
    total = sum(m.numel() for m in masks.values())
    removed = sum(int((~m).sum()) for m in masks.values())
    if fn in LAYERWISE:
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


def test_gradient_scores_match_an_independent_backward_pass(tiny_mlp):
    data = batches((8,), classes=3)
    inputs, targets = next(iter(data))
    tiny_mlp.zero_grad()
    torch.nn.functional.cross_entropy(tiny_mlp(inputs), targets, reduction="sum").backward()
    scores = torch.cat([(tiny_mlp[i].weight * tiny_mlp[i].weight.grad).abs().flatten() for i in (0, 2)])
    tiny_mlp.zero_grad(set_to_none=True)
    masks = global_gradient(tiny_mlp, 0.4, data)
    kept = torch.cat([masks["0.weight"].flatten(), masks["2.weight"].flatten()])
    assert scores[~kept].max() <= scores[kept].min()


def test_activation_pruning_removes_weights_reading_a_dead_input_first(tiny_mlp):
    inputs = torch.randn(24, 8)
    inputs[:, 3] = 0  # feature 3 is never active
    masks = layer_activation(tiny_mlp, 1 / 8, Batches(inputs, torch.randint(0, 3, (24,)), 8, 0))
    assert not masks["0.weight"][:, 3].any() and masks["0.weight"][:, :3].all()


class TokenMLP(torch.nn.Module):
    """A linear layer over the features of each token of a sequence (N, tokens, features), then a classifier."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(6, 5)
        self.head = torch.nn.Linear(5, 3)

    def forward(self, x):
        return self.head(self.proj(x).relu().mean(1))


def test_activation_pruning_reads_a_linear_layers_features_on_token_sequences():
    inputs = torch.randn(16, 4, 6)
    inputs[..., 2] = 0  # feature 2 of every token is never active
    masks = layer_activation(TokenMLP(), 1 / 6, Batches(inputs, torch.randint(0, 3, (16,)), 8, 0))
    assert not masks["proj.weight"][:, 2].any() and masks["proj.weight"][:, [0, 1, 3, 4, 5]].all()


def test_activation_pruning_reads_a_transposed_convolutions_input_channels():
    model = torch.nn.Sequential(torch.nn.ConvTranspose2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 7 * 7, 3))
    inputs = torch.randn(16, 3, 5, 5)
    inputs[:, 1] = 0  # input channel 1 is never active: its weights are weight[1] (in, out, kH, kW)
    masks = layer_activation(model, 1 / 3, Batches(inputs, torch.randint(0, 3, (16,)), 8, 0))
    assert not masks["0.weight"][1].any() and masks["0.weight"][[0, 2]].all()


class AuxHead(torch.nn.Module):
    """A prunable auxiliary head that never runs in eval mode (as Inception's)."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(8, 6)
        self.aux = torch.nn.Linear(6, 3)
        self.head = torch.nn.Linear(6, 3)

    def forward(self, x):
        features = self.body(x).relu()
        return (self.head(features), self.aux(features)) if self.training else self.head(features)


@pytest.mark.parametrize("fn", [global_gradient, snip])
def test_gradient_pruning_scores_a_weight_the_loss_never_reads_zero(fn):
    masks = fn(AuxHead(), 18 / 66, batches((8,), classes=3))
    assert not masks["aux.weight"].any() and masks["body.weight"].all()


@pytest.mark.parametrize("fn", [global_activation, layer_activation])
def test_activation_pruning_names_a_layer_that_never_ran(fn):
    with pytest.raises(ValueError, match="aux.weight never ran as a module on the data"):
        fn(AuxHead(), 0.5, batches((8,), classes=3))


def dead_units_half_pruned():
    """Hidden units 0–3 never fire (zero gradient into their weights) and half of layer 2 is zero already."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4)
    )
    with torch.no_grad():
        model[0].bias[:4] = -100.0
        model[2].weight[:, 4:] = 0.0
    return model


@pytest.mark.parametrize("fn", PRUNERS)
def test_weights_that_are_zero_already_go_first_whatever_they_score(fn):
    model = dead_units_half_pruned()
    zero = {name: dict(model.named_parameters())[name] == 0 for name in prunable_names(model)}
    masks = fn(model, 40 / 128, batches((8,), classes=4, n=32))
    for name, keep in masks.items():  # zeros first: every zero is removed, or only zeros are
        removed = ~keep
        assert not (keep & zero[name]).any() or not (removed & ~zero[name]).any(), name
    removed = sum(int((~keep).sum()) for keep in masks.values())
    if fn in LAYERWISE:
        assert removed == sum(count_to_remove(40 / 128, keep.numel()) for keep in masks.values())
    else:
        assert removed == 40  # the 32 zeros and 8 more, not the live weights the zeros tie with


@pytest.mark.parametrize("fn", [global_gradient, layer_gradient, snip])
def test_gradient_pruners_score_a_frozen_weight_and_leave_it_frozen(tiny_mlp, fn):
    first = next(tiny_mlp.parameters())
    first.requires_grad_(False)
    masks = fn(tiny_mlp, 0.5, batches((8,), classes=3))
    assert not first.requires_grad and sum(int((~m).sum()) for m in masks.values()) > 0
