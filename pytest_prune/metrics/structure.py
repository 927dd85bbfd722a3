"""Which filters can be removed physically: producer → consumer chains found by tracing the model with torch.fx.

A *chain* is a conv/linear layer (the producer) whose output reaches exactly one conv/linear layer (the
consumer) through channel-wise operations only: BatchNorm (whose channel goes with the filter), ReLU,
pooling, dropout, identity, and at most one flatten (after which each channel is a block of consecutive
features). Removing a producer filter then removes one input channel of the consumer and nothing else.
A linear layer applied per position of a sequence (N, T, features) chains to a linear layer through
elementwise operations only (ReLU, GELU, dropout...), as in a transformer's MLP: its features are the last
dimension, which pooling, BatchNorm or flatten would mix.
A residual addition, a concatenation, padding, slicing or a second user ends the chain: removing a filter
there would change other tensors, so those filters are not structurally removable (Torch-Pruning's
dependency groups would couple them; pytest-prune reports them honestly as not compactable instead). A
layer called more than once shares its weights between the calls, so it is in no chain.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import fx, nn

from .counting import probe_forward

_ELEMENTWISE_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Hardswish,
    nn.Dropout,
    nn.Identity,
)
"""Modules that act on each value alone with f(0) = 0: a zero feature stays zero whichever dimension it is in."""
_PASS_MODULES = (
    *_ELEMENTWISE_MODULES,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool2d,
    nn.Dropout2d,
)
"""Modules that act on each channel (dimension 1) alone and keep a zero channel zero."""
_ELEMENTWISE_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, torch.tanh, F.hardswish, F.dropout}
_PASS_FUNCTIONS = {
    *_ELEMENTWISE_FUNCTIONS,
    F.max_pool1d,
    F.max_pool2d,
    F.max_pool3d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d,
}
_ELEMENTWISE_METHODS = {"relu", "relu_", "tanh"}
_FLATTEN_FUNCTIONS = {torch.flatten}
_FLATTEN_METHODS = {"flatten"}
# Operations that zero channels keep zero: f(0) = 0 for every pass-through above (BatchNorm only when its
# channel's gamma and beta are zero too, which is why a chain records its BatchNorm).


@dataclass(frozen=True)
class Chain:
    """Producer filters that map one-to-one to consumer input channels (× ``block`` features after flatten)."""

    producer: str
    consumer: str
    norm: str | None = None
    block: int = 1


class TraceError(RuntimeError):
    """The model cannot be traced by torch.fx; the message says why."""


def _is_layer(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or (
        isinstance(module, nn.modules.conv._ConvNd)
        and not isinstance(module, nn.modules.conv._ConvTransposeNd)
        and module.groups == 1
    )


def trace(model: nn.Module) -> fx.GraphModule:
    """The model's fx graph; raises TraceError naming the cause (e.g. data-dependent control flow)."""
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types for untraceable code
        raise TraceError(f"torch.fx cannot trace {type(model).__name__}: {type(exc).__name__}: {exc}") from exc


def find_chains(model: nn.Module, input_shape: tuple[int, ...]) -> list[Chain]:
    """Every sound producer → consumer chain of ``model`` for inputs of ``input_shape`` (C, H, W)."""
    graph = trace(model)
    modules = dict(model.named_modules())
    shapes = _output_shapes(model, input_shape)
    calls = Counter(node.target for node in graph.graph.nodes if node.op == "call_module")
    chains = []
    for node in graph.graph.nodes:
        if node.op != "call_module" or not _is_layer(modules[node.target]):
            continue
        chain = _follow(node, modules, shapes)
        # a module called twice (a BatchNorm too) shares its weights between the calls: removing its
        # filters or channels for one call would change the other
        if chain is not None and all(calls[m] == 1 for m in (chain.producer, chain.consumer, chain.norm) if m):
            chains.append(chain)
    return chains


def _output_shapes(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    probe_forward(model, input_shape, _is_layer, lambda name, m, i, o: shapes.__setitem__(name, tuple(o.shape[1:])))
    return shapes


def _kind(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """What a graph node does to channels: layer, norm, flatten, elementwise, pass (channel-wise) or other."""
    if node.op == "call_module":
        module = modules[cast(str, node.target)]
        if _is_layer(module):
            return "layer"
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            return "norm"
        if isinstance(module, nn.Flatten):
            return "flatten" if (module.start_dim, module.end_dim) == (1, -1) else "other"
        if isinstance(module, _ELEMENTWISE_MODULES):
            return "elementwise"
        return "pass" if isinstance(module, _PASS_MODULES) else "other"
    functions = node.op == "call_function"
    methods = node.op == "call_method"
    if (functions and node.target in _FLATTEN_FUNCTIONS) or (methods and node.target in _FLATTEN_METHODS):
        return "flatten" if _flatten_dims(node) == (1, -1) else "other"
    if (functions and node.target in _ELEMENTWISE_FUNCTIONS) or (methods and node.target in _ELEMENTWISE_METHODS):
        return "elementwise"
    if functions and node.target in _PASS_FUNCTIONS:
        return "pass"
    return "other"  # add, cat, getitem, pad, view, output, ...: the channel is shared or reshaped


def _follow(start: fx.Node, modules: dict[str, nn.Module], shapes: dict[str, tuple[int, ...]]) -> Chain | None:
    node, flattened = start, False
    norm: str | None = None
    per_position = _per_position(cast(str, start.target), modules, shapes)
    while True:
        users = list(node.users)
        if len(users) != 1:
            return None
        node = users[0]
        kind = _kind(node, modules)
        if kind == "layer":
            return _chain(cast(str, start.target), cast(str, node.target), norm, flattened, modules, shapes)
        if per_position and kind != "elementwise":
            return None
        if kind == "other" or (kind == "flatten" and flattened) or (kind == "norm" and (norm or flattened)):
            return None
        if kind == "norm":
            norm = cast(str, node.target)
        flattened = flattened or kind == "flatten"


def _per_position(name: str, modules: dict[str, nn.Module], shapes: dict[str, tuple[int, ...]]) -> bool:
    """A linear layer applied per position (tokens: (N, T, features)): its features are last, where only
    elementwise operations leave them alone and only another linear layer reads them one by one."""
    return isinstance(modules[name], nn.Linear) and len(shapes[name]) > 1


def _flatten_dims(node: fx.Node) -> tuple[object, object]:
    """(start_dim, end_dim) of a ``torch.flatten`` / ``.flatten`` call; only (1, -1) keeps each sample whole."""
    given = [*node.args[1:3], None, None]
    start = node.kwargs.get("start_dim", given[0] if given[0] is not None else 0)
    end = node.kwargs.get("end_dim", given[1] if given[1] is not None else -1)
    return start, end


def _chain(
    producer: str,
    consumer: str,
    norm: str | None,
    flattened: bool,
    modules: dict[str, nn.Module],
    shapes: dict[str, tuple[int, ...]],
) -> Chain | None:
    target = modules[consumer]
    inputs = target.in_features if isinstance(target, nn.Linear) else cast(int, target.in_channels)
    if _per_position(producer, modules, shapes):
        return (
            Chain(producer, consumer, None, 1)
            if isinstance(target, nn.Linear) and inputs == shapes[producer][-1]
            else None
        )
    channels = shapes[producer][0]
    if flattened:
        if inputs % channels:
            return None
        return Chain(producer, consumer, norm, inputs // channels)
    if isinstance(target, nn.Linear) and len(shapes[producer]) > 1:
        return None  # a linear layer applied to the last dimension of a feature map: not channels
    return Chain(producer, consumer, norm, 1) if inputs == channels else None
