"""Standard datasets read from a data root in their usual on-disk formats, without torchvision.

``--prune-data-root DIR`` (or the ``PYTEST_PRUNE_DATA`` environment variable) names the folder:

======================  ==========================================================================
dataset                 files under DIR (the first folder that has them)
======================  ==========================================================================
``mnist``               ``mnist/``, ``MNIST/raw/`` or DIR: ``train-images-idx3-ubyte``,
                        ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
                        ``t10k-labels-idx1-ubyte``, each raw or ``.gz``
``fashion_mnist``       the same four IDX names in ``fashion_mnist/``, ``fashion-mnist/`` or
                        ``FashionMNIST/raw/``
``cifar10``             ``cifar-10-batches-py/data_batch_1`` … ``data_batch_5`` and ``test_batch``
                        (the "python version" pickles)
``cifar100``            ``cifar-100-python/train`` and ``test`` (fine labels, 100 classes)
``imagenet``            ``imagenet/train/<class>/*`` and ``imagenet/val/<class>/*`` (ImageFolder,
                        read with Pillow; see ``imagenet``)
======================  ==========================================================================

Pixels are scaled to [0, 1] and normalised per channel with the constants below (the customary ones of
each dataset). CIFAR trains with ``crop4+flip`` augmentation (random 32×32 crop of the 4-pixel padded
image and a horizontal flip), as ShrinkBench and Lost in Pruning do; the MNIST family trains without.
Everything is held in memory as float32: CIFAR-10 takes about 740 MB.

The CIFAR pickles are read with an unpickler that only builds NumPy arrays, so a tampered file cannot
run code. Truncated files, wrong magic numbers, mismatched counts and out-of-range labels are errors that
name the file.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..files import user_path
from ..registry import dataset
from .base import ImageDataset

NORMALISATION = {
    "mnist": ([0.1307], [0.3081]),
    "fashion_mnist": ([0.2860], [0.3530]),
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
    "cifar100": ([0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]),
    "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}
"""(mean, std) per channel of the [0, 1] pixels of each training set."""

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IDX_FOLDERS = {
    "mnist": ("mnist", "MNIST/raw", "MNIST", "."),
    "fashion_mnist": ("fashion_mnist", "fashion-mnist", "FashionMNIST/raw", "FashionMNIST"),
}


class DataError(ValueError):
    """A data root or dataset file that cannot be used; the message names it and says what to do."""


def require_root(root: Path | None, name: str, layout: str) -> Path:
    """The data root, or a DataError telling where the files of dataset ``name`` go."""
    if root is None:
        raise DataError(
            f"dataset {name!r} is read from a data root: give --prune-data-root DIR (`pytest-prune train "
            "--data-root DIR`), or set PYTEST_PRUNE_DATA; "
            f"expected layout: {layout}"
        )
    if not Path(root).is_dir():
        raise DataError(
            f"dataset {name!r}: data root {root}{_named_by_environment(root)} is not a folder; "
            f"expected layout: {layout}"
        )
    return Path(root)


def _named_by_environment(root: Path) -> str:
    """`` (PYTEST_PRUNE_DATA)`` when the environment variable names ``root``, which the user may have set long
    ago and forgotten (an option naming the same folder reads the same): the error says where to change it."""
    value = os.environ.get("PYTEST_PRUNE_DATA")
    return " (PYTEST_PRUNE_DATA)" if value and user_path(value) == Path(root) else ""


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (raw or gzipped) of unsigned bytes as an array of its recorded shape."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip by its magic bytes, whatever the name says (a browser may unpack a .gz)
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path}: cannot be read or decompressed ({exc}); the file is truncated or damaged, download it again"
        ) from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (header {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + math.prod(shape)
    if len(raw) != expected:
        raise DataError(
            f"{path}: {len(raw):,} bytes, but its header announces shape {shape} = {expected:,} bytes; "
            "the file is truncated or damaged, download it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(folder: Path, stem: str, inside: bool = True) -> Path | None:
    """The IDX file ``stem`` in ``folder``: raw or ``.gz``, named with a dot before ``idx`` as some mirrors name
    it (``train-images.idx3-ubyte``), or (``inside``) in a folder of its own name, as some archives unpack."""
    names = [stem, stem.replace("-idx", ".idx")]
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
            if inside and candidate.is_dir() and (found := _find(candidate, stem, inside=False)) is not None:
                return found
    return None


def _idx_paths(name: str, folders: list[Path], layout: str) -> list[Path]:
    """The four IDX files of dataset ``name``, all from the first folder that holds every one of them."""
    found = [[_find(folder, stem) for stem in IDX_FILES] for folder in folders]
    for paths in found:
        if all(path is not None for path in paths):
            return [path for path in paths if path is not None]
    counts = [sum(path is not None for path in paths) for paths in found]
    best = counts.index(max(counts))
    count = counts[best]
    missing = [stem for stem, path in zip(IDX_FILES, found[best], strict=True) if path is None]
    where = (
        ", ".join(str(f) for f in folders)
        if count == 0
        else f"{folders[best]}, which holds the others (the four files must share a folder)"
    )
    raise DataError(
        f"dataset {name!r}: {', '.join(missing)} (raw or .gz) not found in {where}; expected layout: {layout}"
    )


def _check_family(name: str, base: Path, path: Path, images: np.ndarray) -> None:
    """Refuse the other MNIST-family dataset's files: the mean pixel tells MNIST (0.131) from Fashion-MNIST (0.286)."""
    mean = float(images.mean()) / 255 if images.size else 0.0
    other = "fashion_mnist" if name == "mnist" else "mnist"
    own_mean, other_mean = NORMALISATION[name][0][0], NORMALISATION[other][0][0]
    if abs(mean - other_mean) < min(0.03, abs(mean - own_mean)):
        title = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
        raise DataError(
            f"dataset {name!r}: {path} looks like {title[other]}, not {title[name]} (mean pixel {mean:.3f}; "
            f"{title[other]}'s is {other_mean:.3f}, {title[name]}'s {own_mean:.3f}); put {title[name]}'s files in "
            f"{base / IDX_FOLDERS[name][0]} and {title[other]}'s in {base / IDX_FOLDERS[other][0]}"
        )


