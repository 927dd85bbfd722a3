"""Structured baselines: remove whole filters (with their BatchNorm channel and the next layer's inputs).

Only filters on a sound producer → consumer chain (``metrics.structure``) are candidates, so every
filter these pruners remove can also be removed physically. Each chain loses the same fraction of its
filters (Li et al. 2017's uniform allocation, the "FT" of Lost in Pruning): the largest uniform fraction
that stays below the target, then single filters, each from the chain that brings the count closest to
the target. Every zeroed parameter counts (filter, bias, BatchNorm channel, the consumer's inputs), so
the achieved compression lands on the target within one filter's worth of weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from ..errors import NotApplicable
from ..masks import count_to_remove, prunable_names
from ..metrics.structure import Chain, find_chains
from ..registry import pruner

Masks = dict[str, torch.Tensor]


def _input_shape(data: Iterable) -> tuple[int, ...]:
    inputs, _ = next(iter(data))
    return tuple(int(s) for s in inputs.shape[1:])


def filter_masks(
    model: nn.Module, chains: list[Chain], order: dict[str, torch.Tensor], counts: dict[str, int]
) -> Masks:
    """Masks removing ``counts[producer]`` filters of each chain, in ``order`` (first = removed first)."""
    params = dict(model.named_parameters())
    masks: Masks = {}

    def mask(name: str) -> torch.Tensor:
        if name not in masks:
            masks[name] = torch.ones_like(params[name], dtype=torch.bool)
        return masks[name]

    for chain in chains:
        drop = order[chain.producer][: counts[chain.producer]]
        if len(drop) == 0:
            continue
        for name in (
            f"{chain.producer}.weight",
            f"{chain.producer}.bias",
            f"{chain.norm}.weight",
            f"{chain.norm}.bias",
        ):
            if name in params:
                mask(name)[drop] = False
        columns = (drop[:, None] * chain.block + torch.arange(chain.block, device=drop.device)).flatten()
        mask(f"{chain.consumer}.weight")[:, columns] = False
    return masks


def structured_masks(
    model: nn.Module, amount: float, data: Iterable, scores: Callable[[nn.Module, Chain], torch.Tensor]
) -> Masks:
    """Filter masks whose zeroed parameters match ``amount`` of the prunable weights as closely as filters allow."""
    chains = find_chains(model, _input_shape(data))
    if not chains and amount > 0:
        raise NotApplicable(
            f"{type(model).__name__} has no filters that can be removed soundly (no conv/linear "
            "layer feeds exactly one other through channel-wise operations)"
        )
    order = {chain.producer: torch.argsort(scores(model, chain), stable=True) for chain in chains}
    names = set(prunable_names(model))
    target = count_to_remove(amount, sum(p.numel() for n, p in model.named_parameters() if n in names))
    limit = {c.producer: len(order[c.producer]) - 1 for c in chains}  # every layer keeps one filter

    def zeros(counts: dict[str, int]) -> int:
        return sum(int((~m).sum()) for m in filter_masks(model, chains, order, counts).values())

    def uniform(fraction: float) -> dict[str, int]:
        return {p: min(limit[p], round(fraction * (limit[p] + 1))) for p in limit}

    reachable = zeros(limit)
    if reachable < target - 0.05 * target:
        raise NotApplicable(
            f"{type(model).__name__}: whole filters hold at most {reachable:,} removable parameters, "
            f"{target:,} were asked for (amount {amount:.3f}); the other weights sit in residual or grouped layers"
        )
    low, high = 0.0, 1.0
    for _ in range(30):  # the largest uniform fraction that stays at or below the target
        middle = (low + high) / 2
        low, high = (middle, high) if zeros(uniform(middle)) <= target else (low, middle)
    counts = uniform(low)
    current = zeros(counts)
    while current < target:  # then single filters, wherever they land closest to the target
        options = [(abs(zeros({**counts, p: counts[p] + 1}) - target), p) for p in limit if counts[p] < limit[p]]
        if not options or min(options)[0] >= target - current:
            break
        _, best = min(options)
        counts[best] += 1
        current = zeros(counts)
    return filter_masks(model, chains, order, counts)


def _weight(model: nn.Module, name: str) -> torch.Tensor:
    return dict(model.named_modules())[name].weight.detach()


@pruner
def l1_filter(model: nn.Module, amount: float, data: Iterable) -> Masks:
    """Remove the filters of smallest L1 norm, the same fraction per layer (Li et al. 2017; Lost in Pruning's FT)."""
    return structured_masks(model, amount, data, lambda m, c: _weight(m, c.producer).abs().flatten(1).sum(1))


@pruner
def random_filter(model: nn.Module, amount: float, data: Iterable) -> Masks:
    """Remove random filters, the same fraction per layer: the structured baseline to beat.

    Filters that are already all zero (an earlier round of an iterative schedule) go first.
    """

    def scores(m: nn.Module, chain: Chain) -> torch.Tensor:
        weight = _weight(m, chain.producer).flatten(1)
        return torch.rand(weight.shape[0], device=weight.device).masked_fill(~weight.any(dim=1), -1.0)

    return structured_masks(model, amount, data, scores)
