"""The benchmark matrix: one Case per (dataset, architecture, pruner, compression)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from .registry import ARCHITECTURES, DATASETS, PRUNERS, load_builtins
from .settings import Settings


def format_compression(value: float) -> str:
    """``8.0`` → ``8x``, ``2.5`` → ``2.5x``."""
    return f"{value:g}x"


def record_key(record: Any) -> str:
    """``dataset/arch/pruner/8x``: the key of a cell in expectation files, from a Case or a result record."""
    get = record.__getitem__ if isinstance(record, dict) else lambda name: getattr(record, name)
    return "/".join((get("dataset"), get("arch"), get("pruner"), format_compression(get("compression"))))


@dataclass(frozen=True, order=True)
class Case:
    """One cell of the matrix."""

    dataset: str
    arch: str
    pruner: str
    compression: float
    seed: int
    repeated: bool = field(default=False, compare=False)
    """Whether the matrix runs several seeds; the id then names the seed."""

    @property
    def id(self) -> str:
        """Test id, e.g. ``mnist5k-lenet5-global_magnitude-8x`` (``…-8x-seed1`` under ``--prune-repeats``)."""
        text = f"{self.dataset}-{self.arch}-{self.pruner}-{format_compression(self.compression)}"
        return f"{text}-seed{self.seed}" if self.repeated else text

    @property
    def key(self) -> str:
        """Slash-separated key used in expectation files."""
        return record_key(self)

    def to_dict(self) -> dict[str, Any]:
        """The case's fields as a plain dict (the start of a result record)."""
        return {
            "id": self.id,
            "dataset": self.dataset,
            "arch": self.arch,
            "pruner": self.pruner,
            "compression": self.compression,
            "seed": self.seed,
        }


def build_matrix(settings: Settings) -> list[Case]:
    """Resolve the configured names and SPECs into cases; raises SpecError for unknown names."""
    load_builtins()
    datasets = [n for spec in settings.datasets for n in DATASETS.resolve(spec)]
    archs = [n for spec in settings.archs for n in ARCHITECTURES.resolve(spec)]
    resolved = [n for spec in settings.pruners for n in PRUNERS.resolve(spec)]
    pruners = list(dict.fromkeys(PRUNERS.canonical(n) for n in resolved))  # after every SPEC: clashes renamed
    return [
        Case(d, a, p, c, seed, repeated=settings.repeats > 1)
        for d in dict.fromkeys(datasets)
        for a in dict.fromkeys(archs)
        for p in pruners
        for c in settings.compressions
        for seed in settings.seeds
    ]


@functools.cache
def arch_cost(arch: str) -> float:
    """A relative cost of training ``arch``: its conv/linear MACs for one 3×32×32 input (0 if it cannot say).

    Used only to order cells for xdist; the probe shape is fixed because the datasets are not loaded yet.
    """
    try:
        from .metrics.counting import count_macs, macs_summary

        return float(macs_summary(count_macs(ARCHITECTURES.get(arch)((3, 32, 32), 10), (3, 32, 32)))[0])
    except (Exception, SystemExit):  # an architecture that rejects the probe (or exits) keeps its place
        return 0.0
