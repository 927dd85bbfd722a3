"""Leaderboard plots (matplotlib, an optional extra): top-1 vs compression and vs theoretical speedup.

One figure pair per (dataset, architecture): a line per pruner through its mean top-1, a band of ± one
sample std where the cells were repeated, and the dense parent's top-1 as a dashed reference line.
The PNGs go beside the leaderboard as ``<stem>-<dataset>-<arch>-compression.png`` and ``…-speedup.png``.
"""

from __future__ import annotations

import re
from itertools import groupby
from pathlib import Path
from typing import Any

from .aggregate import summaries

INSTALL_HINT = "pip install 'pytest-prune[plot]'"


class PlotsUnavailable(RuntimeError):
    """matplotlib cannot be imported; the message says how to get it."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotsUnavailable(
            f"plots not drawn: matplotlib is not installed ({exc}); {INSTALL_HINT} to get them"
        ) from None
    return plt


def _label(name: str) -> str:
    """A legend label that shows ``name`` as it is: no mathtext from "$", and not hidden by a leading "_"."""
    name = name.replace("$", r"\$")
    return "\u200b" + name if name.startswith("_") else name


def file_part(name: str) -> str:
    """``name`` made safe in a file name and a relative link: runs of other characters than letters, digits,
    ".", "_" and "-" become "_" (a ":" would read as a URL scheme, and Windows refuses it)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _figure(plt: Any, rows: list[dict[str, Any]], x_key: str, x_label: str, title: str, path: Path) -> bool:
    """Draw one figure; False (nothing written) when no row has an x value."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    drawn = False
    for pruner, group in groupby(rows, key=lambda r: r["pruner"]):
        points = sorted(
            (r[x_key], r["top1"] * 100, (r.get("top1_std") or 0.0) * 100)
            for r in group
            if r.get(x_key) is not None and r.get("top1") is not None
        )
        if not points:
            continue
        xs, ys, stds = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", label=_label(pruner))
        if any(stds):
            low = [y - s for y, s in zip(ys, stds, strict=True)]
            high = [y + s for y, s in zip(ys, stds, strict=True)]
            ax.fill_between(xs, low, high, alpha=0.2)
        drawn = True
    dense = next((r["dense_top1"] for r in rows if r.get("dense_top1") is not None), None)
    if dense is not None:
        ax.axhline(dense * 100, color="black", linestyle="--", linewidth=1, label="dense")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(x_label)
    ax.set_ylabel("top-1 accuracy % (finetuned)")
    ax.set_title(title.replace("$", r"\$"))
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # a legend of nothing warns (an error under -W error)
        ax.legend(fontsize="small")
    fig.tight_layout()
    if drawn:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return drawn


def draw_plots(leaderboard: Path, records: list[dict[str, Any]]) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """Draw every figure beside ``leaderboard``; returns {(dataset, arch): [(title, file name), ...]}.

    Raises PlotsUnavailable when matplotlib cannot be imported.
    """
    plt = _pyplot()
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for (dataset, arch), group in groupby(summaries(records), key=lambda r: (r["dataset"], r["arch"])):
        rows = sorted(group, key=lambda r: (r["pruner"], r["compression"]))
        for kind, x_key, x_label in (
            ("compression", "compression_achieved", "compression (total / nonzero parameters)"),
            ("speedup", "theoretical_speedup", "theoretical speedup (dense MACs / MACs × density)"),
        ):
            name = f"{leaderboard.stem}-{file_part(dataset)}-{file_part(arch)}-{kind}.png"
            title = f"{dataset} / {arch}: top-1 vs {kind}"
            if _figure(plt, rows, x_key, x_label, title, leaderboard.parent / name):
                out.setdefault((dataset, arch), []).append((title, name))
    return out
