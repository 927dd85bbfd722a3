"""Blur kernels (CIFAR-10-C's Gaussian and defocus) and their matrix forms for whole batches.

A 2-d kernel, with the image's border padding folded in, becomes one (rows, columns) pair of matrices per
separable term, so blurring a batch is a few small matrix products instead of a convolution per image.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from .pillow_box import left_product


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
def blur_operators(
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


def depthwise(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Convolve every channel with the same odd-sized 2-d kernel, padding by ``mode``."""
    kh, kw = kernel.shape
    if mode == "reflect" and min(x.shape[-2:]) <= max(kh, kw) // 2:
        mode = "replicate"  # reflection needs the image to be wider than the padding
    kernel = kernel.to(torch.float64).contiguous()
    pairs = blur_operators(kernel.numpy().tobytes(), (kh, kw), tuple(x.shape[-2:]), mode, x.dtype)
    out = left_product(pairs[0][0], torch.matmul(x, pairs[0][1]))
    for rows, columns in pairs[1:]:
        out.add_(left_product(rows, torch.matmul(x, columns)))
    return out


def gaussian_kernel(sigma: float, radius: int | None = None) -> torch.Tensor:
    """Normalised 2-d Gaussian; radius int(4σ + 0.5) by default (scipy's truncate=4)."""
    radius = int(4 * sigma + 0.5) if radius is None else radius
    grid = torch.arange(-radius, radius + 1, dtype=torch.float64)
    line = torch.exp(-(grid**2) / (2 * sigma**2))
    kernel = line[:, None] * line[None, :]
    return kernel / kernel.sum()


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
