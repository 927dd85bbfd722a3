"""Terminal tables (tabulate): per (dataset, architecture) one accuracy table and one speed table.

Every column says what it measures. Speedups come in three kinds, never mixed: *theoretical* (dense MACs
over MACs × weight density, ShrinkBench's unstructured view), *structural* (dense MACs over the MACs of
the network with removable filters physically removed) and *measured* (dense latency over pruned latency, of
the compacted model where compaction succeeded, else of the masked model).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import groupby
from typing import Any

from tabulate import tabulate

from ..matrix import format_compression
from .aggregate import first_value, summaries

DENSE_FACTS = ("dense_top1", "params", "dense_macs")
"""The dense parent's facts in a board's title, each from the first row that has it (an errored one may not)."""

ACCURACY_HEADERS = (
    "pruner",
    "target\ncompression",
    "achieved\ncompression",
    "sparsity\n%",
    "top-1 %\n(finetuned)",
    "Δ top-1\n(points)",
    "top-1 %\n(pruned only)",
    "top-5 %",
    "outcome",
)


def _pct(value: float | None, std: float | None = None) -> str:
    if value is None:
        return ""
    return f"{value * 100:.2f}" + ("" if std is None else f" ± {std * 100:.2f}")


def _pct_of(r: dict[str, Any], key: str) -> str:
    """``r[key]`` in percent, with ``± std`` where the row summarises repeats."""
    return _pct(r.get(key), r.get(f"{key}_std"))


def _x(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def _accuracy_row(r: dict[str, Any]) -> list[Any]:
    delta = None if r.get("top1") is None or r.get("dense_top1") is None else (r["top1"] - r["dense_top1"]) * 100
    return [
        r["pruner"],
        format_compression(r["compression"]),
        _x(r.get("compression_achieved")),
        _pct(r.get("sparsity")),
        _pct_of(r, "top1"),
        "" if delta is None else f"{delta:+.2f}",
        _pct_of(r, "pruned_top1"),
        _pct_of(r, "top5"),
        r["outcome"] if r["n"] == 1 else f"{r['passed']}/{r['n']} passed",
    ]


def _speed_table(rows: list[dict[str, Any]]) -> str:
    batches = sorted({b for r in rows for b in (r.get("latency_ms") or {})}, key=int)
    headers = [
        "pruner",
        "target\ncompression",
        "MACs M\n(× density)",
        "theoretical\nspeedup",
        "structural\nMACs M",
        "structural\nspeedup",
        "compacted\nparams",
    ]
    for b in batches:
        headers += [f"latency ms\nbatch {b}\ndense→pruned", f"measured\nspeedup\nbatch {b}"]
    table = []
    for r in rows:
        dense_ms, pruned_ms = r.get("dense_latency_ms") or {}, r.get("latency_ms") or {}
        row = [
            r["pruner"],
            format_compression(r["compression"]),
            "" if r.get("macs") is None else f"{r['macs'] / 1e6:.3f}",
            _x(r.get("theoretical_speedup")),
            "" if r.get("structural_macs") is None else f"{r['structural_macs'] / 1e6:.3f}",
            _x(r.get("structural_speedup")),
            "" if r.get("compacted") is None else (f"{r['compacted_params']:,}" if r["compacted"] else "masked"),
        ]
        for b in batches:
            if b in pruned_ms:
                row += [f"{dense_ms[b]:.2f}→{pruned_ms[b]:.2f}", _x((r.get("measured_speedup") or {}).get(b))]
            else:
                row += ["", ""]
        table.append(row)
    return tabulate(table, headers=headers, tablefmt="simple", disable_numparse=True)


def summary_tables(records: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """(title, text) per (dataset, architecture): accuracy table, speed table, legends and failures.

    Repeats of a cell (``--prune-repeats``) make one row with mean ± sample std over the seeds.
    """
    out = []
    for (dataset, arch), group in groupby(summaries(records), key=lambda r: (r["dataset"], r["arch"])):
        rows = sorted(group, key=lambda r: (r["pruner"], r["compression"]))
        dense = {key: first_value(rows, key) for key in DENSE_FACTS}
        title = f"pytest-prune: {dataset} / {arch}"
        if dense["dense_top1"] is not None:
            title += (
                f" (dense top-1 {dense['dense_top1']:.2%}"
                + (f", {dense['params']:,} params" if dense.get("params") else "")
                + (f", {dense['dense_macs'] / 1e6:.3f}M MACs" if dense.get("dense_macs") else "")
                + ")"
            )
        text = tabulate(
            [_accuracy_row(r) for r in rows], headers=ACCURACY_HEADERS, tablefmt="simple", disable_numparse=True
        )
        text += (
            "\ncompression = total/nonzero parameters; top-1 over the whole test split, after finetuning and "
            "right after pruning\n\n"
        )
        if any(r.get("macs") is not None for r in rows):
            text += _speed_table(rows) + (
                "\nMACs = conv+linear multiply-accumulates per input (bias excluded). theoretical = dense MACs / "
                "(MACs × weight density); structural = dense MACs / MACs with removable filters removed; measured = "
                "dense / pruned latency (median of rounds timing both side by side), of the compacted model where "
                "'compacted params' is shown, else of the masked model"
            )
        notes = sorted({r["latency_note"] for r in rows if r.get("latency_note")})
        uncounted = sorted({name for r in rows for name in r.get("macs_uncounted") or ()})
        if uncounted:
            notes.append(f"MACs of these modules are not counted (no formula for their type): {', '.join(uncounted)}")
        text += "".join(f"\nnote: {note}" for note in notes)
        if any(r["n"] > 1 for r in rows):
            seeds = sorted({s for r in rows for s in r["seeds"]})
            text += f"\nrepeats: mean ± sample std over seeds {', '.join(map(str, seeds))}"
        text += "".join(f"\n  {error}" for r in rows for error in r["errors"])
        out.append((title, text))
    return out
