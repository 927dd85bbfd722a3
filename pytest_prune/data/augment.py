"""Training-time augmentation on normalised batches, seeded: the standard CIFAR ``crop4+flip``.

``crop4+flip`` is torchvision's ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()`` as ShrinkBench and
Lost in Pruning train CIFAR: pad every side by 4 black pixels, cut a random window of the original size,
mirror half of the images. The data is already normalised, so "black" is pixel 0 in normalised space,
(0 − mean) / std per channel. The draws come from the caller's generator, so training stays reproducible.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

_SPEC = re.compile(r"^(?:crop(?P<pad>\d+))?(?:\+?(?P<flip>flip))?$")


def parse(spec: str) -> tuple[int, bool]:
    """``crop4+flip`` → (4, True); ``flip`` → (0, True); ``crop2`` → (2, False); raises ValueError otherwise."""
    match = _SPEC.match(spec)
    if not spec or match is None:
        raise ValueError(f"augmentation {spec!r}: expected cropN, flip or cropN+flip (e.g. crop4+flip)")
    return int(match.group("pad") or 0), bool(match.group("flip"))


def augment_batch(
    x: torch.Tensor, spec: str, normalisation: dict[str, list[float]], generator: torch.Generator
) -> torch.Tensor:
    """A randomly cropped and/or flipped copy of the normalised batch ``x`` (B, C, H, W)."""
    pad, flip = parse(spec)
    batch, channels, height, width = x.shape
    if pad:
        mean = torch.tensor(normalisation.get("mean", [0.0] * channels), dtype=x.dtype, device=x.device)
        std = torch.tensor(normalisation.get("std", [1.0] * channels), dtype=x.dtype, device=x.device)
        black = (-mean / std).expand(channels).view(1, channels, 1, 1)
        padded = F.pad(x - black, (pad, pad, pad, pad)) + black  # pad with black, not with normalised zero
        dy = torch.randint(0, 2 * pad + 1, (batch,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (batch,), generator=generator).to(x.device)
        rows = (dy[:, None] + torch.arange(height, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(width, device=x.device))[:, None, None, :]
        index = torch.arange(batch, device=x.device)[:, None, None, None]
        chan = torch.arange(channels, device=x.device)[None, :, None, None]
        x = padded[index, chan, rows, cols]
    if flip:
        mirror = (torch.rand(batch, generator=generator) < 0.5).to(x.device)
        x = torch.where(mirror[:, None, None, None], x.flip(3), x)
    return x
