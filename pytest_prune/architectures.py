"""Built-in architectures. Each factory takes ``(input_shape, num_classes)`` with input_shape = (C, H, W).

The final classifier of each model carries ``is_classifier = True`` (ShrinkBench's convention), which is
how ``prunable()`` leaves it out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import MissingExtra
from .registry import ARCHITECTURES, SpecError, architecture


def _classifier(in_features: int, num_classes: int) -> nn.Linear:
    layer = nn.Linear(in_features, num_classes)
    layer.is_classifier = True  # type: ignore[assignment]  # Module.__setattr__ takes any value at runtime
    return layer


class LeNet300100(nn.Module):
    """LeNet-300-100 (LeCun et al. 1998): fully connected 300 → 100 → classes on flattened pixels."""

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        features = 1
        for size in input_shape:
            features *= int(size)
        self.fc1 = nn.Linear(features, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = _classifier(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class LeNet5(nn.Module):
    """Caffe LeNet-5: conv 20@5×5, max-pool, conv 50@5×5, max-pool, fc 500, fc classes.

    On 28×28 MNIST this is the 431,080-parameter network of Han et al.; for images smaller than
    16 px the convolutions pad by 2 so the feature maps never vanish.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        channels, height, width = (int(s) for s in input_shape)
        pad = 0 if min(height, width) >= 16 else 2
        self.conv1 = nn.Conv2d(channels, 20, 5, padding=pad)
        self.conv2 = nn.Conv2d(20, 50, 5, padding=pad)

        def shrink(size: int) -> int:
            return ((size + 2 * pad - 4) // 2 + 2 * pad - 4) // 2

        self.fc1 = nn.Linear(50 * shrink(height) * shrink(width), 500)
        self.fc2 = _classifier(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


class BasicBlock(nn.Module):
    """CIFAR ResNet basic block with the parameter-free option-A shortcut (He et al. 2016, §4.2)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.pad = planes - in_planes

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and self.pad == 0:
            return x
        # Option A: subsample spatially, zero-pad the new channels (half on each side).
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet of depth 6n+2 (20, 32, 44, 56, 110) with option-A shortcuts."""

    def __init__(self, depth: int, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(int(input_shape[0]), 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers: list[nn.Module] = []
        in_planes = 16
        for stage, planes in enumerate((16, 32, 64)):
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.linear = _classifier(64, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(module.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


@architecture
def lenet300_100(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """LeNet-300-100, fully connected (266,610 parameters on MNIST)."""
    return LeNet300100(input_shape, num_classes)


@architecture
def lenet5(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """Caffe LeNet-5 (431,080 parameters on MNIST)."""
    return LeNet5(input_shape, num_classes)


@architecture
def resnet20(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """CIFAR ResNet-20, option-A shortcuts (269,722 parameters on 3×32×32, 10 classes)."""
    return CifarResNet(20, input_shape, num_classes)


@architecture
def resnet32(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """CIFAR ResNet-32, option-A shortcuts (464,154 parameters on 3×32×32, 10 classes)."""
    return CifarResNet(32, input_shape, num_classes)


@architecture
def resnet44(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """CIFAR ResNet-44, option-A shortcuts (658,586 parameters on 3×32×32, 10 classes)."""
    return CifarResNet(44, input_shape, num_classes)


@architecture
def resnet56(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """CIFAR ResNet-56, option-A shortcuts (853,018 parameters, 125,485,696 MACs on 3×32×32, 10 classes)."""
    return CifarResNet(56, input_shape, num_classes)


@architecture
def resnet110(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """CIFAR ResNet-110, option-A shortcuts (1,727,962 parameters on 3×32×32, 10 classes)."""
    return CifarResNet(110, input_shape, num_classes)


VGG_CONFIGS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


class CifarVGG(nn.Module):
    """CIFAR VGG with BatchNorm (the torch.ch ``vgg_bn_drop`` family that ShrinkBench ships).

    Features: each 3×3 convolution (padding 1, with bias) is followed by BatchNorm and ReLU, each "M" by a
    2×2 max-pool; the five pools take 32×32 to 1×1. To adapt to other image sizes the pools round up (the
    same on even sizes: 28×28 goes 14, 7, 4, 2, 1) and a global average pool follows (the identity on 1×1).
    Classifier: dropout 0.5, Linear(512, 512), BatchNorm1d(512), ReLU, dropout 0.5, Linear(512, classes).
    VGG-16 on 3×32×32 with 10 classes has 14,991,946 parameters (BatchNorm included) and 313,463,808 MACs
    (convolutions and linear layers).
    """

    def __init__(self, depth: int, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = int(input_shape[0])
        for item in VGG_CONFIGS[depth]:
            if item == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.BatchNorm2d(int(item)), nn.ReLU()]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Linear(512, 512),
            nn.BatchNorm1d(512),
            nn.ReLU(),
            nn.Dropout(0.5),
            _classifier(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@architecture
def vgg11(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """CIFAR VGG-11 with BatchNorm (see CifarVGG)."""
    return CifarVGG(11, input_shape, num_classes)


@architecture
def vgg16(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """CIFAR VGG-16 with BatchNorm (14,991,946 parameters, 313,463,808 MACs on 3×32×32, 10 classes)."""
    return CifarVGG(16, input_shape, num_classes)


@architecture
def vgg19(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """CIFAR VGG-19 with BatchNorm (see CifarVGG)."""
    return CifarVGG(19, input_shape, num_classes)


def torchvision_architecture(model_name: str) -> Callable[[Sequence[int], int], nn.Module]:
    """The factory behind ``tv:NAME``: torchvision's classification model NAME, untrained, with the
    dataset's number of classes; its last Linear layer (else its last convolution) is the classifier.
    torchvision is imported when the model is built, never at import time.
    """

    def factory(input_shape: Sequence[int], num_classes: int) -> nn.Module:
        try:
            from torchvision import models
        except Exception as exc:  # its CUDA wheels raise more than ImportError beside a CPU torch
            raise MissingExtra(
                f"architecture 'tv:{model_name}' needs torchvision (pip install 'pytest-prune[vision]'): "
                f"{type(exc).__name__}: {exc}"
            ) from None
        available = sorted(models.list_models(module=models))
        if model_name not in available:
            raise SpecError(
                f"architecture 'tv:{model_name}': torchvision has no classification model {model_name!r}; "
                f"available: {', '.join(available)}"
            )
        model = models.get_model(model_name, weights=None, num_classes=num_classes)
        heads: list[nn.Module] = [m for m in model.modules() if isinstance(m, nn.Linear)] or [
            m for m in model.modules() if isinstance(m, nn.Conv2d)
        ]
        heads[-1].is_classifier = True  # type: ignore[assignment]  # Module.__setattr__ takes any value at runtime
        return model

    factory.__name__ = f"tv_{model_name}"
    factory.__doc__ = f"torchvision's {model_name} (untrained, the dataset's classes)."
    return factory


ARCHITECTURES.add_provider("tv", torchvision_architecture)
