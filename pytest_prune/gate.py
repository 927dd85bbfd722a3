"""The regression gate: compare results against a baseline results JSON (``--prune-baseline``, ``compare``).

A cell regresses when

* its top-1 falls more than the tolerance below the baseline's; with repeats the allowed drop widens by two
  standard errors of the difference of the means, 2·s·sqrt(1/n_b + 1/n_c) with s the baseline's spread over
  seeds, or where the baseline has one seed a spread of the current seeds that one outlier cannot inflate
  (``robust_spread``), so seed noise alone does not fail the gate;
* with repeats, one seed's top-1 falls more than the tolerance plus 2·s below the same seed's in the
  baseline, or below the baseline's mean for a seed the baseline lacks (a collapsed seed that the mean over
  seeds would hide);
* its achieved compression or its MACs (× density, and structural) change at all: the same pruner on the
  same weights must remove the same weights, so any change is a behaviour change, not noise;
* it errored now but finished in the baseline, or with repeats, one of its seeds did (the mean of the seeds
  that finished would otherwise pass for the cell);
* it is in the baseline but missing from the current results, or one of its seeds is.

Cells that only the current results have are reported as new, never as regressions.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from .matrix import record_key
from .report.aggregate import summaries

EXACT = (("compression_achieved", "achieved compression", 1e-9), ("macs", "MACs", 1e-9))
EXACT_OPTIONAL = (("structural_macs", "structural MACs", 1e-9),)


@dataclass(frozen=True)
class Finding:
    """One line of the gate's verdict about a cell."""

    cell: str
    what: str
    regression: bool = True

    def __str__(self) -> str:
        return f"{self.cell}: {self.what}"


def _fmt(key: str, value: float) -> str:
    if key == "compression_achieved":
        return f"{value:.4f}x"
    return f"{value:,.1f}"


def compare(baseline: list[dict[str, Any]], current: list[dict[str, Any]], tolerance_points: float) -> list[Finding]:
    """Findings (regressions first, then new cells) of ``current`` records against ``baseline`` records."""
    base = {record_key(s): s for s in summaries(baseline)}
    now = {record_key(s): s for s in summaries(current)}
    seeds_now = {(record_key(r), r["seed"]): r for r in current}
    out: list[Finding] = []
    for key, b in base.items():
        c = now.get(key)
        if c is None:
            out.append(Finding(key, "missing: in the baseline but not in the current results"))
            continue
        if b.get("top1") is not None and c.get("top1") is None:
            error = c["errors"][0] if c.get("errors") else c.get("outcome")
            out.append(Finding(key, f"no result now (the baseline had top-1 {b['top1']:.2%}): {error}"))
            continue
        repeats = [r for r in baseline if record_key(r) == key]
        out += [Finding(key, what) for what in _lost_seeds(key, repeats, seeds_now)]
        out += [Finding(key, what) for what in _changed(key, repeats, seeds_now)]
        if b.get("top1") is None or c.get("top1") is None:
            continue
        current_seeds = [r["top1"] for (k, _), r in seeds_now.items() if k == key and r.get("top1") is not None]
        # the seed noise is the baseline's spread when it has one, else a spread of the current seeds that one
        # collapsed seed cannot inflate: the current run's standard deviation would widen the allowance it is
        # judged by (96.6, 96.5, 10.0 has a std of 50 points)
        spread = b["top1_std"] if b.get("top1_std") is not None else robust_spread(current_seeds)
        noise = 2 * spread * math.sqrt(1 / b["n"] + 1 / c["n"])
        allowed = tolerance_points / 100 + noise
        drop = b["top1"] - c["top1"]
        if drop > allowed + 1e-12:
            beyond = f"tolerance {tolerance_points:g}" + (f" + noise {noise * 100:.2f}" if noise else "")
            out.append(
                Finding(
                    key,
                    f"top-1 {b['top1']:.2%} → {c['top1']:.2%} (−{drop * 100:.2f} points, beyond {beyond} points)",
                )
            )
        elif b["n"] > 1 or c["n"] > 1:  # the mean holds: does it hide a seed that collapsed?
            out += [Finding(key, what) for what in _fallen_seeds(repeats, seeds_now, key, tolerance_points, spread)]
    out += [Finding(key, "new: not in the baseline", regression=False) for key in now if key not in base]
    return out


