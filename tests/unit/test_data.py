from __future__ import annotations

import pytest
import torch

from pytest_prune.data.base import Batches, ImageDataset
from pytest_prune.data.embedded import digits, mnist5k


def test_mnist5k_is_a_fixed_stratified_split_of_real_digits():
    data = mnist5k()
    assert data.train_x.shape == (4000, 1, 28, 28) and data.test_x.shape == (1000, 1, 28, 28)
    assert data.train_y.bincount().tolist() == [400] * 10 and data.test_y.bincount().tolist() == [100] * 10
    again = mnist5k()
    assert torch.equal(data.test_x, again.test_x)
    # normalised with the MNIST constants: background pixels sit at -0.1307/0.3081
    assert data.train_x.min().item() == pytest.approx(-0.1307 / 0.3081, abs=1e-5)


def test_digits_has_all_classes_in_both_splits():
    data = digits()
    assert data.input_shape == (1, 8, 8) and len(data.train_x) + len(data.test_x) == 1797
    assert set(data.test_y.tolist()) == set(range(10))


def test_validate_names_the_dataset_and_the_problem():
    x = torch.zeros(4, 1, 2, 2)
    bad = ImageDataset(x, torch.tensor([0, 1, 2, 9]), x, torch.tensor([0, 1, 1, 0]), num_classes=3)
    with pytest.raises(ValueError, match=r"dataset 'toy': train labels span 0..9, outside 0..2"):
        bad.validate("toy")
    column = ImageDataset(x, torch.tensor([[0], [1], [2], [0]]), x, torch.tensor([0, 1, 1, 0]), num_classes=3)
    with pytest.raises(ValueError, match=r"train labels have shape \(4, 1\); give one class index per input"):
        column.validate("toy")
    holes = x.clone()
    holes[2, 0, 1, 1], holes[3, 0, 0, 0] = float("nan"), float("inf")
    nan = ImageDataset(x, torch.tensor([0, 1, 2, 0]), holes, torch.tensor([0, 1, 1, 0]), num_classes=3)
    with pytest.raises(ValueError, match=r"'toy': 2 test input\(s\) hold NaN or infinite values, the first is input 2"):
        nan.validate("toy")
    many = torch.zeros(3000, 1, 2, 2)  # checked by chunks of inputs: counted and placed across them
    many[2500, 0, 0, 0], many[1024, 0, 1, 0] = float("nan"), float("-inf")
    labels = torch.zeros(3000, dtype=torch.int64)
    spread = ImageDataset(many, labels, x, torch.tensor([0, 1, 1, 0]), num_classes=3)
    with pytest.raises(ValueError, match=r"2 train input\(s\) hold NaN or infinite values, the first is input 1024"):
        spread.validate("toy")


def test_batches_repeat_the_same_order_each_pass():
    batches = Batches(torch.arange(10.0)[:, None], torch.arange(10), batch_size=4, seed=3)
    first = [y.tolist() for _, y in batches]
    assert first == [y.tolist() for _, y in batches] and len(batches) == 3
    assert sorted(y for batch in first for y in batch) == list(range(10))
