"""Turning importance scores into masks that remove an exact number of weights."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..masks import count_to_remove, prunable, prunable_names


def lowest_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean keep-mask that removes exactly the ``k`` lowest scores (ties broken by position)."""
    keep = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if k > 0:
        order = torch.argsort(scores.flatten(), stable=True)
        keep[order[:k]] = False
    return keep.view_as(scores)


def _zeros_first(model: nn.Module, scores: list[torch.Tensor]) -> list[torch.Tensor]:
    """``scores`` with the weights that are zero already ranked lowest, whatever they scored.

    Under an iterative schedule the amount counts the zeros of earlier rounds; a score can tie them with
    live weights (a zero gradient, an input that never fires) and a stable sort would then remove the live
    weights that come first instead.
    """
    return [score.masked_fill(w == 0, -math.inf) for score, w in zip(scores, weights(model), strict=True)]


def global_masks(model: nn.Module, scores: list[torch.Tensor], amount: float) -> dict[str, torch.Tensor]:
    """Remove the lowest-scoring ``amount`` of all prunable weights, ranked together (zeros first)."""
    scores = _zeros_first(model, scores)
    flat = torch.cat([s.flatten() for s in scores])
    keep = lowest_k_mask(flat, count_to_remove(amount, flat.numel()))
    masks, start = {}, 0
    for name, score in zip(prunable_names(model), scores, strict=True):
        masks[name] = keep[start : start + score.numel()].view_as(score)
        start += score.numel()
    return masks


def layer_masks(model: nn.Module, scores: list[torch.Tensor], amount: float) -> dict[str, torch.Tensor]:
    """Remove the lowest-scoring ``amount`` of each prunable weight separately (zeros first)."""
    scores = _zeros_first(model, scores)
    return {
        name: lowest_k_mask(score, count_to_remove(amount, score.numel()))
        for name, score in zip(prunable_names(model), scores, strict=True)
    }


def weights(model: nn.Module) -> list[torch.Tensor]:
    """The prunable weight tensors, detached."""
    return [getattr(module, attr).detach() for module, attr in prunable(model)]
