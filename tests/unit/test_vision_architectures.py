"""CIFAR architectures against published counts, and the torchvision paths through a stand-in module.

torchvision's wheels on the CI machine are CUDA builds that fail to import beside the CPU torch, so the
``tv:NAME`` architectures and the ``imagenet`` ImageFolder dataset are exercised here with a stand-in
``torchvision`` that offers exactly the calls pytest-prune makes.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from pytest_prune import prunable
from pytest_prune.data.base import load_dataset
from pytest_prune.data.disk import DataError
from pytest_prune.metrics import count_macs, macs_summary
from pytest_prune.reference import build_model
from pytest_prune.registry import ARCHITECTURES, SpecError, load_builtins

load_builtins()

PUBLISHED = {  # params (BatchNorm included) and conv+linear MACs on 3×32×32, 10 classes
    "resnet20": (269_722, 40_551_040),
    "resnet32": (464_154, 68_862_592),
    "resnet44": (658_586, 97_174_144),
    "resnet56": (853_018, 125_485_696),
    "resnet110": (1_727_962, 252_887_680),
    "vgg16": (14_991_946, 313_463_808),
}


@pytest.mark.parametrize("arch", sorted(PUBLISHED))
def test_cifar_architectures_match_published_counts(arch):
    model = ARCHITECTURES.get(arch)((3, 32, 32), 10)
    macs, _ = macs_summary(count_macs(model, (3, 32, 32)))
    assert (sum(p.numel() for p in model.parameters()), macs) == PUBLISHED[arch]


@pytest.mark.parametrize("arch", ["vgg11", "vgg19", "resnet56"])
def test_cifar_architectures_adapt_to_100_classes_and_leave_the_classifier_out(arch):
    model = ARCHITECTURES.get(arch)((3, 32, 32), 100)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
    assert not any(getattr(m, "is_classifier", False) for m, _ in prunable(model))


class TinyNet(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


class FakeImageFolder:
    """root/<class>/<file>.npy images (H, W, 3) uint8; the transform is applied like torchvision's, and failures
    are raised as torchvision's: FileNotFoundError for a class without images, OSError for a damaged image (PIL's
    UnidentifiedImageError is one)."""

    def __init__(self, root, transform=None):
        from pathlib import Path

        self.classes = sorted(p.name for p in Path(root).iterdir() if p.is_dir())
        self.samples = [(f, i) for i, c in enumerate(self.classes) for f in sorted((Path(root) / c).glob("*.npy"))]
        if empty := sorted(set(self.classes) - {self.classes[i] for _, i in self.samples}):
            raise FileNotFoundError(f"Found no valid file for the classes {', '.join(empty)}. ")
        self.transform = transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, label = self.samples[index]
        try:
            image = np.load(path)
        except ValueError:
            raise OSError(f"cannot identify image file {str(path)!r}") from None
        return (self.transform(image) if self.transform else image), label


@pytest.fixture
def stand_in(monkeypatch):
    """A minimal torchvision: models.list_models/get_model, datasets.ImageFolder, transforms."""
    tv = types.ModuleType("torchvision")
    models = types.ModuleType("torchvision.models")
    models.list_models = lambda module=None: ["tinynet"]
    models.get_model = lambda name, weights=None, num_classes=1000: TinyNet(num_classes)
    datasets = types.ModuleType("torchvision.datasets")
    datasets.ImageFolder = FakeImageFolder
    transforms = types.ModuleType("torchvision.transforms")
    transforms.Compose = lambda steps: lambda image: [image := step(image) for step in steps][-1]
    transforms.Resize = lambda size: lambda image: image[:size, :size]
    transforms.CenterCrop = lambda size: lambda image: image[:size, :size]
    transforms.PILToTensor = lambda: lambda image: torch.from_numpy(image).permute(2, 0, 1).contiguous()
    tv.models, tv.datasets, tv.transforms = models, datasets, transforms
    for name, module in (("torchvision", tv), ("torchvision.models", models), ("torchvision.datasets", datasets)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "torchvision.transforms", transforms)
    return tv


def test_tv_names_build_torchvision_models_for_the_dataset(stand_in):
    factory = ARCHITECTURES.get("tv:tinynet")
    model = factory((3, 32, 32), 7)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 7)
    assert model.fc.is_classifier and [m for m, _ in prunable(model)] == [model.conv]
    assert ARCHITECTURES.resolve("tv:tinynet") == ["tv:tinynet"]


def test_an_unknown_tv_model_lists_what_torchvision_has(stand_in):
    with pytest.raises(ValueError, match="torchvision has no classification model 'nonet'; available: tinynet"):
        ARCHITECTURES.get("tv:nonet")((3, 32, 32), 10)


def test_without_torchvision_tv_models_say_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(ImportError, match=r"'tv:resnet18' needs torchvision \(pip install 'pytest-prune\[vision\]'\)"):
        ARCHITECTURES.get("tv:resnet18")((3, 32, 32), 10)
    with pytest.raises(SpecError, match="unknown architecture 'resnet57'"):
        ARCHITECTURES.get("resnet57")


def test_imagenet_imagefolder_loads_through_torchvision(stand_in, tmp_path):
    rng = np.random.RandomState(0)
    for split, count in (("train", 3), ("val", 2)):
        for label in ("cat", "dog"):
            folder = tmp_path / "imagenet" / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                np.save(folder / f"{i}.npy", rng.randint(0, 256, (80, 80, 3)).astype(np.uint8))
    data = load_dataset("imagenet", tmp_path)
    data.validate("imagenet")
    assert data.train_x.shape == (6, 3, 64, 64) and data.test_x.shape == (4, 3, 64, 64)
    assert data.num_classes == 2 and data.test_y.tolist() == [0, 0, 1, 1]


def test_imagenet_names_the_damaged_image_and_the_empty_class(stand_in, tmp_path):
    for split in ("train", "val"):
        for label in ("cat", "dog"):
            (tmp_path / "imagenet" / split / label).mkdir(parents=True)
            np.save(tmp_path / "imagenet" / split / label / "0.npy", np.zeros((64, 64, 3), np.uint8))
    broken = tmp_path / "imagenet" / "train" / "dog" / "1.npy"
    broken.write_bytes(b"\x93NUMPY truncated")
    with pytest.raises(
        DataError, match=f"dataset 'imagenet': {broken}: cannot identify image file .*replace or remove"
    ):
        load_dataset("imagenet", tmp_path)
    broken.unlink()
    (tmp_path / "imagenet" / "val" / "dog" / "0.npy").unlink()
    with pytest.raises(DataError, match=r"imagenet/val: Found no valid file for the classes dog.*expected layout: DIR"):
        load_dataset("imagenet", tmp_path)


def test_imagenet_without_torchvision_or_folders_is_a_clear_error(monkeypatch, tmp_path):
    with pytest.raises(DataError, match="imagenet/train is not a folder"):
        load_dataset("imagenet", tmp_path)
    (tmp_path / "imagenet" / "train").mkdir(parents=True)
    (tmp_path / "imagenet" / "val").mkdir()
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(DataError, match=r"needs torchvision \(pip install 'pytest-prune\[vision\]'\)"):
        load_dataset("imagenet", tmp_path)


def test_a_flat_imagenet_val_folder_is_told_to_sort_its_images_into_classes(tmp_path):
    (tmp_path / "imagenet" / "train" / "n01440764").mkdir(parents=True)
    (tmp_path / "imagenet" / "val").mkdir()
    for i in (1, 2):
        (tmp_path / "imagenet" / "val" / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(b"")
    with pytest.raises(DataError, match=r"imagenet/val holds 2 files and no class folders; move each image into "):
        load_dataset("imagenet", tmp_path)


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 20, 24), (3, 64, 64)])
def test_the_vggs_adapt_to_channels_and_image_size(shape):
    """Rounding-up pools and a global average pool: MNIST's 28×28 goes 14, 7, 4, 2, 1 (it used to reach 0).
    On 3×32×32 nothing changes (the parameter and MAC counts above)."""
    from pytest_prune.data.base import ImageDataset

    data = ImageDataset(
        torch.rand(4, *shape),
        torch.zeros(4, dtype=torch.int64),
        torch.rand(2, *shape),
        torch.zeros(2, dtype=torch.int64),
        7,
    )
    model = build_model("vgg11", data, "user").eval()
    assert model(data.test_x).shape == (2, 7)
