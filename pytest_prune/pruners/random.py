"""Random pruning: the baseline every method must beat."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..registry import pruner
from ._select import global_masks, weights


@pruner("random")
def random_pruner(model: nn.Module, amount: float, data: Iterable) -> dict[str, torch.Tensor]:
    """Remove ``amount`` of all prunable weights uniformly at random (ShrinkBench RandomPruning, exact count).

    Draws from torch's global generator, which the harness seeds before calling a pruner. Weights that are
    already zero (an earlier round of an iterative schedule) go first, so ``amount`` counts them.
    """
    scores = [torch.rand(w.shape, device=w.device) for w in weights(model)]
    return global_masks(model, scores, amount)
