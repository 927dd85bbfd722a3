"""Exact samplers behind shot and impulse noise, drawing far fewer random numbers than the direct forms.

* ``poisson_``: Poisson counts of 8-bit pixel rates by one uniform draw each, looked up in exact inverse-CDF
  tables (a zero rate costs no draw); other rates go to ``torch.poisson``.
* ``bernoulli_positions``: the successes of n Bernoulli(p) trials from the geometric gaps between them,
  about n·p draws instead of n.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch


def poisson_(rates: torch.Tensor, level: float, g: torch.Generator) -> torch.Tensor:
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
            flat[where] = poisson_by_table(table.tobytes(), index, uniform(len(index), g))
            return rates  # zero rates already hold their count, 0
    return rates.copy_(torch.poisson(rates, generator=g))


def uniform(count: int, g: torch.Generator) -> np.ndarray:
    """``count`` float64 uniforms on [0, 1) from a numpy generator seeded by ``g`` (twice as fast as torch's)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=g))
    return np.random.Generator(np.random.SFC64(seed)).random(count)


@functools.lru_cache(maxsize=16)
def poisson_tables(rates: bytes) -> tuple[np.ndarray, np.ndarray, int, int]:
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


def poisson_by_table(rates: bytes, index: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The Poisson counts of uniform draws ``u`` for the rates ``rates[index]``: the k with CDF(k−1) ≤ u < CDF(k)."""
    cdf, guide, outcomes, cells = poisson_tables(rates)
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
