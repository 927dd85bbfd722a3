"""Corruptions and geometric shifts of image batches, applied in [0, 1] pixel space, seeded and streamed.

The noise, blur, digital and colour corruptions use Hendrycks & Dietterich's published CIFAR-10-C
parameters (``make_cifar_c.py``), one value per severity 1–5. Rotation and translation are pytest-prune's
own geometric shifts (CIFAR-10-C has none); their parameters are in the table below. Pixelate and JPEG give
what Pillow gives for each 8-bit image, as the originals do; everything else is tensor ops on float pixels.

Every batch of ``BATCH`` images gets its own generator seeded from (seed, corruption, severity, position of
the batch), so a corrupted test set is the same in every process and evaluation order, and it is never
held in memory as a whole.

Corrupting a test set must cost little next to evaluating it, even for a model that needs a few
milliseconds per thousand images, so no corruption works image by image:

* JPEG: a baseline JPEG codes each 8×8 block of a component on its own, so the blocks of a whole batch
  (every image padded to whole blocks by repeating its edge, as the encoder pads) go through Pillow as one
  mosaic, and blocks of one grey level decode through a table. Colour images are split into the encoder's
  own Y, Cb and Cr planes (libjpeg's integer colour conversion and 2×2 chroma averaging), whose blocks go
  through Pillow as grey mosaics with the colour tables, and are joined again by libjpeg-turbo's "fancy"
  chroma upsampling and integer colour conversion (with another codec behind Pillow, colour images go
  through Pillow one by one). Both are exact: the tests compare them with Pillow image by image.
* Pixelate: Pillow's BOX resampling rounds a fixed-point weighted sum to 8 bits after each pass; the
  weights are read off Pillow itself (it resamples basis images) and applied to the whole batch, with
  Pillow's rounding, so the result is Pillow's to the bit.
* Blurs: the kernel, with its border padding folded in, becomes one matrix per image axis (a few such
  pairs when it is not separable), so a blur is a few small matrix products.
* Shot noise: a zero rate gives 0 without a draw, and where the rates are 8-bit levels (at most 256
  distinct values) each count is one float64 uniform draw (numpy's, seeded from the batch's generator)
  looked up in inverse-CDF tables of the Poisson distributions, exact to float64; other rates use
  ``torch.poisson`` as before.
* Impulse noise: the hit values are found by geometric gaps between hits, the same Bernoulli process, so
  only about ``amount`` of the values cost a random draw.
* Rotation and translation: the sampling grid of each rotation direction, and the identity grid, are
  built once per image size; a batch's grids are one small exact matrix product of them.

The blurs differ from direct convolution by float32 rounding (below 1e-6); shot and impulse noise draw
other random numbers than ``torch.poisson`` and one uniform per value would, from the same distributions;
everything else gives the same bits as the per-image and direct forms.
"""

from __future__ import annotations

import functools
import io
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from PIL.JpegImagePlugin import JpegImageFile

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


# --- noise ---------------------------------------------------------------------------------------------------------


def _noise(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=g, dtype=x.dtype)


def gaussian_noise(x: torch.Tensor, sigma: float, g: torch.Generator) -> torch.Tensor:
    return _noise(x, g).mul_(sigma).add_(x)  # x + σ·n, built in the noise's own storage


def shot_noise(x: torch.Tensor, photons: float, g: torch.Generator) -> torch.Tensor:
    """``Poisson(photons · x) / photons`` per value."""
    return _poisson_(x.clamp(0, 1).mul_(photons).contiguous(), photons / 255, g).div_(photons)


