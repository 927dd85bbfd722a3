"""Hypothesis properties of the amount/compression arithmetic and of the MAC counter."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pytest_prune.masks import amount_for, check_compression, count_to_remove
from pytest_prune.metrics import count_macs, macs_summary


@given(
    total=st.integers(1_000, 10_000_000),
    prunable_share=st.floats(0.5, 0.999),
    compression=st.floats(1.0, 64.0),
)
def test_removing_amount_of_prunable_weights_reaches_the_target(total, prunable_share, compression):
    prunable = max(1, int(total * prunable_share))
    ceiling = total / max(total - prunable, 1)
    if compression >= ceiling:
        with pytest.raises(ValueError, match="not reachable"):
            amount_for(total, prunable, compression)
        return
    amount = amount_for(total, prunable, compression)
    assert 0.0 <= amount < 1.0
    removed = count_to_remove(amount, prunable)
    achieved = total / (total - removed)
    # Rounding to whole weights is the only error: less than one weight's worth of compression.
    assert achieved == pytest.approx(compression, rel=compression / (total - removed) + 1e-9)
    check_compression(compression, achieved)


@given(amount=st.floats(0.0, 0.999999), numel=st.integers(1, 10**7))
def test_count_to_remove_stays_in_range(amount, numel):
    assert 0 <= count_to_remove(amount, numel) <= numel


@st.composite
def conv_configs(draw):
    groups = draw(st.sampled_from([1, 2, 4]))
    in_ch = groups * draw(st.integers(1, 3))
    out_ch = groups * draw(st.integers(1, 3))
    kernel = draw(st.integers(1, 4))
    dilation = draw(st.integers(1, 2))
    size = draw(st.integers((kernel - 1) * dilation + 1, 12))
    return (
        dict(
            in_channels=in_ch,
            out_channels=out_ch,
            kernel_size=kernel,
            groups=groups,
            dilation=dilation,
            stride=draw(st.integers(1, 3)),
            padding=draw(st.integers(0, 2)),
            bias=draw(st.booleans()),
        ),
        size,
        draw(st.sampled_from([1, 2, 3])),
    )


@settings(max_examples=60, deadline=None)
@given(conv_configs(), st.integers(1, 40), st.integers(1, 40))
def test_mac_counter_matches_flop_counter(config, hidden, out_features):
    conv_kwargs, size, dims = config
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims](**conv_kwargs)
    shape = (conv_kwargs["in_channels"], *([size] * dims))
    with torch.no_grad():
        flat = conv(torch.zeros(1, *shape)).numel()
    model = nn.Sequential(conv, nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, out_features))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, *shape))
    assert macs_summary(count_macs(model, shape))[0] == counter.get_total_flops() // 2
