"""Shared helpers for pytest-prune's own tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def tiny_mlp():
    """A 3-layer MLP with its classifier last (8 → 16 → 12 → 3)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))


@pytest.fixture
def tiny_cnn():
    """conv(3→8) + BN + conv(8→8, groups 2) + linear classifier, for 3×8×8 inputs."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2, bias=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 5),
    )
