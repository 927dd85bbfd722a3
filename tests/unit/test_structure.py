"""Channel chains, structured pruners and physical compaction on every built-in architecture."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from pytest_prune.architectures import lenet5, lenet300_100, resnet20
from pytest_prune.data.base import Batches
from pytest_prune.masks import amount_for, amount_for_model, derive_masks, prunable
from pytest_prune.metrics import count_macs, count_params, macs_summary
from pytest_prune.metrics.compaction import compact
from pytest_prune.metrics.structure import Chain, TraceError, find_chains
from pytest_prune.pruners.filters import l1_filter, random_filter
from pytest_prune.pruners.magnitude import global_magnitude

ARCHS = {"lenet300_100": lenet300_100, "lenet5": lenet5, "resnet20": resnet20}
SHAPE = (1, 28, 28)


def trained_like(arch):
    """A built-in model with nonzero BatchNorm statistics and biases, as after training."""
    torch.manual_seed(0)
    model = ARCHS[arch](SHAPE, 10)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.bias.uniform_(-0.5, 0.5)
                module.weight.uniform_(0.5, 1.5)
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def prune(model, pruner, compression):
    amount = amount_for_model(model, compression)
    data = Batches(torch.randn(64, *SHAPE), torch.randint(0, 10, (64,)), 32, 0)
    state = {n: p.detach().clone() for n, p in model.named_parameters()}
    derive_masks(model, pruner(model, amount, data), state)
    return model


def test_chains_follow_channel_wise_ops_and_stop_at_residual_additions():
    assert find_chains(lenet5(SHAPE, 10), SHAPE) == [
        Chain("conv1", "conv2"),
        Chain("conv2", "fc1", block=16),
        Chain("fc1", "fc2"),
    ]
    chains = find_chains(resnet20(SHAPE, 10), SHAPE)
    assert [c.producer for c in chains] == [f"layers.{i}.conv1" for i in range(9)]
    assert all(c.norm == c.producer.replace("conv1", "bn1") for c in chains)


def test_an_untraceable_model_is_named():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else -self.fc(x)

    with pytest.raises(TraceError, match="torch.fx cannot trace DataDependent"):
        find_chains(DataDependent(), (4,))
    assert "not compactable: torch.fx cannot trace" in compact(DataDependent(), torch.randn(2, 4)).note


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("pruner", [l1_filter, random_filter], ids=["l1_filter", "random_filter"])
@pytest.mark.parametrize("compression", [2.0, 4.0, 16.0])
def test_structured_pruners_reach_the_target_and_compact_exactly(arch, pruner, compression):
    model = prune(trained_like(arch), pruner, compression)
    total, nonzero = count_params(model)
    assert abs(total / nonzero / compression - 1) <= 0.05
    inputs = torch.randn(16, *SHAPE)
    result = compact(model, inputs)
    assert result.compacted, result.note
    assert result.params == nonzero  # every zero left was a removed filter, its BN channel or the next inputs
    with torch.no_grad():
        assert (model(inputs) - result.model(inputs)).abs().max() <= 1e-5
    dense, _ = macs_summary(count_macs(model, SHAPE))
    structural, _ = macs_summary(count_macs(result.model, SHAPE))
    assert structural < dense


def test_compaction_is_judged_in_float64_not_by_float32_rounding():
    """CUDA's default TF32 convolutions made the float32 outputs of a masked and a compacted ResNet-20 differ by
    5e-3, so no cell on a GPU was ever compacted; large activations do the same on any device. The check
    must judge the function, and leave the models as they were."""
    model = prune(trained_like("resnet20"), l1_filter, 4.0)
    with torch.no_grad():
        model.linear.weight.mul_(1e5)  # logits around 1e5, where a float32 ulp is about 0.01
    inputs = torch.randn(16, *SHAPE)
    result = compact(model, inputs)
    assert result.compacted, result.note
    with torch.no_grad():
        float32_gap = float((model(inputs) - result.model(inputs)).abs().max())
    assert float32_gap > 1e-5  # what a float32 check would have refused
    assert {p.dtype for p in (*model.parameters(), *result.model.parameters())} == {torch.float32}
    assert not model.training


def test_l1_filter_removes_the_filters_of_smallest_l1_norm():
    model = trained_like("lenet5")
    norms = model.conv1.weight.detach().abs().flatten(1).sum(1)
    prune(model, l1_filter, 4.0)
    removed = (model.conv1.weight.detach().flatten(1) == 0).all(1)
    assert removed.any() and norms[removed].max() <= norms[~removed].min()


def test_unstructured_sparsity_is_reported_as_not_compactable():
    model = prune(trained_like("lenet300_100"), global_magnitude, 8.0)
    result = compact(model, torch.randn(4, *SHAPE))
    assert not result.compacted and result.model is model
    assert "no whole filter is zero" in result.note


def test_a_zero_filter_whose_batchnorm_still_adds_beta_is_kept():
    model = trained_like("resnet20")
    with torch.no_grad():
        model.layers[0].conv1.weight[3] = 0  # beta of bn1 channel 3 is nonzero: the channel is constant, not zero
    assert not compact(model, torch.randn(2, *SHAPE)).compacted


def test_filters_whose_channels_the_next_layer_ignores_are_removed():
    """Channel pruning on the consumer's side (He et al. 2017, ThiNet) zeroes the next layer's input weights of a
    channel, not the filter: the filter's work is dead all the same, and compaction removes it with its input
    columns, through a flatten too (16 features per conv2 channel in fc1)."""
    model = trained_like("lenet5")
    with torch.no_grad():
        model.conv2.weight[:, [0, 7, 19]] = 0  # conv1's filters 0, 7 and 19 still compute; conv2 ignores them
        for channel in (3, 4):
            model.fc1.weight[:, channel * 16 : (channel + 1) * 16] = 0  # conv2's channels 3 and 4
    inputs = torch.randn(8, *SHAPE)
    result = compact(model, inputs)
    assert result.compacted and result.removed_filters == 5, result.note
    assert (result.model.conv1.out_channels, result.model.conv2.in_channels) == (17, 17)
    assert (result.model.conv2.out_channels, result.model.fc1.in_features) == (48, 48 * 16)
    with torch.no_grad():
        assert (model(inputs) - result.model(inputs)).abs().max() <= 1e-5
    masked, _ = macs_summary(count_macs(model, SHAPE))
    structural, _ = macs_summary(count_macs(result.model, SHAPE))
    assert structural < masked  # conv1's three filters and conv2's two no longer run at all


def test_removals_cascade_back_to_channels_only_removed_filters_read():
    """fc3 ignores fc2's unit 0, so that unit goes; fc1's unit 1 is read only by fc2's unit 0, so it goes too,
    though fc2 read it when fc1's chain was visited."""
    model = trained_like("lenet300_100")
    with torch.no_grad():
        model.fc3.weight[:, 0] = 0
        model.fc2.weight[1:, 1] = 0
    inputs = torch.randn(8, *SHAPE)
    result = compact(model, inputs)
    assert result.compacted and result.removed_filters == 2, result.note
    assert (result.model.fc1.out_features, result.model.fc2.in_features) == (299, 299)
    assert (result.model.fc2.out_features, result.model.fc3.in_features) == (99, 99)
    with torch.no_grad():
        assert (model(inputs) - result.model(inputs)).abs().max() <= 1e-5


