"""The work behind the fixtures: dataset → pretrained dense model → private copy → prune → finetune → measure.

A ``Store`` lives for one session in one process (one per xdist worker). It caches datasets, dense
models and the last few cells, so several tests of the same cell share one pruning and one finetuning.
Failures are cached too: a tampered weights file errors every cell that needs it, once each, quickly.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from .cache import CellCache, CorruptEntry, Entry, digest, harness_source, source_of
from .data.base import Batches, ImageDataset, load_dataset
from .masks import MaskEnforcer, MaskError, amount_for_model, check_compression, derive_masks
from .matrix import Case
from .metrics import count_macs, count_params, macs_summary, uncounted_modules
from .metrics.compaction import Compaction, compact
from .metrics.latency import Timing, measure, probe_inputs, synchroniser
from .progress import Progress
from .reference import Pretrained, load_pretrained
from .registry import ARCHITECTURES, DATASETS, PRUNERS
from .settings import Settings
from .train import evaluate, seed_everything, torch_threads, train

T = TypeVar("T")
CELL_CACHE_SIZE = 8
CACHE_FIELDS = frozenset({"cache", "cache_key"})
"""Record fields about the cache itself, never stored in it."""
_MISSING = object()


class PrunerError(RuntimeError):
    """The pruner raised; the message names the pruner and the cell."""


def fingerprint(model: nn.Module) -> str:
    """sha256 over a model's parameters and buffers, to detect in-place changes of a shared model."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass
class Dense:
    """The shared dense parent of a (dataset, arch) pair and what was measured on it once."""

    pretrained: Pretrained
    data: ImageDataset
    threads: int
    fingerprint: str
    pristine: dict[str, torch.Tensor]

    @property
    def model(self) -> nn.Module:
        return self.pretrained.model

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.data.input_shape

    @functools.cached_property
    def accuracy(self) -> tuple[float, float]:
        """Top-1 and top-5 on the test split, evaluated on first use (a cached run needs neither)."""
        with torch_threads(self.threads):
            return evaluate(self.model, self.data.test_x, self.data.test_y)

    @property
    def top1(self) -> float:
        return self.accuracy[0]

    @property
    def top5(self) -> float:
        return self.accuracy[1]

    @functools.cached_property
    def macs(self) -> int:
        """Dense MACs per input, counted on first use (a run served from the cell cache never needs them)."""
        macs, _ = macs_summary(count_macs(self.model, self.input_shape))
        return macs

    def guard(self, what: str) -> None:
        """Raise (after restoring the weights) if someone changed the shared model in place."""
        if fingerprint(self.model) != self.fingerprint:
            self.model.load_state_dict(self.pristine)
            raise RuntimeError(
                f"the shared pretrained model {what} was modified in place; it has been restored. "
                "Tests must not change `pretrained_model`: use copy.deepcopy(pretrained_model) first"
            )


@dataclass
class Pruned:
    """A pruned private copy and its masks."""

    model: nn.Module
    masks: dict[str, torch.Tensor]


def cached(table: dict, key: Any, make: Callable[[], T]) -> T:
    """``table[key]``, made once; a failure is cached too and raised again for every later request."""
    if key not in table:
        try:
            table[key] = make()
        except Exception as exc:
            table[key] = exc
    value = table[key]
    if isinstance(value, Exception):
        raise value.with_traceback(None)
    return value


