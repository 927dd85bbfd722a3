"""Samplers behind the noise corruptions, drawing fewer and cheaper random numbers than the direct forms.

* ``normals``: standard normal deviates as 16 random bits each, looked up in a table of the 65,536
  midpoint quantiles of N(0, 1) (scaled to unit variance): the normal distribution to within 2**-16 in
  probability, its tails cut at ±4.32, at half the cost of ``torch.randn``.
* ``poisson_by_table``: Poisson counts for rates of 8-bit pixel levels by one uniform draw each, looked up
  in exact inverse-CDF tables.
* ``bernoulli_positions``: the successes of n Bernoulli(p) trials from the geometric gaps between them,
  about n·p draws instead of n.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

NORMAL_BITS = 16


def _numpy_generator(g: torch.Generator) -> np.random.Generator:
    """A numpy SFC64 generator seeded from ``g`` (its draws are several times cheaper than torch's)."""
    return np.random.Generator(np.random.SFC64(int(torch.randint(0, 2**62, (1,), generator=g))))


@functools.cache
def normal_table() -> np.ndarray:
    """The 2**16 midpoint quantiles Φ⁻¹((i + ½) / 2**16) of the standard normal, scaled to unit variance (float32)."""
    size = 1 << NORMAL_BITS
    table = torch.special.ndtri((torch.arange(size, dtype=torch.float64) + 0.5) / size)
    return (table / table.square().mean().sqrt()).to(torch.float32).numpy()


def normals(shape: tuple[int, ...] | torch.Size, g: torch.Generator) -> torch.Tensor:
    """A float32 tensor of standard normal deviates drawn from ``g`` (through ``normal_table``)."""
    count = math.prod(shape)
    bits = _numpy_generator(g).bit_generator.random_raw(-(-count // 4)).view(np.uint16)[:count]
    return torch.from_numpy(np.take(normal_table(), bits)).view(shape)


def uniform(count: int, g: torch.Generator) -> np.ndarray:
    """``count`` float64 uniforms on [0, 1) from a numpy generator seeded by ``g``."""
    return _numpy_generator(g).random(count)


@functools.lru_cache(maxsize=16)
def poisson_tables(scale: float) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Inverse-CDF tables of Poisson(l · scale) for the 256 levels l: flat CDFs, flat guide table, outcomes K, cells M.

    Row ``l`` of the CDF holds P(X ≤ k) for k < K, its last entry set to 1 (the tail beyond it is below
    1e-30). The guide table splits [0, 1) into M ≥ 4K cells, M a power of two, plus an end entry: entry c of
    row l holds the smallest count k of a draw in cell c (the first k whose CDF exceeds c / M), or −k − 1
    when a larger count is possible too (the CDF crosses into the next cell within cell c).
    """
    lam = torch.arange(256, dtype=torch.float64)[:, None] * scale
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


def poisson_by_table(scale: float, index: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The Poisson counts of uniform draws ``u`` for the rates ``index · scale``: the k with CDF(k−1) ≤ u < CDF(k)."""
    cdf, guide, outcomes, cells = poisson_tables(scale)
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


def bernoulli_positions(n: int, p: float, g: torch.Generator) -> torch.Tensor:
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
