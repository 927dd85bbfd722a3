"""Parameter and MAC counting.

MACs are multiply-accumulates of convolution and linear layers (one fused multiply-add = 1), bias
excluded, counted from the output shapes of one real forward pass in eval mode:
conv = output elements × (in_channels / groups) × kernel volume, which is exact for any stride, padding,
dilation and groups; linear = output elements × in_features. BatchNorm, activations, pooling and residual
additions are not counted. ``torch.utils.flop_counter.FlopCounterMode`` counts the same operations at 2
FLOPs per MAC; the test suite cross-checks the two.

Matrix products that no conv/linear module performs (``torch.matmul`` in a forward, attention) are
counted through FlopCounterMode, which sees every aten matmul/convolution: whatever it counts beyond the
hooked layers becomes one extra entry, ``FUNCTIONAL``, at full density (``nn.MultiheadAttention``'s four
projections are counted as layers of their own, at their weights' densities, so only its attention
products remain there). FlopCounterMode's first use imports
torch._dynamo (about 1.5 s per process), so a cheap TorchFunctionMode first watches the forward pass for
calls outside the hooked layers whose names say matrix product (matmul, mm, linear, conv, einsum,
attention, dot, …); only a model that makes one is counted a second time through FlopCounterMode.

Leaf modules with parameters that are neither conv/linear nor a normalisation or elementwise layer (an
LSTM, say) may hide work that neither counter knows; ``uncounted_modules`` names them so a report never
shows a silent zero.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

FUNCTIONAL = "(matmul outside conv/linear modules)"
_KNOWN_WITHOUT_MACS = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.Embedding,
    nn.EmbeddingBag,
    nn.PReLU,
)


@dataclass(frozen=True)
class LayerCount:
    """MACs of one conv/linear layer for a single input, and the density of its weight."""

    name: str
    macs: int
    density: float

    @property
    def sparse_macs(self) -> float:
        """MACs scaled by weight density (ShrinkBench's unstructured convention)."""
        return self.macs * self.density


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, nonzero) over ``model.parameters()``: weights, biases and BatchNorm affine terms; no buffers."""
    total = nonzero = 0
    for param in model.parameters():
        total += param.numel()
        nonzero += int(torch.count_nonzero(param.detach()))
    return total, nonzero


def _layer_macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    """MACs of one call of a conv/linear layer in the probe pass.

    The probe holds one sample, so every element of the layer's output belongs to it, whatever the layer
    sees as its batch: a model that folds frames or patches into dimension 0, runs sequence-first, or calls
    a layer on an unbatched tensor counts all of its elements.
    """
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    weight = cast(torch.Tensor, module.weight)
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        # Every input element meets (out_channels / groups) × kernel-volume weights: weight[0].numel().
        return inputs[0].numel() * weight[0].numel()
    # weight[0] is (in_channels / groups) × kernel volume, the MACs behind each output element.
    return output.numel() * weight[0].numel()


@torch.no_grad()
def probe_forward(
    model: nn.Module,
    input_shape: Sequence[int],
    select: Callable[[nn.Module], bool],
    record: Callable[[str, nn.Module, tuple, torch.Tensor], None],
    around: contextlib.AbstractContextManager | None = None,
) -> None:
    """One forward pass of a zero input in eval mode; ``record`` sees each selected module's inputs and output.

    Every module's train/eval mode is restored afterwards and no_grad keeps parameters untouched, so
    counting changes no state (ShrinkBench ran its metric passes in train mode and moved BatchNorm).
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    modes = {module: module.training for module in model.modules()}
    handles = [
        module.register_forward_hook(lambda m, i, o, name=name: record(name, m, i, o))
        for name, module in model.named_modules()
        if select(module)
    ]
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        model.eval()
        # nn.MultiheadAttention's eval-mode fast path is one fused op that FlopCounterMode counts as zero;
        # its composite path makes the same products as linear and matmul calls, which are counted
        torch.backends.mha.set_fastpath_enabled(False)
        with around or contextlib.nullcontext():
            model(torch.zeros((1, *input_shape), device=device, dtype=dtype))
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.training = mode


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> list[LayerCount]:
    """Per-layer MACs for one input of ``input_shape`` (C, H, W), from a forward pass that changes no state."""
    counts: list[LayerCount] = []

    def record(name: str, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, nn.MultiheadAttention):
            counts.extend(_attention_projections(name, module, inputs))
            return
        weight = cast(torch.Tensor, module.weight).detach()
        counts.append(LayerCount(name, _layer_macs(module, inputs, output), _density(weight)))

    watch = _MatmulWatch()
    layers = [module for module in model.modules() if _is_layer(module)]
    handles = [module.register_forward_pre_hook(watch.enter) for module in layers]
    handles += [module.register_forward_hook(watch.leave) for module in layers]
    try:
        probe_forward(model, input_shape, lambda m: _is_layer(m) or isinstance(m, nn.MultiheadAttention), record, watch)
    finally:
        for handle in handles:
            handle.remove()
    if watch.seen:
        counter = FlopCounterMode(display=False, custom_mapping=_missing_formulas())
        probe_forward(model, input_shape, lambda m: False, lambda *a: None, counter)
        functional = counter.get_total_flops() // 2 - sum(c.macs for c in counts)
        if functional > 0:
            counts.append(LayerCount(FUNCTIONAL, functional, 1.0))
    return counts


