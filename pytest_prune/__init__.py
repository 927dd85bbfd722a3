"""pytest-prune: benchmark neural-network pruners with pytest.

The public API is small: the ``pruner``, ``architecture`` and ``dataset`` decorators, ``prunable(model)``
and the ``ImageDataset`` record. Importing this package does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .data.base import ImageDataset
from .errors import NotApplicable
from .registry import architecture, dataset, pruner

if TYPE_CHECKING:
    from torch import nn

__version__ = "0.2.13"
__all__ = ["ImageDataset", "NotApplicable", "__version__", "architecture", "dataset", "prunable", "pruner"]


def prunable(model: nn.Module) -> list[tuple[Any, str]]:
    """Prunable weights as ``(module, "weight")`` pairs: conv and linear weights except the final classifier."""
    from .masks import prunable as _prunable

    return _prunable(model)
