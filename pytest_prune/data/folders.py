"""Image-folder trees (``imagenet``) read with Pillow: one folder per class, images resized and centre-cropped.

Pillow is all it needs, so the dataset loads the same with or without torchvision installed (a dataset
read two ways would make results depend on which extras a machine has). The layout is torchvision's
ImageFolder: ``<split>/<class>/…/<image>``, classes sorted by folder name, images found at any depth
below their class folder (Tiny-ImageNet's ``train/<class>/images/``) by their file extension, hidden
folders skipped. Tiny-ImageNet's ``val/`` (``images/`` beside ``val_annotations.txt``) is read through
its annotations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .disk import DataError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""Image files, by extension (any case); other files in a class folder are left alone."""


def _images(folder: Path) -> list[Path]:
    """The image files at any depth below ``folder``, sorted, hidden folders skipped."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix.lower() in EXTENSIONS
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def class_folders(split: Path) -> list[str]:
    """The class folder names of one split, sorted (hidden folders such as ``.ipynb_checkpoints`` skipped)."""
    return sorted(entry.name for entry in split.iterdir() if entry.is_dir() and not entry.name.startswith("."))


def _annotated(split: Path, classes: list[str], layout: str) -> list[tuple[Path, int]] | None:
    """Tiny-ImageNet's val/: ``images/`` and ``val_annotations.txt`` (file, class, box) instead of class folders."""
    notes = split / "val_annotations.txt"
    if not notes.is_file() or class_folders(split) != ["images"]:
        return None
    index = {name: i for i, name in enumerate(classes)}
    samples = []
    for number, line in enumerate(notes.read_text().splitlines(), 1):
        fields = line.split("\t")
        if not line.strip():
            continue
        if len(fields) < 2 or fields[1] not in index:
            raise DataError(
                f"dataset 'imagenet': {notes} line {number}: {line[:80]!r} names no class of the train split "
                f"(expected: file<TAB>class…, the class one of train's folders); expected layout: {layout}"
            )
        samples.append((split / "images" / fields[0], index[fields[1]]))
    return sorted(samples)


def samples(split: Path, classes: list[str] | None, layout: str) -> tuple[list[str], list[tuple[Path, int]]]:
    """The classes and ``(image, class index)`` pairs of one split. ``classes``: the train split's, which the
    val split must have too; checked before any image is decoded."""
    if classes is not None and (annotated := _annotated(split, classes, layout)) is not None:
        return classes, annotated
    found = class_folders(split)
    if not found:
        raise DataError(f"dataset 'imagenet': {split} holds no class folders; expected layout: {layout}")
    if classes is not None and found != classes:
        missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
        said = [f"lacks {len(missing)} of train's classes ({', '.join(missing[:5])})" if missing else ""]
        said += [f"has {len(extra)} classes train lacks ({', '.join(extra[:5])})" if extra else ""]
        raise DataError(
            f"dataset 'imagenet': {split} {' and '.join(s for s in said if s)}; both splits need the same class "
            f"folders; expected layout: {layout}"
        )
    pairs = []
    for label, name in enumerate(found):
        images = _images(split / name)
        if not images:
            raise DataError(
                f"dataset 'imagenet': class folder {split / name} holds no images ({', '.join(EXTENSIONS)}); "
                f"add its images or remove the folder from both splits; expected layout: {layout}"
            )
        pairs += [(path, label) for path in images]
    return found, pairs


def _rgb(image: Any, path: Path) -> Any:
    """``image`` as 8-bit RGB. 16-bit grey (Pillow's modes ``I;16…``, and ``I``, as Pillow before 10 opened
    16-bit PNGs) is scaled by 255/65535 to the nearest level: Pillow's own conversion clips every value above
    255 to white, which turns a 16-bit scan into a nearly binary image. A float image (mode ``F``) has no
    defined range, so it is a DataError, as is an ``I`` image with values outside 0–65535."""
    from PIL import Image

    if image.mode == "F":
        raise DataError(
            f"dataset 'imagenet': {path} is a 32-bit float image, whose value range is not defined; save it with "
            "8 or 16 bits per value"
        )
    if image.mode == "I" or image.mode.startswith("I;16"):
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(
                f"dataset 'imagenet': {path} is a 32-bit integer image with values from {values.min()} to "
                f"{values.max()}, outside 16 bits; save it with 8 or 16 bits per value"
            )
        image = Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8))  # round(v · 255/65535)
    return image.convert("RGB")


def square(path: Path, size: int) -> np.ndarray:
    """One image as (3, size, size) uint8 RGB (``_rgb``): its shorter side resized to ``size`` (bilinear,
    antialiased as Pillow resizes), then the centre crop; a file Pillow cannot read is a DataError naming it."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            image = _rgb(opened, path)
    except DataError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:  # UnidentifiedImageError is an OSError
        raise DataError(f"dataset 'imagenet': {path}: {exc}; replace or remove the file") from None
    width, height = image.size
    scale = size / min(width, height)
    resized = (max(size, round(width * scale)), max(size, round(height * scale)))
    if resized != image.size:
        image = image.resize(resized, Image.Resampling.BILINEAR)
    left, top = (resized[0] - size) // 2, (resized[1] - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size))).transpose(2, 0, 1)


def read_split(pairs: list[tuple[Path, int]], size: int) -> tuple[np.ndarray, np.ndarray]:
    """The images of ``pairs`` as (N, 3, size, size) uint8, filled in place (no list of images beside it), and
    their labels."""
    x = np.empty((len(pairs), 3, size, size), dtype=np.uint8)
    for i, (path, _) in enumerate(pairs):
        x[i] = square(path, size)
    return x, np.asarray([label for _, label in pairs], dtype=np.int64)
