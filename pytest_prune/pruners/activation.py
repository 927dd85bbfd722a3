"""Activation-weighted magnitude pruning: |w| scaled by how strongly its input is driven on real data."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

import torch
from torch import nn

from ..masks import prunable, prunable_names
from ..registry import pruner
from ._select import global_masks, layer_masks, weights


def _channel_dim(module: nn.Module, x: torch.Tensor) -> int:
    """The dimension of ``x`` that ``module``'s weight reads: a linear layer's last (features, whatever leads
    them: a sequence's tokens too), a convolution's channels (before its spatial dimensions; unbatched too)."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return x.ndim - 1 - len(module.kernel_size)
    return x.ndim - 1


@torch.no_grad()
def input_activity(model: nn.Module, data: Iterable, batches: int = 1) -> list[torch.Tensor]:
    """Per prunable layer, the mean |input| per input channel (feature for linear layers), in eval mode.

    A layer that is never called as a module on the data (an auxiliary head that only runs in training, or
    ``nn.MultiheadAttention``'s output projection, whose weight it reads directly) has no measured activity:
    that is an error naming it, not a guess.
    """
    layers = [module for module, _ in prunable(model)]
    sums: dict[nn.Module, torch.Tensor] = {}
    counts: dict[nn.Module, int] = dict.fromkeys(layers, 0)

    def record(module: nn.Module, inputs: tuple, _output: torch.Tensor) -> None:
        x = inputs[0].abs()
        channel_dim = _channel_dim(module, x)
        reduce = [d for d in range(x.ndim) if d != channel_dim]
        sums[module] = sums.get(module, 0) + x.mean(dim=reduce)
        counts[module] += 1

    handles = [layer.register_forward_hook(record) for layer in layers]
    mode = model.training
    model.eval()
    try:
        for inputs, _ in islice(data, batches):
            model(inputs)
    finally:
        model.train(mode)
        for handle in handles:
            handle.remove()
    silent = [name for name, layer in zip(prunable_names(model), layers, strict=True) if not counts[layer]]
    if silent:
        raise ValueError(
            f"activation pruning needs each prunable layer's inputs, but {', '.join(silent)} never ran as a "
            "module on the data (a head used only in training, or a weight another module reads directly, as "
            "nn.MultiheadAttention does its out_proj); use a magnitude or gradient pruner for this model"
        )
    return [sums[layer] / counts[layer] for layer in layers]


def activation_scores(model: nn.Module, data: Iterable) -> list[torch.Tensor]:
    """|w| × the mean |input| of the input channel each weight reads (ShrinkBench's activation importance)."""
    scores = []
    layers = [module for module, _ in prunable(model)]
    for layer, weight, activity in zip(layers, weights(model), input_activity(model, data), strict=True):
        if isinstance(layer, nn.modules.conv._ConvTransposeNd):  # weight (in, out / groups, ...): rows read
            scores.append(weight.abs() * activity.reshape((-1,) + (1,) * (weight.ndim - 1)))
            continue
        groups = activity.numel() // weight.shape[1]  # a grouped conv's filters each read one slice
        shape = (1, weight.shape[1]) + (1,) * (weight.ndim - 2)
        if groups > 1:
            per_group = weight.shape[0] // groups
            activity = activity.view(groups, weight.shape[1]).repeat_interleave(per_group, dim=0)
            shape = (weight.shape[0], weight.shape[1]) + (1,) * (weight.ndim - 2)
        scores.append(weight.abs() * activity.reshape(shape))
    return scores


@pruner
def global_activation(model: nn.Module, amount: float, data: Iterable) -> dict[str, torch.Tensor]:
    """One global threshold on |w|·mean|input| over the first batch (ShrinkBench GlobalMagAct)."""
    return global_masks(model, activation_scores(model, data), amount)


@pruner
def layer_activation(model: nn.Module, amount: float, data: Iterable) -> dict[str, torch.Tensor]:
    """The same fraction of lowest |w|·mean|input| in every layer, first batch (ShrinkBench LayerMagAct)."""
    return layer_masks(model, activation_scores(model, data), amount)
