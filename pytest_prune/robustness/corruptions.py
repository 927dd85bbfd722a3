"""Corruptions and geometric shifts of image batches, applied in [0, 1] pixel space, seeded and streamed.

The noise, blur, digital and colour corruptions use Hendrycks & Dietterich's published CIFAR-10-C
parameters (``make_cifar_c.py``), one value per severity 1–5. Rotation and translation are pytest-prune's
own geometric shifts (CIFAR-10-C has none); their parameters are in the table below. Pixelate and JPEG give
what Pillow gives for each 8-bit image, as the originals do; everything else is tensor ops on float pixels.

Every batch of ``BATCH`` images gets its own generator per corruption, seeded from (seed, corruption,
position of the batch), so a corrupted test set is the same in every process and evaluation order, and it
is never held in memory as a whole. A corruption draws once per batch for all its severities
(``Corruption.draw``): the severities share their random numbers, coupled as common random numbers are
(severity 5's Gaussian noise is severity 1's scaled; a value salted at one impulse amount is salted at
every larger one), each with its own published distribution, and a severity's images are the same
whichever other severities run.

Corrupting a test set must cost little next to evaluating it, even for a model that needs a few
milliseconds per thousand images, so no corruption works image by image:

* JPEG and pixelate: the whole batch at once, to Pillow's bits (``pillow_exact``); JPEG's blocks are
  sorted and laid out once per batch for all its qualities.
* Blurs: the kernel, with its border padding folded in, becomes one matrix per image axis (a few such
  pairs when it is not separable), so a blur is a few small matrix products (``blur``).
* Gaussian and speckle noise: normal deviates from a 16-bit table of normal quantiles (``sampling``).
* Shot noise: on 8-bit pixels each count is one float64 uniform draw looked up in inverse-CDF tables of
  the Poisson distributions of the 256 levels' rates, exact to float64, and black costs no draw; other
  pixels use ``torch.poisson``.
* Impulse noise: the hits at the largest amount are found by geometric gaps between hits, the same
  Bernoulli process, so only about that amount of the values cost random draws (``sampling``).
* Rotation and translation: the sampling grids of each rotation's two directions, and the identity grid,
  are built once per image size; a batch's grids are picked from them or are one exact matrix product.

The blurs differ from direct convolution by float32 rounding (below 1e-6); the noises draw other random
numbers than ``torch.randn``, ``torch.poisson`` and one uniform per value would, from the same
distributions (the normal one to within 2**-16 in probability); everything else gives the same bits as the
per-image and direct forms.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import pillow_box, pillow_exact
from .blur import defocus_kernel, depthwise, gaussian_kernel
from .pixels import PixelSpace
from .sampling import bernoulli_positions, normals, poisson_by_table, uniform

SEVERITIES = (1, 2, 3, 4, 5)
BATCH = 500
"""Images corrupted at once: fixed, because the random draws are seeded per batch."""
Shift = Callable[[torch.Tensor, Any, Any], torch.Tensor]
"""``shift(pixels, parameter, drawn)``: the corrupted batch at one severity's parameter."""
Draw = Callable[[torch.Tensor, tuple[Any, ...], torch.Generator], Any]
"""``draw(pixels, parameters, generator)``: what every severity of a batch shares (its random draws, say)."""


def _nothing(x: torch.Tensor, params: tuple[Any, ...], g: torch.Generator) -> None:
    return None


@dataclass(frozen=True)
class Corruption:
    """A named shift with one parameter per severity 1–5.

    ``draw`` runs once per batch and what it returns serves every severity's ``shift``: the severities of
    one batch share their random numbers (the noise of severity 5 is that of severity 1, scaled up) and
    whatever can be prepared once, so a batch costs less than one draw per severity, and a severity's result
    does not depend on which others run.
    """

    name: str
    shift: Shift
    params: tuple[Any, ...]
    channels: tuple[int, ...] | None = None  # channel counts it applies to; None = any
    source: str = "CIFAR-10-C (Hendrycks & Dietterich 2019)"
    draw: Draw = _nothing

    def skip_reason(self, channels: int) -> str | None:
        """Why this corruption does not apply to images with ``channels`` channels, or None."""
        if self.channels is None or channels in self.channels:
            return None
        wanted = " or ".join(map(str, self.channels))
        return f"{self.name} needs {wanted}-channel images; the data has {channels}"

    def apply(self, x: torch.Tensor, param: Any, g: torch.Generator) -> torch.Tensor:
        """The corruption of ``x`` at ``param``, drawn from ``g`` (a parameter of none of the severities joins
        them for the draw)."""
        params = self.params if param in self.params else (*self.params, param)
        return self.shift(x, param, self.draw(x, params, g))