class Store:
    """Per-process session cache of datasets, dense models and recent cells."""

    def __init__(
        self, settings: Settings, cache_dir: Path, cells: CellCache | None = None, progress: Progress | None = None
    ) -> None:
        self.settings, self.cache_dir = settings, cache_dir
        self.cells = cells if cells is not None else CellCache(None)
        self.progress = progress if progress is not None else Progress(None)
        self._datasets: dict[str, Any] = {}
        self._dataset_digests: dict[str, str] = {}
        self._dense: dict[tuple[str, str], Any] = {}
        self._dense_latency: dict[tuple[str, str, int], Any] = {}
        self._dense_robustness: dict[tuple[str, str], Any] = {}
        self._cells: OrderedDict[Case, Cell] = OrderedDict()

    def dataset(self, name: str) -> ImageDataset:
        """The dataset on the configured device, loaded once per session."""

        def make() -> ImageDataset:
            data = load_dataset(name, self.settings.data_root)
            data.validate(name)
            if self.cells.enabled:
                self._dataset_digests[name] = data_digest(data)
            return data.to(self.settings.device)

        return cached(self._datasets, name, make)

    def dataset_digest(self, name: str) -> str:
        """sha256 of the dataset's tensors (computed when it is loaded with the cell cache on)."""
        self.dataset(name)
        return self._dataset_digests[name]

    def dense(self, dataset_name: str, arch: str) -> Dense:
        """The shared dense model of (dataset, arch), measured once per session."""

        def make() -> Dense:
            data = self.dataset(dataset_name)
            with torch_threads(self.settings.threads):
                pretrained = load_pretrained(
                    dataset_name,
                    arch,
                    data.to("cpu"),
                    self.cache_dir,
                    self.settings.threads,
                    progress=self.progress,
                )
                model = pretrained.model.to(self.settings.device).eval()
            pristine = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return Dense(pretrained, data, self.settings.threads, fingerprint(model), pristine)

        return cached(self._dense, (dataset_name, arch), make)

    def dense_latency(self, dataset_name: str, arch: str, batch_size: int) -> Timing:
        """Latency of the dense model at ``batch_size``, timed once per session."""

        def make() -> Timing:
            dense, data = self.dense(dataset_name, arch), self.dataset(dataset_name)
            inputs = probe_inputs(data.input_shape, batch_size, self.settings.device)
            with torch_threads(self.settings.threads):
                return measure(dense.model, inputs, self.settings.latency_repeats)

        return cached(self._dense_latency, (dataset_name, arch, batch_size), make)

    def dense_robustness(self, dataset_name: str, arch: str) -> dict[str, Any]:
        """The parent's corrupted accuracies and the separate model's similarity, measured once per session."""
        from .robustness.stage import dense_robustness

        return cached(self._dense_robustness, (dataset_name, arch), lambda: dense_robustness(self, dataset_name, arch))

    def cell(self, case: Case) -> Cell:
        """The cell for ``case``; the last few are kept so tests sharing a cell share its work."""
        if case in self._cells:
            self._cells.move_to_end(case)
        else:
            self._cells[case] = Cell(self, case)
            while len(self._cells) > CELL_CACHE_SIZE:
                self._cells.popitem(last=False)
        return self._cells[case]


