"""Markdown leaderboards: per (dataset, architecture) pruners × compressions, ranked, plus an overall ranking.

Ranking is by the area under the top-1 vs log2(compression) curve over the compressions every pruner of
the board reached, divided by the width of that range: the mean top-1 along the log-compression axis, in
percent (a single compression gives its top-1). A pruner with an errored cell has no area and ranks last,
marked incomplete. The overall ranking orders pruners by the number of boards they complete, then by their
mean rank over those boards.

The output is deterministic for the same records: no clock, no machine-dependent ordering. Measured
latency speedups are measurements of the moment and differ between runs; every other figure repeats.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable
from itertools import groupby
from pathlib import Path
from typing import Any

from tabulate import tabulate

from ..matrix import format_compression
from ..robustness.potential import NOMINAL, SUITE, potential_summary, prune_potential
from .aggregate import first_value, summaries
from .robustness import missing_note, potential_text, signed_points
from .tables import DENSE_FACTS


def _pct(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "—"
    return f"{value * 100:.2f}" + ("" if std is None else f" ± {std * 100:.2f}")


def area(points: list[tuple[float, float]]) -> float:
    """Mean of the piecewise-linear top-1 over log2(compression): trapezoid area / log-range."""
    points = sorted(points)
    if len(points) == 1:
        return points[0][1]
    xs = [math.log2(c) for c, _ in points]
    # fsum: correctly rounded on every Python (3.12's sum() compensates, 3.11's does not), so a board
    # regenerated anywhere from the same JSON is the same to the last printed digit
    total = math.fsum((xs[i + 1] - xs[i]) * (points[i][1] + points[i + 1][1]) / 2 for i in range(len(points) - 1))
    return total / (xs[-1] - xs[0])


def _board(rows: list[dict[str, Any]], potentials: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The ranked content of one (dataset, architecture) board.

    The area is taken over the compressions every pruner of the board has a cell at (merged runs may differ
    in their grids); a pruner with any cell that has no top-1, or a seed of it that errored, is incomplete,
    at one of those compressions or not (its errors at 32x must not rank it among pruners that finished 32x).
    """
    compressions = sorted({r["compression"] for r in rows})
    by_pruner = {p: {r["compression"]: r for r in group} for p, group in groupby(rows, key=lambda r: r["pruner"])}
    ranked = sorted(set.intersection(*(set(cells) for cells in by_pruner.values()))) if by_pruner else []
    entries = []
    for pruner, cells in by_pruner.items():
        complete = bool(ranked) and all(_finished(cell) for cell in cells.values())
        score = area([(c, cells[c]["top1"]) for c in ranked]) if complete else None
        entries.append({"pruner": pruner, "cells": cells, "area": score})
    entries.sort(key=lambda e: (e["area"] is None, -(e["area"] or 0.0), e["pruner"]))
    for rank, e in enumerate(entries, 1):
        e["rank"] = rank if e["area"] is not None else None
        e["potential"] = potentials.get(e["pruner"])
    return {"compressions": compressions, "ranked": ranked, "entries": entries}


def _finished(r: dict[str, Any]) -> bool:
    """Every repeat of the cell has a finite top-1."""
    return r.get("top1") is not None and math.isfinite(r["top1"]) and r["finished"] == r["n"]


def _code(name: str) -> str:
    """``name`` as an inline code span inside a markdown table cell: pipes escaped, backticks fenced."""
    fence = "``" if "`" in name else "`"
    pad = " " if name.startswith("`") or name.endswith("`") else ""
    return f"{fence}{pad}{name}{pad}{fence}".replace("|", "\\|")


