"""Training (pretraining and finetuning with masks enforced) and evaluation, on in-memory tensors."""

from __future__ import annotations

import contextlib
import math
import random
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data.augment import augment_batch
from .data.base import Batches, ImageDataset
from .recipes import FINETUNE, PRETRAIN, Recipe

__all__ = [
    "FINETUNE",
    "PRETRAIN",
    "Recipe",
    "evaluate",
    "finetune_seed",
    "seed_everything",
    "torch_threads",
    "train",
]


def finetune_seed(seed: int, round_: int = 1) -> int:
    """The training seed of a cell's finetuning (round ``round_`` of its schedule), from its seed: the rounds of
    an iterative schedule, and the repeats' seeds, each train on batch orders of their own (``train``)."""
    return zlib.crc32(f"finetune/{seed}/{round_}".encode())


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


@contextlib.contextmanager
def torch_state_kept() -> Iterator[None]:
    """Restore the process-wide torch state user code may change and later cells depend on: grad mode (a
    pruner that calls ``torch.set_grad_enabled(False)`` would break the finetuning of every cell after it)
    and the default dtype."""
    dtype = torch.get_default_dtype()
    try:
        with torch.set_grad_enabled(torch.is_grad_enabled()):  # restores the mode found, whatever happens inside
            yield
    finally:
        torch.set_default_dtype(dtype)


class Diverged(ValueError):
    """Training reached a NaN or infinite loss: its weights are useless, and no reference is cached from them."""


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
    if recipe.schedule == "cosine" and not recipe.warmup_epochs:
        schedule: Any = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, recipe.epochs * steps)
    else:
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: recipe.factor(step, steps))
    model.train()
    loss = torch.zeros(())
    for epoch in range(recipe.epochs):
        # a new order (and new augmentation draws) each epoch, the same for the same seed; seed s's orders
        # are seeded s·100003 + epoch, so no two seeds share one (seed 0's are 0, 1, …, as they always were)
        generator = torch.Generator().manual_seed(zlib.crc32(f"augment/{seed}/{epoch}".encode()))
        for inputs, targets in Batches(data.train_x, data.train_y, recipe.batch_size, seed * 100_003 + epoch):
            if data.augmentation:
                inputs = augment_batch(inputs, data.augmentation, data.normalisation, generator)
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(inputs), targets)
            loss.backward()
            optimizer.step()
            schedule.step()
            if after_step is not None:
                after_step()
        last = float(loss.detach())  # once an epoch: a check per step would wait for the device every step
        if not math.isfinite(last):
            raise Diverged(
                f"training diverged: the loss is {last} after epoch {epoch + 1} of {recipe.epochs} "
                f"(recipe {recipe.name!r}, lr {recipe.lr:g}); a lower learning rate may train"
            )
        if progress is not None:
            progress(epoch + 1, last)
    model.eval()
    return last


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
