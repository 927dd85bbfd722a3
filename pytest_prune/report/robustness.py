"""Terminal tables of ``--prune-robustness``: per (dataset, architecture), accuracy under shift with excess
error and agreement per cell, and prune potential per distribution (rows) and pruner (columns)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from tabulate import tabulate

from ..matrix import format_compression
from ..robustness.potential import NOMINAL, SUITE, potential_summary
from .tables import _pct


def shift_table(rows: list[dict[str, Any]]) -> str:
    """One row per cell summary: nominal and corrupted top-1, excess error, agreement, eps-agreement."""
    eps = sorted({e for r in rows for e in (r.get("eps_agreement") or {})}, key=float)
    headers = [
        "pruner",
        "target\ncompression",
        "sparsity\n%",
        "top-1 %\nnominal",
        "top-1 %\ncorrupted\n(dense)",
        "top-1 %\ncorrupted\n(pruned)",
        "excess\nerror\n(points)",
        "agreement\n% with\nparent",
        "softmax\nL2 to\nparent",
        *[f"ε={e}\nagreement\n%" for e in eps],
    ]
    table = []
    for r in rows:
        table.append(
            [
                r["pruner"],
                format_compression(r["compression"]),
                _pct(r.get("sparsity")),
                _pct(r.get("top1"), r.get("top1_std")) if r.get("top1") is not None else r.get("outcome", ""),
                _pct(r.get("dense_corruption_mean_top1")),
                _pct(r.get("corruption_mean_top1"), r.get("corruption_mean_top1_std")),
                signed_points(r.get("excess_error"), r.get("excess_error_std")),
                _pct(r.get("agreement"), r.get("agreement_std")),
                _plain(r.get("softmax_l2"), r.get("softmax_l2_std")),
                *[_pct((r.get("eps_agreement") or {}).get(e), (r.get("eps_agreement_std") or {}).get(e)) for e in eps],
            ]
        )
    reference = next((r for r in rows if r.get("reference_agreement") is not None), None)
    if reference is not None:
        ref_eps = reference.get("reference_eps_agreement") or {}
        table.append(
            [
                "separately trained dense",
                "1x",
                "0.00",
                _pct(reference.get("reference_top1")),
                "",
                "",
                "",
                _pct(reference["reference_agreement"]),
                _plain(reference["reference_softmax_l2"]),
                *[_pct(ref_eps.get(e)) for e in eps],
            ]
        )
    return tabulate(table, headers=headers, tablefmt="simple", disable_numparse=True)


def signed_points(value: float | None, std: float | None = None) -> str:
    """A fraction in points with its sign (``+2.17``, ``-0.40``), as the leaderboard prints excess error."""
    return "" if value is None else f"{value * 100:+.2f}" + ("" if std is None else f" ± {std * 100:.2f}")


def _plain(value: float | None, std: float | None = None) -> str:
    return "" if value is None else f"{value:.3f}" + ("" if std is None else f" ± {std:.3f}")


def potential_table(entries: Iterable[dict[str, Any]], order: list[str]) -> str:
    """Prune potential (% sparsity), distributions × pruners; '≥' where the sweep's largest sparsity passed."""
    summary = potential_summary(entries)
    pruners = sorted({e["pruner"] for e in summary})
    names = sorted(
        {e["distribution"] for e in summary}, key=lambda n: (order.index(n) if n in order else len(order), n)
    )
    cell = {(e["distribution"], e["pruner"]): e for e in summary}
    table = []
    for name in names:
        row = [name]
        for pruner in pruners:
            e = cell.get((name, pruner))
            row.append("" if e is None else potential_text(e, _pct))
        table.append(row)
    text = tabulate(table, headers=["distribution", *pruners], tablefmt="simple", disable_numparse=True)
    note = missing_note(summary)
    return text + ("" if note is None else "\n" + note)


def potential_text(entry: dict[str, Any], pct: Callable[[float | None, float | None], str]) -> str:
    """A summary entry's prune potential: "≥" where the sweep caps it, "*" where cells have no result."""
    text = pct(entry["prune_potential"], entry.get("prune_potential_std"))
    return ("≥" if entry["capped"] else "") + text + ("*" if entry.get("missing") else "")


def missing_note(summary: Iterable[dict[str, Any]]) -> str | None:
    """The legend of "*": per pruner, the cells its prune potentials had to do without."""
    gaps: dict[str, list[str]] = {}
    for e in summary:
        for gap in e.get("missing") or []:
            gaps.setdefault(e["pruner"], [])
            if gap not in gaps[e["pruner"]]:
                gaps[e["pruner"]].append(gap)
    if not gaps:
        return None
    listed = "; ".join(f"{pruner}: {', '.join(found)}" for pruner, found in sorted(gaps.items()))
    return f"*: computed without the cells that have no result (errored or not run), so possibly too low: {listed}"


def robustness_text(rows: list[dict[str, Any]], entries: list[dict[str, Any]], delta: float) -> str:
    """Both tables with their legends, for one (dataset, architecture)."""
    from ..options import CORRUPTION_NAMES

    text = ""
    if any(r.get("agreement") is not None for r in rows):
        text += shift_table(rows) + (
            "\ncorrupted = mean top-1 over the corruptions × severities run; excess error = (pruned error increase "
            "under corruption) − (the dense parent's); agreement = same top-1 label as the dense parent; "
            "ε = uniform L∞ noise radius in normalised input space\n\n"
        )
    text += potential_table(entries, [NOMINAL, *CORRUPTION_NAMES, SUITE]) + (
        f"\nprune potential = largest sparsity % whose top-1 error is within {delta:g} points of the dense "
        "error on that distribution; ≥: the largest sparsity tested passed, so the sweep caps it"
    )
    skipped = sorted({f"{k}: {v}" for r in rows for k, v in (r.get("corruptions_skipped") or {}).items()})
    text += "".join(f"\nskipped: {reason}" for reason in skipped)
    return text


def robustness_tables(
    records: list[dict[str, Any]], delta: float, sweep: Iterable[float] = ()
) -> list[tuple[str, str]]:
    """(title, text) per (dataset, architecture) with robustness records; ``sweep``: the configured compressions."""
    from ..robustness.potential import prune_potential
    from .aggregate import summaries

    entries, cells = prune_potential(records, delta, sweep), summaries(records)
    out = []
    for dataset, arch in dict.fromkeys((r["dataset"], r["arch"]) for r in records):
        rows = [r for r in cells if (r["dataset"], r["arch"]) == (dataset, arch)]
        mine = [e for e in entries if (e["dataset"], e["arch"]) == (dataset, arch)]
        out.append((f"pytest-prune robustness: {dataset} / {arch}", robustness_text(rows, mine, delta)))
    return out
