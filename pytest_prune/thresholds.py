"""Accuracy verdicts: shipped expectations for the built-in pruners, ``--prune-max-drop``, ``--prune-min-top1``.

A shipped expectation (``reference_models/expectations.json``) applies to a cell only when the cell runs
under the conditions it was measured with (epochs, one of its seeds, threads, schedule, finetuning recipe)
on the same reference weights. Its floor is the lowest over the measured seeds of top-1 minus a margin of
1.5 points plus 10% of the cell's drop below its dense parent: a cell far below its parent (random pruning
at 16x) finetunes chaotically, and other hardware (another CPU's vector width, a GPU's TF32 convolutions)
changes the arithmetic like another seed does, so a cell is held to what every seed reached.
Elsewhere the dense model sets the bar: top-1 may fall at most ``--prune-max-drop`` points (default 5).
``--prune-min-top1`` and an explicit ``--prune-max-drop`` apply to every cell.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .matrix import record_key
from .settings import Settings, device_type

SCHEMA = "pytest-prune-expectations/1"
EXPECTATIONS = "expectations.json"


@dataclass(frozen=True)
class Verdict:
    """Which rule judged a cell, the top-1 it required, and the failures (empty = passed)."""

    threshold: str
    required_top1: float
    failures: tuple[str, ...]


def conditions(settings: Settings, record: dict[str, Any]) -> dict[str, Any]:
    """The settings an expectation was measured under, for ``record``'s cell (its own seed under repeats)."""
    return {
        "epochs": settings.epochs,
        "seed": record["seed"],
        "threads": settings.threads,
        "schedule": record.get("schedule") or "oneshot",
        "finetune": record["finetune"],
    }


def load_expectations(path: Path | None = None) -> dict[str, Any]:
    """The expectations document; empty when none is shipped."""
    if path is None:
        from .reference import reference_dir

        path = reference_dir() / EXPECTATIONS
    if not path.is_file():
        return {}
    document = json.loads(path.read_text())
    if document.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {document.get('schema')!r}, expected {SCHEMA!r}")
    return document


def judge(record: dict[str, Any], settings: Settings, expectations: dict[str, Any]) -> Verdict:
    """Check a finished cell's top-1 against the thresholds that apply to it."""
    top1, dense = record["top1"], record["dense_top1"]
    key = record_key(record)
    expected = expectations.get("cells", {}).get(key)
    why_not = None if expected is None else _why_not(expected, expectations, settings, record)
    applies = expected is not None and why_not is None
    failures: list[str] = []
    rules: list[tuple[str, float]] = []
    if applies:
        floor = expected["min_top1"]
        rules.append(("expectation", floor))
        if top1 < floor:
            by_seed = expected.get("top1_by_seed") or {str(record["seed"]): expected["top1"]}
            low, high = min(by_seed.values()), max(by_seed.values())
            shown = f"{low:.2%}" if low == high else f"{low:.2%}–{high:.2%} over seeds {', '.join(by_seed)}"
            failures.append(
                f"top-1 {top1:.2%} is below the expected floor {floor:.2%} (shipped expectation for {key}: "
                f"{shown} measured, floor {(low - floor) * 100:.2f} points below the lowest)"
            )
    if not applies or settings.max_drop is not None:
        allowed = settings.effective_max_drop
        floor = dense - allowed / 100
        rules.append(("max_drop", floor))
        if top1 < floor - 1e-12:
            failures.append(
                f"top-1 {top1:.2%} is {(dense - top1) * 100:.2f} points below the dense model's {dense:.2%}; "
                f"allowed drop {allowed:g} points (--prune-max-drop)"
                + (f"; the shipped expectation for this cell does not apply: {why_not}" if why_not else "")
            )
    if settings.min_top1 is not None:
        rules.append(("min_top1", settings.min_top1 / 100))
        if top1 < settings.min_top1 / 100:
            failures.append(f"top-1 {top1:.2%} is below --prune-min-top1 {settings.min_top1:g}%")
    name, required = max(rules, key=lambda rule: rule[1])
    return Verdict(name, required, tuple(failures))