def test_a_channel_the_next_layer_reads_in_part_is_kept():
    model = trained_like("lenet5")
    with torch.no_grad():
        model.conv2.weight[:, 0] = 0
        model.conv2.weight[5, 0, 2, 2] = 1.0  # one weight still reads channel 0
    result = compact(model, torch.randn(4, *SHAPE))
    assert not result.compacted and "no layer ignores a whole input channel" in result.note


@st.composite
def conv_stacks(draw):
    widths = draw(st.lists(st.integers(2, 6), min_size=2, max_size=4))
    batchnorm = draw(st.booleans())
    layers, channels = [], 2
    for width in widths:
        layers += [nn.Conv2d(channels, width, draw(st.sampled_from([1, 3])), padding=1, bias=not batchnorm)]
        layers += [nn.BatchNorm2d(width)] if batchnorm else []
        layers += [nn.ReLU()]
        channels = width
    layers += [nn.Flatten(), nn.LazyLinear(3)]
    return nn.Sequential(*layers), draw(st.integers(0, 2**16)), draw(st.floats(1.3, 3.0))


@settings(max_examples=25, deadline=None)
@given(conv_stacks())
def test_compaction_matches_the_masked_network_on_random_conv_stacks(case):
    model, seed, compression = case
    torch.manual_seed(seed)
    model(torch.zeros(1, 2, 6, 6))  # materialise the lazy classifier
    model.eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.bias, -1, 1)
    total = sum(p.numel() for p in model.parameters())
    prunable_count = sum(getattr(m, a).numel() for m, a in prunable(model))
    try:
        amount = amount_for(total, prunable_count, compression)
    except ValueError:
        return
    data = Batches(torch.randn(8, 2, 6, 6), torch.randint(0, 3, (8,)), 4, 0)
    state = {n: p.detach().clone() for n, p in model.named_parameters()}
    derive_masks(model, random_filter(model, amount, data), state)
    inputs = torch.randn(5, 2, 6, 6)
    result = compact(model, inputs)
    with torch.no_grad():
        assert (model(inputs) - result.model(inputs)).abs().max() <= 1e-5
    if result.compacted:
        assert result.params == count_params(model)[1] + sum(  # zeros the pruner did not make stay counted
            int((p == 0).sum()) for p in result.model.parameters()
        )


