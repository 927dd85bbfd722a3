"""Gradient-based pruning: |w · ∂L/∂w|, the first-order estimate of the loss change from removing w.

Gradients come from ``torch.autograd.grad`` in eval mode, so BatchNorm statistics and ``.grad`` are left
untouched (ShrinkBench's GradientMixin ran a train-mode pass and moved BatchNorm statistics).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

import torch
import torch.nn.functional as F
from torch import nn

from ..masks import prunable
from ..registry import pruner
from ._select import global_masks, layer_masks, weights


def weight_times_gradient(model: nn.Module, data: Iterable, batches: int | None) -> list[torch.Tensor]:
    """|w · ∂L/∂w| per prunable weight, the gradient summed over the first ``batches`` batches (None = all).

    A weight the loss does not depend on in eval mode (an auxiliary head that only runs in training) has
    gradient zero, so it scores zero: removing it does not change the loss on this data.
    """
    params = [getattr(module, attr) for module, attr in prunable(model)]
    totals = [torch.zeros_like(p) for p in params]
    mode = model.training
    frozen = [p for p in params if not p.requires_grad]  # a frozen weight has a gradient all the same
    model.eval()
    try:
        for p in frozen:
            p.requires_grad_(True)
        for inputs, targets in islice(data, batches):
            loss = F.cross_entropy(model(inputs), targets, reduction="sum")
            for total, grad in zip(totals, torch.autograd.grad(loss, params, allow_unused=True), strict=True):
                if grad is not None:
                    total += grad
    finally:
        model.train(mode)
        for p in frozen:
            p.requires_grad_(False)
    return [(w * g).abs() for w, g in zip(weights(model), totals, strict=True)]


@pruner
def global_gradient(model: nn.Module, amount: float, data: Iterable) -> dict[str, torch.Tensor]:
    """One global threshold on |w·∂L/∂w| from the first batch (ShrinkBench GlobalMagGrad)."""
    return global_masks(model, weight_times_gradient(model, data, 1), amount)


@pruner
def layer_gradient(model: nn.Module, amount: float, data: Iterable) -> dict[str, torch.Tensor]:
    """The same fraction of lowest |w·∂L/∂w| in every layer, first batch (ShrinkBench LayerMagGrad)."""
    return layer_masks(model, weight_times_gradient(model, data, 1), amount)


@pruner
def snip(model: nn.Module, amount: float, data: Iterable) -> dict[str, torch.Tensor]:
    """Connection sensitivity |∂L/∂c| = |w·∂L/∂w| over one pass of ``data``, ranked globally (Lee et al. 2019, SNIP).

    SNIP scores a network at initialisation from one batch; here it scores the pretrained weights from the
    whole training pass, which is what separates it from ``global_gradient``'s single batch.
    """
    return global_masks(model, weight_times_gradient(model, data, None), amount)
