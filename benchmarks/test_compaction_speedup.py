"""l1_filter at 4x on resnet20: measured CPU speedup of the compacted model vs its structural MAC speedup.

Target (issue 3): measured latency speedup ≥ 0.8 × structural MAC speedup, dense and compacted models
timed side by side in one run (pytest-benchmark, shipped mnist5k weights, 1 CPU thread, batch 1 and 64).

    pytest benchmarks/test_compaction_speedup.py -s --benchmark-columns=median,iqr,rounds
"""

from __future__ import annotations

import copy

import pytest
import torch

from pytest_prune.data.base import Batches
from pytest_prune.masks import amount_for_model, derive_masks
from pytest_prune.metrics import count_macs, macs_summary
from pytest_prune.metrics.compaction import compact
from pytest_prune.metrics.latency import probe_inputs
from pytest_prune.pruners.filters import l1_filter
from pytest_prune.reference import load_pretrained
from pytest_prune.registry import DATASETS, load_builtins
from pytest_prune.train import torch_threads

BATCHES = [1, 64]
TARGET = 0.8


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    load_builtins()
    data = DATASETS.get("mnist5k")()
    dense = load_pretrained("mnist5k", "resnet20", data, tmp_path_factory.mktemp("ref")).model.eval()
    pruned = copy.deepcopy(dense)
    amount = amount_for_model(pruned, 4.0)
    batches = Batches(data.train_x, data.train_y, 128, 0)
    derive_masks(pruned, l1_filter(pruned, amount, batches), dict(dense.named_parameters()))
    compaction = compact(pruned, data.test_x[:256])
    assert compaction.compacted, compaction.note
    dense_macs, _ = macs_summary(count_macs(dense, data.input_shape))
    structural, _ = macs_summary(count_macs(compaction.model, data.input_shape))
    return {
        "dense": dense,
        "compacted": compaction.model.eval(),
        "structural_speedup": dense_macs / structural,
        "shape": data.input_shape,
    }


@pytest.fixture(scope="module")
def medians():
    return {}


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("which", ["dense", "compacted"])
def test_latency(benchmark, models, medians, which, batch):
    model, inputs = models[which], probe_inputs(models["shape"], batch, "cpu")
    benchmark.group = f"resnet20 l1_filter 4x, batch {batch}"

    def forward():
        with torch.inference_mode():
            model(inputs)

    with torch_threads(1):
        benchmark.pedantic(forward, rounds=30, warmup_rounds=5)
    medians[(which, batch)] = benchmark.stats.stats.median


@pytest.mark.parametrize("batch", BATCHES)
def test_measured_vs_structural_speedup(models, medians, batch, record_property):
    if ("dense", batch) not in medians or ("compacted", batch) not in medians:
        pytest.skip("needs both latency benchmarks of this module in the same run")
    measured = medians[("dense", batch)] / medians[("compacted", batch)]
    ratio = measured / models["structural_speedup"]
    record_property("ratio", ratio)
    print(
        f"\nbatch {batch}: measured {measured:.2f}x vs structural {models['structural_speedup']:.2f}x "
        f"= {ratio:.2f} of the MAC speedup (target {TARGET})"
    )
    assert ratio >= TARGET, f"batch {batch}: compacted model reaches {ratio:.2f} of its structural MAC speedup"
