"""Magnitude pruning: remove the weights of smallest |w|."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..registry import pruner
from ._select import global_masks, layer_masks, weights


@pruner
def global_magnitude(model: nn.Module, amount: float, data: Iterable) -> dict[str, torch.Tensor]:
    """One global |w| threshold over all prunable weights (ShrinkBench GlobalMagWeight; Han et al. 2015)."""
    return global_masks(model, [w.abs() for w in weights(model)], amount)


@pruner
def layer_magnitude(model: nn.Module, amount: float, data: Iterable) -> dict[str, torch.Tensor]:
    """The same fraction of smallest |w| in every prunable layer (ShrinkBench LayerMagWeight)."""
    return layer_masks(model, [w.abs() for w in weights(model)], amount)
