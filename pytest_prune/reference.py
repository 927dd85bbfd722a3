"""Pretrained dense models: shipped reference weights (sha256-verified) or trained once and cached on disk.

The shipped weights live in ``reference_models/`` (installed as ``pytest_prune.reference_models``) with a
``manifest.json`` recording, per ``dataset/arch``, the file, its sha256, the measured top-1/top-5, the
recipe, the seed, the thread count and the versions that produced it. ``pytest-prune train`` writes them.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .cache import data_digest, harness_source
from .data.base import ImageDataset, load_dataset
from .files import atomic_write_bytes, file_lock
from .progress import Progress
from .recipes import PRETRAIN, Recipe, pretrain_recipe
from .registry import ARCHITECTURES, DATASETS
from .sources import source_of
from .train import evaluate, seed_everything, torch_threads, train

MANIFEST = "manifest.json"
REFERENCE_SEED = 0
"""The pretrained parent of every cell is trained with this seed: the pretrained weights are not a matrix axis."""

SEPARATE_SEED = 1
"""A second, independently trained dense model of each pair (this seed) is the "different model" reference of
functional similarity: how much two dense networks that were trained apart agree."""


def manifest_key(dataset_name: str, arch: str, seed: int = REFERENCE_SEED) -> str:
    """``dataset/arch`` for the parent, ``dataset/arch/seedN`` for a model trained with another seed."""
    return f"{dataset_name}/{arch}" + ("" if seed == REFERENCE_SEED else f"/seed{seed}")


class WeightsError(RuntimeError):
    """Shipped or cached weights that are missing, tampered with or do not fit the architecture."""


@dataclass(frozen=True)
class Pretrained:
    """A dense reference model, where it came from, and its sha256."""

    model: nn.Module
    sha256: str
    source: str  # "shipped" | "cached" | "trained"
    path: Path

    @property
    def origin(self) -> str:
        """``shipped``, or ``trained`` by pytest-prune (in this process or, cached, in an earlier one): what a
        result record states, the same whichever process of a run trained the weights first."""
        return "shipped" if self.source == "shipped" else "trained"


def reference_dir() -> Path:
    """The folder of shipped weights and their manifest."""
    return Path(str(resources.files("pytest_prune.reference_models")))


def read_manifest(folder: Path | None = None) -> dict[str, Any]:
    """The manifest's ``models`` mapping (``{"dataset/arch": entry}``); empty when there is none."""
    path = (folder or reference_dir()) / MANIFEST
    if not path.is_file():
        return {}
    return json.loads(path.read_text())["models"]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_model(arch: str, data: ImageDataset, dataset_name: str) -> nn.Module:
    """Instantiate ``arch`` for the dataset's input shape and classes; a clear error if it does not fit."""
    model = ARCHITECTURES.get(arch)(data.input_shape, data.num_classes)
    try:
        with torch.no_grad():
            model.eval()
            out = model(data.test_x[:2].cpu())
    except Exception as exc:
        raise WeightsError(
            f"architecture {arch!r} does not accept dataset {dataset_name!r} inputs of shape "
            f"{data.input_shape}: {type(exc).__name__}: {exc}"
        ) from exc
    if tuple(out.shape) != (min(2, len(data.test_x)), data.num_classes):
        raise WeightsError(
            f"architecture {arch!r} returns shape {tuple(out.shape)} for dataset {dataset_name!r}; "
            f"expected (batch, {data.num_classes}) logits"
        )
    return model