@settings(max_examples=25, deadline=None)
@given(conv_stacks(), st.data())
def test_compaction_matches_the_network_whose_layers_ignore_drawn_input_channels(case, data):
    model, seed, _ = case
    torch.manual_seed(seed)
    model(torch.zeros(1, 2, 6, 6))  # materialise the lazy classifier
    model.eval()
    layers = [m for m in model if isinstance(m, nn.Conv2d | nn.Linear)]
    ignored = 0
    with torch.no_grad():
        for producer, consumer in itertools.pairwise(layers):
            block = consumer.weight.shape[1] // producer.out_channels
            channels = data.draw(st.sets(st.integers(0, producer.out_channels - 1)))
            for channel in channels:
                consumer.weight[:, channel * block : (channel + 1) * block] = 0
            ignored += len(channels) if len(channels) < producer.out_channels else 0
    inputs = torch.randn(5, 2, 6, 6)
    result = compact(model, inputs)
    with torch.no_grad():
        assert (model(inputs) - result.model(inputs)).abs().max() <= 1e-5
    assert result.compacted == (ignored > 0) and result.removed_filters == ignored, result.note


class TokenMLP(nn.Module):
    """A transformer-style MLP over tokens (N, T, features), then a flatten over tokens and features."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(6, 8), nn.Linear(8, 5), nn.Linear(4 * 5, 3)

    def forward(self, x):
        return self.head(self.fc2(nn.functional.gelu(self.fc1(x))).relu().flatten(1))


def test_a_linear_layer_over_tokens_chains_only_through_elementwise_operations():
    """Its features are the last dimension: GELU keeps them, flatten interleaves them with the tokens (feature
    h of fc2 is every 5th input of the head, not a block), so fc2 → head is no chain."""
    assert find_chains(TokenMLP(), (4, 6)) == [Chain("fc1", "fc2")]
    model = TokenMLP().eval()
    with torch.no_grad():
        model.fc1.weight[[1, 5]] = 0
        model.fc1.bias[[1, 5]] = 0
        model.fc2.weight[2] = 0
        model.fc2.bias[2] = 0
    result = compact(model, torch.randn(8, 4, 6))
    assert result.compacted and result.removed_filters == 2 and result.model.fc2.in_features == 6


class Twice(nn.Module):
    """``a`` runs twice (shared weights): its input channels are the model's input and ``b``'s output."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1), nn.Linear(48, 2)

    def forward(self, x):
        return self.head(self.a(self.b(self.a(x).relu()).relu()).relu().flatten(1))


def test_a_layer_called_twice_is_in_no_chain_and_compaction_stays_sound():
    assert find_chains(Twice(), (3, 4, 4)) == []
    model = Twice().eval()
    with torch.no_grad():
        model.b.weight[1] = 0
        model.b.bias[1] = 0
    result = compact(model, torch.randn(8, 3, 4, 4))
    assert not result.compacted and result.model is model and "no conv/linear layer feeds" in result.note


