"""The in-memory dataset record every dataset factory returns, and the seeded batch iterable pruners get."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A classification dataset held in memory as normalised float tensors (N, C, H, W) and int64 labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    description: str = ""
    normalisation: dict[str, list[float]] = field(default_factory=dict)
    augmentation: str = ""
    """Training-time augmentation (``pytest_prune.data.augment``), e.g. ``crop4+flip`` for CIFAR; "" = none."""

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. (1, 28, 28)."""
        return tuple(int(s) for s in self.train_x.shape[1:])

    def validate(self, name: str) -> None:
        """Raise ValueError naming the dataset when shapes, dtypes or labels are inconsistent."""
        import torch

        for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if x.ndim < 2 or len(x) != len(y) or len(x) == 0:
                raise ValueError(
                    f"dataset {name!r}: {split} inputs {tuple(x.shape)} and labels {tuple(y.shape)} "
                    "must be non-empty with the same length"
                )
            if not torch.is_floating_point(x):
                raise ValueError(f"dataset {name!r}: {split} inputs must be float, got {x.dtype}")
            # by chunks of inputs: isfinite on the whole set would hold temporaries the size of the data
            finite = torch.cat([torch.isfinite(part.reshape(len(part), -1)).all(1) for part in x.split(1024)])
            if not bool(finite.all()):
                raise ValueError(
                    f"dataset {name!r}: {int((~finite).sum())} {split} input(s) hold NaN or infinite values, the "
                    f"first is input {int((~finite).nonzero()[0])}; a normalisation by a std of 0 gives them"
                )
            if y.dtype != torch.int64:
                raise ValueError(f"dataset {name!r}: {split} labels must be int64, got {y.dtype}")
            if y.ndim != 1:
                raise ValueError(
                    f"dataset {name!r}: {split} labels have shape {tuple(y.shape)}; give one class index per "
                    f"input, a 1-D tensor of {len(x)}"
                )
            low, high = int(y.min()), int(y.max())
            if low < 0 or high >= self.num_classes:
                raise ValueError(
                    f"dataset {name!r}: {split} labels span {low}..{high}, outside 0..{self.num_classes - 1}"
                )
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ValueError(
                f"dataset {name!r}: train inputs {tuple(self.train_x.shape[1:])} and test inputs "
                f"{tuple(self.test_x.shape[1:])} differ in shape"
            )

    def to(self, device: str) -> ImageDataset:
        """The same data on ``device``."""
        if str(self.train_x.device) == device:
            return self
        return ImageDataset(
            self.train_x.to(device),
            self.train_y.to(device),
            self.test_x.to(device),
            self.test_y.to(device),
            self.num_classes,
            self.description,
            self.normalisation,
            self.augmentation,
        )


class Batches:
    """Re-iterable ``(inputs, targets)`` training batches in a seeded order: every pass yields the same batches."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int) -> None:
        self.x, self.y, self.batch_size, self.seed = x, y, int(batch_size), int(seed)

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        import torch

        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(len(self.x), generator=generator).to(self.x.device)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.x[index], self.y[index]


def load_dataset(name: str, root: Path | None = None) -> ImageDataset:
    """Build dataset ``name``: factories that take a ``root`` argument get the data root (may be None)."""
    import inspect

    from ..registry import DATASETS

    factory = DATASETS.get(name)
    try:
        takes_root = "root" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        takes_root = False
    data = factory(root=root) if takes_root else factory()
    if not isinstance(data, ImageDataset):
        raise TypeError(f"dataset factory {name!r} returned {type(data).__name__}, not ImageDataset")
    return data