# --- noise ---------------------------------------------------------------------------------------------------------


def _draw_normals(x: torch.Tensor, params: tuple[Any, ...], g: torch.Generator) -> torch.Tensor:
    return normals(x.shape, g).to(x.dtype)


def gaussian_noise(x: torch.Tensor, sigma: float, noise: torch.Tensor) -> torch.Tensor:
    return torch.add(x, noise, alpha=sigma)


def _draw_speckle(x: torch.Tensor, params: tuple[Any, ...], g: torch.Generator) -> torch.Tensor:
    return _draw_normals(x, params, g).mul_(x)  # x·n, which every severity scales


def speckle_noise(x: torch.Tensor, scale: float, noise: torch.Tensor) -> torch.Tensor:
    return torch.add(x, noise, alpha=scale)  # x + scale·x·n


def _draw_shot(x: torch.Tensor, params: tuple[Any, ...], g: torch.Generator) -> Any:
    """For 8-bit pixels: where they are not black, their levels and one uniform each; otherwise a seed."""
    scaled = x.clamp(0, 1).mul_(255)
    level = scaled.round()
    if scaled.numel() and float(scaled.sub_(level).abs_().max()) > 1e-3:  # not 8-bit pixels
        return int(torch.randint(0, 2**62, (1,), generator=g))
    flat = level.view(-1).numpy()
    where = np.flatnonzero(flat > 0)
    return where, flat[where].astype(np.intp), uniform(len(where), g)


def shot_noise(x: torch.Tensor, photons: float, drawn: Any) -> torch.Tensor:
    """``Poisson(photons · x) / photons`` per value.

    On 8-bit pixels each count is its uniform looked up in the exact inverse-CDF table of its level's rate
    (``sampling.poisson_by_table``), and black stays black; other pixels go to ``torch.poisson``.
    """
    if isinstance(drawn, int):
        rates = x.clamp(0, 1).mul_(photons)
        return torch.poisson(rates, generator=torch.Generator().manual_seed(drawn)).div_(photons)
    where, level, u = drawn
    counts = np.zeros(x.numel(), dtype=np.float32)
    counts[where] = poisson_by_table(photons / 255, level, u)
    return torch.from_numpy(counts).view(x.shape).to(x.dtype).div_(photons)


def _draw_impulse(x: torch.Tensor, params: tuple[Any, ...], g: torch.Generator) -> Any:
    """The hits at the largest amount, a uniform on [0, that amount) for each, and each one's value (0 or 1)."""
    top = max(params)
    hits = bernoulli_positions(x.numel(), top, g)
    keep = torch.rand(len(hits), generator=g, dtype=torch.float64) * top  # a hit at amount p too when keep < p
    salt = (torch.rand(len(hits), generator=g) < 0.5).to(x.dtype)
    return hits, keep, salt


def impulse_noise(x: torch.Tensor, amount: float, drawn: Any) -> torch.Tensor:
    """Salt and pepper: each value becomes 0 or 1 (even odds) with probability ``amount``."""
    hits, keep, salt = drawn
    out = x.clone(memory_format=torch.contiguous_format)
    chosen = keep < amount
    out.view(-1)[hits[chosen]] = salt[chosen]
    return out


# --- blurs ---------------------------------------------------------------------------------------------------------


def gaussian_blur(x: torch.Tensor, sigma: float, drawn: None) -> torch.Tensor:
    return depthwise(x, gaussian_kernel(sigma), "replicate")  # skimage's gaussian: mode 'nearest'


def defocus_blur(x: torch.Tensor, param: tuple[float, float], drawn: None) -> torch.Tensor:
    return depthwise(x, defocus_kernel(*param), "reflect")  # cv2.filter2D's default border


# --- colour --------------------------------------------------------------------------------------------------------


def contrast(x: torch.Tensor, factor: float, drawn: None) -> torch.Tensor:
    mean = x.mean(dim=(-2, -1), keepdim=True)
    return (x - mean).mul_(factor).add_(mean)


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


