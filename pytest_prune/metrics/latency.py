"""Inference latency: warm-up, repeats, median and spread, synchronised on devices that run asynchronously.

pytest-benchmark times the same way when its ``benchmark`` fixture is active (the bench suite hands it the
pruned model), but it switches itself off under xdist, so the harness always measures with this timer too.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

WARMUP = 3


@dataclass(frozen=True)
class Timing:
    """Latency of one forward pass at one batch size: every timed pass, in order, in milliseconds."""

    batch_size: int
    samples_ms: tuple[float, ...]

    @property
    def repeats(self) -> int:
        return len(self.samples_ms)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def q1_ms(self) -> float:
        return self._quartiles[0]

    @property
    def q3_ms(self) -> float:
        return self._quartiles[2]

    @property
    def _quartiles(self) -> list[float]:
        samples = list(self.samples_ms)
        return statistics.quantiles(samples, n=4) if len(samples) > 1 else samples * 3


def synchroniser(device: torch.device | str) -> tuple[Callable[[], None], str | None]:
    """A function that waits for the device to finish, and a note when the device cannot be synchronised."""
    device = torch.device(device)
    if device.type == "cpu":
        return (lambda: None), None  # CPU kernels return when done
    backend = getattr(torch, device.type, None)
    sync = getattr(backend, "synchronize", None)
    if callable(sync):
        return (lambda: sync(device) if device.type == "cuda" else sync()), None
    return (lambda: None), (
        f"device {device.type!r} cannot be synchronised by pytest-prune: its latency measures "
        "kernel launch, not execution"
    )


def timed_rounds(
    calls: dict[str, Callable[[], object]], rounds: int, sync: Callable[[], None] = lambda: None
) -> dict[str, list[float]]:
    """Milliseconds of each call, ``rounds`` times over: every call once per round, in turn, ``sync`` after each."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            sync()
            times[name].append((time.perf_counter() - start) * 1000)
    return times


@torch.inference_mode()
def measure_interleaved(
    models: dict[str, nn.Module], inputs: torch.Tensor, repeats: int, warmup: int = WARMUP
) -> dict[str, Timing]:
    """Time the forward passes of several models on ``inputs`` in rounds: each model once per round, in turn.

    Timing the models one after another instead would let a machine that speeds up or slows down in
    between (a shared VM, a CPU changing clock) show up as a speedup; in rounds, each round's ratios are
    taken within moments. Modes are restored.
    """
    sync, _ = synchroniser(inputs.device)
    modes = {name: model.training for name, model in models.items()}
    try:
        for model in models.values():
            model.eval()
            for _ in range(warmup):
                model(inputs)
        sync()
        times = timed_rounds({name: functools.partial(model, inputs) for name, model in models.items()}, repeats, sync)
    finally:
        for name, model in models.items():
            model.train(modes[name])
    return {name: Timing(len(inputs), tuple(samples)) for name, samples in times.items()}


def speedup(reference: Timing, other: Timing) -> float:
    """The median over rounds of reference / other time: ``measure_interleaved`` timed them side by side."""
    return statistics.median(r / o for r, o in zip(reference.samples_ms, other.samples_ms, strict=True))


def probe_inputs(input_shape: tuple[int, ...], batch_size: int, device: torch.device | str) -> torch.Tensor:
    """Fixed random inputs for timing (values do not change the cost of dense kernels)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn((batch_size, *input_shape), generator=generator).to(device)
