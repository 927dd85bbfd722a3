from __future__ import annotations

import torch
from torch import nn

from pytest_prune.metrics.latency import measure_interleaved, probe_inputs, speedup, synchroniser


def test_measure_reports_median_and_quartiles_and_restores_the_mode():
    model = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)).train()
    timing = measure_interleaved({"model": model}, probe_inputs((32,), 8, "cpu"), repeats=7)["model"]
    assert timing.batch_size == 8 and timing.repeats == 7
    assert 0 < timing.q1_ms <= timing.median_ms <= timing.q3_ms
    assert model.training


def test_interleaved_timing_takes_rounds_and_the_speedup_is_the_median_round_ratio():
    calls = []
    wide = nn.Sequential(nn.Linear(256, 2048), nn.ReLU(), nn.Linear(2048, 4)).train()
    narrow = nn.Sequential(nn.Linear(256, 8), nn.ReLU(), nn.Linear(8, 4)).eval()
    for name, model in (("wide", wide), ("narrow", narrow)):
        model.register_forward_hook(lambda *_, name=name: calls.append(name))
    timings = measure_interleaved({"wide": wide, "narrow": narrow}, probe_inputs((256,), 64, "cpu"), repeats=9)
    # 3 warm-up passes each, then 9 rounds of one pass each, in turn
    assert calls == ["wide"] * 3 + ["narrow"] * 3 + ["wide", "narrow"] * 9
    assert wide.training and not narrow.training
    assert all(t.repeats == 9 and len(t.samples_ms) == 9 and t.batch_size == 64 for t in timings.values())
    assert timings["wide"].median_ms > timings["narrow"].median_ms  # 64x the MACs
    ratios = sorted(w / n for w, n in zip(timings["wide"].samples_ms, timings["narrow"].samples_ms, strict=True))
    assert speedup(timings["wide"], timings["narrow"]) == ratios[4] > 1


def test_devices_that_cannot_synchronise_say_so():
    _, note = synchroniser("cpu")
    assert note is None
    _, note = synchroniser("meta")
    assert note is not None and "cannot be synchronised" in note and "'meta'" in note


def test_probe_inputs_are_fixed():
    assert torch.equal(probe_inputs((3, 4), 2, "cpu"), probe_inputs((3, 4), 2, "cpu"))