def _changed(key: str, baseline: list[dict[str, Any]], current: dict[tuple[str, int], dict[str, Any]]) -> list[str]:
    """The exact figures of a cell that differ now, seed by seed for the seeds on both sides: a pruner whose
    masks depend on the seed averages to other MACs over other seeds, though each seed removes the same."""
    pairs = [(b, current[key, b["seed"]]) for b in baseline if (key, b["seed"]) in current]
    out = []
    for field, label, rel in (*EXACT, *EXACT_OPTIONAL):
        for b, c in pairs:
            old, new = b.get(field), c.get(field)
            if old is not None and new is not None and abs(new - old) > rel * max(abs(old), 1.0):
                seed = f" (seed {b['seed']})" if len(pairs) > 1 else ""
                out.append(f"{label} changed{seed}: {_fmt(field, old)} → {_fmt(field, new)}")
                break  # one seed says it
    return out


def robust_spread(values: list[float]) -> float:
    """A standard deviation of ``values`` that one outlier cannot inflate: 1.4826 × the median absolute deviation
    (consistent with the std for normal data), from 3 values on; 0 below (two values cannot tell which is off)."""
    if len(values) < 3:
        return 0.0
    middle = statistics.median(values)
    return 1.4826 * statistics.median(abs(v - middle) for v in values)


def _fallen_seeds(
    baseline: list[dict[str, Any]],
    current: dict[tuple[str, int], dict[str, Any]],
    key: str,
    tolerance_points: float,
    spread: float,
) -> list[str]:
    """With repeats, the current seeds whose top-1 fell more than the tolerance plus twice the seed ``spread``
    below the same seed's in the baseline, or below the baseline's mean for a seed it lacks: the mean over
    seeds can hide one that collapsed."""
    mean = statistics.fmean(r["top1"] for r in baseline if r.get("top1") is not None)
    before = {r["seed"]: r["top1"] for r in baseline if r.get("top1") is not None}
    allowed = tolerance_points / 100 + 2 * spread
    out = []
    for (k, seed), c in sorted(current.items(), key=lambda item: item[0][1]):
        if k != key or c.get("top1") is None:
            continue
        was, against = (before[seed], "") if seed in before else (mean, " (the baseline's mean: it lacks this seed)")
        if was - c["top1"] > allowed + 1e-12:
            out.append(
                f"seed {seed}: top-1 {was:.2%}{against} → {c['top1']:.2%} (−{(was - c['top1']) * 100:.2f} points, "
                f"beyond {allowed * 100:.2f} points for one seed)"
            )
    return out


def _lost_seeds(key: str, baseline: list[dict[str, Any]], current: dict[tuple[str, int], dict[str, Any]]) -> list[str]:
    """Seeds of a cell that finished in the baseline and are missing or have no result now."""
    out = []
    for b in sorted(baseline, key=lambda r: r["seed"]):
        if b.get("top1") is None:
            continue
        c = current.get((key, b["seed"]))
        if c is None:
            out.append(f"seed {b['seed']} missing: in the baseline (top-1 {b['top1']:.2%}), not in the current results")
        elif c.get("top1") is None:
            error = (c.get("error") or c.get("outcome") or "no top-1").removeprefix(f"{c.get('id')}: ")
            out.append(f"seed {b['seed']}: no result now (the baseline had top-1 {b['top1']:.2%}): {error}")
    return out


def verdict(
    findings: list[Finding], baseline_name: str, versions: tuple[str | None, str | None] = (None, None)
) -> list[str]:
    """Terminal lines: a headline, then each regression and each new cell; with regressions, a note when the
    baseline was written by another pytest-prune version (``versions``: the baseline's, the current one's)."""
    regressions = [f for f in findings if f.regression]
    new = [f for f in findings if not f.regression]
    head = (
        f"{len(regressions)} regression(s) against {baseline_name}"
        if regressions
        else f"no regression against {baseline_name}"
    )
    lines = [head + (f"; {len(new)} new cell(s)" if new else "")]
    lines += [f"  REGRESSED {f}" for f in regressions]
    lines += [f"  {f}" for f in new]
    old, now = versions
    if regressions and old and now and old != now:
        lines.append(
            f"  note: the baseline was written by pytest-prune {old} and these results by {now}; a new version "
            "may measure differently (its CHANGELOG says what): if these changes are expected, write the "
            "baseline again"
        )
    return lines
