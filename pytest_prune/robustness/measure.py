"""Accuracy under distribution shift and functional similarity to the dense parent (Lost in Pruning).

* ``shifted_top1``: top-1 on every (corruption, severity), streamed batch by batch.
* ``excess_error``: [e(pruned, shifted) − e(pruned, nominal)] − [e(dense, shifted) − e(dense, nominal)].
* ``similarity``: top-1 label agreement and mean softmax L2 distance to the parent on the nominal test set.
* ``eps_agreement``: agreement on random uniform L∞ noise of radius eps around a fixed sample of test
  images, in the normalised input space and unclipped (Lost in Pruning's protocol), several draws per image.

Every model sees exactly the same inputs (the corruptions and noise are seeded), so dense, pruned and the
separately trained reference are compared on identical data.
"""

from __future__ import annotations

import statistics
import zlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .corruptions import CORRUPTIONS, check_severity, pixel_batches, severities_of
from .pixels import PixelSpace

EVAL_SEED = 0
"""Corruptions and noise are drawn with this seed in every cell, so all models are compared on the same inputs."""


def applicable(names: Sequence[str], channels: int) -> tuple[list[str], dict[str, str]]:
    """The corruptions that apply to ``channels``-channel images, and why the others are skipped."""
    kept, skipped = [], {}
    for name in names:
        reason = CORRUPTIONS[name].skip_reason(channels)
        if reason is None:
            kept.append(name)
        else:
            skipped[name] = reason
    return kept, skipped


@torch.inference_mode()
def shifted_top1(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    space: PixelSpace,
    corruptions: Sequence[str],
    severities: Sequence[int],
) -> dict[str, dict[str, float]]:
    """``{corruption: {severity: top1}}`` with the corrupted test set streamed, never held whole.

    Each batch is turned into pixels once and then corrupted every way in turn (each corruption's severities
    from one draw), one corrupted batch in memory at a time.
    """
    for severity in severities:  # a bad one fails before any work
        check_severity(severity)
    was_training = model.training
    model.eval()
    correct = {(name, severity): 0 for name in corruptions for severity in severities}
    try:
        for start, pixels in pixel_batches(x, space):
            labels = y[start : start + len(pixels)]
            for name in corruptions:
                for severity, batch in severities_of(pixels, space, CORRUPTIONS[name], severities, EVAL_SEED, start):
                    correct[name, severity] += int((model(batch.to(x.device, x.dtype)).argmax(1) == labels).sum())
    finally:
        model.train(was_training)
    out: dict[str, dict[str, float]] = {name: {} for name in corruptions}
    for (name, severity), count in correct.items():
        out[name][str(severity)] = count / len(x)
    return out


def mean_top1(table: dict[str, dict[str, float]]) -> float:
    """Mean top-1 over every (corruption, severity) of a ``shifted_top1`` table."""
    return statistics.fmean(v for by_severity in table.values() for v in by_severity.values())


def excess_error(pruned_nominal: float, pruned_shifted: float, dense_nominal: float, dense_shifted: float) -> float:
    """How much more error the pruned model gains under the shift than its parent does (a fraction)."""
    return ((1 - pruned_shifted) - (1 - pruned_nominal)) - ((1 - dense_shifted) - (1 - dense_nominal))


@torch.inference_mode()
def similarity(model: nn.Module, parent: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> dict[str, float]:
    """Top-1 label agreement with the parent and mean L2 distance between their softmax outputs."""
    model.eval()
    parent.eval()
    agree, distance = 0, 0.0
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        mine, theirs = model(batch), parent(batch)
        agree += int((mine.argmax(1) == theirs.argmax(1)).sum())
        distance += float((F.softmax(mine, 1) - F.softmax(theirs, 1)).norm(dim=1).sum())
    return {"agreement": agree / len(x), "softmax_l2": distance / len(x)}


def eps_sample(x: torch.Tensor, images: int) -> torch.Tensor:
    """The fixed sample of test images for eps-agreement: a seeded choice, the same for every model (the whole
    test set when it has fewer than ``images``: the record's ``eps_images`` says how many)."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(EVAL_SEED))
    return x[order[: min(images, len(x))].to(x.device)]


@torch.inference_mode()
def eps_agreement(
    model: nn.Module, parent: nn.Module, sample: torch.Tensor, eps: Sequence[float], draws: int
) -> dict[str, float]:
    """``{eps: agreement}``: the fraction of (image, draw) pairs on which both models give the same label."""
    model.eval()
    parent.eval()
    out: dict[str, float] = {}
    for radius in eps:
        agree = 0
        for draw in range(draws):
            seed = zlib.crc32(f"{EVAL_SEED}/{radius!r}/{draw}".encode())
            noise = torch.rand(sample.shape, generator=torch.Generator().manual_seed(seed))
            noisy = sample + (2 * noise.to(sample.device, sample.dtype) - 1) * radius
            agree += int((model(noisy).argmax(1) == parent(noisy).argmax(1)).sum())
        out[f"{radius:g}"] = agree / (draws * len(sample))
    return out


def functional_similarity(model: nn.Module, parent: nn.Module, test_x: torch.Tensor, settings: Any) -> dict[str, Any]:
    """Nominal agreement, softmax L2 and eps-agreement of ``model`` with ``parent``."""
    out: dict[str, Any] = similarity(model, parent, test_x)
    sample = eps_sample(test_x, settings.eps_images)
    out["eps_agreement"] = eps_agreement(model, parent, sample, settings.eps, settings.eps_draws)
    out["eps_images"] = len(sample)
    return out