def _density(weight: torch.Tensor) -> float:
    weight = weight.detach()
    return float(torch.count_nonzero(weight)) / weight.numel()


def _attention_projections(name: str, module: nn.MultiheadAttention, inputs: tuple) -> list[LayerCount]:
    """The four projections of ``nn.MultiheadAttention``, each at its weight's density.

    It reads its weights directly (``in_proj_weight`` or ``q/k/v_proj_weight``, and ``out_proj.weight``
    without calling ``out_proj``), so no layer hook sees them: counted here, they leave FlopCounterMode's
    ``FUNCTIONAL`` remainder only the attention products themselves, and a pruned ``out_proj`` counts at
    its density. Called with keyword arguments, the module's inputs are not seen and all of it stays in
    ``FUNCTIONAL`` at full density.
    """
    if len(inputs) < 3 or not all(isinstance(x, torch.Tensor) for x in inputs[:3]):
        return []
    query, key, value = inputs[:3]
    embed = module.embed_dim
    if module.in_proj_weight is not None:
        q, k, v = module.in_proj_weight.chunk(3)
    else:
        q, k, v = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
    # tokens × in-dim × out-dim = (input elements) × embed for each input projection; out: query tokens × E × E
    return [
        LayerCount(f"{name}.q_proj", query.numel() * embed, _density(q)),
        LayerCount(f"{name}.k_proj", key.numel() * embed, _density(k)),
        LayerCount(f"{name}.v_proj", value.numel() * embed, _density(v)),
        LayerCount(f"{name}.out_proj", query.numel() * embed, _density(module.out_proj.weight)),
    ]


def _missing_formulas() -> dict[Any, Callable[..., int]]:
    """FlopCounterMode formulas for ops it leaves at zero: CPU attention (its flash formula, on the CPU op)."""
    from torch.utils.flop_counter import sdpa_flop_count

    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is None:
        return {}

    def attention(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
        return sdpa_flop_count(query, key, value)

    return {op: attention}


def _is_layer(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear | nn.modules.conv._ConvNd)


# substrings of the names of functions that may multiply matrices ("linear" covers bilinear, "mm" addmm/bmm)
_PRODUCT_WORDS = "matmul mm linear conv einsum attention dot mv inner outer kron lstm gru rnn".split()  # noqa: SIM905


class _MatmulWatch(TorchFunctionMode):
    """Names the calls that may be matrix products made outside the hooked conv/linear layers.

    A false alarm only costs the exact FlopCounterMode pass; the list errs on the side of alarms.
    """

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.seen: list[str] = []

    def enter(self, module: nn.Module, inputs: tuple) -> None:
        self.depth += 1

    def leave(self, module: nn.Module, inputs: tuple, output: object) -> None:
        self.depth -= 1

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if self.depth == 0:
            name = getattr(func, "__name__", "").lower()
            if any(word in name for word in _PRODUCT_WORDS):
                self.seen.append(name)
        return func(*args, **(kwargs or {}))


def uncounted_modules(model: nn.Module) -> list[str]:
    """Leaf modules with parameters whose work the MAC counters may not know (never reported as zero silently)."""
    return [
        name
        for name, module in model.named_modules()
        if not list(module.children())
        and any(True for _ in module.parameters(recurse=False))
        and not isinstance(module, (nn.Linear, nn.modules.conv._ConvNd, *_KNOWN_WITHOUT_MACS))
    ]


def macs_summary(counts: Sequence[LayerCount]) -> tuple[int, float]:
    """(dense MACs, sparsity-aware MACs) of a model from its per-layer counts."""
    return sum(c.macs for c in counts), math.fsum(c.sparse_macs for c in counts)  # the same on every Python
