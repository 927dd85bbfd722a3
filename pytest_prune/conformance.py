"""Conformance: hypothesis properties every pruner must satisfy, on randomly drawn small architectures.

``pytest --prune-conformance --prune-pruner SPEC`` runs ``check_pruner`` for each pruner on MLPs and conv
stacks of random depth, width, kernel, groups, with and without BatchNorm and residual blocks, at random
amounts up to 0.99 (half the examples in two rounds, as an iterative schedule prunes), seeds and batch
sizes. A failure shows hypothesis's shrunk counterexample, whose ``ArchSpec`` names the architecture. It
takes seconds, so a broken pruner never wastes a benchmark run.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from .data.base import Batches
from .errors import NotApplicable
from .masks import MaskEnforcer, MaskError, check_contract, combine, count_to_remove, derive_masks, prunable_names
from .train import seed_everything

AMOUNT_TOLERANCE = 0.05
"""Removed parameters may differ from ``amount`` × prunable weights by 5% of the prunable weights, or by the
parameters that go with one filter (its weights, bias, BatchNorm channel and the next layer's inputs from
it), whichever is larger: a filter pruner cannot land closer than one filter. All removed parameters count,
as in the harness's compression."""


@dataclass(frozen=True)
class ArchSpec:
    """A small architecture to check a pruner on; its repr is what a failure shows."""

    kind: str  # "mlp" | "conv"
    widths: tuple[int, ...]
    kernel: int = 3
    groups: int = 1
    batchnorm: bool = False
    residual: bool = False
    classes: int = 4

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (12,) if self.kind == "mlp" else (4, 8, 8)

    def build(self) -> nn.Module:
        """The model, initialised from torch's global generator."""
        if self.kind == "mlp":
            layers: list[nn.Module] = []
            features = self.input_shape[0]
            for width in self.widths:
                layers += [nn.Linear(features, width)]
                layers += [nn.BatchNorm1d(width)] if self.batchnorm else []
                layers += [nn.ReLU()]
                features = width
            return nn.Sequential(*layers, nn.Linear(features, self.classes))
        blocks: list[nn.Module] = [nn.Conv2d(4, self.widths[0], self.kernel, padding=self.kernel // 2), nn.ReLU()]
        channels = self.widths[0]
        for width in self.widths[1:]:
            groups = self.groups if channels % self.groups == 0 and width % self.groups == 0 else 1
            if self.residual:
                blocks.append(_Residual(channels, self.kernel, groups, self.batchnorm))
            blocks += [nn.Conv2d(channels, width, self.kernel, padding=self.kernel // 2, groups=groups)]
            blocks += [nn.BatchNorm2d(width)] if self.batchnorm else []
            blocks += [nn.ReLU()]
            channels = width
        return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(channels * 4, self.classes))


class _Residual(nn.Module):
    def __init__(self, channels: int, kernel: int, groups: int, batchnorm: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)
        self.norm = nn.BatchNorm2d(channels) if batchnorm else nn.Identity()
        self.conv2 = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.conv2(torch.relu(self.norm(self.conv1(x)))))


def arch_specs() -> Any:
    """Hypothesis strategy drawing ArchSpecs."""
    from hypothesis import strategies as st

    widths = st.lists(st.integers(8, 24), min_size=1, max_size=3).map(tuple)
    return st.builds(
        ArchSpec,
        kind=st.sampled_from(["mlp", "conv"]),
        widths=widths,
        kernel=st.sampled_from([1, 3]),
        groups=st.sampled_from([1, 2]),
        batchnorm=st.booleans(),
        residual=st.booleans(),
    )


def _randomise_batchnorm(model: nn.Module) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)


def _run(fn: Callable[..., Any], model: nn.Module, amount: float, data: Batches, seed: int) -> dict[str, torch.Tensor]:
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    seed_everything(seed)
    masks = derive_masks(model, fn(model, amount, data), before)
    check_contract(model, masks, before)  # what every benchmark cell demands too
    return masks


def _checked(fn: Callable[..., Any], model: nn.Module, amount: float, data: Batches, seed: int, spec: ArchSpec) -> Any:
    """``_run`` on a copy of ``model``: a pruner that does not apply draws another example; invalid masks fail."""
    try:
        return _run(fn, copy.deepcopy(model), amount, data, seed)
    except NotApplicable:
        from hypothesis import reject

        reject()  # the pruner says it does not apply here: draw another architecture
    except MaskError as exc:
        raise AssertionError(f"invalid masks on {spec}: {exc}") from exc


def check_pruner(
    fn: Callable[..., Any], spec: ArchSpec, amount: float, batch_size: int, seed: int, later: float | None = None
) -> None:
    """Every conformance property for one pruner, architecture, amount, batch size and seed; with ``later``,
    also a second round to that larger amount of the model pruned to ``amount``, as an iterative schedule runs."""
    torch.manual_seed(seed)
    model = spec.build().eval()
    _randomise_batchnorm(model)
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn((32, *spec.input_shape), generator=generator)
    data = Batches(inputs, torch.randint(0, spec.classes, (32,), generator=generator), batch_size, seed)
    prunable = set(prunable_names(model))
    total = sum(p.numel() for name, p in model.named_parameters() if name in prunable)
    tolerance = max(AMOUNT_TOLERANCE * total, filter_unit(model, spec.input_shape))

    masks = _checked(fn, model, amount, data, seed, spec)
    removed = sum(int((~mask).sum()) for mask in masks.values())
    target = count_to_remove(amount, total)
    assert abs(removed - target) <= tolerance, (
        f"asked to remove {amount:.3f} of {total} prunable weights ({target}), removed {removed} "
        f"(tolerance {tolerance:.0f}) on {spec}"
    )
    if amount == 0:
        assert removed == 0, f"amount 0 removed {removed} weights on {spec}"
    again = _checked(fn, model, amount, data, seed, spec)
    assert set(again) == set(masks) and all(torch.equal(again[n], masks[n]) for n in masks), (
        f"not deterministic for seed {seed} on {spec}"
    )
    if later is None:
        return
    MaskEnforcer(model, masks)()  # the first round's weights are zero, as the harness leaves them
    both = combine(_checked(fn, model, later, data, seed, spec), masks, {})
    removed = sum(int((~mask).sum()) for mask in both.values())
    target = count_to_remove(later, total)
    assert abs(removed - target) <= tolerance, (
        f"second round: asked to remove {later:.3f} of {total} prunable weights ({target}) after a first round "
        f"removed {amount:.3f}, and the two rounds removed {removed} (tolerance {tolerance:.0f}) on {spec}; under "
        "an iterative schedule `amount` counts every weight removed so far, so rank weights that are already "
        "zero first"
    )


def filter_unit(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """The most parameters that go with removing one filter on a sound chain of ``model`` (0 without chains)."""
    from .metrics.structure import find_chains

    units = [0]
    for chain in find_chains(model, input_shape):
        producer, consumer = model.get_submodule(chain.producer), model.get_submodule(chain.consumer)
        producer_weight, consumer_weight = cast(torch.Tensor, producer.weight), cast(torch.Tensor, consumer.weight)
        unit = producer_weight[0].numel() + (producer.bias is not None) + consumer_weight[:, 0].numel() * chain.block
        units.append(unit + (2 if chain.norm else 0))
    return max(units)


EXAMPLES = 60
"""Hypothesis examples per pruner (architecture, amount, batch size and seed drawn together)."""
HIGHEST_AMOUNT = 0.99
"""The largest amount drawn: 32x, the default matrix's highest compression, asks 0.97–0.98 of a built-in
architecture's prunable weights."""
ROUND_STEP = 0.05
"""A second round asks at least this much more than the first (hypothesis would otherwise often draw equal ones)."""


def amounts() -> Any:
    """Hypothesis strategy drawing (amount, later): half the examples one round of an amount in [0,
    HIGHEST_AMOUNT], both ends and the high range (where the benchmark's largest compressions are) drawn
    often; the other half two rounds, as an iterative schedule runs them: a first amount in [0.2, 0.9] and one
    at least ``ROUND_STEP`` larger."""
    from hypothesis import strategies as st

    one = st.one_of(
        st.just(0.0), st.floats(0.0, 0.8, exclude_min=True), st.floats(0.8, HIGHEST_AMOUNT), st.just(HIGHEST_AMOUNT)
    )
    two = st.floats(0.2, 0.9).flatmap(
        lambda first: st.tuples(st.just(first), st.floats(first + ROUND_STEP, HIGHEST_AMOUNT))
    )
    return st.one_of(st.tuples(one, st.none()), two)


def test_conformance(prune_conformance_pruner: str) -> None:
    """The pruner satisfies every conformance property on drawn architectures, amounts, batch sizes and seeds."""
    import pytest

    try:
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st
    except ImportError:
        pytest.fail("--prune-conformance needs hypothesis: pip install hypothesis", pytrace=False)
    from .registry import PRUNERS

    fn = PRUNERS.get(prune_conformance_pruner)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        spec=arch_specs(),
        rounds=amounts(),
        batch_size=st.sampled_from([1, 3, 16]),
        seed=st.integers(0, 2**16),
    )
    def conforms(spec: ArchSpec, rounds: tuple[float, float | None], batch_size: int, seed: int) -> None:
        check_pruner(fn, spec, rounds[0], batch_size, seed, later=rounds[1])

    conforms()