def _labels(path: Path, labels: np.ndarray, classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    whole = labels.dtype.kind in "iu" or (labels.dtype.kind == "f" and bool(np.all(labels == np.round(labels))))
    if labels.ndim != 1 or not whole:
        raise DataError(
            f"{path}: labels must be a 1-D list of class indices (integers); got shape {labels.shape} of {labels.dtype}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise DataError(f"{path}: labels span {labels.min()}..{labels.max()}, outside 0..{classes - 1}")
    return labels.astype(np.int64)


def _finish(
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    classes: int,
    description: str,
    augmentation: str = "",
) -> ImageDataset:
    mean, std = NORMALISATION[name]

    def tensor(images: np.ndarray) -> torch.Tensor:
        pixels = images if images.flags.writeable else images.copy()
        x = torch.from_numpy(np.ascontiguousarray(pixels)).to(torch.float32).div_(255.0)
        m = torch.tensor(mean).view(1, -1, 1, 1)
        s = torch.tensor(std).view(1, -1, 1, 1)
        return x.sub_(m).div_(s)

    return ImageDataset(
        tensor(train[0]),
        torch.from_numpy(train[1]),
        tensor(test[0]),
        torch.from_numpy(test[1]),
        classes,
        description,
        {"mean": list(mean), "std": list(std)},
        augmentation,
    )


def idx_dataset(name: str, root: Path | None) -> ImageDataset:
    """MNIST-format data (IDX files) of dataset ``name`` from the data root."""
    layout = f"DIR/{IDX_FOLDERS[name][0]}/{{{', '.join(IDX_FILES)}}}[.gz]"
    base = require_root(root, name, layout)
    paths = _idx_paths(name, [base / f for f in IDX_FOLDERS[name]], layout)
    arrays = [read_idx(p) for p in paths]
    for path, images in ((paths[0], arrays[0]), (paths[2], arrays[2])):
        _check_family(name, base, path, images)
    splits = []
    for (images, labels), (image_path, label_path) in (
        ((arrays[0], arrays[1]), (paths[0], paths[1])),
        ((arrays[2], arrays[3]), (paths[2], paths[3])),
    ):
        if images.ndim != 3 or labels.ndim != 1:
            raise DataError(
                f"{image_path}: expected (N, H, W) images and (N,) labels, got {images.shape}, {labels.shape}"
            )
        if len(images) != len(labels):
            raise DataError(f"{image_path} has {len(images):,} images but {label_path} has {len(labels):,} labels")
        splits.append((images[:, None], _labels(label_path, labels, 10)))
    title = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}[name]
    return _finish(name, splits[0], splits[1], 10, f"{title} from {paths[0].parent}; pixels/255, normalised")


class _Refused(pickle.UnpicklingError):
    """A pickle names a global that is not a NumPy array's (it would run code)."""


def _plain_dtype_state(dtype: np.dtype, state: Any) -> bool:
    """Whether ``state`` is what pickling ``dtype`` (or it in another byte order) writes: numpy's ``__setstate__``
    trusts its input, and a damaged state can crash the interpreter."""
    if not isinstance(state, tuple) or len(state) != 8:
        return False
    order = state[1].decode("latin-1") if isinstance(state[1], bytes) else state[1]  # a Python 2 str
    written = dtype.__reduce__()[2]
    return order in ("<", ">", "|", "=") and state[:1] + state[2:] == written[:1] + written[2:]


class _ArraysOnly(pickle._Unpickler):
    """Unpickles dicts, lists, bytes and NumPy arrays; refuses every other global (no code runs), and any dtype
    state but a plain dtype's (the pure-Python unpickler, so that each state is checked before numpy sees it)."""

    dispatch: ClassVar[dict[int, Any]] = dict(pickle._Unpickler.dispatch)
    stack: list[Any]  # the pure-Python unpickler's stack, which the type stubs leave out

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("copyreg", "_reconstructor"),
        ("_codecs", "encode"),  # protocol-2 pickles written by Python 3 encode bytes through it
        ("numpy.core.numeric", "_frombuffer"),  # protocol-5 pickles rebuild arrays from their raw bytes
        ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise _Refused(f"refusing to unpickle {module}.{name}: only dicts, lists, bytes and arrays are expected")
        return super().find_class(module, name)

    def _build(self) -> None:
        instance, state = self.stack[-2:]
        if isinstance(instance, np.dtype) and not _plain_dtype_state(instance, state):
            raise pickle.UnpicklingError(f"the state of a {instance} array type is damaged: {state!r}")
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]

    dispatch[pickle.BUILD[0]] = _build


