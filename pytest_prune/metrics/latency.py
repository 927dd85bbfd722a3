"""Inference latency: warm-up, repeats, median and spread, synchronised on devices that run asynchronously.

pytest-benchmark times the same way when its ``benchmark`` fixture is active (the bench suite hands it the
pruned model), but it switches itself off under xdist, so the harness always measures with this timer too.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

WARMUP = 3


@dataclass(frozen=True)
class Timing:
    """Latency of one forward pass at one batch size, in milliseconds."""

    batch_size: int
    median_ms: float
    q1_ms: float
    q3_ms: float
    repeats: int


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


@torch.inference_mode()
def measure(model: nn.Module, inputs: torch.Tensor, repeats: int, warmup: int = WARMUP) -> Timing:
    """Median and quartiles of ``repeats`` timed forward passes of ``model`` on ``inputs`` (eval mode)."""
    sync, _ = synchroniser(inputs.device)
    mode = model.training
    model.eval()
    try:
        for _ in range(warmup):
            model(inputs)
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(inputs)
            sync()
            times.append((time.perf_counter() - start) * 1000)
    finally:
        model.train(mode)
    quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return Timing(len(inputs), statistics.median(times), quartiles[0], quartiles[2], repeats)


def probe_inputs(input_shape: tuple[int, ...], batch_size: int, device: torch.device | str) -> torch.Tensor:
    """Fixed random inputs for timing (values do not change the cost of dense kernels)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn((batch_size, *input_shape), generator=generator).to(device)
