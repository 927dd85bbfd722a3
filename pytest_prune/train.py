"""Training (pretraining and finetuning with masks enforced) and evaluation, on in-memory tensors."""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data.base import Batches, ImageDataset


@dataclass(frozen=True)
class Recipe:
    """An SGD training recipe: nesterov momentum, weight decay, cosine learning-rate decay per step."""

    epochs: int
    lr: float
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON records and manifests."""
        return {"optimizer": "sgd", "schedule": "cosine", **asdict(self)}

    def with_epochs(self, epochs: int) -> Recipe:
        """The same recipe for a different number of epochs."""
        return replace(self, epochs=epochs)


PRETRAIN = Recipe(epochs=20, lr=0.05)
"""Reference training of the built-in (dataset, architecture) pairs and of user architectures."""

FINETUNE = Recipe(epochs=2, lr=0.01)
"""Finetuning after pruning; ``--prune-epochs`` sets the epochs."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a pruner's own randomness is reproducible."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run with ``threads`` intra-op CPU threads; results depend on it bit for bit, so it is a setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train(
    model: nn.Module,
    data: ImageDataset,
    recipe: Recipe,
    seed: int,
    after_step: Callable[[], None] | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> float:
    """Train in place with cross-entropy; ``after_step`` runs after every optimiser step. Returns the last loss."""
    if recipe.epochs <= 0:
        return math.nan
    steps = -(-len(data.train_x) // recipe.batch_size)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        nesterov=recipe.nesterov,
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, recipe.epochs * steps)
    model.train()
    loss = torch.zeros(())
    for epoch in range(recipe.epochs):
        # a new order each epoch, the same for the same seed
        for inputs, targets in Batches(data.train_x, data.train_y, recipe.batch_size, seed + epoch):
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(inputs), targets)
            loss.backward()
            optimizer.step()
            schedule.step()
            if after_step is not None:
                after_step()
        if progress is not None:
            progress(epoch + 1, float(loss.detach()))
    model.eval()
    return float(loss.detach())


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> tuple[float, float]:
    """Top-1 and top-5 accuracy (fractions) counted per sample, in eval mode; the mode is restored."""
    was_training = model.training
    model.eval()
    correct1 = correct5 = 0
    try:
        for start in range(0, len(x), batch_size):
            logits = model(x[start : start + batch_size])
            target = y[start : start + batch_size]
            k = min(5, logits.shape[1])
            top = logits.topk(k, dim=1).indices
            hits = top == target[:, None]
            correct1 += int(hits[:, 0].sum())
            correct5 += int(hits.any(dim=1).sum())
    finally:
        model.train(was_training)
    return correct1 / len(x), correct5 / len(x)
