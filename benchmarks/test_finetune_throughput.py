"""Finetuning a masked model must run at ≥ 0.97× the throughput of a bare PyTorch loop on the same data.

Both sides train the same dense pretrained model for one epoch on the embedded mnist5k training split
(4,000 images, batch 128, one CPU thread, SGD with nesterov momentum and weight decay). The harness side
adds what it really does: the seeded batch order, the cosine schedule and the mask re-application after
every step, on a model pruned to 8x by global magnitude.

    pytest benchmarks/test_finetune_throughput.py --benchmark-columns=median,iqr,rounds
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import both, record_median

from pytest_prune.masks import MaskEnforcer, amount_for_model, derive_masks
from pytest_prune.pruners.magnitude import global_magnitude
from pytest_prune.reference import load_pretrained
from pytest_prune.registry import DATASETS, load_builtins
from pytest_prune.train import FINETUNE, torch_threads, train

ARCHS = ["lenet300_100", "lenet5"]
TARGET = 0.97


@pytest.fixture(scope="module")
def data():
    load_builtins()
    return DATASETS.get("mnist5k")()


def dense_model(arch, data, tmp_path):
    return load_pretrained("mnist5k", arch, data, tmp_path).model


def bare_epoch(model, data):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True)
    model.train()
    order = torch.randperm(len(data.train_x))
    for start in range(0, len(order), 128):
        index = order[start : start + 128]
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(data.train_x[index]), data.train_y[index]).backward()
        optimizer.step()


@pytest.mark.parametrize("arch", ARCHS)
def test_bare_pytorch_loop(benchmark, medians, data, arch, tmp_path):
    dense = dense_model(arch, data, tmp_path)
    benchmark.group = f"finetune-{arch}"
    with torch_threads(1):
        benchmark.pedantic(bare_epoch, setup=lambda: ((copy.deepcopy(dense), data), {}), rounds=7, warmup_rounds=1)
    record_median(benchmark, medians, ("bare", arch))


@pytest.mark.parametrize("arch", ARCHS)
def test_masked_finetuning(benchmark, medians, data, arch, tmp_path):
    dense = dense_model(arch, data, tmp_path)
    model = copy.deepcopy(dense)
    amount = amount_for_model(model, 8.0)
    masks = derive_masks(model, global_magnitude(model, amount, None), dict(dense.named_parameters()))
    recipe = FINETUNE.with_epochs(1)

    def setup():
        copy_ = copy.deepcopy(model)
        return (copy_, data, recipe, 0), {"after_step": MaskEnforcer(copy_, masks)}

    benchmark.group = f"finetune-{arch}"
    with torch_threads(1):
        benchmark.pedantic(train, setup=setup, rounds=7, warmup_rounds=1)
    record_median(benchmark, medians, ("masked", arch))


@pytest.mark.parametrize("arch", ARCHS)
def test_masked_throughput_ratio(medians, arch, record_property):
    bare, masked = both(medians, ("bare", arch), ("masked", arch))
    ratio = bare / masked
    record_property("throughput_ratio", ratio)
    print(
        f"\n{arch}: masked finetuning throughput = {ratio:.3f} x bare PyTorch loop "
        f"({4000 / medians[('masked', arch)]:.0f} vs {4000 / medians[('bare', arch)]:.0f} img/s)"
    )
    assert ratio >= TARGET, f"{arch}: masked finetuning at {ratio:.3f}x of a bare loop; target {TARGET}x"
