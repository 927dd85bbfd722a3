from __future__ import annotations

import torch
from torch import nn

from pytest_prune.metrics.latency import measure, probe_inputs, synchroniser


def test_measure_reports_median_and_quartiles_and_restores_the_mode():
    model = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)).train()
    timing = measure(model, probe_inputs((32,), 8, "cpu"), repeats=7)
    assert timing.batch_size == 8 and timing.repeats == 7
    assert 0 < timing.q1_ms <= timing.median_ms <= timing.q3_ms
    assert model.training


def test_devices_that_cannot_synchronise_say_so():
    _, note = synchroniser("cpu")
    assert note is None
    _, note = synchroniser("meta")
    assert note is not None and "cannot be synchronised" in note and "'meta'" in note


def test_probe_inputs_are_fixed():
    assert torch.equal(probe_inputs((3, 4), 2, "cpu"), probe_inputs((3, 4), 2, "cpu"))
