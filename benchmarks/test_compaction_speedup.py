"""l1_filter at 4x on resnet20: measured CPU speedup of the compacted model vs its structural MAC speedup.

Target (issue 3): measured latency speedup ≥ 0.8 × structural MAC speedup, dense and compacted models
timed side by side in one run (shipped mnist5k weights, 1 CPU thread, batch 1 and 64). pytest-benchmark
times each model; the asserted speedup comes from paired rounds (dense, then compacted, repeated; the
median of the per-round ratios), so drift of the machine during the run moves both sides alike.

    pytest benchmarks/test_compaction_speedup.py -s --benchmark-columns=median,iqr,rounds

``test_conv_rates_per_layer_shape`` (not a target) prints where the gap comes from: the MAC rate of each
distinct 3×3 convolution shape of the dense and the compacted model, at the benchmark's batch sizes.
"""

from __future__ import annotations

import copy
import statistics
import time

import pytest
import torch
import torch.nn.functional as F
from conftest import paired, skip_if_disabled
from torch import nn

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


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("which", ["dense", "compacted"])
def test_latency(benchmark, models, which, batch):
    model, inputs = models[which], probe_inputs(models["shape"], batch, "cpu")
    benchmark.group = f"resnet20 l1_filter 4x, batch {batch}"

    def forward():
        with torch.inference_mode():
            model(inputs)

    with torch_threads(1):
        benchmark.pedantic(forward, rounds=30, warmup_rounds=5)


@pytest.mark.parametrize("batch", BATCHES)
def test_measured_vs_structural_speedup(request, models, batch, record_property):
    skip_if_disabled(request)
    dense, compacted = models["dense"], models["compacted"]
    inputs = probe_inputs(models["shape"], batch, "cpu")

    def forwards(model, times=20 if batch == 1 else 3):
        def run():
            with torch.inference_mode():
                for _ in range(times):
                    model(inputs)

        return run

    with torch_threads(1):
        timed = paired(forwards(dense), forwards(compacted), rounds=(5, 15), seconds=20.0)
    measured = 1 / timed.ratio  # dense time / compacted time, per round
    ratio = measured / models["structural_speedup"]
    record_property("ratio", ratio)
    print(
        f"\nbatch {batch}: measured {measured:.2f}x vs structural {models['structural_speedup']:.2f}x "
        f"= {ratio:.2f} of the MAC speedup (target {TARGET}; {timed.describe()})"
    )
    assert ratio >= TARGET, f"batch {batch}: compacted model reaches {ratio:.2f} of its structural MAC speedup"


def conv_shapes(model: nn.Module, input_shape: tuple[int, ...]) -> dict[tuple, tuple[int, ...]]:
    """{(in, out, stride): input shape} of each distinct convolution of ``model``."""
    shapes: dict[tuple, tuple[int, ...]] = {}

    def record(layer: nn.Module, args: tuple, _out: torch.Tensor) -> None:
        shapes.setdefault((layer.in_channels, layer.out_channels, layer.stride[0]), tuple(args[0].shape[1:]))

    hooks = [layer.register_forward_hook(record) for layer in model.modules() if isinstance(layer, nn.Conv2d)]
    with torch.inference_mode():
        model(probe_inputs(input_shape, 1, "cpu"))
    for hook in hooks:
        hook.remove()
    return shapes


def test_conv_rates_per_layer_shape(models, record_property):
    """Not a target: GMAC/s of each distinct convolution shape of both models (batch 1 and 64, 1 thread)."""
    lines = []
    for which in ("dense", "compacted"):
        for (cin, cout, stride), shape in sorted(conv_shapes(models[which], models["shape"]).items()):
            rates = []
            for batch in BATCHES:
                x, w = torch.randn(batch, *shape), torch.randn(cout, cin, 3, 3)
                macs = batch * cout * cin * 9 * (shape[1] // stride) * (shape[2] // stride)
                times = []
                with torch_threads(1), torch.inference_mode():
                    for _ in range(25):
                        start = time.perf_counter()
                        F.conv2d(x, w, stride=stride, padding=1)
                        times.append(time.perf_counter() - start)
                rate = macs / statistics.median(times[5:]) / 1e9
                record_property(f"gmacs_{which}_{cin}_{cout}_s{stride}_b{batch}", rate)
                rates.append(f"batch {batch}: {rate:5.1f}")
            where = f"{cin:3d} -> {cout:3d} stride {stride} at {shape[1]}x{shape[2]}"
            lines.append(f"  {which:9s} {where}: " + ", ".join(rates))
    print("\n3x3 convolution MAC rates (GMAC/s, 1 thread):\n" + "\n".join(lines))