def _one_line(text: str) -> str:
    """A message on one line (a markdown list item ends at a line that starts another)."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _cell_text(r: dict[str, Any] | None) -> str:
    if r is None:
        return "—"
    if r.get("top1") is None:
        return f"{r['outcome']}"
    text = _pct(r["top1"], r.get("top1_std"))
    if r.get("dense_top1") is not None:
        text += f" ({(r['top1'] - r['dense_top1']) * 100:+.2f})"
    if r["finished"] < r["n"]:
        text += f" [{r['finished']} of {r['n']} seeds; {r['outcome']}]"
    return text


def _speed_text(r: dict[str, Any] | None) -> str:
    if r is None or r.get("theoretical_speedup") is None:
        return "—"
    measured = r.get("measured_speedup") or {}
    parts = [f"{r['theoretical_speedup']:.2f}x"]
    if r.get("structural_speedup") is not None:
        parts.append(f"{r['structural_speedup']:.2f}x")
    if measured:
        batch = min(measured, key=int)
        parts.append(f"{measured[batch]:.2f}x @{batch}")
    return " / ".join(parts)


def _potential_text(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "—"
    return potential_text(entry, _pct).replace("*", "\\*")


def _robustness(board: dict[str, Any], entries: list[dict[str, Any]], delta: float) -> list[str]:
    """Lost in Pruning's view of one board: prune potential nominal vs under shift, excess error per compression."""
    by = {(e["pruner"], e["distribution"]): e for e in entries}
    compressions = board["compressions"]
    table = []
    for e in board["entries"]:
        pruner = e["pruner"]
        shifts = [x for (p, name), x in by.items() if p == pruner and name not in (NOMINAL, SUITE)]
        table.append(
            [
                _code(pruner),
                _potential_text(by.get((pruner, NOMINAL))),
                _potential_text(by.get((pruner, SUITE))),
                _worst_text(shifts),
                *(_excess_text(e["cells"].get(c)) for c in compressions),
            ]
        )
    headers = [
        "pruner",
        "prune potential % nominal",
        "under corruption (mean)",
        "worst corruption",
        *(f"excess error {format_compression(c)}" for c in compressions),
    ]
    return [
        "Robustness (Lost in Pruning): prune potential on nominal test data, on the mean over the corruption "
        f"suite and on the corruption where it is lowest (δ = {delta:g} points); excess error in points = the "
        "pruned network's error increase under corruption minus its dense parent's (> 0: pruning cost "
        "robustness beyond nominal accuracy).",
        "",
        _markdown(headers, table),
    ]


def _worst_text(shifts: list[dict[str, Any]]) -> str:
    """The lowest prune potential over the corruptions, naming every corruption at that value (a tie is not a
    worst one): ``0.00 (every corruption)``, ``25.00 (gaussian_noise, shot_noise)``, ``0.00 (jpeg and 4 more)``.

    The lowest value is a bound only when every tied corruption's is: "≥" when each is capped by the sweep,
    "*" when each had cells without a result (one exact value among them makes the minimum exact).
    """
    if not shifts:
        return "—"
    lowest = min(x["prune_potential"] for x in shifts)
    ties = sorted((x for x in shifts if x["prune_potential"] == lowest), key=lambda x: x["distribution"])
    tied = [x["distribution"] for x in ties]
    worst = {
        **ties[0],
        "capped": all(x["capped"] for x in ties),
        "missing": ties[0].get("missing") if all(x.get("missing") for x in ties) else None,
    }
    if len(tied) == len(shifts) > 1:
        names = "every corruption"
    elif len(tied) <= 3:
        names = ", ".join(tied)
    else:
        names = f"{', '.join(tied[:2])} and {len(tied) - 2} more"
    return f"{_potential_text(worst)} ({names})"


def _errors_heading(records: list[dict[str, Any]], dataset: str, arch: str) -> str:
    """The heading of a board's list of cells that did not pass: failed ones (below their threshold) are not errors."""
    outcomes = {r["outcome"] for r in records if r.get("error") and (r["dataset"], r["arch"]) == (dataset, arch)}
    if "failed" not in outcomes:
        return "Errors:"
    return "Failures:" if outcomes == {"failed"} else "Failures and errors:"


def _excess_text(r: dict[str, Any] | None) -> str:
    if r is None or r.get("excess_error") is None:
        return "—"
    return signed_points(r["excess_error"], r.get("excess_error_std"))


