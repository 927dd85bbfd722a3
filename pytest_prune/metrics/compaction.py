"""Physical compaction: the smaller network a structured sparsity pattern stands for.

On every sound chain (``metrics.structure``) a filter is removable when its weights and bias are zero and,
if a BatchNorm follows, that channel's gamma and beta are zero too: then the channel is exactly zero after
every channel-wise operation, and the consumer's matching input weights multiply only zeros. It is removable
too when those input weights of the consumer are all zero (channel pruning on the consumer's side): then
nothing the channel holds reaches the consumer. Removals cascade both ways until nothing moves: a producer
whose filters went leaves the consumer's filters fewer inputs, and a consumer whose filters went may leave
a producer's channel read by none. Removing the filter, its BatchNorm channel and those input weights leaves
the function unchanged, which ``compact``
verifies on real inputs (max abs difference ≤ 1e-5, in float64, so that a device's float32 arithmetic such
as CUDA's TF32 convolutions cannot blur the check) before it reports success. Anything else (zeros
scattered inside filters, a filter whose BatchNorm still adds beta, a model fx cannot trace) is reported
as not compactable, with the reason, and the masked model is what gets timed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from .structure import Chain, TraceError, find_chains

TOLERANCE = 1e-5
CHECKED = 64
"""Inputs the compacted network is checked on: any unsound removal shows on any input."""


@dataclass(frozen=True)
class Compaction:
    """The compacted model (or the masked one when nothing could be removed) and what happened."""

    model: nn.Module
    compacted: bool
    params: int
    removed_filters: int
    note: str


def _get(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _like(old: nn.Module, new: nn.Module) -> nn.Module:
    weight = next(old.parameters(), None)
    if weight is not None:
        new = new.to(device=weight.device, dtype=weight.dtype)
    if hasattr(old, "is_classifier"):
        new.is_classifier = old.is_classifier
    new.train(old.training)
    return new


def _slice_layer(layer: nn.Module, keep_out: torch.Tensor | None, keep_in: torch.Tensor | None) -> nn.Module:
    weight = cast(torch.Tensor, layer.weight).detach()
    if keep_out is not None:
        weight = weight[keep_out]
    if keep_in is not None:
        weight = weight[:, keep_in]
    bias = None if layer.bias is None else cast(torch.Tensor, layer.bias).detach()
    if bias is not None and keep_out is not None:
        bias = bias[keep_out]
    new: nn.Module
    if isinstance(layer, nn.Linear):
        new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    else:
        new = type(layer)(
            weight.shape[1],
            weight.shape[0],
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=1,
            bias=bias is not None,
            padding_mode=layer.padding_mode,
        )
    new = _like(layer, new)
    with torch.no_grad():
        cast(torch.Tensor, new.weight).copy_(weight)
        if bias is not None:
            cast(torch.Tensor, new.bias).copy_(bias)
    return new


def _slice_norm(norm: nn.Module, keep: torch.Tensor) -> nn.Module:
    new = _like(
        norm,
        type(norm)(
            len(keep),
            eps=norm.eps,
            momentum=norm.momentum,
            affine=norm.affine,
            track_running_stats=norm.track_running_stats,
        ),
    )
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            source = getattr(norm, name)
            if source is not None:
                getattr(new, name).copy_(source.detach()[keep])
        if norm.num_batches_tracked is not None:
            cast(torch.Tensor, new.num_batches_tracked).copy_(cast(torch.Tensor, norm.num_batches_tracked))
    return new


def removable_filters(model: nn.Module, chain: Chain) -> torch.Tensor:
    """Boolean per producer filter: True where the filter can be removed without changing the function.

    A filter can go when its channel is exactly zero after every channel-wise operation (its weights, bias
    and BatchNorm gamma and beta are zero), or when the consumer ignores that channel: every consumer weight
    that reads it is zero (channel pruning on the consumer's side, as in He et al. 2017 and ThiNet), whatever
    the channel holds.
    """
    producer = _get(model, chain.producer)
    dead = (cast(torch.Tensor, producer.weight).detach().flatten(1) == 0).all(dim=1)
    if producer.bias is not None:
        dead &= cast(torch.Tensor, producer.bias).detach() == 0
    if chain.norm is not None:
        norm = _get(model, chain.norm)
        if norm.affine:
            dead &= (cast(torch.Tensor, norm.weight).detach() == 0) & (cast(torch.Tensor, norm.bias).detach() == 0)
        else:
            dead &= False  # without gamma and beta the channel is normalised, never exactly zero
    return dead | ignored_channels(model, chain, len(dead))


def ignored_channels(model: nn.Module, chain: Chain, filters: int) -> torch.Tensor:
    """Boolean per producer filter: True where every consumer weight reading its channel (its ``block`` input
    features after a flatten) is zero."""
    weight = cast(torch.Tensor, _get(model, chain.consumer).weight).detach()
    if weight.shape[1] != filters * chain.block:  # not the one-to-one map the chain promises: claim nothing
        return torch.zeros(filters, dtype=torch.bool, device=weight.device)
    return (weight.transpose(0, 1).reshape(filters, -1) == 0).all(dim=1)


@torch.no_grad()
def max_difference(model: nn.Module, new: nn.Module, inputs: torch.Tensor) -> float:
    """Max abs difference of the two networks' outputs on ``inputs``, in eval mode, in float64 where it runs.

    In float32 two equal functions differ by their kernels' rounding: by 5e-3 on ResNet-20 with CUDA's
    default TF32 convolutions. Copies run, so the models keep their dtype and mode; a device without
    float64 (MPS) or a model that insists on float32 is compared in the inputs' own dtype.
    """
    try:
        return _difference(model, new, inputs, torch.float64)
    except (RuntimeError, TypeError):
        return _difference(model, new, inputs, inputs.dtype)


def _difference(model: nn.Module, new: nn.Module, inputs: torch.Tensor, dtype: torch.dtype) -> float:
    first, second = (copy.deepcopy(m).to(dtype=dtype).eval() for m in (model, new))
    x = inputs.to(dtype=dtype)
    return float((first(x) - second(x)).abs().max())


def _remove(model: nn.Module, chains: list[Chain]) -> int:
    """Remove the removable filters of every chain of ``model`` in place, in forward order; how many went.

    In forward order a producer's removal empties the consumer's columns it fed, which the consumer's own
    chain, visited next, sees; what a consumer's removal frees upstream (a channel only the removed filters
    read) waits for the next pass.
    """
    removed = 0
    for chain in chains:
        dead = removable_filters(model, chain)
        if not dead.any() or dead.all():
            continue
        keep = torch.nonzero(~dead).flatten()
        removed += int(dead.sum())
        _set(model, chain.producer, _slice_layer(_get(model, chain.producer), keep, None))
        if chain.norm is not None:
            _set(model, chain.norm, _slice_norm(_get(model, chain.norm), keep))
        columns = (keep[:, None] * chain.block + torch.arange(chain.block, device=keep.device)).flatten()
        _set(model, chain.consumer, _slice_layer(_get(model, chain.consumer), None, columns))
    return removed


def compact(model: nn.Module, inputs: torch.Tensor) -> Compaction:
    """A physically smaller copy of ``model`` with every removable filter gone, checked against ``inputs``."""
    params = sum(p.numel() for p in model.parameters())
    try:
        chains = find_chains(model, tuple(inputs.shape[1:]))
    except TraceError as exc:
        return Compaction(model, False, params, 0, f"not compactable: {exc}")
    if not chains:
        return Compaction(
            model,
            False,
            params,
            0,
            "not compactable: no conv/linear layer feeds exactly one other through channel-wise operations",
        )
    new = copy.deepcopy(model)
    removed, passes = 0, None
    while passes != 0:  # a removal can free filters of a chain visited before it: repeat until nothing moves
        passes = _remove(new, chains)
        removed += passes
    if removed == 0:
        return Compaction(
            model,
            False,
            params,
            0,
            "not compactable: no whole filter is zero and no layer ignores a whole input channel "
            "(unstructured sparsity runs through dense kernels unchanged)",
        )
    try:
        difference = max_difference(model, new, inputs[:CHECKED])
    except torch.cuda.OutOfMemoryError:  # a full device (torch.OutOfMemoryError from 2.5 on), not an unsound network
        raise
    except RuntimeError as exc:  # a removal the chains did not foresee (a shape that no longer fits)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Compaction(model, False, params, 0, f"not compacted: the compacted network does not run ({message})")
    if not difference <= TOLERANCE:
        return Compaction(
            model,
            False,
            params,
            0,
            f"not compacted: the compacted network's outputs differ by "
            f"{difference:.3g} (> {TOLERANCE}); timing the masked model instead",
        )
    new_params = sum(p.numel() for p in new.parameters())
    return Compaction(new, True, new_params, removed, f"compacted: {removed} filters removed")
