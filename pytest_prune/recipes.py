"""Training recipes: the pretraining recipe of each dataset family and the selectable finetuning recipes.

A recipe is SGD with momentum and a per-step learning-rate schedule: ``cosine`` decay, ``multistep`` decay
by ``gamma`` at ``milestones`` (fractions of the epochs, so a shortened run keeps the shape), or
``constant``; an optional linear warm-up over the first ``warmup_epochs`` (scaled with the epochs too).
Dataset augmentation (random crop + flip for CIFAR) belongs to the dataset and applies whenever a recipe
trains on it.

Sources of the published recipes:

* ``lost-in-pruning-resnet``: Liebenwein et al. 2021, ``param/training/cifar/resnet.yaml``: 182 epochs, lr 0.1,
  momentum 0.9, weight decay 1e-4, batch 128, ×0.1 at epochs 91 and 136, 5 warm-up epochs. Their
  retraining after each pruning step repeats this full schedule.
* ``lost-in-pruning-vgg``: the same paper's VGG16_bn: 300 epochs, lr 0.05, weight decay 5e-4, batch 256,
  ×0.5 every 30 epochs, 10 warm-up epochs; ``lost-in-pruning-vgg-retrain`` is its 150-epoch retraining.
* ``shrinkbench``: Blalock et al. 2020's fine-tuning defaults: SGD lr 1e-3, nesterov momentum 0.9, no weight
  decay, no schedule, 30 epochs, batch 128.
* ``imagenet``: the standard 90 epochs, lr 0.1, weight decay 1e-4, batch 256, ×0.1 at 30, 60 and 80.

This module imports neither torch nor numpy (settings validate recipe names at configure time).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Recipe:
    """An SGD training recipe with a per-step learning-rate schedule."""

    epochs: int
    lr: float
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    schedule: str = "cosine"  # cosine | multistep | constant
    milestones: tuple[float, ...] = ()  # fractions of the epochs (multistep)
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    name: str = "default"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON records and manifests."""
        out = {"optimizer": "sgd", **asdict(self)}
        out["milestones"] = list(self.milestones)
        return out

    def with_epochs(self, epochs: int) -> Recipe:
        """The same recipe for a different number of epochs: milestones and warm-up scale with them, so a short
        run keeps the schedule's shape (a warm-up kept at its length would cover a 2-epoch run, whose learning
        rate would then rise to its peak and never decay)."""
        if epochs == self.epochs:
            return self
        warmup = self.warmup_epochs * epochs / self.epochs if self.epochs else self.warmup_epochs
        return replace(self, epochs=epochs, warmup_epochs=warmup)

    def factor(self, step: int, steps_per_epoch: int) -> float:
        """Learning-rate multiplier after ``step`` optimiser steps."""
        total = max(1, self.epochs * steps_per_epoch)
        warmup = min(total, round(self.warmup_epochs * steps_per_epoch))
        if step < warmup:
            return (step + 1) / warmup
        if self.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        if self.schedule == "multistep":
            epoch = step / steps_per_epoch
            return self.gamma ** sum(epoch >= m * self.epochs for m in self.milestones)
        return 1.0


PRETRAIN = Recipe(epochs=20, lr=0.05, name="pretrain")
"""Reference training of the embedded and MNIST-family pairs and of user architectures."""

FINETUNE = Recipe(epochs=2, lr=0.01, name="default")
"""Finetuning after pruning unless ``--prune-recipe`` picks another; ``--prune-epochs`` sets the epochs."""

LIP_RESNET = Recipe(
    epochs=182,
    lr=0.1,
    weight_decay=1e-4,
    nesterov=False,
    schedule="multistep",
    milestones=(91 / 182, 136 / 182),
    warmup_epochs=5,
    name="lost-in-pruning-resnet",
)
LIP_VGG = Recipe(
    epochs=300,
    lr=0.05,
    batch_size=256,
    nesterov=False,
    schedule="multistep",
    milestones=tuple(e / 300 for e in range(30, 300, 30)),
    gamma=0.5,
    warmup_epochs=10,
    name="lost-in-pruning-vgg",
)
LIP_VGG_RETRAIN = replace(
    LIP_VGG, epochs=150, milestones=tuple(e / 150 for e in range(30, 150, 30)), name="lost-in-pruning-vgg-retrain"
)
SHRINKBENCH = Recipe(epochs=30, lr=1e-3, weight_decay=0.0, schedule="constant", name="shrinkbench")
IMAGENET = Recipe(
    epochs=90,
    lr=0.1,
    batch_size=256,
    weight_decay=1e-4,
    nesterov=False,
    schedule="multistep",
    milestones=(30 / 90, 60 / 90, 80 / 90),
    name="imagenet",
)

RECIPES = {r.name: r for r in (FINETUNE, PRETRAIN, SHRINKBENCH, LIP_RESNET, LIP_VGG, LIP_VGG_RETRAIN, IMAGENET)}
"""Every recipe by name: ``--prune-recipe`` picks the finetuning one, ``pytest-prune train --recipe`` the other."""

CIFAR_DATASETS = frozenset({"cifar10", "cifar100"})


def pretrain_recipe(dataset: str, arch: str) -> Recipe:
    """The standard pretraining recipe of a (dataset, architecture) pair, by dataset family."""
    if dataset in CIFAR_DATASETS and arch.startswith("vgg"):
        return LIP_VGG
    if dataset in CIFAR_DATASETS:
        return LIP_RESNET
    if dataset == "imagenet":
        return IMAGENET
    return PRETRAIN
