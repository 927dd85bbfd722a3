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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .cache import CellCache, CorruptEntry, data_digest
from .data.base import Batches, ImageDataset, load_dataset
from .errors import raised
from .masks import (
    MaskEnforcer,
    MaskError,
    amount_for_model,
    check_compression,
    check_contract,
    combine,
    derive_masks,
    zeros_outside,
)
from .matrix import Case
from .metrics import count_macs, count_params, macs_summary, uncounted_modules
from .metrics.compaction import Compaction, compact
from .progress import Progress
from .reference import Pretrained, load_pretrained
from .registry import PRUNERS
from .settings import Settings
from .staging import CACHE_FIELDS, CachedStages, cached
from .train import evaluate, finetune_seed, seed_everything, torch_state_kept, torch_threads, train

CELL_CACHE_SIZE = 8
PRUNING_BATCH = 128
"""Batch size of a pruner's ``data``: fixed, so gradient or activation scores do not follow the finetuning recipe."""


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
        self._dense_robustness: dict[tuple[str, str], Any] = {}
        self._cells: OrderedDict[Case, Cell] = OrderedDict()

    def dataset(self, name: str) -> ImageDataset:
        """The dataset on the configured device, loaded once per session."""

        def make() -> ImageDataset:
            data = load_dataset(name, self.settings.data_root)
            data.validate(name)
            if self.settings.robustness:  # data the corruptions cannot work on errors its cells before training
                from .robustness.stage import pixel_space

                pixel_space(data, name)
            return data.to(self.settings.device)

        return cached(self._datasets, name, make)

    def dataset_digest(self, name: str) -> str:
        """sha256 of the dataset's tensors (computed once, on the first request: the cell cache keys by it)."""
        return cached(self._dataset_digests, name, lambda: data_digest(self.dataset(name)))

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


class Cell(CachedStages):
    """The lazily computed stages of one case (prune, finetune, speed, robustness); ``fields`` accumulates
    the result record, and every stage goes through the cell cache (``staging.CachedStages``)."""

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
            weights=dense.pretrained.origin,
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
        held = zeros_outside(model)  # zeros no pruner made: counted in every round's amount, kept zero
        history: list[dict[str, Any]] = []
        self.fields["schedule"] = self.store.settings.schedule
        # iterative:N prunes to compression**(k/N) in round k and finetunes between rounds
        for k in range(1, rounds + 1):
            if k > 1:
                history[-1]["top1"], _ = self._train(model, masks, k - 1)
            masks = self._prune_round(model, case.compression ** (k / rounds), masks, held, k)
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
        self,
        model: nn.Module,
        target: float,
        previous: dict[str, torch.Tensor],
        held: dict[str, torch.Tensor],
        round_: int,
    ) -> dict[str, torch.Tensor]:
        """Prune ``model`` in place to ``target``; returns every mask so far (a removed weight stays removed),
        ``held`` zeros (``zeros_outside``) included."""
        case, settings = self.case, self.store.settings
        where = case.id if settings.rounds == 1 else f"{case.id}, round {round_} of {settings.schedule}"
        dense, data = self.store.dense(case.dataset, case.arch), self.store.dataset(case.dataset)
        try:
            amount = amount_for_model(model, target, held)
        except ValueError as exc:
            raise MaskError(f"{where}: {exc}") from None
        self.fields["amount"] = amount
        fn = PRUNERS.get(case.pruner)
        batches = Batches(data.train_x, data.train_y, PRUNING_BATCH, case.seed)
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        work = copy.deepcopy(model)  # only its masks reach ``model``: not BatchNorm statistics, hooks, frozen
        # parameters, a dtype or mode the pruner set, nor the parameter order torch's prune.remove leaves
        with self._threads:
            seed_everything(case.seed)
            start = time.perf_counter()
            try:
                with torch_state_kept():
                    returned = fn(work, amount, batches)
            except (Exception, SystemExit) as exc:  # sys.exit in a pruner: this cell's error, not the session's end
                raise PrunerError(f"pruner {case.pruner!r} {raised(exc)} (cell {where}, amount {amount:.4f})") from exc
            try:
                masks = derive_masks(work, returned, before)
                check_contract(work, masks, before)
            except MaskError as exc:
                raise MaskError(f"{where}: pruner {case.pruner!r}: {exc}") from None
            device = {name: p.device for name, p in model.named_parameters()}  # the pruner may have moved its copy
            masks = combine({name: mask.to(device[name]) for name, mask in masks.items()}, previous, held)
            MaskEnforcer(model, masks)()
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

    def _train(self, model: nn.Module, masks: dict[str, torch.Tensor], round_: int) -> tuple[float, float]:
        """Finetune ``model`` after pruning round ``round_``, in place with ``masks`` enforced after every step;
        returns its top-1 and top-5."""
        settings, data = self.store.settings, self.store.dataset(self.case.dataset)
        enforce = MaskEnforcer(model, masks)
        recipe = settings.finetune_recipe
        with self._threads:
            seed = finetune_seed(self.case.seed, round_)
            seed_everything(seed)  # dropout and other draws differ between rounds too
            start = time.perf_counter()
            label = f"{self.case.id}: finetuning"
            train(model, data, recipe, seed, enforce, self.store.progress.callback(label, recipe.epochs))
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
        self.fields["top1"], self.fields["top5"] = self._train(model, pruned.masks, self.store.settings.rounds)
        if "rounds" in self.fields:
            self.fields["rounds"][-1]["top1"] = self.fields["top1"]
        self._note_stage("finetune", served=False)
        if entry is not None:
            stored = {k: v for k, v in self.fields.items() if k not in CACHE_FIELDS}
            entry.stages = {"finetune": {"key": entry.key, "fields": copy.deepcopy(stored)}}
            self.store.cells.save(entry, model.state_dict())
        return model

    def compaction(self) -> Compaction:
        """The finetuned model physically compacted where removable filters allow (else the masked model)."""

        def make() -> Compaction:
            with self._threads:
                return compact(self.finetuned(), self.store.dataset(self.case.dataset).test_x[:256])

        return cached(self._stages, "compaction", make)

    def speed(self) -> None:
        """Count the structural MACs of the compacted model and time the dense, masked and compacted models."""
        from .metrics.stage import cell_speed

        settings = self.store.settings
        material = {"latency_batches": list(settings.latency_batches), "latency_repeats": settings.latency_repeats}
        cached(self._stages, "speed", lambda: self._stage("speed", material, lambda: cell_speed(self)))

    def robustness(self) -> None:
        """Corrupted accuracy, excess error and functional similarity of the finetuned model."""
        from .robustness.stage import cell_robustness

        material = robustness_material(self.store.settings, self.case)
        cached(
            self._stages,
            "robustness",
            lambda: self._stage("robustness", material, lambda: cell_robustness(self, self.finetuned())),
        )


def robustness_material(settings: Settings, case: Case) -> dict[str, Any]:
    """What the robustness stage's numbers depend on beyond the finetuned model: the suite's settings, the
    separately trained model (its similarity to the parent is in the record) and Pillow's codecs (JPEG and
    pixelate are Pillow's, to the bit)."""
    from .reference import SEPARATE_SEED, weights_identity
    from .robustness.pillow_exact import codec_versions

    return {
        "corruptions": list(settings.corruptions),
        "severities": list(settings.severities),
        "eps": list(settings.eps),
        "eps_images": settings.eps_images,
        "eps_draws": settings.eps_draws,
        "reference": weights_identity(case.dataset, case.arch, settings.threads, SEPARATE_SEED),
        "codecs": codec_versions(),
    }