def _why_not(
    expected: dict[str, Any], expectations: dict[str, Any], settings: Settings, record: dict[str, Any]
) -> str | None:
    """Why a shipped expectation for the cell does not apply to it (the first difference), or None."""
    if expected.get("weights_sha256") != record["weights_sha256"]:
        return "it was measured from other reference weights"
    measured = dict(expectations.get("conditions", {}))
    seeds = measured.pop("seeds", None) or [measured.pop("seed", None)]  # files of one seed name it alone
    current = conditions(settings, record)
    if (seed := current.pop("seed")) not in seeds:
        return f"it was measured with seed(s) {', '.join(map(str, seeds))} (this run: {seed})"
    for name, value in current.items():
        if measured.get(name) != value:
            shown = "another recipe" if name == "finetune" else f"{name} {measured.get(name)} (this run: {value})"
            return f"it was measured with {shown}"
    if unknown := sorted(set(measured) - set(current)):
        return f"it names conditions this version does not know ({', '.join(unknown)})"
    return None


def floor_for(top1: float, dense_top1: float, margin: float, slope: float = 0.1) -> float:
    """The expectation floor: measured top-1 − (margin points + ``slope`` × the drop below the dense parent)."""
    drop = max(0.0, dense_top1 - top1)
    return max(0.0, top1 - margin / 100 - slope * drop)


_EXPECTED_FIELDS = ("finetune", "dense_top1", "weights_sha256")
"""What a finished cell's record must carry, beside its top-1, to become an expectation."""


def expectations_from_results(paths: Iterable[Path], output: Path, margin: float) -> int:
    """Write an expectations file from results JSON files; returns the number of cells.

    The results must share every condition but the seed. A cell measured with several seeds gets one floor
    for all of them, the lowest of its seeds' floors: a cell that collapses under one seed and not under
    another (LeNet-5 with random pruning at 8x: 85.9%, 33.5% and 10.0% with seeds 0-2) may collapse on
    other hardware with any seed, so it is held to what all its seeds reached.
    """
    from .files import atomic_write_bytes
    from .results_file import ResultsError, load_results

    measured: dict[str, dict[int, dict[str, Any]]] = {}
    found: dict[str, Any] | None = None
    devices: set[str] = set()
    for path in paths:
        document = load_results(Path(path))  # a missing or malformed file is a ResultsError naming it
        env = document["environment"]
        for record in document["results"]:
            if record.get("top1") is None:
                continue
            lacking = [f"environment {k!r}" for k in ("epochs", "threads") if k not in env]
            lacking += [f"{record.get('id', 'a record')} {k!r}" for k in _EXPECTED_FIELDS if record.get(k) is None]
            if lacking:
                raise ResultsError(
                    f"{path}: no {', '.join(lacking)}: expectations need results written by pytest --prune-json"
                )
            cond = {
                "epochs": env["epochs"],
                "threads": env["threads"],
                "schedule": record.get("schedule") or "oneshot",
                "finetune": record["finetune"],
            }
            if found is not None and cond != found:
                raise ValueError(f"{path}: results come from different conditions ({cond} vs {found})")
            found = cond
            devices.add(device_type(env.get("device", "cpu")))
            measured.setdefault(record_key(record), {})[record["seed"]] = record
    if found is None:
        raise ValueError("no finished cell in the results: nothing to expect")
    cells = {}
    for key, by_seed in sorted(measured.items()):
        if len({r["weights_sha256"] for r in by_seed.values()}) > 1:
            raise ValueError(f"{key}: its seeds were measured from different reference weights")
        first = by_seed[min(by_seed)]
        floor = min(floor_for(r["top1"], r["dense_top1"], margin) for r in by_seed.values())
        cells[key] = {
            "top1": first["top1"],
            "top1_by_seed": {str(seed): r["top1"] for seed, r in sorted(by_seed.items())},
            "min_top1": round(floor, 4),
            "weights_sha256": first["weights_sha256"],
        }
    seeds = sorted({seed for by_seed in measured.values() for seed in by_seed})
    document = {
        "schema": SCHEMA,
        "margin_points": margin,
        "drop_slope": 0.1,
        "conditions": {**found, "seeds": seeds},
        "measured_on": sorted(devices),  # device types: provenance, not a condition
        "command": "pytest --prune-bench --prune-pruner '*' --prune-repeats 3 --prune-json results.json "
        "&& pytest-prune expect results.json",
        "cells": cells,
    }
    atomic_write_bytes(output, (json.dumps(document, indent=2) + "\n").encode())
    return len(cells)
