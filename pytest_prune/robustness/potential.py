"""Prune potential (Liebenwein et al. 2021): per (dataset, arch, pruner, seed) and per distribution, the
largest sparsity in the sweep whose top-1 error is within δ of the dense parent's error on that distribution.

Computed on the controller at the end of the session from every record (serial or from all xdist workers).
As in the paper, a passing sparsity counts even when a lower one failed. The figure is quantised to the
sweep and cannot exceed its largest sparsity: when the largest one tested passes, it is flagged ``capped``
(the true potential is at least that).

A corruption's distribution is its images at every severity run, pooled (its top-1 is the mean over the
severities, which have equal sizes); run ``--prune-severities 3`` for the paper's protocol, each corruption
at severity 3.

Records without a finetuned top-1 (errored cells) cannot take part; an entry names, as ``missing``, the
compressions of the (dataset, arch, pruner) sweep that it has no result for, so a gap never passes silently
for a smaller potential or a cap. The sweep is every compression configured for the session (``sweep``: a
cell deselected with ``-k`` or left out by ``--lf`` is missing too) and every compression any seed's record
has.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from itertools import groupby
from typing import Any

from ..matrix import format_compression

NOMINAL = "nominal"
SUITE = "corruption mean"


def distributions(record: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """``{distribution: (pruned top-1, dense top-1)}`` for one record: nominal, each corruption, the suite mean."""
    out = {NOMINAL: (record["top1"], record["dense_top1"])}
    pruned, dense = record.get("corruption_top1") or {}, record.get("dense_corruption_top1") or {}
    for name, by_severity in pruned.items():
        out[name] = (statistics.fmean(by_severity.values()), statistics.fmean(dense[name].values()))
    if record.get("corruption_mean_top1") is not None:
        out[SUITE] = (record["corruption_mean_top1"], record["dense_corruption_mean_top1"])
    return out


def _key(record: dict[str, Any]) -> tuple[str, str, str, int]:
    return record["dataset"], record["arch"], record["pruner"], record["seed"]


def prune_potential(
    records: Iterable[dict[str, Any]], delta_points: float, sweep: Iterable[float] = ()
) -> list[dict[str, Any]]:
    """One entry per (dataset, arch, pruner, seed, distribution), in a stable order; ``sweep``: the compressions
    configured for every (dataset, arch, pruner), whether or not their cells ran."""
    records, sweep = list(records), {float(c) for c in sweep}
    sweeps: dict[tuple[str, str, str], set[float]] = {}
    seeds: dict[tuple[str, str, str], set[int]] = {}
    for r in records:
        sweeps.setdefault(_key(r)[:3], set(sweep)).add(r["compression"])
        seeds.setdefault(_key(r)[:3], set()).add(r["seed"])
    finished = sorted((r for r in records if r.get("top1") is not None and r.get("sparsity") is not None), key=_key)
    out = []
    for (dataset, arch, pruner, seed), group in groupby(finished, key=_key):
        cells = list(group)
        shifts = [(r["compression"], r["sparsity"], distributions(r)) for r in cells]
        names = list(dict.fromkeys(name for _, _, by_name in shifts for name in by_name))
        for name in names:
            tested = [(c, sparsity, by_name[name]) for c, sparsity, by_name in shifts if name in by_name]
            passing = [s for _, s, (top1, dense) in tested if (1 - top1) <= (1 - dense) + delta_points / 100 + 1e-12]
            potential = max(passing, default=0.0)
            largest = max(sparsity for _, sparsity, _ in tested)  # of the cells measured on this distribution
            missing = sorted(sweeps[dataset, arch, pruner] - {c for c, _, _ in tested})
            out.append(
                {
                    "dataset": dataset,
                    "arch": arch,
                    "pruner": pruner,
                    "seed": seed,
                    "distribution": name,
                    "prune_potential": potential,
                    "capped": bool(passing) and potential >= largest,
                    "largest_sparsity": largest,
                    "delta_points": delta_points,
                    "cells": len(tested),
                    "missing": [format_compression(c) for c in missing],
                    "sweep_seeds": sorted(seeds[dataset, arch, pruner]),
                }
            )
    return out


def _absent_seeds(rows: list[dict[str, Any]]) -> list[int]:
    """Seeds of the sweep with no entry for this distribution (no result at any compression)."""
    return sorted(set(rows[0].get("sweep_seeds", [])) - {e["seed"] for e in rows})


def potential_summary(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries folded over seeds: mean and sample std of the prune potential, capped if any seed was, and every
    seed's missing compressions (``"8x (seed 1)"``)."""
    key = lambda e: (e["dataset"], e["arch"], e["pruner"], e["distribution"])  # noqa: E731
    out = []
    for (dataset, arch, pruner, name), group in groupby(sorted(entries, key=key), key=key):
        rows = list(group)
        values = [e["prune_potential"] for e in rows]
        out.append(
            {
                "dataset": dataset,
                "arch": arch,
                "pruner": pruner,
                "distribution": name,
                "prune_potential": statistics.fmean(values),
                "prune_potential_std": statistics.stdev(values) if len(values) > 1 else None,
                "capped": any(e["capped"] for e in rows),
                "n": len(rows),
                "missing": [f"{c} (seed {e['seed']})" for e in rows for c in e.get("missing", [])]
                + [f"every compression (seed {seed})" for seed in _absent_seeds(rows)],
            }
        )
    return out
