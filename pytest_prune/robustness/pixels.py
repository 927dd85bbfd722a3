"""The map between a dataset's normalised inputs and [0, 1] pixels, where corruptions are applied."""

from __future__ import annotations

import math
from typing import Any

import torch


def _per_channel(normalisation: dict[str, Any], key: str, default: float) -> list[float]:
    """``normalisation[key]`` as a list of finite floats (a single number is one for every channel)."""
    value = normalisation.get(key)
    if value is None or (isinstance(value, list | tuple) and not value):
        return [default]
    values = list(value) if isinstance(value, list | tuple) else [value]
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"normalisation {key} {value!r} is not a number or a list of numbers") from None
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"normalisation {key} {value!r} is not finite")
    return out


class PixelSpace:
    """Maps a dataset's normalised inputs to [0, 1] pixels and back, per channel."""

    def __init__(self, normalisation: dict[str, Any], channels: int) -> None:
        mean, std = _per_channel(normalisation, "mean", 0.0), _per_channel(normalisation, "std", 1.0)
        if len(mean) not in (1, channels) or len(std) not in (1, channels):
            raise ValueError(
                f"normalisation {normalisation} does not match {channels} channels; give one value or one per channel"
            )
        if not all(s > 0 for s in std):
            raise ValueError(f"normalisation {normalisation}: every std must be > 0")
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        # one mean and std for every channel: (pixels − mean) / std in one pass, as pixels · (1/std) − mean/std
        self._affine = (-mean[0] / std[0], 1 / std[0]) if len(mean) == len(std) == 1 else None

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.mean, x, self.std)  # x·std + mean, one pass

    def normalised(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(pixels − mean) / std`` as a new tensor, at least float32."""
        return self._normalise_(pixels.to(torch.promote_types(pixels.dtype, torch.float32), copy=True))

    def normalise_clamped_(self, pixels: torch.Tensor) -> torch.Tensor:
        """``normalised(pixels.clamp(0, 1))``, written over ``pixels``."""
        return self._normalise_(pixels.clamp_(0, 1))

    def _normalise_(self, pixels: torch.Tensor) -> torch.Tensor:
        if self._affine is None:
            return pixels.sub_(self.mean).div_(self.std)
        offset, scale = self._affine
        return torch.add(torch.tensor(offset, dtype=pixels.dtype), pixels, alpha=scale, out=pixels)
