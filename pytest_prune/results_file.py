"""Reading a results JSON back (``--prune-baseline``, ``pytest-prune compare``, ``leaderboard``, ``expect``):
validation that names the file and the damage, and whether two files can be compared or merged."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .results import OUTCOME_RANK, SCHEMA


class ResultsError(ValueError):
    """A results file that cannot be used; the message names the file and what is wrong with it."""


MATRIX_SETTINGS = ("epochs", "recipe", "schedule", "threads", "device")
"""Environment settings that change every number: results that differ in them are not comparable."""


def load_results(path: Path) -> dict[str, Any]:
    """Read and validate a results JSON written by ``--prune-json`` (raises ResultsError saying what is wrong)."""
    path = Path(path)
    if path.is_dir():
        raise ResultsError(f"{path}: a folder, not a results file; name the JSON that `pytest --prune-json` wrote")
    if not path.is_file():
        raise ResultsError(f"{path}: no such results file; write one with `pytest --prune-json {path}`")
    try:
        document = json.loads(path.read_text())
    except OSError as exc:  # unreadable: permissions, a file that vanished
        raise ResultsError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ResultsError(f"{path}: not a text file, so not a pytest-prune results JSON") from None
    except json.JSONDecodeError as exc:
        raise ResultsError(
            f"{path}: truncated or not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "re-run pytest --prune-json to write it again"
        ) from None
    if not isinstance(document, dict) or "schema" not in document:
        raise ResultsError(f"{path}: not a pytest-prune results JSON (no 'schema' key)")
    if document["schema"] != SCHEMA:
        raise ResultsError(
            f"{path}: results schema {document['schema']!r}; this pytest-prune reads {SCHEMA!r} "
            "(re-run the benchmark with this version)"
        )
    results = document.get("results")
    needed = ("dataset", "arch", "pruner", "compression", "seed", "outcome")
    if not isinstance(results, list) or not all(isinstance(r, dict) and all(k in r for k in needed) for r in results):
        raise ResultsError(f"{path}: 'results' must be a list of records with {', '.join(needed)}")
    for index, record in enumerate(results):
        if problem := _record_problem(record):
            name = record.get("id") or f"{record['dataset']}/{record['arch']}/{record['pruner']}"
            raise ResultsError(f"{path}: record {index} ({name}): {problem}")
    if not isinstance(document.get("environment"), dict):
        raise ResultsError(f"{path}: no 'environment' object")
    return document


def load_baseline(path: Path) -> dict[str, Any]:
    """``load_results`` of a gate's baseline, which must hold records: an empty one would pass every run."""
    document = load_results(path)
    if not document["results"]:
        raise ResultsError(
            f"{path}: holds no result records, so a gate against it passes anything; write the baseline from a "
            "run in which cells ran"
        )
    return document


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _record_problem(record: dict[str, Any]) -> str | None:
    """What makes a result record unusable (a hand-edited or damaged file), or None."""
    for key in ("dataset", "arch", "pruner"):
        if not isinstance(record[key], str):
            return f"{key} {record[key]!r} is not a string"
    if not _is_number(record["compression"]) or not record["compression"] >= 1:
        return f"compression {record['compression']!r} is not a number ≥ 1 (write 8, not '8x')"
    if not isinstance(record["seed"], int) or isinstance(record["seed"], bool):
        return f"seed {record['seed']!r} is not an integer"
    if record["outcome"] not in OUTCOME_RANK:
        return f"outcome {record['outcome']!r} is not one of {', '.join(OUTCOME_RANK)}"
    for key in ("top1", "dense_top1"):
        value = record.get(key)
        if value is not None and not (_is_number(value) and 0 <= value <= 1):
            return f"{key} {value!r} is not a fraction in [0, 1]"
    from .gate import EXACT, EXACT_OPTIONAL
    from .report.aggregate import NUMBERS, PER_KEY, SHARED

    exact = {field for field, _, _ in (*EXACT, *EXACT_OPTIONAL)}  # a NaN there would compare as unchanged
    named = {"dataset", "arch", "pruner", "compression", "dense_top1"}  # checked above
    for key in (*NUMBERS, *(k for k in SHARED if k not in named)):  # what the gate and the reports compute with
        value = record.get(key)
        if value is not None and not (_is_number(value) and (key not in exact or math.isfinite(value))):
            return f"{key} {value!r} is not a number"
    for key in PER_KEY:
        value = record.get(key)
        if value is not None and not (isinstance(value, dict) and all(map(_is_number, value.values()))):
            return f"{key} {value!r} is not a table of numbers"
    return None


def incomparable(a_name: Any, a: dict[str, Any], b_name: Any, b: dict[str, Any], merging: bool = False) -> str | None:
    """Why two results files cannot be compared, or with ``merging`` merged (``"a and b come from different
    matrices (…)"``)."""
    differences = merge_differences(a, b) if merging else matrix_differences(a, b)
    if not differences:
        return None
    return f"{a_name} and {b_name} come from different matrices ({'; '.join(differences)})"


def merge_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """``matrix_differences`` and, for results merged into one leaderboard, differing robustness settings (the
    corruption suite, severities, ε-agreement protocol, δ): their robustness figures would not be comparable."""
    out = matrix_differences(a, b)
    robust_a, robust_b = a.get("robustness") or {}, b.get("robustness") or {}
    out += [
        f"robustness {key} {robust_a[key]!r} vs {robust_b[key]!r}"
        for key in sorted(robust_a.keys() & robust_b.keys())
        if robust_a[key] != robust_b[key]
    ]
    # δ sets every board's nominal prune potential, with robustness or without
    if None not in (a.get("delta_points"), b.get("delta_points")) and a["delta_points"] != b["delta_points"]:
        out.append(f"delta_points {a['delta_points']!r} vs {b['delta_points']!r}")
    return out


def matrix_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """How two results environments differ in settings that change every number (empty: comparable)."""
    from .settings import device_type

    def setting(environment: dict[str, Any], key: str) -> Any:  # the kind of device: cuda:0 and cuda:1 compare
        value = environment.get(key)
        return device_type(value) if key == "device" and isinstance(value, str) else value

    return [
        f"{key} {a.get(key)!r} vs {b.get(key)!r}"
        for key in MATRIX_SETTINGS
        if None not in (a.get(key), b.get(key)) and setting(a, key) != setting(b, key)
    ]