def _draw_hsv(x: torch.Tensor, params: tuple[Any, ...], g: torch.Generator) -> torch.Tensor | None:
    return rgb_to_hsv(x.clamp(0, 1)) if x.shape[1] == 3 else None


def brightness(x: torch.Tensor, shift: float, hsv: torch.Tensor | None) -> torch.Tensor:
    """HSV value + shift (a grey image's value is its intensity)."""
    if hsv is None:
        return x + shift
    hsv = hsv.clone()
    hsv[:, 2] = (hsv[:, 2] + shift).clamp(0, 1)
    return hsv_to_rgb(hsv)


def saturate(x: torch.Tensor, param: tuple[float, float], hsv: torch.Tensor) -> torch.Tensor:
    hsv = hsv.clone()
    hsv[:, 1] = (hsv[:, 1] * param[0] + param[1]).clamp(0, 1)
    return hsv_to_rgb(hsv)


# --- digital (Pillow's, to the bit) -------------------------------------------------------------------------------


def _draw_levels(x: torch.Tensor, params: tuple[Any, ...], g: torch.Generator) -> torch.Tensor:
    return pillow_box.levels(x)


def pixelate(x: torch.Tensor, factor: float, levels: torch.Tensor) -> torch.Tensor:
    return pillow_box.pixelate(levels, factor).to(x.dtype)


def _draw_jpeg(x: torch.Tensor, params: tuple[Any, ...], g: torch.Generator) -> pillow_exact.JpegInput:
    return pillow_exact.JpegInput(x)


def jpeg(x: torch.Tensor, quality: int, prepared: pillow_exact.JpegInput) -> torch.Tensor:
    return prepared.round_trip(quality)


# --- geometric shifts ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _grids(theta: tuple[float, ...], height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """``F.affine_grid`` of a few (2, 3) float64 matrices (flattened, cast to ``dtype``), one grid per row."""
    matrices = torch.tensor(theta, dtype=torch.float64).view(-1, 2, 3).to(dtype)
    return F.affine_grid(matrices, [len(matrices), 1, height, width], align_corners=False).flatten(1)


