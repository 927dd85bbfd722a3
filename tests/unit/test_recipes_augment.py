"""Recipes (schedules, per-family pretraining, --prune-recipe) and the CIFAR crop4+flip augmentation."""

from __future__ import annotations

import pytest
import torch

from pytest_prune.data.augment import augment_batch, parse
from pytest_prune.recipes import FINETUNE, LIP_RESNET, LIP_VGG, PRETRAIN, RECIPES, SHRINKBENCH, pretrain_recipe
from pytest_prune.settings import SettingsError, build


def test_multistep_with_warmup_follows_the_published_schedule():
    steps = 10  # per epoch
    factors = [LIP_RESNET.factor(e * steps, steps) for e in (0, 4, 5, 90, 91, 135, 136, 181)]
    assert factors[0] == pytest.approx(1 / 50) and factors[1] == pytest.approx(41 / 50)
    assert factors[2:] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    vgg = [LIP_VGG.factor(e * steps, steps) for e in (29, 30, 60, 299)]
    assert vgg == pytest.approx([1, 0.5, 0.25, 0.5**9])
    shortened = LIP_RESNET.with_epochs(10)  # milestones keep their place: ×0.1 at half, ×0.01 at three quarters
    assert shortened.factor(5 * steps, steps) == pytest.approx(0.1)
    assert SHRINKBENCH.factor(999, steps) == 1.0 and SHRINKBENCH.weight_decay == 0


@pytest.mark.parametrize("recipe", [LIP_RESNET, LIP_VGG], ids=["resnet", "vgg"])
@pytest.mark.parametrize("epochs", [2, 5, 10])
def test_a_short_run_keeps_the_schedule_shape_warm_up_included(recipe, epochs):
    """The warm-up scales with the epochs: kept at 5 or 10 epochs it covered a short run, whose learning rate
    rose to its peak at the last step and never decayed."""
    steps = 32
    short = recipe.with_epochs(epochs)
    assert short.warmup_epochs == pytest.approx(recipe.warmup_epochs * epochs / recipe.epochs)
    factors = [short.factor(step, steps) for step in range(epochs * steps)]
    peak = max(range(len(factors)), key=factors.__getitem__)
    assert factors[peak] == 1.0 and peak < min(short.milestones) * epochs * steps  # warmed up before the first decay
    last = recipe.factor(recipe.epochs * steps - 1, steps)  # where the full-length schedule ends
    assert factors[-1] == pytest.approx(last, rel=1e-9)


def test_each_dataset_family_has_its_pretraining_recipe():
    assert pretrain_recipe("cifar10", "resnet56") is LIP_RESNET
    assert pretrain_recipe("cifar100", "vgg16") is LIP_VGG
    assert pretrain_recipe("mnist5k", "lenet5") is PRETRAIN and pretrain_recipe("imagenet", "tv:resnet18").epochs == 90


def test_prune_recipe_selects_and_records_the_finetuning_recipe():
    assert build({}).finetune_recipe == FINETUNE
    chosen = build({"recipe": "shrinkbench"})
    assert chosen.epochs == 30 and chosen.finetune_recipe.to_dict()["name"] == "shrinkbench"
    assert build({"recipe": "shrinkbench", "epochs": "3"}).finetune_recipe.epochs == 3
    with pytest.raises(SettingsError, match="unknown recipe 'sb'; valid: default, imagenet, lost-in-pruning"):
        build({"recipe": "sb"})
    assert set(RECIPES) >= {"default", "shrinkbench", "lost-in-pruning-resnet", "lost-in-pruning-vgg-retrain"}


def test_crop4_flip_pads_with_black_and_keeps_shape():
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.2, 0.2]
    x = torch.randn(64, 3, 32, 32)
    out = augment_batch(x, "crop4+flip", {"mean": mean, "std": std}, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    black = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)]).view(1, 3, 1, 1)
    border = (out == black.expand_as(out)).all(dim=1)  # pixels that came from the padding
    assert border.any() and not border.all()
    again = augment_batch(x, "crop4+flip", {"mean": mean, "std": std}, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_flip_alone_mirrors_about_half_and_crop_alone_shifts():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4).repeat(500, 1, 1, 1)
    flipped = augment_batch(x, "flip", {}, torch.Generator().manual_seed(1))
    mirrored = (flipped == x.flip(3)).flatten(1).all(1).float().mean()
    assert 0.4 < float(mirrored) < 0.6
    shifted = augment_batch(x, "crop1", {}, torch.Generator().manual_seed(2))
    assert not torch.equal(shifted, x) and shifted.shape == x.shape
    assert parse("crop4+flip") == (4, True) and parse("flip") == (0, True)
    with pytest.raises(ValueError, match="expected cropN, flip or cropN\\+flip"):
        parse("rotate")
