"""Evaluating N corrupted copies of the test set must cost ≤ 1.3× N plain evaluations of it.

Both sides run in the same session on the embedded mnist5k test split (1,000 images, one CPU thread,
batches of 500, inference mode): N plain passes over the test set, and ``shifted_top1`` over every
corruption that applies to 1-channel images at severity 3 (N = 12), which corrupts each batch on the fly.
pytest-benchmark times each side; the asserted ratio comes from paired rounds (plain, then corrupted,
repeated), the median of the per-round ratios, so a machine that speeds up or slows down during the run
moves both sides of each ratio alike.

    pytest benchmarks/test_corruption_cost.py -s --benchmark-columns=median,iqr,rounds
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch
from conftest import paired, skip_if_disabled

from pytest_prune.options import CORRUPTION_NAMES
from pytest_prune.reference import load_pretrained
from pytest_prune.registry import DATASETS, load_builtins
from pytest_prune.robustness.corruptions import BATCH, CORRUPTIONS, PixelSpace, corrupted_batches
from pytest_prune.robustness.measure import EVAL_SEED, applicable, shifted_top1
from pytest_prune.train import torch_threads

ARCHS = ["lenet300_100", "lenet5", "resnet20"]
TARGET = 1.3


@pytest.fixture(scope="module")
def data():
    load_builtins()
    return DATASETS.get("mnist5k")()


@pytest.fixture(scope="module")
def corruptions(data):
    names, _ = applicable(CORRUPTION_NAMES, data.input_shape[0])
    return names


@torch.inference_mode()
def plain(model, data, times):
    correct = 0
    for _ in range(times):
        for start in range(0, len(data.test_x), BATCH):
            correct += int(
                (model(data.test_x[start : start + BATCH]).argmax(1) == data.test_y[start : start + BATCH]).sum()
            )
    return correct


@pytest.mark.parametrize("arch", ARCHS)
def test_plain_evaluations(benchmark, data, corruptions, arch, tmp_path):
    model = load_pretrained("mnist5k", arch, data, tmp_path).model.eval()
    benchmark.group = f"corruption-cost-{arch}"
    with torch_threads(1):
        benchmark.pedantic(plain, args=(model, data, len(corruptions)), rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("arch", ARCHS)
def test_corrupted_evaluations(benchmark, data, corruptions, arch, tmp_path):
    model = load_pretrained("mnist5k", arch, data, tmp_path).model.eval()
    space = PixelSpace(data.normalisation, 1)
    benchmark.group = f"corruption-cost-{arch}"
    with torch_threads(1):
        benchmark.pedantic(
            shifted_top1, args=(model, data.test_x, data.test_y, space, corruptions, [3]), rounds=3, warmup_rounds=1
        )


def test_generation_cost_per_corruption(data, corruptions, record_property):
    """Not a target: ms to corrupt the test set once per corruption, without a model (where the extra time goes)."""
    space = PixelSpace(data.normalisation, 1)
    lines = []
    with torch_threads(1):
        for name in corruptions:
            times = []
            for _ in range(6):  # the first run fills the caches (tables, grids)
                start = time.perf_counter()
                for _ in corrupted_batches(data.test_x, space, CORRUPTIONS[name], 3, EVAL_SEED):
                    pass
                times.append(time.perf_counter() - start)
            ms = statistics.median(times[1:]) * 1000
            record_property(f"generation_ms_{name}", ms)
            lines.append(f"  {name:16s} {ms:6.2f} ms")
    print(f"\ncorrupting {len(data.test_x)} images once (median of 5):\n" + "\n".join(lines))


@pytest.mark.parametrize("arch", ARCHS)
def test_corruption_cost_ratio(request, data, corruptions, arch, tmp_path, record_property):
    skip_if_disabled(request)
    model = load_pretrained("mnist5k", arch, data, tmp_path).model.eval()
    space = PixelSpace(data.normalisation, 1)
    with torch_threads(1):
        timed = paired(
            lambda: plain(model, data, len(corruptions)),
            lambda: shifted_top1(model, data.test_x, data.test_y, space, corruptions, [3]),
        )
    record_property("corruption_cost_ratio", timed.ratio)
    print(
        f"\n{arch}: {len(corruptions)} corrupted evaluations = {timed.ratio:.2f} x {len(corruptions)} plain ones "
        f"({timed.describe()})"
    )
    assert timed.ratio <= TARGET, f"{arch}: corrupted evaluation costs {timed.ratio:.2f}x plain; target ≤ {TARGET}x"
