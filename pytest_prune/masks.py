"""Prunable weights, the compression → amount arithmetic, and masks: derived from any pruner style, validated.

A pruner may (1) return ``{parameter_name: mask}``, (2) prune in place with ``torch.nn.utils.prune``
(``*_orig`` / ``*_mask``), or (3) zero weights in place and return None. ``derive_masks`` turns all three
into one ``{name: bool tensor}`` dict and leaves the model a plain module whose weights are already masked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

COMPRESSION_TOLERANCE = 0.05
"""A cell fails when its achieved compression is off the target by more than 5% (relative)."""


class MaskError(ValueError):
    """A pruner produced something the harness cannot use; the message says what and how to fix it."""


def _weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear | nn.modules.conv._ConvNd)
        and isinstance(getattr(module, "weight", None), torch.Tensor)
    ]


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """Prunable weights as ``(module, "weight")`` pairs: every conv and linear weight except the classifier.

    The classifier is the module flagged ``is_classifier = True``, or, where nothing is flagged, the last
    conv/linear module in registration order (ShrinkBench's convention). Biases and BatchNorm are not
    prunable. A weight tied to several modules is listed once, at its first module, and not at all when it
    is the classifier's. The list is what ``torch.nn.utils.prune.global_unstructured`` takes.
    """
    layers = _weighted_layers(model)
    flagged = [module for _, module in layers if getattr(module, "is_classifier", False)]
    excluded = flagged or [module for _, module in layers[-1:]]  # the flagged, or else the last layer
    seen = {id(module.weight) for module in excluded}
    out = []
    for _, module in layers:
        if id(module.weight) not in seen:
            seen.add(id(module.weight))
            out.append((module, "weight"))
    return out


def prunable_names(model: nn.Module) -> list[str]:
    """Parameter names of the prunable weights, e.g. ``["conv1.weight", ...]``, as ``named_parameters`` names
    them (a tied weight by its first name)."""
    names = {id(param): name for name, param in model.named_parameters()}
    return [names[id(getattr(module, attr))] for module, attr in prunable(model)]


def amount_for(total: int, prunable_count: int, compression: float, already_zero: int = 0) -> float:
    """Fraction of the prunable weights to remove so that total/nonzero = ``compression``.

    Removing ``r`` weights gives compression total/(total − r), so r = total·(1 − 1/compression) and
    amount = r / prunable (ShrinkBench's). ``already_zero`` parameters outside the prunable weights that are
    zero already (a BatchNorm shift at its initial 0) are zeros the pruner need not make: r less them.
    Raises ValueError when the target needs more than every prunable weight.
    """
    if compression < 1 or not math.isfinite(compression):
        raise ValueError(f"compression must be a finite number ≥ 1, got {compression}")
    if prunable_count <= 0:
        if compression == 1:
            return 0.0
        raise ValueError("the model has no prunable weights (conv/linear weights other than the classifier)")
    amount = (total * (1.0 - 1.0 / compression) - already_zero) / prunable_count
    if amount >= 1.0:
        fixed = total - prunable_count - already_zero
        raise ValueError(
            f"compression {compression:g}x is not reachable: removing every prunable weight gives "
            f"{total / max(fixed, 1):.3g}x ({fixed:,} of {total:,} parameters are not prunable and nonzero)"
        )
    return max(amount, 0.0)


def zeros_outside(model: nn.Module) -> dict[str, torch.Tensor]:
    """Where parameters outside the prunable weights are zero already (a BatchNorm shift at its initial 0):
    ``{name: bool tensor, True = zero}`` for each parameter with any. Taken from the dense model before its
    first round, they are zeros no pruner made."""
    weights = {id(getattr(m, a)) for m, a in prunable(model)}
    with torch.no_grad():
        zeros = {name: param == 0 for name, param in model.named_parameters() if id(param) not in weights}
    return {name: zero for name, zero in zeros.items() if zero.any()}


def combine(
    masks: dict[str, torch.Tensor], previous: Mapping[str, torch.Tensor], held: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """A round's masks joined with every earlier round's (a removed weight stays removed) and with the
    ``held`` zeros its amount counted as made already (``zeros_outside``), which then stay zero in finetuning:
    the finetuned model is as compressed as the pruned one measures."""
    for name, keep in [*previous.items(), *((n, ~zero) for n, zero in held.items())]:
        masks[name] = masks[name] & keep if name in masks else keep
    return masks


def amount_for_model(model: nn.Module, compression: float, held: Mapping[str, torch.Tensor] | None = None) -> float:
    """``amount_for`` with the counts taken from ``model``: all its parameters, its prunable weights, and
    the ``held`` zeros outside them (default: the model's own ``zeros_outside``; under an iterative schedule
    the dense model's, as later zeros there are a pruner's, a removed filter's bias, already in its amount)."""
    total = sum(p.numel() for p in model.parameters())
    prunable_count = sum(getattr(m, a).numel() for m, a in prunable(model))
    held = zeros_outside(model) if held is None else held
    return amount_for(total, prunable_count, compression, sum(int(zero.sum()) for zero in held.values()))


def count_to_remove(amount: float, numel: int) -> int:
    """How many of ``numel`` weights a pruner asked for ``amount`` removes (round to nearest)."""
    return min(numel, max(0, round(amount * numel)))


def _to_bool_mask(name: str, value: Any, param: torch.Tensor) -> torch.Tensor:
    try:
        mask = torch.as_tensor(value)
        if mask.layout != torch.strided:  # a sparse mask: its zeros are the removed weights
            mask = mask.to_dense()
    except Exception as exc:
        raise MaskError(f"mask for {name!r} is a {type(value).__name__}, not a tensor or array: {exc}") from exc
    if tuple(mask.shape) != tuple(param.shape):
        raise MaskError(
            f"mask for {name!r} has shape {tuple(mask.shape)}; the parameter has shape {tuple(param.shape)}"
        )
    if mask.dtype == torch.bool:
        return mask.to(param.device)
    if mask.is_complex() or not (mask.is_floating_point() or mask.dtype in _INT_DTYPES):
        raise MaskError(f"mask for {name!r} has dtype {mask.dtype}; use bool or 0/1 numbers")
    if mask.is_floating_point() and not torch.isfinite(mask).all():
        raise MaskError(f"mask for {name!r} contains NaN or infinity; masks are 0 (remove) or 1 (keep)")
    binary = (mask == 0) | (mask == 1)
    if not binary.all():
        bad = mask[~binary].flatten()[:3].tolist()
        raise MaskError(f"mask for {name!r} is not binary (values such as {bad}); masks are 0 or 1")
    return (mask != 0).to(param.device)


_INT_DTYPES = {torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64}


def _strip_torch_prune(model: nn.Module) -> dict[str, torch.Tensor]:
    """Make torch.nn.utils.prune re-parametrisations permanent; return their masks by parameter name."""
    from torch.nn.utils import prune as torch_prune

    masks: dict[str, torch.Tensor] = {}
    for module_name, module in model.named_modules():
        hooks = [h for h in module._forward_pre_hooks.values() if isinstance(h, torch_prune.BasePruningMethod)]
        for hook in hooks:
            names = [m._tensor_name for m in getattr(hook, "_pruning_methods", [hook])]
            for tensor_name in dict.fromkeys(names):
                mask = getattr(module, tensor_name + "_mask").detach().clone()
                torch_prune.remove(module, tensor_name)
                masks[f"{module_name}.{tensor_name}".lstrip(".")] = mask != 0
    return masks


def derive_masks(model: nn.Module, returned: Any, dense_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Collect masks from the pruner's return value, torch prune buffers and newly zeroed weights.

    Masks from several sources for one parameter are combined (a weight is kept only if every source
    keeps it). Afterwards every masked weight is exactly zero. ``dense_state`` holds the parameters before
    pruning, to tell weights the pruner zeroed from weights that were zero already.
    """
    if returned is not None and not isinstance(returned, Mapping):
        raise MaskError(
            f"pruner returned a {type(returned).__name__}; return a dict {{parameter_name: mask}}, "
            "or prune in place (torch.nn.utils.prune or zeroed weights) and return None"
        )
    masks = _strip_torch_prune(model)
    params = dict(model.named_parameters())
    for name, value in (returned or {}).items():
        if name not in params:
            raise MaskError(
                f"mask for unknown parameter {name!r}; prunable parameters are: "
                f"{', '.join(prunable_names(model)) or '(none)'}"
            )
        mask = _to_bool_mask(name, value, params[name])
        masks[name] = masks[name] & mask if name in masks else mask
    with torch.no_grad():
        for name, param in params.items():
            if not torch.isfinite(param).all():
                raise MaskError(f"pruner left NaN or infinite values in {name!r}")
            before = dense_state.get(name)
            if before is not None and before.shape == param.shape:
                newly_zero = (param == 0) & (before.to(param.device) != 0)
                if newly_zero.any():  # zeroed in place, whether or not a returned mask also covers it
                    masks[name] = masks[name] & ~newly_zero if name in masks else param != 0
            if name in masks:
                param.mul_(masks[name])
    return masks


def companion(mask: torch.Tensor, masks: Mapping[str, torch.Tensor], prunable: set[str]) -> bool:
    """Where a structured pruner may touch a parameter that is not a prunable weight: a removed filter's bias
    or BatchNorm channel (a 1-D mask whose removed entries are fully removed rows of a prunable weight of the
    same length), or the next layer's input channels that read a removed filter: whole input columns, each
    reading a fully removed row of a prunable weight with a whole number of columns per row (one per channel
    for a conv; the positions of a channel after a flatten), so no pruner gets columns of the classifier for
    free."""
    removed = ~mask
    if not removed.any():
        return True
    if mask.ndim == 1:
        return any(
            bool(((~masks[p]).flatten(1).all(dim=1) | mask).all())
            for p in prunable
            if p in masks and masks[p].shape[0] == mask.shape[0]
        )
    per_input = removed.transpose(0, 1).flatten(1)  # one row per input channel (or feature)
    if not bool((per_input.any(dim=1) == per_input.all(dim=1)).all()):
        return False  # not whole columns
    columns = per_input.all(dim=1)
    for name in prunable:
        if name not in masks:
            continue
        filters = (~masks[name]).flatten(1).all(dim=1)  # the producer's removed rows
        if len(columns) % len(filters) == 0:
            reads = filters.repeat_interleave(len(columns) // len(filters))
            if bool((reads | ~columns).all()):
                return True
    return False


def check_contract(model: nn.Module, masks: Mapping[str, torch.Tensor], before: Mapping[str, torch.Tensor]) -> None:
    """What a benchmark cell demands of a pruner beyond valid masks, as the conformance suite does: it keeps
    the architecture's parameters, masks only prunable weights (and a removed filter's companions), and
    leaves every weight it keeps as it was. Otherwise a MaskError names the breach.

    A pruner that trained, rescaled or added parameters would be scored for more than its choice of weights:
    only the pruner may vary, and finetuning is the same for every pruner.
    """
    params = dict(model.named_parameters())
    reshaped = sorted(set(params) ^ set(before)) + [
        name for name in params if name in before and params[name].shape != before[name].shape
    ]
    if reshaped:
        raise MaskError(
            f"the pruner added, removed or reshaped parameters ({', '.join(reshaped[:5])}); a pruner only "
            "chooses weights to remove, so every parameter keeps its name and shape"
        )
    prunable = set(prunable_names(model))
    strays = [name for name in sorted(set(masks) - prunable) if not companion(masks[name], masks, prunable)]
    if strays:
        raise MaskError(
            f"masks remove parameters that are not prunable weights: {strays}; prunable: "
            f"{', '.join(sorted(prunable))} (the classifier, biases and BatchNorm stay, except the bias and "
            "BatchNorm channel of a removed filter and the next layer's inputs from it)"
        )
    for name, param in params.items():
        now, then = param.detach(), before[name].to(param.device)
        kept = masks.get(name)
        if not (torch.equal(now, then) if kept is None else torch.equal(now[kept], then[kept])):
            raise MaskError(
                f"the pruner changed kept weights of {name!r}; a pruner only chooses weights to remove (set "
                "them to zero or return masks): training belongs to finetuning, which every pruner gets alike"
            )


class MaskEnforcer:
    """Re-applies masks after each optimiser step so momentum and weight decay resurrect nothing.

    One fused ``torch._foreach_mul_`` per step keeps the cost within a few percent of unmasked training.
    """

    def __init__(self, model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
        params = dict(model.named_parameters())
        self.params: list[torch.Tensor] = [params[name] for name in masks]
        self.masks = [mask.to(dtype=params[name].dtype, device=params[name].device) for name, mask in masks.items()]

    @torch.no_grad()
    def __call__(self) -> None:
        if self.params:
            torch._foreach_mul_(self.params, self.masks)


def check_compression(target: float, achieved: float, tolerance: float = COMPRESSION_TOLERANCE) -> None:
    """Raise MaskError when the achieved compression is off the target by more than ``tolerance`` (relative)."""
    if abs(achieved / target - 1.0) > tolerance:
        raise MaskError(
            f"asked {target:g}x, got {achieved:.3g}x: the pruner missed the target compression by more "
            f"than {tolerance:.0%}. It should remove `amount` of the prunable weights (pytest_prune.prunable)"
        )
