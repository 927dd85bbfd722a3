"""The cell cache seen from a cell: look a stage up before computing it, store it when it finishes.

``CachedStages`` is the part of ``pipeline.Cell`` that talks to the cell cache (``cache.CellCache``): what
keys a cell (``_material``), loading and verifying its entry, running a stage only when the entry lacks it,
and the record's ``cache`` field that says what was served and what was computed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from .cache import CorruptEntry, Entry, digest, harness_source
from .errors import UserExit, raised
from .registry import ARCHITECTURES, DATASETS, PRUNERS
from .sources import source_of

if TYPE_CHECKING:
    from torch import nn

    from .matrix import Case
    from .pipeline import Store

T = TypeVar("T")
CACHE_FIELDS = frozenset({"cache", "cache_key"})
"""Record fields about the cache itself, never stored in it."""
_MISSING = object()


def cached(table: dict, key: Any, make: Callable[[], T]) -> T:
    """``table[key]``, made once; a failure is cached too and raised again for every later request.

    ``sys.exit`` in user code becomes a ``UserExit`` error: a ``SystemExit`` escaping a fixture's setup would
    leave pytest's fixture state broken for every later test.
    """
    if key not in table:
        try:
            table[key] = make()
        except Exception as exc:
            table[key] = exc
        except SystemExit as exc:
            table[key] = UserExit(f"user code {raised(exc)}")
            table[key].__cause__ = exc
    value = table[key]
    if isinstance(value, Exception):
        raise value.with_traceback(None)
    return value


class CachedStages:
    """A cell's record (``fields``), its computed stages, and their round trip through the cell cache.

    With the cell cache on, every stage (finetune, speed, robustness) is looked up before it is computed
    and stored when it finishes; ``fields["cache"]`` says which happened.
    """

    def __init__(self, store: Store, case: Case) -> None:
        self.store, self.case = store, case
        self.fields: dict[str, Any] = {}
        self._stages: dict[str, Any] = {}
        self._served: list[str] = []  # stages taken from the cache
        self._computed: list[str] = []  # stages computed (and stored, when the cache is on)

    def _note_stage(self, stage: str, served: bool) -> None:
        (self._served if served else self._computed).append(stage)
        if not self.store.cells.enabled or self.fields.get("cache", "").startswith(("recomputed", "off")):
            return  # off, or the note about a corrupt entry or about why this cell is not cached stands
        if not self._computed:
            self.fields["cache"] = "cached"
        elif not self._served:
            self.fields["cache"] = "computed"
        else:
            self.fields["cache"] = f"cached {', '.join(self._served)}; computed {', '.join(self._computed)}"

    def _material(self) -> dict[str, Any] | str:
        """What determines this cell's numbers (the cache key's content), or why it cannot be cached."""
        case, settings = self.case, self.store.settings
        sources = {
            kind: source_of(registry.get(name), registry.home(name))
            for kind, registry, name in (
                ("pruner", PRUNERS, case.pruner),
                ("arch", ARCHITECTURES, case.arch),
                ("dataset", DATASETS, case.dataset),
            )
        }
        unreadable = [kind for kind, sha in sources.items() if sha is None]
        if unreadable:
            what = " and ".join(unreadable)
            return f"off: the source code (or state) of the {what} cannot be read, so changes would go unseen"
        return {
            "harness": harness_source(),
            "torch": torch.__version__,
            "sources": sources,
            "dataset": case.dataset,
            "dataset_sha256": self.store.dataset_digest(case.dataset),
            "arch": case.arch,
            "weights_sha256": self.store.dense(case.dataset, case.arch).pretrained.sha256,
            "pruner": case.pruner,
            "compression": case.compression,
            "seed": case.seed,
            "epochs": settings.epochs,
            "schedule": settings.schedule,
            "threads": settings.threads,
            "device": torch.device(settings.device).type,  # cuda:auto workers share entries across GPUs
            "finetune": settings.finetune_recipe.to_dict(),
        }

    def entry(self) -> Entry | None:
        """This cell's cache entry (loaded, or fresh to be filled); None with the cache off."""
        return cached(self._stages, "entry", self._lookup)

    def _lookup(self) -> Entry | None:
        cells = self.store.cells
        if not cells.enabled:
            self.fields["cache"] = "off"
            return None
        material = self._material()
        if isinstance(material, str):
            self.fields["cache"] = material
            return None
        key = digest(material)
        self.fields["cache_key"] = key
        try:
            entry = cells.load(key)
            if entry is not None:
                cells.verify(entry)
        except CorruptEntry as exc:
            self.fields["cache"] = f"recomputed: the cache entry was corrupt ({exc})"
            entry = None
        if entry is None:
            return Entry(key, material)
        self.fields.update(entry.stages["finetune"]["fields"])
        return entry

    def _stage(self, name: str, material: Any, compute: Callable[[], Any]) -> None:
        """Run ``compute`` (after finetuning) unless the cache holds this stage for ``material``; store it."""
        entry = self.entry()
        key: str | None = None
        if entry is not None:
            key = digest([entry.key, name, material])
            if (stored := entry.stage(name, key)) is not None:
                self.fields.update(stored)
                self._note_stage(name, served=True)
                return
        self.finetuned()
        before = copy.deepcopy(self.fields)
        compute()
        self._note_stage(name, served=False)
        if entry is not None:
            changed = {k: v for k, v in self.fields.items() if k not in CACHE_FIELDS and before.get(k, _MISSING) != v}
            entry.stages[name] = {"key": key, "fields": changed}
            self.store.cells.save(entry)

    def finetuned(self) -> nn.Module:
        """The finetuned model (every stage after finetuning measures it)."""
        raise NotImplementedError