def data_digest(data: ImageDataset) -> str:
    """sha256 over a dataset's train and test tensors (values, dtypes and shapes)."""
    sha = hashlib.sha256()
    for tensor in (data.train_x, data.train_y, data.test_x, data.test_y):
        cpu = tensor.detach().cpu().contiguous()
        sha.update(f"{cpu.dtype}{tuple(cpu.shape)}".encode())
        sha.update(cpu.view(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


class Cell:
    """The lazily computed stages of one case; ``fields`` accumulates the result record.

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
        if not self.store.cells.enabled or self.fields.get("cache", "").startswith("recomputed"):
            return  # off, or the note about a corrupt entry stands
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
            "pruner": source_of(PRUNERS.get(case.pruner)),
            "arch": source_of(ARCHITECTURES.get(case.arch)),
            "dataset": source_of(DATASETS.get(case.dataset)),
        }
        unreadable = [kind for kind, sha in sources.items() if sha is None]
        if unreadable:
            return f"off: the source code of the {' and '.join(unreadable)} cannot be read, so changes would go unseen"
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

    @property
    def _threads(self) -> Any:
        return torch_threads(self.store.settings.threads)

    def dense(self) -> Dense:
        """The shared dense parent (also fills the dense fields of the record)."""
        dense = self.store.dense(self.case.dataset, self.case.arch)
        self.fields.update(
            dense_top1=dense.top1,
            dense_top5=dense.top5,
            dense_macs=dense.macs,
            weights_sha256=dense.pretrained.sha256,
            weights=dense.pretrained.source,
            macs_uncounted=uncounted_modules(dense.model),
        )
        return dense

    def pruned(self) -> Pruned:
        """Prune a private copy of the dense model; masks validated, compression checked."""
        return cached(self._stages, "pruned", self._prune)

    def _prune(self) -> Pruned:
        case, rounds = self.case, self.store.settings.rounds
        dense = self.dense()
        dense.guard(f"{case.dataset}/{case.arch}")
        model = copy.deepcopy(dense.model)
        masks: dict[str, torch.Tensor] = {}
        history: list[dict[str, Any]] = []
        self.fields["schedule"] = self.store.settings.schedule
        # iterative:N prunes to compression**(k/N) in round k and finetunes between rounds
        for k in range(1, rounds + 1):
            if k > 1:
                history[-1]["top1"], _ = self._train(model, masks)
            masks = self._prune_round(model, case.compression ** (k / rounds), masks, k)
            history.append(
                {
                    "round": k,
                    "compression": case.compression ** (k / rounds),
                    "compression_achieved": self.fields["compression_achieved"],
                    "pruned_top1": self.fields["pruned_top1"],
                }
            )
        if rounds > 1:
            self.fields["rounds"] = history
        return Pruned(model, masks)

    def _prune_round(
        self, model: nn.Module, target: float, previous: dict[str, torch.Tensor], round_: int
    ) -> dict[str, torch.Tensor]:
        """Prune ``model`` in place to ``target``; returns every mask so far (a removed weight stays removed)."""
        case, settings = self.case, self.store.settings
        where = case.id if settings.rounds == 1 else f"{case.id}, round {round_} of {settings.schedule}"
        dense, data = self.store.dense(case.dataset, case.arch), self.store.dataset(case.dataset)
        try:
            amount = amount_for_model(model, target)
        except ValueError as exc:
            raise MaskError(f"{where}: {exc}") from None
        self.fields["amount"] = amount
        fn = PRUNERS.get(case.pruner)
        batches = Batches(data.train_x, data.train_y, settings.finetune_recipe.batch_size, case.seed)
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        with self._threads:
            seed_everything(case.seed)
            start = time.perf_counter()
            try:
                returned = fn(model, amount, batches)
            except Exception as exc:
                raise PrunerError(
                    f"pruner {case.pruner!r} raised {type(exc).__name__}: {exc} (cell {where}, amount {amount:.4f})"
                ) from exc
            masks = derive_masks(model, returned, before)
            for name, mask in previous.items():
                masks[name] = masks[name] & mask if name in masks else mask
            seconds = self.fields.setdefault("seconds", {})
            seconds["prune"] = round(seconds.get("prune", 0.0) + time.perf_counter() - start, 4)
            params, nonzero = count_params(model)
            _, macs = macs_summary(count_macs(model, data.input_shape))
            achieved = params / max(nonzero, 1)
            self.fields.update(
                params=params,
                nonzero_params=nonzero,
                compression_achieved=achieved,
                sparsity=1 - nonzero / params,
                macs=macs,
                theoretical_speedup=dense.macs / max(macs, 1e-12),
            )
            try:
                check_compression(target, achieved)
            except MaskError as exc:
                hint = (
                    ""
                    if round_ == 1
                    else "; under an iterative schedule `amount` counts every weight removed so far, so a pruner "
                    "must rank weights that are already zero first"
                )
                raise MaskError(f"{where}: {exc}{hint}") from None
            self.fields["pruned_top1"], _ = evaluate(model, data.test_x, data.test_y)
        return masks

    def _train(self, model: nn.Module, masks: dict[str, torch.Tensor]) -> tuple[float, float]:
        """Finetune ``model`` in place with ``masks`` enforced after every step; returns its top-1 and top-5."""
        settings, data = self.store.settings, self.store.dataset(self.case.dataset)
        enforce = MaskEnforcer(model, masks)
        recipe = settings.finetune_recipe
        with self._threads:
            seed_everything(self.case.seed)
            start = time.perf_counter()
            label = f"{self.case.id}: finetuning"
            train(model, data, recipe, self.case.seed, enforce, self.store.progress.callback(label, recipe.epochs))
            seconds = self.fields.setdefault("seconds", {})
            seconds["finetune"] = round(seconds.get("finetune", 0.0) + time.perf_counter() - start, 4)
            params = dict(model.named_parameters())
            for name, mask in masks.items():
                if params[name][~mask].any():  # the enforcement is the harness's promise: check it
                    raise AssertionError(f"{self.case.id}: pruned weights of {name!r} became nonzero in finetuning")
            accuracy = evaluate(model, data.test_x, data.test_y)
        finetune = {**recipe.to_dict(), "augmentation": data.augmentation or None}
        self.fields.update(epochs=settings.epochs, finetune=finetune)
        return accuracy

    def finetuned(self) -> nn.Module:
        """Finetune a copy of the pruned model with its masks enforced after every step."""
        return cached(self._stages, "finetuned", self._finetune)

    def _finetune(self) -> nn.Module:
        entry = self.entry()
        if entry is not None and "finetune" in entry.stages:
            try:
                model = copy.deepcopy(self.dense().model)
                model.load_state_dict(self.store.cells.weights(entry))
                self._note_stage("finetune", served=True)
                return model.to(self.store.settings.device).eval()
            except (CorruptEntry, RuntimeError) as exc:
                self.fields["cache"] = f"recomputed: the cache entry was corrupt ({exc})"
                entry.stages.clear()
        pruned = self.pruned()
        model = copy.deepcopy(pruned.model)
        self.fields["top1"], self.fields["top5"] = self._train(model, pruned.masks)
        if "rounds" in self.fields:
            self.fields["rounds"][-1]["top1"] = self.fields["top1"]
        self._note_stage("finetune", served=False)
        if entry is not None:
            stored = {k: v for k, v in self.fields.items() if k not in CACHE_FIELDS}
            entry.stages = {"finetune": {"key": entry.key, "fields": copy.deepcopy(stored)}}
            self.store.cells.save(entry, model.state_dict())
        return model

    def compaction(self) -> Compaction:
        """The finetuned model physically compacted where its zero filters allow (else the masked model)."""

        def make() -> Compaction:
            with self._threads:
                return compact(self.finetuned(), self.store.dataset(self.case.dataset).test_x[:256])

        return cached(self._stages, "compaction", make)

    def speed(self) -> None:
        """Count the structural MACs of the compacted model and time the dense, masked and compacted models."""
        settings = self.store.settings
        material = {"latency_batches": list(settings.latency_batches), "latency_repeats": settings.latency_repeats}
        cached(self._stages, "speed", lambda: self._stage("speed", material, self._speed))

    def _speed(self) -> None:
        model, settings = self.finetuned(), self.store.settings
        data = self.store.dataset(self.case.dataset)
        compaction = self.compaction()
        with self._threads:
            structural, _ = macs_summary(count_macs(compaction.model, data.input_shape))
        self.fields.update(
            compacted=compaction.compacted,
            compacted_params=compaction.params,
            compaction=compaction.note,
            structural_macs=structural,
            structural_speedup=self.fields["dense_macs"] / max(structural, 1),
        )
        timings: dict[str, dict[str, Timing]] = {"dense": {}, "masked": {}, "compacted": {}}
        for batch in settings.latency_batches:
            inputs = probe_inputs(data.input_shape, batch, settings.device)
            timings["dense"][str(batch)] = self.store.dense_latency(self.case.dataset, self.case.arch, batch)
            with self._threads:
                timings["masked"][str(batch)] = measure(model, inputs, settings.latency_repeats)
                if compaction.compacted:
                    timings["compacted"][str(batch)] = measure(compaction.model, inputs, settings.latency_repeats)
        medians = {kind: {b: t.median_ms for b, t in by_batch.items()} for kind, by_batch in timings.items()}
        pruned = timings["compacted"] or timings["masked"]
        self.fields.update(
            dense_latency_ms=medians["dense"],
            masked_latency_ms=medians["masked"],
            compacted_latency_ms=medians["compacted"] or None,
            latency_ms={b: t.median_ms for b, t in pruned.items()},
            latency_iqr_ms={b: t.q3_ms - t.q1_ms for b, t in pruned.items()},
            measured_speedup={b: medians["dense"][b] / t.median_ms for b, t in pruned.items()},
            latency_note=synchroniser(settings.device)[1],
        )

    def robustness(self) -> None:
        """Corrupted accuracy, excess error and functional similarity of the finetuned model."""
        from .robustness.stage import cell_robustness

        settings = self.store.settings
        material = {
            "corruptions": list(settings.corruptions),
            "severities": list(settings.severities),
            "eps": list(settings.eps),
            "eps_images": settings.eps_images,
            "eps_draws": settings.eps_draws,
        }
        cached(
            self._stages,
            "robustness",
            lambda: self._stage("robustness", material, lambda: cell_robustness(self, self.finetuned())),
        )
