"""CIFAR architectures against published counts, and the torchvision paths through a stand-in module.

torchvision's wheels on the CI machine are CUDA builds that fail to import beside the CPU torch, so the
``tv:NAME`` architectures are exercised here with a stand-in ``torchvision`` that offers exactly the calls
pytest-prune makes. (The ``imagenet`` dataset needs only Pillow: ``test_image_folders``.)
"""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from pytest_prune import prunable
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


@pytest.fixture
def stand_in(monkeypatch):
    """A minimal torchvision: models.list_models/get_model."""
    tv = types.ModuleType("torchvision")
    models = types.ModuleType("torchvision.models")
    models.list_models = lambda module=None: ["tinynet"]
    models.get_model = lambda name, weights=None, num_classes=1000: TinyNet(num_classes)
    tv.models = models
    for name, module in (("torchvision", tv), ("torchvision.models", models)):
        monkeypatch.setitem(sys.modules, name, module)
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