def _markdown(headers: list[str], rows: list[list[str]]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def leaderboard(
    records: Iterable[dict[str, Any]],
    environment: dict[str, Any],
    plots: dict[tuple[str, str], list[tuple[str, str]]] | None = None,
    plot_note: str | None = None,
    sources: list[str] | None = None,
) -> str:
    """The leaderboard markdown for ``records`` (all repeats; folded to mean ± std per cell)."""
    records = list(records)
    delta = environment.get("delta_points", 0.5)
    potential_entries = potential_summary(prune_potential(records, delta, environment.get("compressions") or ()))
    nominal = {(e["dataset"], e["arch"], e["pruner"]): e for e in potential_entries if e["distribution"] == NOMINAL}
    lines = ["# pytest-prune leaderboard", ""]
    lines.append(
        "Top-1 after pruning and finetuning, in percent (Δ vs the dense parent in points; mean ± sample std over "
        "seeds where repeated). Rank: area under top-1 vs log2(compression), i.e. the mean top-1 along the "
        f"log-compression axis. Prune potential: the largest sparsity whose top-1 error is within {delta:g} "
        "points of the dense error (≥: the largest tested sparsity passed)."
    )
    overall: dict[str, list[int]] = {}
    board_names: list[str] = []
    for (dataset, arch), group in groupby(summaries(records), key=lambda r: (r["dataset"], r["arch"])):
        rows = sorted(group, key=lambda r: (r["pruner"], r["compression"]))
        potentials = {p: e for (d, a, p), e in nominal.items() if (d, a) == (dataset, arch)}
        board = _board(rows, potentials)
        board_names.append(f"{dataset}/{arch}")
        dense = {key: first_value(rows, key) for key in DENSE_FACTS}
        lines += ["", f"## {dataset} / {arch}", ""]
        facts = []
        if dense["dense_top1"] is not None:
            facts.append(f"top-1 {_pct(dense['dense_top1'])}%")
        if dense["params"]:
            facts.append(f"{dense['params']:,} parameters")
        if dense["dense_macs"]:
            facts.append(f"{dense['dense_macs'] / 1e6:.3f}M MACs")
        if facts:
            lines += ["Dense parent: " + ", ".join(facts) + ".", ""]
        compressions = board["compressions"]
        headers = ["rank", "pruner", "area top-1 %", *map(format_compression, compressions), "prune potential %"]
        table = []
        for e in board["entries"]:
            table.append(
                [
                    str(e["rank"]) if e["rank"] is not None else "incomplete",
                    _code(e["pruner"]),
                    _pct(e["area"]),
                    *(_cell_text(e["cells"].get(c)) for c in compressions),
                    _potential_text(e["potential"]),
                ]
            )
            if e["rank"] is not None:
                overall.setdefault(e["pruner"], []).append(e["rank"])
        lines.append(_markdown(headers, table))
        gaps = missing_note(e for e in potential_entries if (e["dataset"], e["arch"]) == (dataset, arch))
        if gaps:
            lines += ["", gaps.replace("*", "\\*", 1)]
        if board["ranked"] != compressions:
            span = ", ".join(map(format_compression, board["ranked"])) or "none"
            lines += ["", f"Ranked over the compressions every pruner of this board has: {span}."]
        if any(r.get("theoretical_speedup") is not None for r in rows):
            lines += [
                "",
                "Speedup: theoretical (MACs × weight density) / structural (removable filters removed) / measured "
                "(dense ÷ pruned latency at the smallest timed batch, a measurement of the moment).",
                "",
            ]
            speed_rows = [
                [_code(e["pruner"]), *(_speed_text(e["cells"].get(c)) for c in compressions)] for e in board["entries"]
            ]
            lines.append(_markdown(["pruner", *map(format_compression, compressions)], speed_rows))
        if any(r.get("corruption_mean_top1") is not None for r in rows):
            mine = [e for e in potential_entries if (e["dataset"], e["arch"]) == (dataset, arch)]
            lines += ["", *_robustness(board, mine, delta)]
        for title, file in (plots or {}).get((dataset, arch), []):
            lines += ["", f"![{title}]({file if re.fullmatch(r'[A-Za-z0-9._/-]+', file) else f'<{file}>'})"]
        errors = [error for r in rows for error in r["errors"]]
        if errors:
            lines += ["", _errors_heading(records, dataset, arch), ""] + [f"- {_one_line(error)}" for error in errors]
    if plot_note:
        lines += ["", f"_{plot_note}_"]
    lines += ["", "## Overall", ""]
    # complete on more boards first: a pruner that errored on a board must not outrank one that finished it
    ranking = sorted(overall.items(), key=lambda kv: (-len(kv[1]), statistics.fmean(kv[1]), kv[0]))
    lines.append(
        _markdown(
            ["#", "pruner", "mean rank", "boards"],
            [[str(i), _code(p), f"{statistics.fmean(r):.2f}", str(len(r))] for i, (p, r) in enumerate(ranking, 1)],
        )
    )
    lines += [
        "",
        f"Pruners complete on more of the {len(board_names)} board(s) first, then by mean rank over the boards "
        "where the pruner has every compression.",
    ]
    lines += ["", "---", "", _footer(records, environment, sources)]
    return "\n".join(lines) + "\n"


def _footer(records: list[dict[str, Any]], environment: dict[str, Any], sources: list[str] | None) -> str:
    seeds = sorted({r["seed"] for r in records})
    versions = ", ".join(
        f"{name} {environment[key]}"
        for name, key in (("pytest-prune", "pytest_prune"), ("torch", "torch"), ("Python", "python"))
        if environment.get(key)
    )
    settings = ", ".join(
        f"{key} {environment[key]}"
        for key in ("epochs", "schedule", "threads", "device")
        if environment.get(key) is not None
    )
    parts = [
        f"Produced by pytest-prune ({versions}) on {environment.get('platform', 'an unknown platform')}.",
        f"Seeds: {', '.join(map(str, seeds))}. Settings: {settings}.",
    ]
    robustness = environment.get("robustness")
    if robustness:
        parts.append(_robustness_footer(records, robustness, environment.get("delta_points", 0.5)))
    if environment.get("interrupted"):
        parts.append(
            f"**Partial**: the run stopped early ({environment['interrupted']}); cells that had not finished are "
            "missing or errors, so rankings and prune potentials may change. Run it again to complete it (with the "
            "cell cache on, the finished cells are not computed again)."
        )
    if sources:
        parts.append(f"Merged from: {', '.join(sources)}.")
    command = environment.get("command")
    if command and not (sources and len(sources) > 1):
        parts.append(f"Run as: `{command}`.")
    else:
        parts.append("Regenerate: `pytest --prune-bench --prune-leaderboard LEADERBOARD.md` with the same options.")
    return "  \n".join(parts)


def _robustness_footer(records: list[dict[str, Any]], robustness: dict[str, Any], delta: float) -> str:
    """What the records measured: the corruptions that ran (a skipped one named with its reason) and the ε
    sample each dataset's cells drew (a test set smaller than the asked size is sampled whole)."""
    ran = {name for r in records for name in r.get("corruption_top1") or {}}
    skipped = sorted({reason for r in records for reason in (r.get("corruptions_skipped") or {}).values()})
    images = sorted({r["eps_images"] for r in records if r.get("eps_images") is not None})
    if not ran and not skipped and not any(r.get("agreement") is not None for r in records):
        return "Robustness: on, but no cell measured it (their tests did not request prune_result)."
    sample = " or ".join(map(str, images)) if images else str(robustness["eps_images"])
    return (
        f"Robustness: {len(ran)} corruption{'' if len(ran) == 1 else 's'}"
        + "".join(f" (skipped: {reason})" for reason in skipped)
        + f" × severities {', '.join(map(str, robustness['severities']))}; ε-agreement on {sample} images × "
        f"{robustness['eps_draws']} draws at ε {', '.join(f'{e:g}' for e in robustness['eps'])}; δ {delta:g} points."
    )


def write_leaderboard(
    path: Path,
    records: list[dict[str, Any]],
    environment: dict[str, Any],
    sources: list[str] | None = None,
) -> list[str]:
    """Write the leaderboard and its plots; returns messages for the user (plots skipped and why)."""
    from ..files import atomic_write_bytes
    from .plots import PlotsUnavailable, draw_plots

    path = Path(path)
    messages: list[str] = []
    try:
        plots = draw_plots(path, records)
        note = None
    except PlotsUnavailable as exc:
        plots, note = {}, str(exc)
        messages.append(note)
    except Exception as exc:  # a plot must never cost the leaderboard itself
        plots, note = {}, f"plots not drawn: matplotlib failed ({type(exc).__name__}: {_one_line(str(exc))})"
        messages.append(note)
    text = leaderboard(records, environment, plots, note, sources)
    atomic_write_bytes(path, text.encode())
    return messages
