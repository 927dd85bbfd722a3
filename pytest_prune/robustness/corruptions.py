"""Corruptions and geometric shifts of image batches, applied in [0, 1] pixel space, seeded and streamed.

The noise, blur, digital and colour corruptions use Hendrycks & Dietterich's published CIFAR-10-C
parameters (``make_cifar_c.py``), one value per severity 1–5. Rotation and translation are pytest-prune's
own geometric shifts (CIFAR-10-C has none); their parameters are in the table below. Pixelate and JPEG go
through Pillow on 8-bit images, as the originals do; everything else is tensor ops on float pixels.

Every batch of ``BATCH`` images gets its own generator seeded from (seed, corruption, severity, position of
the batch), so a corrupted test set is the same in every process and evaluation order, and it is never
held in memory as a whole.
"""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

SEVERITIES = (1, 2, 3, 4, 5)
BATCH = 500
"""Images corrupted at once: fixed, because the random draws are seeded per batch."""
Apply = Callable[[torch.Tensor, Any, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Corruption:
    """A named shift: ``apply(pixels, parameter, generator)`` with one parameter per severity 1–5."""

    name: str
    apply: Apply
    params: tuple[Any, ...]
    channels: tuple[int, ...] | None = None  # channel counts it applies to; None = any
    source: str = "CIFAR-10-C (Hendrycks & Dietterich 2019)"

    def skip_reason(self, channels: int) -> str | None:
        """Why this corruption does not apply to images with ``channels`` channels, or None."""
        if self.channels is None or channels in self.channels:
            return None
        wanted = " or ".join(map(str, self.channels))
        return f"{self.name} needs {wanted}-channel images; the data has {channels}"


def _noise(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=g, dtype=x.dtype)


def gaussian_noise(x: torch.Tensor, sigma: float, g: torch.Generator) -> torch.Tensor:
    return x + sigma * _noise(x, g)


def shot_noise(x: torch.Tensor, photons: float, g: torch.Generator) -> torch.Tensor:
    return torch.poisson(x.clamp(0, 1) * photons, generator=g) / photons


def impulse_noise(x: torch.Tensor, amount: float, g: torch.Generator) -> torch.Tensor:
    """Salt and pepper: each value becomes 0 or 1 (even odds) with probability ``amount``."""
    hit = torch.rand(x.shape, generator=g) < amount
    salt = (torch.rand(x.shape, generator=g) < 0.5).to(x.dtype)
    return torch.where(hit, salt, x)


def speckle_noise(x: torch.Tensor, scale: float, g: torch.Generator) -> torch.Tensor:
    return x + x * scale * _noise(x, g)


def _depthwise(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Convolve every channel with the same odd-sized 2-d kernel, padding by ``mode``."""
    channels, (kh, kw) = x.shape[1], kernel.shape
    pad = (kw // 2, kw // 2, kh // 2, kh // 2)
    if mode == "reflect" and min(x.shape[-2:]) <= max(pad):
        mode = "replicate"  # reflection needs the image to be wider than the padding
    weight = kernel.to(x.dtype).expand(channels, 1, kh, kw)
    return F.conv2d(F.pad(x, pad, mode=mode), weight, groups=channels)


def gaussian_kernel(sigma: float, radius: int | None = None) -> torch.Tensor:
    """Normalised 2-d Gaussian; radius int(4σ + 0.5) by default (scipy's truncate=4)."""
    radius = int(4 * sigma + 0.5) if radius is None else radius
    grid = torch.arange(-radius, radius + 1, dtype=torch.float64)
    line = torch.exp(-(grid**2) / (2 * sigma**2))
    kernel = line[:, None] * line[None, :]
    return kernel / kernel.sum()


def gaussian_blur(x: torch.Tensor, sigma: float, g: torch.Generator) -> torch.Tensor:
    return _depthwise(x, gaussian_kernel(sigma), "replicate")  # skimage's gaussian: mode 'nearest'


def defocus_kernel(radius: float, alias_sigma: float) -> torch.Tensor:
    """A disk of ``radius`` on the grid −8..8, smoothed by a 3×3 Gaussian, normalised, cropped to its support."""
    grid = torch.arange(-8, 9, dtype=torch.float64)
    disk = ((grid[:, None] ** 2 + grid[None, :] ** 2) <= radius**2).to(torch.float64)
    disk /= disk.sum()
    smooth = F.conv2d(disk[None, None], gaussian_kernel(alias_sigma, 1)[None, None], padding=1)[0, 0]
    rows = torch.nonzero(smooth.abs().sum(1) > 1e-12).flatten()
    r = int(max(8 - rows.min(), rows.max() - 8))
    kernel = smooth[8 - r : 9 + r, 8 - r : 9 + r]
    return kernel / kernel.sum()


def defocus_blur(x: torch.Tensor, param: tuple[float, float], g: torch.Generator) -> torch.Tensor:
    return _depthwise(x, defocus_kernel(*param), "reflect")  # cv2.filter2D's default border


def contrast(x: torch.Tensor, factor: float, g: torch.Generator) -> torch.Tensor:
    mean = x.mean(dim=(-2, -1), keepdim=True)
    return (x - mean) * factor + mean


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] to HSV with every component in [0, 1]."""
    r, g, b = x.unbind(1)
    value, _ = x.max(1)
    chroma = value - x.min(1).values
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    hue = torch.where(value == r, ((g - b) / safe) % 6, torch.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = torch.where(chroma > 0, hue / 6, torch.zeros_like(hue))
    saturation = torch.where(value > 0, chroma / torch.where(value > 0, value, torch.ones_like(value)), value * 0)
    return torch.stack((hue, saturation, value), 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``rgb_to_hsv``."""
    h, s, v = x.unbind(1)
    k = torch.stack([(n + h * 6) % 6 for n in (5.0, 3.0, 1.0)], 1)
    return v[:, None] - v[:, None] * s[:, None] * (torch.minimum(k, 4 - k).clamp(0, 1))


def brightness(x: torch.Tensor, shift: float, g: torch.Generator) -> torch.Tensor:
    """HSV value + shift (a grey image's value is its intensity)."""
    if x.shape[1] == 1:
        return x + shift
    hsv = rgb_to_hsv(x.clamp(0, 1))
    hsv[:, 2] = (hsv[:, 2] + shift).clamp(0, 1)
    return hsv_to_rgb(hsv)


def saturate(x: torch.Tensor, param: tuple[float, float], g: torch.Generator) -> torch.Tensor:
    hsv = rgb_to_hsv(x.clamp(0, 1))
    hsv[:, 1] = (hsv[:, 1] * param[0] + param[1]).clamp(0, 1)
    return hsv_to_rgb(hsv)


def _through_pillow(x: torch.Tensor, edit: Callable[[Any], Any]) -> torch.Tensor:
    """Round to 8-bit, run ``edit`` on each image as a Pillow image, convert back to [0, 1] floats."""
    import numpy as np
    from PIL import Image

    pixels = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    mode = "L" if pixels.shape[-1] == 1 else "RGB"
    out = []
    for image in pixels:
        edited = edit(Image.fromarray(image[..., 0] if mode == "L" else image, mode=mode))
        out.append(np.asarray(edited, dtype=np.uint8).reshape(image.shape))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.dtype) / 255


def pixelate(x: torch.Tensor, factor: float, g: torch.Generator) -> torch.Tensor:
    from PIL import Image

    def edit(image: Any) -> Any:
        small = (max(1, int(image.width * factor)), max(1, int(image.height * factor)))
        return image.resize(small, Image.Resampling.BOX).resize(image.size, Image.Resampling.BOX)

    return _through_pillow(x, edit)


def jpeg(x: torch.Tensor, quality: int, g: torch.Generator) -> torch.Tensor:
    from PIL import Image

    def edit(image: Any) -> Any:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return Image.open(buffer).convert(image.mode)

    return _through_pillow(x, edit)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rotation(x: torch.Tensor, degrees: float, g: torch.Generator) -> torch.Tensor:
    """Rotate each image by ±``degrees`` (sign drawn per image) about its centre; corners fill with 0."""
    sign = torch.randint(0, 2, (len(x),), generator=g) * 2 - 1
    angle = sign.to(torch.float64) * math.radians(degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    theta = torch.stack((torch.stack((cos, -sin, zero), 1), torch.stack((sin, cos, zero), 1)), 1)
    return _affine(x, theta)


def translation(x: torch.Tensor, fraction: float, g: torch.Generator) -> torch.Tensor:
    """Shift each image by ``fraction`` of its size in a random direction (drawn per image); fill 0."""
    angle = torch.rand(len(x), generator=g, dtype=torch.float64) * 2 * math.pi
    eye = torch.eye(2, dtype=torch.float64).expand(len(x), 2, 2)
    shift = torch.stack((torch.cos(angle), torch.sin(angle)), 1) * 2 * fraction  # grid units span 2
    return _affine(x, torch.cat((eye, -shift[:, :, None]), 2))


CORRUPTIONS: dict[str, Corruption] = {
    c.name: c
    for c in (
        Corruption("gaussian_noise", gaussian_noise, (0.04, 0.06, 0.08, 0.09, 0.10)),
        Corruption("shot_noise", shot_noise, (500, 250, 100, 75, 50)),
        Corruption("impulse_noise", impulse_noise, (0.01, 0.02, 0.03, 0.05, 0.07)),
        Corruption("speckle_noise", speckle_noise, (0.06, 0.10, 0.12, 0.16, 0.20)),
        Corruption("gaussian_blur", gaussian_blur, (0.4, 0.6, 0.7, 0.8, 1.0)),
        Corruption("defocus_blur", defocus_blur, ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))),
        Corruption("contrast", contrast, (0.75, 0.5, 0.4, 0.3, 0.15)),
        Corruption("brightness", brightness, (0.05, 0.1, 0.15, 0.2, 0.3), (1, 3)),
        Corruption("saturate", saturate, ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)), (3,)),
        Corruption("pixelate", pixelate, (0.95, 0.9, 0.85, 0.75, 0.65), (1, 3)),
        Corruption("jpeg", jpeg, (80, 65, 58, 50, 40), (1, 3)),
        Corruption("rotation", rotation, (5, 10, 15, 20, 30), source="pytest-prune: ± degrees"),
        Corruption("translation", translation, (0.04, 0.08, 0.12, 0.16, 0.20), source="pytest-prune: × image size"),
    )
}
"""The suite, in report order."""