def _poisson_(rates: torch.Tensor, level: float, g: torch.Generator) -> torch.Tensor:
    """Poisson counts with means ``rates`` (≥ 0, contiguous), written over ``rates``.

    A zero rate gives 0 without a draw. When the positive rates are levels ``level`` apart (8-bit pixels: at
    most 256 distinct values), each count is one uniform draw looked up in exact inverse-CDF tables of those
    rates, cached per set of rates; other rates go to ``torch.poisson``.
    """
    flat = rates.view(-1).numpy()
    where = np.flatnonzero(flat > 0)
    if not len(where):
        return rates
    values = flat[where]
    index = (values * np.float32(1 / level) + np.float32(0.5)).astype(np.intp)
    table = np.zeros(256)  # float64 holds every float32 rate exactly
    if index.max() < len(table) and values.max() < 10_000:  # (the tables grow with the largest rate)
        table[index] = values
        if (table[index] == values).all():  # each slot holds one rate, so the tables are exact for every value
            flat[where] = _poisson_by_table(table.tobytes(), index, _uniform(len(index), g))
            return rates  # zero rates already hold their count, 0
    return rates.copy_(torch.poisson(rates, generator=g))


def _uniform(count: int, g: torch.Generator) -> np.ndarray:
    """``count`` float64 uniforms on [0, 1) from a numpy generator seeded by ``g`` (twice as fast as torch's)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=g))
    return np.random.Generator(np.random.SFC64(seed)).random(count)


@functools.lru_cache(maxsize=16)
def _poisson_tables(rates: bytes) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Inverse-CDF tables of Poisson(rate) for 256 float64 rates: flat CDFs, flat guide table, outcomes K, cells M.

    Row ``l`` of the CDF holds P(X ≤ k) for k < K, its last entry set to 1 (the tail beyond it is below
    1e-30). The guide table splits [0, 1) into M ≥ 4K cells, M a power of two, plus an end entry: entry c of
    row l holds the smallest count k of a draw in cell c (the first k whose CDF exceeds c / M), or −k − 1
    when a larger count is possible too (the CDF crosses into the next cell within cell c).
    """
    lam = torch.from_numpy(np.frombuffer(rates, dtype=np.float64).copy())[:, None]
    top = float(lam.max())
    outcomes = int(top + 12 * math.sqrt(top) + 24)
    k = torch.arange(outcomes, dtype=torch.float64)
    cdf = torch.exp(torch.xlogy(k, lam) - lam - torch.lgamma(k + 1)).cumsum(1).clamp_(max=1.0)
    cdf[:, -1] = 1.0
    cells = 1 << (4 * outcomes - 1).bit_length()
    edges = (torch.arange(cells + 1, dtype=torch.float64) / cells).expand(len(lam), cells + 1).contiguous()
    low = torch.searchsorted(cdf, edges, right=True).clamp_(max=outcomes - 1)
    pure = torch.gather(cdf, 1, low) >= torch.cat((edges[:, 1:], torch.ones(len(lam), 1, dtype=torch.float64)), 1)
    guide = torch.where(pure, low, -low - 1).to(torch.int16)
    return cdf.reshape(-1).numpy(), guide.reshape(-1).numpy(), outcomes, cells