def read_cifar_batch(path: Path, label_key: str, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python-version pickle: (N, 3, 32, 32) uint8 images and int64 labels."""
    try:
        batch = _ArraysOnly(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except _Refused as exc:
        raise DataError(
            f"{path}: {exc}; no code runs while loading, so write the batch again as a dict of NumPy arrays "
            "and lists (pickle protocol 2–5)"
        ) from None
    except Exception as exc:  # a damaged pickle fails in the unpickler's own ways (IndexError, KeyError, struct.error)
        raise DataError(
            f"{path}: not a readable CIFAR python pickle ({type(exc).__name__}: {exc}); download it again"
        ) from None
    if isinstance(batch, dict):  # the originals' keys are bytes; a batch written again by Python 3 has str keys
        batch = {key.decode("latin-1") if isinstance(key, bytes) else key: value for key, value in batch.items()}
    if not isinstance(batch, dict) or "data" not in batch or label_key not in batch:
        keys = sorted(map(str, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(f"{path}: expected a dict with 'data' and {label_key!r}, found {keys}")
    data, labels = np.asarray(batch["data"]), np.asarray(batch[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
    if len(data) != len(labels):
        raise DataError(f"{path}: {len(data):,} images but {len(labels):,} labels")
    return data.reshape(-1, 3, 32, 32), _labels(path, labels, classes)


def cifar_dataset(name: str, root: Path | None) -> ImageDataset:
    """CIFAR-10 or CIFAR-100 from the python-version pickles under the data root."""
    folder_name, train_files, test_file, label_key, classes = {
        "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "labels", 10),
        "cifar100": ("cifar-100-python", ["train"], "test", "fine_labels", 100),
    }[name]
    layout = (
        f"DIR/{folder_name}/{{{', '.join([*train_files, test_file])}}} (the CIFAR 'python version' archive, extracted)"
    )
    folder = require_root(root, name, layout) / folder_name
    missing = [f for f in [*train_files, test_file] if not (folder / f).is_file()]
    if missing:
        raise DataError(f"dataset {name!r}: {', '.join(missing)} not found in {folder}; expected layout: {layout}")
    parts = [read_cifar_batch(folder / f, label_key, classes) for f in train_files]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    del parts  # not held beside the float copy _finish makes
    test = read_cifar_batch(folder / test_file, label_key, classes)
    title = "CIFAR-10" if name == "cifar10" else "CIFAR-100"
    return _finish(name, train, test, classes, f"{title} from {folder}; pixels/255, normalised", "crop4+flip")


@dataset
def mnist(root: Path | None = None) -> ImageDataset:
    """MNIST (60,000 train / 10,000 test, 1×28×28) from IDX files under the data root."""
    return idx_dataset("mnist", root)


@dataset
def fashion_mnist(root: Path | None = None) -> ImageDataset:
    """Fashion-MNIST (60,000 / 10,000, 1×28×28) from IDX files under the data root."""
    return idx_dataset("fashion_mnist", root)


@dataset
def cifar10(root: Path | None = None) -> ImageDataset:
    """CIFAR-10 (50,000 / 10,000, 3×32×32) from the python pickles; trains with crop4+flip."""
    return cifar_dataset("cifar10", root)


@dataset
def cifar100(root: Path | None = None) -> ImageDataset:
    """CIFAR-100 (50,000 / 10,000, 3×32×32, 100 fine classes); trains with crop4+flip."""
    return cifar_dataset("cifar100", root)


IMAGENET_SIZE = 64
"""Side of the square ImageNet images held in memory (resize shorter side, centre crop)."""


@dataset
def imagenet(root: Path | None = None) -> ImageDataset:
    """An ImageFolder tree (``imagenet/train/<class>/…``, ``imagenet/val/<class>/…``), read with Pillow.

    The harness holds datasets in memory, so images are resized (shorter side) and centre-cropped to
    ``IMAGENET_SIZE`` pixels: meant for ImageNet subsets (Imagenette, Tiny-ImageNet), not the full 1.28M
    images. See ``data.folders``.
    """
    from .folders import class_folders, read_split, samples

    layout = "DIR/imagenet/train/<class>/*.JPEG and DIR/imagenet/val/<class>/*.JPEG (one folder per class)"
    folder = require_root(root, "imagenet", layout) / "imagenet"
    for split in ("train", "val"):
        if not (folder / split).is_dir():
            raise DataError(f"dataset 'imagenet': {folder / split} is not a folder; expected layout: {layout}")
        entries = list((folder / split).iterdir())
        if entries and not class_folders(folder / split):  # ILSVRC2012's val/ ships as one flat folder
            raise DataError(
                f"dataset 'imagenet': {folder / split} holds {len(entries)} files and no class folders; move each "
                f"image into {folder / split}/<class>/, named as in {folder / 'train'} (for ILSVRC2012's flat val/, "
                f"the devkit's ground truth gives each image's class); expected layout: {layout}"
            )
    classes, train = samples(folder / "train", None, layout)
    _, val = samples(folder / "val", classes, layout)  # the classes agree before any image is decoded
    return _finish(
        "imagenet",
        read_split(train, IMAGENET_SIZE),
        read_split(val, IMAGENET_SIZE),
        len(classes),
        f"ImageFolder {folder}, {IMAGENET_SIZE}px centre crops",
    )
