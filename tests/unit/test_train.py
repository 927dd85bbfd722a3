from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from pytest_prune.data.base import ImageDataset
from pytest_prune.recipes import FINETUNE
from pytest_prune.train import Diverged, evaluate, train


class Fixed(nn.Module):
    """Returns the logits it is given, so accuracy is known exactly."""

    def forward(self, x):
        return x


def test_accuracy_is_counted_per_sample_with_a_short_last_batch():
    # 7 samples, batch 3: batches of 3, 3, 1. Per-batch averaging would give a different answer.
    logits = torch.eye(6)[[0, 1, 2, 3, 4, 5, 0]]
    labels = torch.tensor([0, 1, 2, 0, 0, 0, 1])
    top1, top5 = evaluate(Fixed(), logits, labels, batch_size=3)
    assert top1 == 3 / 7 and top5 == 6 / 7


def test_evaluation_runs_in_eval_mode_and_restores_the_mode():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).train()
    before = model[1].running_mean.clone()
    evaluate(model, torch.randn(16, 4), torch.zeros(16, dtype=torch.long))
    assert model.training and torch.equal(before, model[1].running_mean)


def test_training_that_diverges_raises_instead_of_returning_nan_weights():
    x = torch.randn(64, 1, 4, 4)
    y = torch.arange(64) % 3
    data = ImageDataset(x, y, x, y, num_classes=3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    with pytest.raises(Diverged, match=r"training diverged: the loss is (nan|inf) after epoch 2 of 2 .*lr 1e\+38"):
        train(model, data, replace(FINETUNE, lr=1e38), seed=0)
    assert train(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), data, FINETUNE, seed=0) < 2  # a sane one trains


def test_no_two_seeds_share_a_batch_order(monkeypatch):
    """The separately trained reference (seed 1) against its parent (seed 0): with epoch e ordered by seed + e
    they shared every order but one. Seed 0 keeps the orders 0, 1, … the shipped parents were trained with."""
    import pytest_prune.train as module

    seen: dict[int, list[int]] = {}

    class Recorded(module.Batches):
        def __iter__(self):
            seen.setdefault(current, []).append(self.seed)
            return super().__iter__()

    monkeypatch.setattr(module, "Batches", Recorded)
    x = torch.randn(16, 1, 4, 4)
    y = torch.arange(16) % 3
    data = ImageDataset(x, y, x, y, num_classes=3)
    for current in (0, 1, 2):
        train(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), data, replace(FINETUNE, epochs=3), seed=current)
    assert seen[0] == [0, 1, 2]
    assert not set(seen[0]) & set(seen[1]) and not set(seen[1]) & set(seen[2])
