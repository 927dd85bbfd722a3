"""Result records and the results JSON (the controller-side ``Collector`` gathers them: ``collector``).

Records ride on ``report.user_properties`` under the key ``pytest_prune``, so they reach the controller
through pytest-xdist like any report; nothing is kept in globals.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA = "pytest-prune/1"
PROPERTY = "pytest_prune"
OUTCOME_RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}

RECORD_FIELDS = (
    "id",
    "dataset",
    "arch",
    "pruner",
    "compression",
    "seed",
    "outcome",
    "error",
    "amount",
    "top1",
    "top5",
    "pruned_top1",
    "dense_top1",
    "dense_top5",
    "params",
    "nonzero_params",
    "compression_achieved",
    "sparsity",
    "dense_macs",
    "macs",
    "theoretical_speedup",
    "macs_uncounted",
    "structural_macs",
    "structural_speedup",
    "compacted",
    "compacted_params",
    "compaction",
    "latency_ms",
    "latency_iqr_ms",
    "dense_latency_ms",
    "masked_latency_ms",
    "compacted_latency_ms",
    "measured_speedup",
    "latency_note",
    "corruption_top1",
    "corruption_mean_top1",
    "dense_corruption_top1",
    "dense_corruption_mean_top1",
    "corruptions_skipped",
    "excess_error",
    "excess_error_by_corruption",
    "agreement",
    "softmax_l2",
    "eps_agreement",
    "eps_images",
    "reference_agreement",
    "reference_softmax_l2",
    "reference_eps_agreement",
    "reference_top1",
    "epochs",
    "schedule",
    "rounds",
    "threshold",
    "required_top1",
    "finetune",
    "weights",
    "weights_sha256",
    "seconds",
    "cache",
    "cache_key",
    "tests",
)
"""Keys of one record, in output order. Accuracies are fractions in [0, 1]; ``required_top1`` too."""


TIMED_FIELDS = frozenset(
    {
        "seconds",
        "latency_ms",
        "latency_iqr_ms",
        "dense_latency_ms",
        "masked_latency_ms",
        "compacted_latency_ms",
        "measured_speedup",
    }
)
"""Record keys that are measurements of the moment: every other key is identical across serial and xdist runs."""


@dataclass(frozen=True)
class PruneResult:
    """The measured outcome of one cell, as handed to tests by the ``prune_result`` fixture."""

    id: str
    dataset: str
    arch: str
    pruner: str
    compression: float
    seed: int
    amount: float
    top1: float
    top5: float
    pruned_top1: float
    dense_top1: float
    dense_top5: float
    params: int
    nonzero_params: int
    compression_achieved: float
    sparsity: float
    dense_macs: int
    macs: float
    theoretical_speedup: float
    structural_macs: int
    structural_speedup: float
    compacted: bool
    compacted_params: int
    latency_ms: dict[str, float]
    dense_latency_ms: dict[str, float]
    measured_speedup: dict[str, float]
    epochs: int
    weights_sha256: str

    @classmethod
    def from_fields(cls, values: dict[str, Any]) -> PruneResult:
        """Build from a cell's accumulated fields."""
        return cls(**{f.name: values[f.name] for f in fields(cls)})


def ordered(record: dict[str, Any]) -> dict[str, Any]:
    """The record with every known key, in RECORD_FIELDS order (missing ones None), then any extras."""
    out = {key: record.get(key) for key in RECORD_FIELDS}
    out.update({k: v for k, v in record.items() if k not in out})
    return out


def environment(settings: Any, command: str | None = None) -> dict[str, Any]:
    """What produced the results: versions, machine, the settings that change numbers and the command."""
    from . import __version__

    env: dict[str, Any] = {
        "pytest_prune": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": settings.device,
        "threads": settings.threads,
        "epochs": settings.epochs,
        "recipe": settings.recipe,
        "seed": settings.seed,
        "repeats": settings.repeats,
        "schedule": settings.schedule,
        "compressions": list(settings.compressions),
        "delta_points": settings.delta,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if settings.robustness:
        env["robustness"] = {
            "corruptions": list(settings.corruptions),
            "severities": list(settings.severities),
            "eps": list(settings.eps),
            "eps_images": settings.eps_images,
            "eps_draws": settings.eps_draws,
        }
    if version := torch_version():
        env["torch"] = version
    if command:
        env["command"] = command
    return env


def torch_version() -> str | None:
    """torch's version as its installed distribution states it, read without importing torch (the xdist
    controller never loads it), so a serial run and an xdist run record the same string. ``__version__`` can
    differ from it (a CUDA build reports ``2.11.0+cu130`` where its metadata says ``2.11.0``); it is used
    only where torch runs without installed metadata (a source tree on the path)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        module = sys.modules.get("torch")
        return str(module.__version__) if module is not None else None


def write_json(path: Path, environment: dict[str, Any], records: Iterable[dict[str, Any]]) -> None:
    """Write the results document atomically (readers never see half a file)."""
    from .files import atomic_write_bytes
    from .report.aggregate import summaries
    from .robustness.potential import prune_potential

    records = [ordered(r) for r in records]
    document = {
        "schema": SCHEMA,
        "environment": environment,
        "results": records,
        "summary": summaries(records),
        "prune_potential": prune_potential(
            records, environment.get("delta_points", 0.5), environment.get("compressions") or ()
        ),
    }
    atomic_write_bytes(path, (json.dumps(document, indent=2, allow_nan=True) + "\n").encode())