def _load_verified(model: nn.Module, path: Path, expected_sha: str, what: str) -> None:
    if not path.is_file():
        raise WeightsError(f"{what}: weights file {path} is missing; reinstall pytest-prune or retrain it")
    actual = sha256_file(path)
    if actual != expected_sha:
        raise WeightsError(
            f"{what}: weights file {path} has sha256 {actual}, expected {expected_sha}; "
            "the file was modified or truncated: reinstall it or retrain with `pytest-prune train`"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(f"{what}: {path} does not fit the architecture: {exc}") from exc


def _module_source(registry: Any, name: str) -> str:
    """sha256 of the files that define and register a factory (their helpers and constants count), or its source."""
    return source_of(registry.get(name), registry.home(name)) or registry.source_hash(name)


def training_key(
    dataset_name: str,
    arch: str,
    recipe: Recipe,
    threads: int,
    seed: int = REFERENCE_SEED,
    data_sha: str | None = None,
) -> str:
    """Content key of a trained reference: what decides its weights. The files defining the architecture and
    the dataset, the data itself (``data_sha``, when known), pytest-prune's own code (training, recipes),
    the recipe, seed, threads and torch."""
    payload = {
        "dataset": dataset_name,
        "dataset_source": _module_source(DATASETS, dataset_name),
        "data": data_sha,
        "arch": arch,
        "arch_source": _module_source(ARCHITECTURES, arch),
        "harness": harness_source(),
        "recipe": recipe.to_dict(),
        "seed": seed,
        "threads": threads,
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def train_reference(
    model: nn.Module,
    data: ImageDataset,
    recipe: Recipe = PRETRAIN,
    threads: int = 1,
    progress: Callable[[int, float], None] | None = None,
    seed: int = REFERENCE_SEED,
) -> bytes:
    """Train a reference model with the standard recipe; returns its serialised state dict."""
    with torch_threads(threads):
        seed_everything(seed)
        train(model, data, recipe, seed, progress=progress)
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    return buffer.getvalue()


def weights_identity(dataset_name: str, arch: str, threads: int = 1, seed: int = REFERENCE_SEED) -> str:
    """What fixes the weights ``load_pretrained`` gives, known without loading or training them: the shipped
    file's sha256, or the content key of the training that makes them (less the data, which keys every cell)."""
    entry = read_manifest().get(manifest_key(dataset_name, arch, seed))
    if entry is not None:
        return f"shipped {entry['sha256']}"
    return f"trained {training_key(dataset_name, arch, pretrain_recipe(dataset_name, arch), threads, seed)}"


def load_pretrained(
    dataset_name: str,
    arch: str,
    data: ImageDataset,
    cache_dir: Path,
    threads: int = 1,
    seed: int = REFERENCE_SEED,
    progress: Progress | None = None,
) -> Pretrained:
    """The dense model for (dataset, arch): shipped weights if the manifest has them, else trained once and cached.

    ``seed`` picks the training seed: the parent's by default, ``SEPARATE_SEED`` for the independent model.
    Trained weights are cached under ``training_key`` with the digest of ``data``, so other data or an edited
    architecture or dataset file trains anew.
    """
    key = manifest_key(dataset_name, arch, seed)
    what = f"pretrained {key}"
    seed_everything(seed)  # architectures initialise from the global generator
    model = build_model(arch, data, dataset_name)
    entry = read_manifest().get(key)
    if entry is not None:
        path = reference_dir() / entry["file"]
        _load_verified(model, path, entry["sha256"], what)
        return Pretrained(model.eval(), entry["sha256"], "shipped", path)
    recipe = pretrain_recipe(dataset_name, arch)
    digest_key = training_key(dataset_name, arch, recipe, threads, seed, data_digest(data))
    path = cache_dir / "pretrained" / f"{key.replace('/', '-')}-{digest_key[:16]}.pt"
    sidecar = path.with_suffix(".sha256")
    with file_lock(path.with_suffix(".lock")):
        if path.is_file() and sidecar.is_file():
            try:
                _load_verified(model, path, sidecar.read_text().strip(), what)
                return Pretrained(model.eval(), sidecar.read_text().strip(), "cached", path)
            except WeightsError:
                seed_everything(seed)  # a corrupt cache entry: retrain it
                model = build_model(arch, data, dataset_name)
        report = None if progress is None else progress.callback(f"training reference {key}", recipe.epochs)
        payload = train_reference(model, data, recipe, threads, report, seed)
        digest = hashlib.sha256(payload).hexdigest()
        try:
            atomic_write_bytes(path, payload)
            atomic_write_bytes(sidecar, digest.encode())
        except OSError as exc:  # the trained model is kept for this session; the next one trains it again
            warnings.warn(f"pytest-prune: reference {key} not cached ({exc}); it is used uncached", stacklevel=2)
    return Pretrained(model.eval(), digest, "trained", path)


def versions() -> dict[str, str]:
    """Versions that determine results: Python, torch, numpy, pytest-prune, platform."""
    import numpy

    from . import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pytest_prune": __version__,
        "platform": f"{sys.platform}-{platform.machine()}",
    }


def write_reference(
    folder: Path,
    dataset_name: str,
    arch: str,
    recipe: Recipe | None = None,
    threads: int = 1,
    progress: Callable[[int, float], None] | None = None,
    seed: int = REFERENCE_SEED,
    data_root: Path | None = None,
) -> dict[str, Any]:
    """Train the reference model for (dataset, arch), save it in ``folder`` and record it in the manifest.

    ``recipe`` defaults to the pair's standard pretraining recipe (``recipes.pretrain_recipe``).
    """
    recipe = recipe or pretrain_recipe(dataset_name, arch)
    data = load_dataset(dataset_name, data_root)
    data.validate(dataset_name)
    seed_everything(seed)
    model = build_model(arch, data, dataset_name)
    payload = train_reference(model, data, recipe, threads, progress, seed)
    top1, top5 = evaluate(model, data.test_x, data.test_y)
    key = manifest_key(dataset_name, arch, seed)
    name = key.replace("/", "-") + ".pt"
    atomic_write_bytes(folder / name, payload)
    entry = {
        "file": name,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "top1": round(top1, 4),
        "top5": round(top5, 4),
        "params": sum(p.numel() for p in model.parameters()),
        "recipe": recipe.to_dict(),
        "seed": seed,
        "threads": threads,
        "versions": versions(),
        "trained": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "command": f"pytest-prune train --dataset {dataset_name} --arch {arch}"
        + ("" if seed == REFERENCE_SEED else f" --seed {seed}"),
    }
    with file_lock(folder / ".manifest.lock"):
        models = read_manifest(folder)
        models[key] = entry
        document = {"schema": "pytest-prune-manifest/1", "models": dict(sorted(models.items()))}
        atomic_write_bytes(folder / MANIFEST, (json.dumps(document, indent=2) + "\n").encode())
    return entry
