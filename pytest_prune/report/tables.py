"""Terminal tables (tabulate), one per (dataset, architecture); every column says what it measures."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import groupby
from typing import Any

from tabulate import tabulate

HEADERS = (
    "pruner",
    "target\ncompression",
    "achieved\ncompression",
    "sparsity\n%",
    "top-1 %\n(finetuned)",
    "Δ top-1\n(points)",
    "top-1 %\n(pruned only)",
    "top-5 %",
    "MACs M\n(× density)",
    "theoretical\nspeedup",
    "outcome",
)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.2f}"


def _row(r: dict[str, Any]) -> list[Any]:
    delta = None if r.get("top1") is None else (r["top1"] - r["dense_top1"]) * 100
    return [
        r["pruner"],
        f"{r['compression']:g}x",
        "" if r.get("compression_achieved") is None else f"{r['compression_achieved']:.2f}x",
        _pct(r.get("sparsity")),
        _pct(r.get("top1")),
        "" if delta is None else f"{delta:+.2f}",
        _pct(r.get("pruned_top1")),
        _pct(r.get("top5")),
        "" if r.get("macs") is None else f"{r['macs'] / 1e6:.3f}",
        "" if r.get("theoretical_speedup") is None else f"{r['theoretical_speedup']:.2f}x",
        r["outcome"],
    ]


def summary_tables(records: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """(title, table) per (dataset, architecture), rows sorted by pruner then compression."""
    out = []
    for (dataset, arch), group in groupby(records, key=lambda r: (r["dataset"], r["arch"])):
        rows = sorted(group, key=lambda r: (r["pruner"], r["compression"]))
        dense = next((r for r in rows if r.get("dense_top1") is not None), None)
        title = f"pytest-prune: {dataset} / {arch}"
        if dense is not None:
            title += (
                f" (dense top-1 {dense['dense_top1']:.2%}"
                + (f", {dense['params']:,} params" if dense.get("params") else "")
                + (f", {dense['dense_macs'] / 1e6:.3f}M MACs" if dense.get("dense_macs") else "")
                + ")"
            )
        table = tabulate([_row(r) for r in rows], headers=HEADERS, tablefmt="simple", disable_numparse=True)
        failed = [r for r in rows if r["outcome"] in ("failed", "error") and r.get("error")]
        notes = "".join(f"\n  {r['id']}: {r['outcome']}: {r['error']}" for r in failed)
        legend = (
            "\ncompression = total/nonzero parameters; MACs = conv+linear multiply-accumulates per input "
            "(bias excluded), scaled by each layer's weight density; theoretical speedup = dense MACs / MACs"
        )
        out.append((title, table + legend + notes))
    return out
