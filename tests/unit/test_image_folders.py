"""The ``imagenet`` ImageFolder dataset, read with Pillow from real image files written here."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from pytest_prune.data.base import load_dataset
from pytest_prune.data.disk import IMAGENET_SIZE, DataError
from pytest_prune.data.folders import square
from pytest_prune.registry import load_builtins

load_builtins()


def write(path, size=(80, 96), mode="RGB", seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.RandomState(seed).randint(0, 256, (size[1], size[0], 3)).astype(np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)
    return path


def tree(root, splits=(("train", 3), ("val", 2)), classes=("cat", "dog")):
    for split, count in splits:
        for label in classes:
            for i in range(count):
                write(root / "imagenet" / split / label / f"{i}.png", seed=i)


def test_an_image_folder_tree_loads_without_torchvision(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    tree(tmp_path)
    write(tmp_path / "imagenet" / "train" / "cat" / "grey.JPEG", mode="L", seed=5)  # any mode, any case
    (tmp_path / "imagenet" / "train" / "cat" / "notes.txt").write_text("not an image")
    write(tmp_path / "imagenet" / "train" / ".ipynb_checkpoints" / "x.png")  # hidden: no class
    data = load_dataset("imagenet", tmp_path)
    data.validate("imagenet")
    assert data.train_x.shape == (7, 3, IMAGENET_SIZE, IMAGENET_SIZE) and data.test_x.shape == (4, 3, 64, 64)
    assert data.num_classes == 2 and data.train_y.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert data.test_y.tolist() == [0, 0, 1, 1]


def test_an_image_is_resized_by_its_shorter_side_and_centre_cropped(tmp_path):
    """A 200×100 image, bright only in its middle columns 50–149: resized to 128×64, its centre 64 columns are
    those (a crop from the left or no crop would hold dark columns)."""
    pixels = np.zeros((100, 200, 3), np.uint8)
    pixels[:, 50:150] = 200
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    out = square(tmp_path / "wide.png", 64)
    assert out.shape == (3, 64, 64) and out.dtype == np.uint8
    assert (out[:, :, 2:62] == 200).all(), out[0, 0]


def test_a_damaged_image_and_an_empty_class_are_named(tmp_path):
    tree(tmp_path)
    broken = tmp_path / "imagenet" / "train" / "dog" / "9.png"
    broken.write_bytes(b"\x89PNG truncated")
    with pytest.raises(DataError, match=f"dataset 'imagenet': {broken}: cannot identify image file.*replace or remove"):
        load_dataset("imagenet", tmp_path)
    broken.unlink()
    for path in (tmp_path / "imagenet" / "val" / "dog").iterdir():
        path.unlink()
    with pytest.raises(DataError, match=r"class folder .*imagenet/val/dog holds no images \(.jpg"):
        load_dataset("imagenet", tmp_path)


def test_splits_with_other_classes_are_named_before_any_image_is_decoded(tmp_path, monkeypatch):
    tree(tmp_path, classes=("cat", "dog", "owl"))
    for path in (tmp_path / "imagenet" / "val" / "owl").iterdir():
        path.unlink()
    (tmp_path / "imagenet" / "val" / "owl").rmdir()
    write(tmp_path / "imagenet" / "val" / "yak" / "0.png")

    def decoded(*args):
        raise AssertionError("an image was decoded before the classes were compared")

    monkeypatch.setattr("pytest_prune.data.folders.square", decoded)
    with pytest.raises(DataError, match=r"imagenet/val lacks 1 of train's classes \(owl\) and has 1 classes train "):
        load_dataset("imagenet", tmp_path)


def test_tiny_imagenet_s_annotated_val_folder_loads(tmp_path):
    """Tiny-ImageNet: train/<class>/images/*.JPEG, and val/images/* with val_annotations.txt naming each class."""
    for label in ("n01", "n02"):
        for i in range(2):
            write(tmp_path / "imagenet" / "train" / label / "images" / f"{label}_{i}.JPEG", seed=i)
    lines = []
    for i, label in enumerate(("n02", "n01", "n02")):
        write(tmp_path / "imagenet" / "val" / "images" / f"val_{i}.JPEG", seed=i)
        lines.append(f"val_{i}.JPEG\t{label}\t0\t0\t10\t10")
    (tmp_path / "imagenet" / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    data = load_dataset("imagenet", tmp_path)
    assert data.train_y.tolist() == [0, 0, 1, 1] and data.test_y.tolist() == [1, 0, 1]
    (tmp_path / "imagenet" / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn09\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match=r"val_annotations.txt line 1: .* names no class of the train split"):
        load_dataset("imagenet", tmp_path)


def test_a_missing_split_or_a_flat_val_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="imagenet/train is not a folder"):
        load_dataset("imagenet", tmp_path)
    (tmp_path / "imagenet" / "train").mkdir(parents=True)
    (tmp_path / "imagenet" / "val").mkdir()
    with pytest.raises(DataError, match=r"imagenet/train holds no class folders; expected layout"):
        load_dataset("imagenet", tmp_path)
    (tmp_path / "imagenet" / "val").rmdir()
    (tmp_path / "imagenet" / "train" / "n01440764").mkdir()
    (tmp_path / "imagenet" / "val").mkdir()
    for i in (1, 2):
        (tmp_path / "imagenet" / "val" / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(b"")
    with pytest.raises(DataError, match=r"imagenet/val holds 2 files and no class folders; move each image into "):
        load_dataset("imagenet", tmp_path)


def test_a_16_bit_grey_image_is_scaled_to_8_bits_not_clipped_to_white(tmp_path):
    """A 16-bit PNG ramp: Pillow's own conversion clipped every value above 255 to white (all but the first
    column of this ramp); scaled by 255/65535, the columns keep their order and the top is white."""
    ramp = np.tile(np.linspace(0, 65535, 64).round().astype(np.uint16), (64, 1))
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as opened:
        assert opened.mode.startswith("I"), opened.mode  # Pillow opens it as 16-bit grey (I;16, or I before 10)
    out = square(tmp_path / "deep.png", 64)
    expected = (ramp.astype(np.int64) * 255 + 32767) // 65535
    assert (out == expected[None]).all(), out[0, 0]
    assert out[0, 0, 0] == 0 and out[0, 0, -1] == 255 and 120 <= out[0, 0, 32] <= 135


def test_images_without_a_defined_8_or_16_bit_range_are_named(tmp_path):
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(DataError, match=r"float.tif is a 32-bit float image, whose value range is not defined"):
        square(tmp_path / "float.tif", 8)
    Image.fromarray(np.full((8, 8), 70000, np.int32)).save(tmp_path / "wide.tif")
    with pytest.raises(DataError, match=r"wide.tif is a 32-bit integer image with values from 70000 to 70000"):
        square(tmp_path / "wide.tif", 8)
