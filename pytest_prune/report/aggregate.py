"""Repeats of a cell (``--prune-repeats``) folded into one summary row: mean and sample std over the seeds.

The results JSON keeps every repeat as its own record; these summaries go beside them (``summary``) and
feed the terminal tables and leaderboards. A single run summarises to itself with no std.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from itertools import groupby
from typing import Any

from ..results import OUTCOME_RANK

NUMBERS = (
    "top1",
    "top5",
    "pruned_top1",
    "compression_achieved",
    "sparsity",
    "macs",
    "theoretical_speedup",
    "structural_macs",
    "structural_speedup",
    "corruption_mean_top1",
    "dense_corruption_mean_top1",
    "excess_error",
    "agreement",
    "softmax_l2",
    "reference_agreement",
    "reference_softmax_l2",
    "reference_top1",
)
"""Per-record numbers summarised as mean ± std."""

PER_KEY = ("latency_ms", "dense_latency_ms", "measured_speedup", "eps_agreement", "reference_eps_agreement")
"""Dicts keyed by batch size or eps, summarised by their mean per key (``KEY``) and, where at least two repeats
have a key, its sample std (``KEY_std``, keyed alike)."""

SHARED = ("dataset", "arch", "pruner", "compression", "dense_top1", "dense_top5", "dense_macs", "params")
"""Identical across the repeats of a cell (taken from the first repeat that has each: an errored one may lack them)."""


def cell_key(record: dict[str, Any]) -> tuple[str, str, str, float]:
    """(dataset, arch, pruner, compression): what the repeats of one cell share."""
    return record["dataset"], record["arch"], record["pruner"], record["compression"]


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def first_value(rows: Iterable[dict[str, Any]], key: str) -> Any:
    """``key`` of the first row that has it (not None), else None: an errored repeat may lack the shared facts."""
    return next((r[key] for r in rows if r.get(key) is not None), None)


def summarise(group: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary of the repeats of a cell: shared keys, ``n``, ``seeds``, ``KEY`` (mean) and ``KEY_std``."""
    out: dict[str, Any] = {key: first_value(group, key) for key in SHARED}
    out["n"], out["seeds"] = len(group), sorted(r["seed"] for r in group)
    out["finished"] = sum(r.get("top1") is not None for r in group)  # repeats with a finetuned top-1
    outcomes = [r["outcome"] for r in group]
    out["outcome"] = max(outcomes, key=OUTCOME_RANK.__getitem__)
    out["passed"] = outcomes.count("passed")
    for key in NUMBERS:
        out[key], out[f"{key}_std"] = _mean_std([r[key] for r in group if r.get(key) is not None])
    for key in PER_KEY:
        dicts = [r[key] for r in group if r.get(key)]
        keys = sorted({k for d in dicts for k in d}, key=float)
        values = {k: [d[k] for d in dicts if k in d] for k in keys}
        out[key] = {k: statistics.fmean(v) for k, v in values.items()} or None
        out[f"{key}_std"] = {k: statistics.stdev(v) for k, v in values.items() if len(v) > 1} or None
    for key in ("compacted", "compacted_params", "macs_uncounted", "latency_note", "corruptions_skipped"):
        out[key] = first_value(group, key)
    out["errors"] = [
        f"{r['id']}: {r['outcome']}: {r['error'].removeprefix(r['id'] + ': ')}" for r in group if r.get("error")
    ]
    return out


def summaries(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per cell, in (dataset, arch, pruner, compression) order."""
    ordered = sorted(records, key=lambda r: (cell_key(r), r["seed"]))
    return [summarise(list(group)) for _, group in groupby(ordered, key=cell_key)]