def _poisson_by_table(rates: bytes, index: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The Poisson counts of uniform draws ``u`` for the rates ``rates[index]``: the k with CDF(k−1) ≤ u < CDF(k)."""
    cdf, guide, outcomes, cells = _poisson_tables(rates)
    entry = index * (cells + 1) + (u * cells).astype(np.intp)  # u·M is exact: M is a power of 2
    count = guide[entry].astype(np.intp)
    # most draws fall in a cell of a single count; the others binary-search up to the next cell's first count
    unsure = np.flatnonzero(count < 0)
    if len(unsure):
        after = guide[entry[unsure] + 1].astype(np.intp)
        low, high = -count[unsure] - 1, np.where(after < 0, -after - 1, after)
        base, u = index[unsure] * outcomes, u[unsure]
        while (low < high).any():
            middle = (low + high) >> 1
            above = cdf[base + middle] <= u
            low, high = np.where(above, middle + 1, low), np.where(above, high, middle)
        count[unsure] = low
    return count


def impulse_noise(x: torch.Tensor, amount: float, g: torch.Generator) -> torch.Tensor:
    """Salt and pepper: each value becomes 0 or 1 (even odds) with probability ``amount``."""
    out = x.clone(memory_format=torch.contiguous_format)
    hits = _bernoulli_positions(out.numel(), amount, g)
    salt = torch.rand(len(hits), generator=g) < 0.5
    out.view(-1)[hits] = salt.to(out.dtype)
    return out


def _bernoulli_positions(n: int, p: float, g: torch.Generator) -> torch.Tensor:
    """The positions of the successes among n independent Bernoulli(p) trials, in order.

    The gaps between successes are geometric, ⌊log(1 − u) / log(1 − p)⌋ for uniform u, so this draws about
    n·p numbers instead of n.
    """
    if p <= 0:
        return torch.zeros(0, dtype=torch.long)
    if p >= 1:
        return torch.arange(n)
    log_miss = math.log1p(-p)
    found, start = [], 0
    while start < n:
        expected = (n - start) * p
        u = torch.rand(int(expected + 6 * math.sqrt(expected) + 16), generator=g, dtype=torch.float64)
        gaps = torch.floor(torch.log1p(-u) / log_miss).clamp_(max=n).long()  # failures before each success
        positions = start - 1 + torch.cumsum(gaps + 1, 0)
        inside = int((positions < n).sum())
        found.append(positions[:inside])
        if inside < len(positions):
            break
        start = int(positions[-1]) + 1
    return torch.cat(found)


def speckle_noise(x: torch.Tensor, scale: float, g: torch.Generator) -> torch.Tensor:
    noise = _noise(x, g)
    return (x * scale).mul_(noise).add_(x)  # x + (x·scale)·n


# --- blurs ---------------------------------------------------------------------------------------------------------


def _axis_operator(size: int, taps: torch.Tensor, mode: str) -> torch.Tensor:
    """The (size, size) matrix of correlating ``size`` samples with odd ``taps``, border padding folded in.

    Padding as ``F.pad``: "replicate" repeats the edge sample, "reflect" mirrors about it.
    """
    radius = len(taps) // 2
    rows = torch.arange(size)
    matrix = torch.zeros(size, size, dtype=torch.float64)
    for offset, weight in enumerate(taps.tolist()):
        source = rows + offset - radius
        if mode == "replicate":
            source = source.clamp(0, size - 1)
        else:
            source = source.abs()
            source = torch.where(source > size - 1, 2 * (size - 1) - source, source)
        matrix.index_put_((rows, source), torch.tensor(weight, dtype=torch.float64), accumulate=True)
    return matrix


@functools.lru_cache(maxsize=64)
def _blur_operators(
    kernel: bytes, shape: tuple[int, int], size: tuple[int, int], mode: str, dtype: torch.dtype
) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """(rows, columns) matrix pairs whose Σ rows @ image @ columns is the 2-d correlation with ``kernel``.

    The kernel is split by SVD into separable terms (one for a Gaussian); terms below 1e-12 of the largest
    are dropped.
    """
    weights = torch.from_numpy(np.frombuffer(kernel, dtype=np.float64).reshape(shape).copy())
    u, s, vh = torch.linalg.svd(weights)
    pairs = []
    for term in range(len(s)):
        if s[term] <= s[0] * 1e-12:
            break
        rows = _axis_operator(size[0], u[:, term] * s[term], mode)
        columns = _axis_operator(size[1], vh[term], mode).T
        pairs.append((rows.to(dtype), columns.contiguous().to(dtype)))
    return tuple(pairs)


def _depthwise(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Convolve every channel with the same odd-sized 2-d kernel, padding by ``mode``."""
    kh, kw = kernel.shape
    if mode == "reflect" and min(x.shape[-2:]) <= max(kh, kw) // 2:
        mode = "replicate"  # reflection needs the image to be wider than the padding
    kernel = kernel.to(torch.float64).contiguous()
    pairs = _blur_operators(kernel.numpy().tobytes(), (kh, kw), tuple(x.shape[-2:]), mode, x.dtype)
    out = torch.matmul(pairs[0][0], torch.matmul(x, pairs[0][1]))
    for rows, columns in pairs[1:]:
        out.add_(torch.matmul(rows, torch.matmul(x, columns)))
    return out


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


# --- colour --------------------------------------------------------------------------------------------------------


def contrast(x: torch.Tensor, factor: float, g: torch.Generator) -> torch.Tensor:
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


# --- pixelate: Pillow's BOX resampling, batched ------------------------------------------------------------------

_PRECISION = 22
"""Pillow resamples 8-bit images in fixed point with 22 fractional bits (``PRECISION_BITS`` in Resample.c)."""


def _levels(x: torch.Tensor) -> torch.Tensor:
    """The 8-bit levels of [0, 1] pixels, as integer-valued floats (what an 8-bit image of them holds)."""
    return (x.clamp(0, 1) * 255).round()


@functools.lru_cache(maxsize=64)
def _box_pass(size: int, new_size: int) -> tuple[str, torch.Tensor, torch.Tensor | None]:
    """How Pillow's BOX filter resamples ``size`` samples to ``new_size`` on 8-bit images, in batched form.

    The fixed-point weights are Pillow's own: resizing a 32-bit image whose rows are basis vectors of 2**22
    returns round(weight · 2**22), the integer weight Pillow uses for 8-bit images; an output sample is then
    (Σ weight · input + 2**21) >> 22, clipped to 0–255. Three batched forms compute exactly that:

    * ("take", indices, None) when every output copies one input (weight 2**22), as in upsampling;
    * ("sum", 0/1 matrix, scale) when the weights of each output are equal, as BOX weights are: the float32
      matrix product sums the inputs exactly (≤ 255 · size < 2**24) and ⌊sum · scale + ½⌋ in float32 is the
      fixed-point result, checked here for every possible sum;
    * ("dot", integer weights in float64, None) otherwise, exact in float64.
    """
    from PIL import Image

    basis = np.diag(np.full(size, 1 << _PRECISION, dtype=np.int32))
    weights = np.asarray(Image.fromarray(basis).resize((new_size, size), Image.Resampling.BOX), dtype=np.int64).T
    used = weights != 0
    if (used.sum(1) == 1).all() and (weights.max(1) == 1 << _PRECISION).all():
        return "take", torch.from_numpy(weights.argmax(1)), None
    top = weights.max(1)
    if (weights == np.where(used, top[:, None], 0)).all():
        scale = (top / (1 << _PRECISION)).astype(np.float32)  # exact: weights are below 2**24
        exact = True
        for count, weight, factor in set(zip(used.sum(1).tolist(), top.tolist(), scale.tolist(), strict=True)):
            sums = np.arange(255 * count + 1)
            fixed = (sums * weight + (1 << (_PRECISION - 1))) >> _PRECISION
            single = np.floor(sums.astype(np.float32) * np.float32(factor) + np.float32(0.5))
            exact &= bool((fixed == single).all())
        if exact:
            return "sum", torch.from_numpy(used.T.astype(np.float32)), torch.from_numpy(scale)
    return "dot", torch.from_numpy(weights.T.astype(np.float64)), None


def _resample(levels: torch.Tensor, new_size: int, axis: int) -> torch.Tensor:
    """One Pillow BOX pass along ``axis`` (−1 or −2) of integer-valued ``levels``, rounded as Pillow does."""
    kind, matrix, scale = _box_pass(levels.shape[axis], new_size)
    if kind == "take":
        return levels.index_select(axis, matrix)
    if kind == "sum":
        assert scale is not None  # the "sum" form always comes with its per-output scale
        matrix, scale = matrix.to(levels.dtype), scale.to(levels.dtype)
        if axis == -1:
            return torch.matmul(levels, matrix).mul_(scale).add_(0.5).floor_()
        return torch.matmul(matrix.T, levels).mul_(scale[:, None]).add_(0.5).floor_()
    total = torch.matmul(levels.double(), matrix) if axis == -1 else torch.matmul(matrix.T, levels.double())
    return total.add_(1 << (_PRECISION - 1)).div_(1 << _PRECISION).floor_().clamp_(0, 255).to(levels.dtype)


def _resize(levels: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """``Image.resize((width, height), BOX)`` of every (H, W) plane: the horizontal pass, then the vertical one."""
    rows, columns = _box_pass(levels.shape[-2], height), _box_pass(levels.shape[-1], width)
    if rows[0] == columns[0] == "take":  # both passes copy samples: one gather does both (numpy's is faster)
        flat = (rows[1][:, None] * levels.shape[-1] + columns[1][None, :]).flatten().numpy()
        planes = levels.contiguous().numpy().reshape(*levels.shape[:-2], -1)
        return torch.from_numpy(planes[..., flat].reshape(*levels.shape[:-2], height, width))
    if levels.shape[-1] != width:
        levels = _resample(levels, width, -1)
    if levels.shape[-2] != height:
        levels = _resample(levels, height, -2)
    return levels


def pixelate(x: torch.Tensor, factor: float, g: torch.Generator) -> torch.Tensor:
    """Pillow's BOX downsampling to ``factor`` of the size and BOX upsampling back, on the 8-bit image."""
    height, width = x.shape[-2:]
    small = _resize(_levels(x), max(1, int(width * factor)), max(1, int(height * factor)))
    return _resize(small, width, height).contiguous().div_(255)


# --- JPEG: Pillow on mosaics of 8×8 blocks -----------------------------------------------------------------------


_REPEAT = np.uint64(0x0101010101010101)
"""Times a byte, the 8-byte word of eight copies of it."""


def _to_blocks(planes: np.ndarray) -> np.ndarray:
    """(P, H, W) uint8 planes as their 8×8 blocks in raster order, each as 8 uint64 words (one per row).

    Planes are first padded to whole blocks by repeating the last row and column, as the encoder pads.
    """
    count, height, width = planes.shape
    rows, columns = -(-height // 8) * 8, -(-width // 8) * 8
    padded = np.empty((count, rows, columns), dtype=np.uint8)
    padded[:, :height, :width] = planes
    padded[:, height:, :width] = planes[:, -1:]
    padded[:, :, width:] = padded[:, :, width - 1 : width]
    words = padded.view(np.uint64).reshape(count, rows // 8, 8, columns // 8)
    return np.ascontiguousarray(words.transpose(0, 1, 3, 2)).reshape(-1, 8)


def _from_blocks(blocks: np.ndarray, count: int, height: int, width: int) -> np.ndarray:
    """Inverse of ``_to_blocks``: (P, H, W) uint8 planes from their blocks, padding dropped."""
    rows, columns = -(-height // 8) * 8, -(-width // 8) * 8
    words = blocks.reshape(count, rows // 8, columns // 8, 8).transpose(0, 1, 3, 2)
    return np.ascontiguousarray(words).reshape(count, rows, columns // 8).view(np.uint8)[:, :height, :width]


_MOSAIC_ROW = 64
"""Blocks per mosaic row."""
_MOSAIC_BLOCKS = 64 * 4096
"""Blocks per Pillow call (a 512 × 32768 mosaic)."""


@functools.lru_cache(maxsize=16)
def _jpeg_tables(quality: int) -> tuple[list[int], list[int]]:
    """The luminance and chrominance quantisation tables Pillow writes for ``quality``, as Pillow reports them."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "JPEG", quality=quality)
    tables = cast("JpegImageFile", Image.open(buffer)).quantization  # a JPEG buffer opens as a JpegImageFile
    return list(tables[0]), list(tables[1])


def _jpeg_mosaic(blocks: np.ndarray, quality: int, chroma: bool) -> np.ndarray:
    """Encode and decode (M, 8) uint64 blocks with Pillow as grey JPEG mosaics, with the quality's luma/chroma table.

    Baseline JPEG quantises each 8×8 block of a component on its own, so a block decodes the same wherever it
    sits: a mosaic of the blocks of many images costs one Pillow call instead of one per image.
    """
    from PIL import Image

    options: dict[str, Any] = {"qtables": [_jpeg_tables(quality)[1]]} if chroma else {"quality": quality}
    out = np.empty_like(blocks)
    for start in range(0, len(blocks), _MOSAIC_BLOCKS):
        part = blocks[start : start + _MOSAIC_BLOCKS]
        rows = -(-len(part) // _MOSAIC_ROW)
        tiles = np.zeros((rows * _MOSAIC_ROW, 8), dtype=np.uint64)
        tiles[: len(part)] = part
        mosaic = tiles.reshape(rows, _MOSAIC_ROW, 8).transpose(0, 2, 1).copy().view(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(mosaic.reshape(rows * 8, _MOSAIC_ROW * 8)).save(buffer, "JPEG", **options)
        decoded = np.asarray(Image.open(buffer)).view(np.uint64).reshape(rows, 8, _MOSAIC_ROW)  # a grey JPEG: 'L'
        out[start : start + len(part)] = decoded.transpose(0, 2, 1).reshape(-1, 8)[: len(part)]
    return out


@functools.lru_cache(maxsize=32)
def _flat_blocks(quality: int, chroma: bool) -> np.ndarray:
    """What a block of one grey level decodes to, per level, as a word of 8 samples: still one level, as only
    its DC coefficient is non-zero."""
    levels = np.arange(256, dtype=np.uint64) * _REPEAT
    return _jpeg_mosaic(np.repeat(levels[:, None], 8, 1), quality, chroma)[:, 0]


def _jpeg_blocks(blocks: np.ndarray, quality: int, chroma: bool) -> np.ndarray:
    """Pillow's JPEG round trip of every block: flat blocks through a table, the others through one mosaic."""
    first = blocks[:, 0]
    flat = (blocks == first[:, None]).all(1) & (first == (first & np.uint64(0xFF)) * _REPEAT)
    out = np.repeat(_flat_blocks(quality, chroma)[(first & np.uint64(0xFF)).astype(np.intp)][:, None], 8, 1)
    busy = np.flatnonzero(~flat)
    if len(busy):
        out[busy] = _jpeg_mosaic(blocks[busy], quality, chroma)
    return out


# libjpeg's fixed-point colour conversion (jccolor.c, jdcolor.c): constants scaled by 2**16, rounded
_FIX = {c: int(c * 65536 + 0.5) for c in (0.299, 0.587, 0.114, 0.16874, 0.33126, 0.5, 0.41869, 0.08131)}
_FIX.update({c: int(c * 65536 + 0.5) for c in (1.402, 1.772, 0.71414, 0.34414)})
_HALF = 1 << 15


def _rgb_to_ycc(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """libjpeg's RGB → YCbCr on (N, 3, H, W) uint8, as int32 planes."""
    r, g, b = (rgb[:, c].astype(np.int32) for c in range(3))
    y = (_FIX[0.299] * r + _FIX[0.587] * g + _FIX[0.114] * b + _HALF) >> 16
    offset = (128 << 16) + _HALF - 1
    cb = (-_FIX[0.16874] * r - _FIX[0.33126] * g + _FIX[0.5] * b + offset) >> 16
    cr = (_FIX[0.5] * r - _FIX[0.41869] * g - _FIX[0.08131] * b + offset) >> 16
    return y, cb, cr


def _downsample_chroma(plane: np.ndarray) -> np.ndarray:
    """libjpeg's 2×2 chroma averaging of (N, H, W), with the encoder's padding to whole 8×8 chroma blocks.

    The full-size plane is widened to twice the padded chroma width and to even height by repeating its last
    column and row; sums are rounded with the alternating bias 1, 2, 1, 2, ... along each row; the chroma rows
    are then padded to whole blocks by repeating the last one.
    """
    _, height, width = plane.shape
    columns, rows = -(-width // 16) * 8, -(-height // 16) * 8
    wide = np.pad(plane, ((0, 0), (0, height % 2), (0, 2 * columns - width)), mode="edge")
    sums = wide[:, 0::2, 0::2] + wide[:, 0::2, 1::2] + wide[:, 1::2, 0::2] + wide[:, 1::2, 1::2]
    small = (sums + np.tile(np.array([1, 2], dtype=np.int32), columns // 2)) >> 2
    return np.pad(small, ((0, 0), (0, rows - small.shape[1]), (0, 0)), mode="edge")


def _upsample_chroma(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """libjpeg-turbo's decoder upsampling of (N, ⌈H/2⌉, ⌈W/2⌉) chroma to (N, H, W): "fancy" (triangle) 2×2.

    Each output sample weighs its chroma sample 3/4 and the next nearest 1/4 in each direction, the edges
    repeating; the rounding biases alternate 8, 7 along a row. Planes two samples wide or less are copied
    into 2×2 squares instead, as libjpeg-turbo does.
    """
    if plane.shape[2] <= 2:
        return plane.repeat(2, 1).repeat(2, 2)[:, :height, :width]
    tall = np.pad(plane, ((0, 0), (1, 1), (0, 0)), mode="edge")
    above, below = 3 * plane + tall[:, :-2], 3 * plane + tall[:, 2:]
    sums = np.stack((above, below), 2).reshape(len(plane), -1, plane.shape[2])  # rows 2i (above), 2i+1 (below)
    wide = np.pad(sums, ((0, 0), (0, 0), (1, 1)), mode="edge")
    left, right = (3 * sums + wide[:, :, :-2] + 8) >> 4, (3 * sums + wide[:, :, 2:] + 7) >> 4
    return np.stack((left, right), 3).reshape(len(plane), sums.shape[1], -1)[:, :height, :width]


def _ycc_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """libjpeg's YCbCr → RGB on int32 planes, as (N, 3, H, W) uint8."""
    cb, cr = cb - 128, cr - 128
    red = y + ((_FIX[1.402] * cr + _HALF) >> 16)
    green = y + ((-_FIX[0.34414] * cb + _HALF - _FIX[0.71414] * cr) >> 16)
    blue = y + ((_FIX[1.772] * cb + _HALF) >> 16)
    return np.clip(np.stack((red, green, blue), 1), 0, 255).astype(np.uint8)


def _jpeg_planes(planes: np.ndarray, quality: int, chroma: bool) -> np.ndarray:
    """JPEG round trip of (N, H, W) uint8 component planes, padded to whole blocks by repeating the edge."""
    count, height, width = planes.shape
    return _from_blocks(_jpeg_blocks(_to_blocks(planes), quality, chroma), count, height, width)


def _jpeg_colour(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Pillow's JPEG round trip of (N, 3, H, W) uint8 RGB images, as libjpeg-turbo codes them with 4:2:0 chroma.

    The encoder's own steps run batched (integer YCbCr, 2×2 chroma averaging with its padding), the Y, Cb and
    Cr blocks are quantised through Pillow with the quality's luma and chroma tables, and the decoder's steps
    follow (fancy upsampling of the chroma, integer RGB).
    """
    _, _, height, width = rgb.shape
    y, cb, cr = _rgb_to_ycc(rgb)
    y = _jpeg_planes(y.astype(np.uint8), quality, chroma=False).astype(np.int32)
    chroma = _jpeg_planes(
        np.concatenate((_downsample_chroma(cb), _downsample_chroma(cr))).astype(np.uint8), quality, True
    )
    chroma = chroma[:, : -(-height // 2), : -(-width // 2)].astype(np.int32)
    cb, cr = (_upsample_chroma(plane, height, width) for plane in np.split(chroma, 2))
    return _ycc_to_rgb(y, cb, cr)


def _jpeg_per_image(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Pillow's JPEG round trip of (N, 3, H, W) uint8 RGB images, one Pillow call per image."""
    from PIL import Image

    out = np.empty_like(rgb)
    for i, image in enumerate(rgb.transpose(0, 2, 3, 1)):
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image)).save(buffer, "JPEG", quality=quality)
        out[i] = np.asarray(Image.open(buffer).convert("RGB")).transpose(2, 0, 1)
    return out


@functools.cache
def _libjpeg_turbo() -> bool:
    """Whether Pillow's JPEG codec is libjpeg-turbo, whose colour conversion and upsampling ``_jpeg_colour`` follows."""
    from PIL import features

    return bool(features.check_feature("libjpeg_turbo"))


def jpeg(x: torch.Tensor, quality: int, g: torch.Generator) -> torch.Tensor:
    """Pillow's JPEG at ``quality`` with its defaults (4:2:0 chroma for colour), as if encoded and decoded per image."""
    levels = _levels(x).numpy().astype(np.uint8)  # numpy converts to 8 bits several times faster than torch
    if levels.shape[1] == 1:
        out = _jpeg_planes(levels[:, 0], quality, chroma=False)[:, None]
    elif _libjpeg_turbo():
        out = _jpeg_colour(levels, quality)
    else:  # another codec may upsample chroma its own way: code each image as it would
        out = _jpeg_per_image(levels, quality)
    return torch.from_numpy(out.astype(np.float32)).to(x.dtype).div_(255)


# --- geometric shifts ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _grids(theta: tuple[float, ...], height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """``F.affine_grid`` of a few (2, 3) float64 matrices (flattened, cast to ``dtype``), one grid per row."""
    matrices = torch.tensor(theta, dtype=torch.float64).view(-1, 2, 3).to(dtype)
    return F.affine_grid(matrices, [len(matrices), 1, height, width], align_corners=False).flatten(1)


def _sample(x: torch.Tensor, mix: torch.Tensor, grids: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of each image at the grid ``mix @ grids`` (one mixing row per image), zeros outside.

    Every mix used here multiplies one grid by 1 and adds at most one other number per coordinate, so the
    product is exact and equals what ``F.affine_grid`` gives for the image's own matrix, at a fraction of
    its cost.
    """
    grid = torch.matmul(mix.to(grids.dtype), grids).view(len(x), *x.shape[-2:], 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rotation(x: torch.Tensor, degrees: float, g: torch.Generator) -> torch.Tensor:
    """Rotate each image by ±``degrees`` (sign drawn per image) about its centre; corners fill with 0."""
    sign = torch.randint(0, 2, (len(x),), generator=g)
    angle = torch.tensor([-1.0, 1.0], dtype=torch.float64) * math.radians(degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    theta = torch.stack((torch.stack((cos, -sin, zero), 1), torch.stack((sin, cos, zero), 1)), 1)
    grids = _grids(tuple(theta.flatten().tolist()), *x.shape[-2:], x.dtype)
    return _sample(x, F.one_hot(sign, 2), grids)


def translation(x: torch.Tensor, fraction: float, g: torch.Generator) -> torch.Tensor:
    """Shift each image by ``fraction`` of its size in a random direction (drawn per image); fill 0."""
    angle = torch.rand(len(x), generator=g, dtype=torch.float64) * 2 * math.pi
    shift = torch.stack((torch.cos(angle), torch.sin(angle)), 1) * 2 * fraction  # grid units span 2
    # the identity grid, and grids of 1 in the x and in the y coordinate (the translations by (1, 0), (0, 1),
    # less the identity): identity − shift is the grid of [I | −shift]
    basis = _grids((1.0, 0.0, 0.0, 0.0, 1.0, 0.0), *x.shape[-2:], x.dtype)
    units = torch.tensor([1.0, 0.0], dtype=x.dtype).repeat(basis.shape[1] // 2)
    grids = torch.stack((basis[0], units, units.roll(1)))
    mix = torch.cat((torch.ones(len(x), 1, dtype=x.dtype), (-shift).to(x.dtype)), 1)
    return _sample(x, mix, grids)


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
        shifted = corruption.apply(space.pixels(batch), parameter, generator)
        # in place: every corruption returns a new tensor, so the batch's own storage is free to reuse
        yield start, shifted.clamp_(0, 1).sub_(space.mean).div_(space.std).to(x.device, x.dtype)