def batch_generator(seed: int, name: str, severity: int, start: int) -> torch.Generator:
    """The generator of one batch: a stable function of seed, corruption, severity and the batch's first index."""
    key = zlib.crc32(f"{seed}/{name}/{severity}/{start}".encode())
    return torch.Generator().manual_seed(key)


class PixelSpace:
    """Maps a dataset's normalised inputs to [0, 1] pixels and back, per channel."""

    def __init__(self, normalisation: dict[str, list[float]], channels: int) -> None:
        mean = normalisation.get("mean") or [0.0]
        std = normalisation.get("std") or [1.0]
        if len(mean) not in (1, channels) or len(std) not in (1, channels):
            raise ValueError(f"normalisation {normalisation} does not match {channels} channels")
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean

    def normalised(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self.mean) / self.std


def corrupted_batches(
    x: torch.Tensor,
    space: PixelSpace,
    corruption: Corruption,
    severity: int,
    seed: int,
    batch_size: int = BATCH,
) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, normalised corrupted batch)`` over ``x``, one batch in memory at a time, on ``x``'s device."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity} is outside 1–5")
    parameter = corruption.params[severity - 1]
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size].detach().to("cpu", torch.float32)
        generator = batch_generator(seed, corruption.name, severity, start)
        shifted = corruption.apply(space.pixels(batch), parameter, generator).clamp(0, 1)
        yield start, space.normalised(shifted).to(x.device, x.dtype)