def test_a_compacted_network_that_does_not_run_is_reported_not_raised(monkeypatch):
    """Should a chain ever be unsound in a way that breaks shapes, the cell keeps the masked model."""
    import pytest_prune.metrics.compaction as compaction

    monkeypatch.setattr(compaction, "find_chains", lambda model, shape: [Chain("b", "a")])
    model = Twice().eval()
    with torch.no_grad():
        model.b.weight[1] = 0
        model.b.bias[1] = 0
    result = compact(model, torch.randn(8, 3, 4, 4))
    assert not result.compacted and result.model is model
    assert result.note.startswith("not compacted: the compacted network does not run (")


def test_running_out_of_memory_is_raised_not_reported_as_an_unsound_network(monkeypatch):
    """An out-of-memory error is a RuntimeError, but a full device says nothing about the compacted network."""
    import pytest_prune.metrics.compaction as compaction

    def full(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(compaction, "max_difference", full)
    model = Twice().eval()
    monkeypatch.setattr(compaction, "find_chains", lambda model, shape: [Chain("b", "a")])
    with torch.no_grad():
        model.b.weight[1] = 0
        model.b.bias[1] = 0
    with pytest.raises(torch.cuda.OutOfMemoryError, match="out of memory"):
        compact(model, torch.randn(8, 3, 4, 4))


class SharedNorm(nn.Module):
    """One BatchNorm after two convolutions: removing a filter of one would slice the channel of both."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1)
        self.c3, self.c4 = nn.Conv2d(4, 8, 3, padding=1), nn.Conv2d(8, 2, 1)
        self.bn, self.head = nn.BatchNorm2d(8), nn.Linear(2 * 4 * 4, 2)

    def forward(self, x):
        x = self.c2(self.bn(self.c1(x)).relu())
        return self.head(self.c4(self.bn(self.c3(x)).relu()).flatten(1))


def test_a_batchnorm_called_twice_is_in_no_chain():
    assert find_chains(SharedNorm(), (3, 4, 4)) == [Chain("c2", "c3"), Chain("c4", "head", block=16)]
    model = SharedNorm().eval()
    with torch.no_grad():
        for conv in (model.c1, model.c3):
            conv.weight[1] = 0
            conv.bias[1] = 0
        model.bn.weight[1] = model.bn.bias[1] = 0
    result = compact(model, torch.randn(8, 3, 4, 4))
    assert not result.compacted and result.model is model


class PartialFlatten(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.conv, self.fc, self.how = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(8, 5), how

    def forward(self, x):  # (N, 4, 8, 8) flattened over (channel, row) only: fc reads each row's width
        x = self.conv(x)
        x = {"method": lambda t: t.flatten(1, 2), "kwargs": lambda t: torch.flatten(t, start_dim=1, end_dim=2)}[
            self.how
        ](x)
        return self.fc(x).flatten(1)


@pytest.mark.parametrize("how", ["method", "kwargs"])
def test_a_flatten_that_keeps_trailing_dimensions_makes_no_chain(how):
    assert find_chains(PartialFlatten(how), (3, 8, 8)) == []
    module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(1, 2), nn.Linear(8, 5), nn.Flatten())
    assert find_chains(module, (3, 8, 8)) == []
    whole = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(1, -1), nn.Linear(256, 5))
    assert find_chains(whole, (3, 8, 8)) == [Chain("0", "2", block=64)]


def test_the_parameters_that_go_with_one_filter_count_a_conv_consumers_kernel():
    from pytest_prune.conformance import ArchSpec, filter_unit

    model = ArchSpec("conv", (8, 24)).build()
    chains = find_chains(model, (4, 8, 8))
    assert filter_unit(model, (4, 8, 8)) == max(
        model.get_submodule(c.producer).weight[0].numel()
        + 1
        + model.get_submodule(c.consumer).weight[:, 0].numel() * c.block
        + (2 if c.norm else 0)
        for c in chains
    )
    assert filter_unit(model, (4, 8, 8)) >= 24 * 9  # a 3×3 consumer of 24 filters reads 24·9 weights per channel
