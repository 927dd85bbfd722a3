from __future__ import annotations

import torch
from torch import nn

from pytest_prune.train import evaluate


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