def _sample(x: torch.Tensor, grids: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of each image at its flattened grid (one row of ``grids`` per image), zeros outside."""
    grid = grids.view(len(x), *x.shape[-2:], 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _draw_signs(x: torch.Tensor, params: tuple[Any, ...], g: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (len(x),), generator=g)


def rotation(x: torch.Tensor, degrees: float, sign: torch.Tensor) -> torch.Tensor:
    """Rotate each image by ±``degrees`` (the sign drawn per image) about its centre; corners fill with 0.

    The grid's coordinates span [−1, 1] across each side, so on an image of height H and width W the sine
    terms are scaled by H/W and W/H: a rotation in pixels, not a shear (by 1 on square images).
    """
    height, width = x.shape[-2:]
    angle = torch.tensor([-1.0, 1.0], dtype=torch.float64) * math.radians(degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    rows = (torch.stack((cos, -sin * (height / width), zero), 1), torch.stack((sin * (width / height), cos, zero), 1))
    theta = torch.stack(rows, 1)
    grids = _grids(tuple(theta.flatten().tolist()), *x.shape[-2:], x.dtype)
    return _sample(x, grids.index_select(0, sign))


def _draw_directions(x: torch.Tensor, params: tuple[Any, ...], g: torch.Generator) -> torch.Tensor:
    angle = torch.rand(len(x), generator=g, dtype=torch.float64) * 2 * math.pi
    return torch.stack((torch.cos(angle), torch.sin(angle)), 1)


def translation(x: torch.Tensor, fraction: float, direction: torch.Tensor) -> torch.Tensor:
    """Shift each image by ``fraction`` of its size in a direction drawn per image; fill 0."""
    shift = direction * 2 * fraction  # grid units span 2
    # the identity grid, and grids of 1 in the x and in the y coordinate (the translations by (1, 0), (0, 1),
    # less the identity): identity − shift is the grid of [I | −shift]. The product multiplies the identity
    # grid by 1 and adds one number per coordinate, so it is exact: what F.affine_grid gives for each
    # image's own matrix, at a fraction of its cost
    basis = _grids((1.0, 0.0, 0.0, 0.0, 1.0, 0.0), *x.shape[-2:], x.dtype)
    units = torch.tensor([1.0, 0.0], dtype=x.dtype).repeat(basis.shape[1] // 2)
    grids = torch.stack((basis[0], units, units.roll(1)))
    mix = torch.cat((torch.ones(len(x), 1, dtype=x.dtype), (-shift).to(x.dtype)), 1)
    return _sample(x, mix @ grids)


CORRUPTIONS: dict[str, Corruption] = {
    c.name: c
    for c in (
        Corruption("gaussian_noise", gaussian_noise, (0.04, 0.06, 0.08, 0.09, 0.10), draw=_draw_normals),
        Corruption("shot_noise", shot_noise, (500, 250, 100, 75, 50), draw=_draw_shot),
        Corruption("impulse_noise", impulse_noise, (0.01, 0.02, 0.03, 0.05, 0.07), draw=_draw_impulse),
        Corruption("speckle_noise", speckle_noise, (0.06, 0.10, 0.12, 0.16, 0.20), draw=_draw_speckle),
        Corruption("gaussian_blur", gaussian_blur, (0.4, 0.6, 0.7, 0.8, 1.0)),
        Corruption("defocus_blur", defocus_blur, ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))),
        Corruption("contrast", contrast, (0.75, 0.5, 0.4, 0.3, 0.15)),
        Corruption("brightness", brightness, (0.05, 0.1, 0.15, 0.2, 0.3), (1, 3), draw=_draw_hsv),
        Corruption("saturate", saturate, ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)), (3,), draw=_draw_hsv),
        Corruption("pixelate", pixelate, (0.95, 0.9, 0.85, 0.75, 0.65), (1, 3), draw=_draw_levels),
        Corruption("jpeg", jpeg, (80, 65, 58, 50, 40), (1, 3), draw=_draw_jpeg),
        Corruption("rotation", rotation, (5, 10, 15, 20, 30), source="pytest-prune: ± degrees", draw=_draw_signs),
        Corruption(
            "translation",
            translation,
            (0.04, 0.08, 0.12, 0.16, 0.20),
            source="pytest-prune: × image size",
            draw=_draw_directions,
        ),
    )
}
"""The suite, in report order."""


def batch_generator(seed: int, name: str, start: int) -> torch.Generator:
    """The generator of one batch's draws: a stable function of seed, corruption and the batch's first index."""
    key = zlib.crc32(f"{seed}/{name}/{start}".encode())
    return torch.Generator().manual_seed(key)


def pixel_batches(x: torch.Tensor, space: PixelSpace, batch_size: int = BATCH) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, [0, 1] pixels)`` of each batch of the normalised inputs ``x``, on the CPU, one batch at a time."""
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size].detach().to("cpu", torch.float32)
        yield start, space.pixels(batch.contiguous())  # channels-last data too: the draws read flat views


def check_severity(severity: int) -> None:
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity} is outside 1–5")


def severities_of(
    pixels: torch.Tensor,
    space: PixelSpace,
    corruption: Corruption,
    severities: Sequence[int],
    seed: int,
    start: int,
) -> Iterator[tuple[int, torch.Tensor]]:
    """``(severity, normalised clamped corruption)`` of the batch ``pixels`` (the test images from ``start`` on),
    one severity at a time, all from one draw.

    ``pixels`` is left as it is (every corruption returns a new tensor), so one batch of pixels serves
    every corruption and severity in turn.
    """
    for severity in severities:  # a bad one fails before any work
        check_severity(severity)
    drawn = corruption.draw(pixels, corruption.params, batch_generator(seed, corruption.name, start))
    for severity in severities:
        yield severity, space.normalise_clamped_(corruption.shift(pixels, corruption.params[severity - 1], drawn))


def corrupt(
    pixels: torch.Tensor, space: PixelSpace, corruption: Corruption, severity: int, seed: int, start: int
) -> torch.Tensor:
    """The normalised, clamped corruption of the batch ``pixels`` at one severity (``severities_of``)."""
    return next(severities_of(pixels, space, corruption, [severity], seed, start))[1]


def corrupted_batches(
    x: torch.Tensor,
    space: PixelSpace,
    corruption: Corruption,
    severity: int,
    seed: int,
    batch_size: int = BATCH,
) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, normalised corrupted batch)`` over ``x``, one batch in memory at a time, on ``x``'s device."""
    for start, pixels in pixel_batches(x, space, batch_size):
        yield start, corrupt(pixels, space, corruption, severity, seed, start).to(x.device, x.dtype)
