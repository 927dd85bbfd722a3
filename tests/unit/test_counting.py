"""MAC and parameter counts against published figures and against torch.utils.flop_counter."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pytest_prune.architectures import CifarResNet, lenet5, lenet300_100, resnet20
from pytest_prune.metrics import count_macs, count_params, macs_summary


def flop_counter_macs(model, shape):
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, *shape))
    return counter.get_total_flops() // 2


@pytest.mark.parametrize(
    ("factory", "shape", "params", "macs"),
    [
        (lenet300_100, (1, 28, 28), 266_610, 266_200),
        (lenet5, (1, 28, 28), 431_080, 2_293_000),
        (resnet20, (3, 32, 32), 269_722, 40_551_040),
        (lambda s, c: CifarResNet(56, s, c), (3, 32, 32), 853_018, 125_485_696),
    ],
    ids=["lenet300_100", "lenet5", "resnet20", "resnet56"],
)
def test_published_counts(factory, shape, params, macs):
    torch.manual_seed(0)  # a random init can hold an exact zero weight (1 seed in ~300), making sparse < dense
    model = factory(shape, 10)
    assert count_params(model)[0] == params
    dense, sparse = macs_summary(count_macs(model, shape))
    assert dense == macs == flop_counter_macs(model, shape)
    assert sparse == pytest.approx(dense, rel=1e-6)


def test_sparse_macs_scale_each_layer_by_its_weight_density():
    model = lenet300_100((1, 28, 28), 10)
    with torch.no_grad():
        model.fc1.weight[:, : 784 // 2] = 0  # half of fc1
    counts = {c.name: c for c in count_macs(model, (1, 28, 28))}
    assert counts["fc1"].density == 0.5
    assert macs_summary(counts.values())[1] == 235_200 / 2 + 30_000 + 1_000


def test_counting_changes_no_state():
    model = resnet20((3, 32, 32), 10).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, (3, 32, 32))
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


class Unbatched(nn.Module):
    """Flattens its one input to a vector, so its layers see 1-D (unbatched) inputs."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(12, 5), nn.Linear(5, 3)

    def forward(self, x):
        return self.fc2(self.fc1(x.reshape(-1)).relu())[None]


def test_a_linear_layer_on_an_unbatched_input_counts_all_its_outputs():
    model = Unbatched()
    assert macs_summary(count_macs(model, (3, 2, 2)))[0] == 12 * 5 + 5 * 3 == flop_counter_macs(model, (3, 2, 2))


def test_transposed_convolution_is_counted_like_flop_counter():
    model = nn.Sequential(nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2))
    assert macs_summary(count_macs(model, (4, 5, 5)))[0] == flop_counter_macs(model, (4, 5, 5))


class AttentionWithLSTM(nn.Module):
    """Functional matmuls (counted through FlopCounterMode) and an LSTM (no MAC formula: named)."""

    def __init__(self):
        super().__init__()
        self.q = nn.Linear(8, 8)
        self.rnn = nn.LSTM(8, 8, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        q = self.q(x)
        x = torch.matmul(torch.matmul(q, q.transpose(1, 2)).softmax(-1), x)
        return self.fc(self.rnn(x)[0].mean(1))


def test_matmuls_outside_modules_are_counted_and_unknown_layers_named():
    from pytest_prune.metrics import FUNCTIONAL, uncounted_modules

    counts = {c.name: c.macs for c in count_macs(AttentionWithLSTM(), (5, 8))}
    assert counts == {"q": 5 * 8 * 8, "fc": 8 * 3, FUNCTIONAL: 2 * 5 * 5 * 8}
    assert uncounted_modules(AttentionWithLSTM()) == ["rnn"]
    assert uncounted_modules(resnet20((3, 32, 32), 10)) == []


class Functional(nn.Module):
    """One matrix product made outside any conv/linear module, in the form given."""

    def __init__(self, form):
        super().__init__()
        self.form = form
        self.fc = nn.Linear(8, 8)
        self.register_buffer("w", torch.randn(8, 8))
        self.register_buffer("k", torch.randn(4, 2, 3, 3))

    def forward(self, x):  # x: (1, 2, 6, 8)
        if self.form == "operator":
            x = x @ self.w
        elif self.form == "einsum":
            x = torch.einsum("bcij,jk->bcik", x, self.w)
        elif self.form == "linear":
            x = nn.functional.linear(x, self.w)
        elif self.form == "bmm":
            x = torch.bmm(x.flatten(0, 1), self.w.expand(2, 8, 8)).view_as(x)
        elif self.form == "attention":
            x = nn.functional.scaled_dot_product_attention(x, x, x)
        elif self.form == "conv":
            x = nn.functional.conv2d(x, self.k, padding=1)[:, :2]
        return self.fc(x)


@pytest.mark.parametrize("form", ["operator", "einsum", "linear", "bmm", "attention", "conv"])
def test_every_form_of_functional_product_is_counted_like_flop_counter(form):
    from pytest_prune.metrics import FUNCTIONAL

    counts = {c.name: c.macs for c in count_macs(Functional(form), (2, 6, 8))}
    if form == "attention":  # FlopCounterMode counts CPU attention as 0; pytest-prune adds its flash formula
        assert counts[FUNCTIONAL] == 2 * 6 * 6 * (8 + 8)  # batch·heads × L × S × (E + Ev): QKᵀ and AV
    else:
        assert counts[FUNCTIONAL] == flop_counter_macs(Functional(form), (2, 6, 8)) - counts["fc"] > 0


def test_models_without_functional_products_never_pay_for_flop_counter(monkeypatch):
    """FlopCounterMode's first use imports torch._dynamo (seconds): plain layer models skip it."""
    from pytest_prune.metrics import counting

    def refuse(*args, **kwargs):
        raise AssertionError("FlopCounterMode used for a model whose products all run in conv/linear layers")

    monkeypatch.setattr(counting, "FlopCounterMode", refuse)
    for factory in (lenet300_100, lenet5, resnet20):
        assert macs_summary(count_macs(factory((1, 28, 28), 10), (1, 28, 28)))[0] > 0
    with pytest.raises(AssertionError, match="FlopCounterMode used"):
        count_macs(Functional("operator"), (2, 6, 8))


class SelfAttention(nn.Module):
    """Tokens (L, E) through nn.MultiheadAttention (batch first, as vision transformers use it), then a head."""

    def __init__(self):
        super().__init__()
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):  # x: (1, 6, 8)
        return self.head(self.attention(x, x, x, need_weights=False)[0].mean(1))


def test_multihead_attention_is_counted_in_eval_mode_too():
    """Its eval-mode fast path is one fused op that FlopCounterMode counts as zero; counting takes the other path."""
    from pytest_prune.metrics import FUNCTIONAL

    length, embed = 6, 8
    attention = 2 * length * length * embed  # QKᵀ and AV over both heads
    counts = {c.name: c.macs for c in count_macs(SelfAttention(), (length, embed))}
    projections = {f"attention.{p}_proj": length * embed * embed for p in "qkvo"}  # tokens × E × E each
    projections["attention.out_proj"] = projections.pop("attention.o_proj")
    assert counts == {**projections, FUNCTIONAL: attention, "head": embed * 3}
    # FlopCounterMode counts CPU attention as 0 (pytest-prune adds it): everything else is its count
    assert sum(counts.values()) - counts[FUNCTIONAL] == flop_counter_macs(SelfAttention(), (length, embed))
    assert torch.backends.mha.get_fastpath_enabled()  # restored


def test_a_pruned_attention_projection_counts_at_its_density():
    """out_proj is a prunable linear layer that nn.MultiheadAttention multiplies by without calling it."""
    from pytest_prune.metrics import FUNCTIONAL

    model = SelfAttention()
    with torch.no_grad():
        model.attention.out_proj.weight[:, :6] = 0  # 3/4 of it
        model.attention.in_proj_weight[8:12] = 0  # half of k's rows
    density = {c.name: c.density for c in count_macs(model, (6, 8))}
    assert density["attention.out_proj"] == 0.25 and density["attention.k_proj"] == 0.5
    assert density["attention.q_proj"] == density["attention.v_proj"] == density[FUNCTIONAL] == 1.0


def test_cross_attention_counts_each_projection_on_its_own_tokens():
    attention = nn.MultiheadAttention(8, 2, kdim=4, vdim=5, batch_first=True)

    class Cross(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention, self.head = attention, nn.Linear(8, 3)

        def forward(self, x):  # 6 query tokens of 8; 3 key/value tokens of 4 and 5 features
            memory = x[:, :3]
            return self.head(self.attention(x, memory[..., :4], memory[..., :5], need_weights=False)[0].mean(1))

    from pytest_prune.metrics import FUNCTIONAL

    counts = {c.name: c.macs for c in count_macs(Cross(), (6, 8))}
    assert counts["attention.q_proj"] == 6 * 8 * 8 and counts["attention.out_proj"] == 6 * 8 * 8
    assert counts["attention.k_proj"] == 3 * 4 * 8 and counts["attention.v_proj"] == 3 * 5 * 8
    assert counts[FUNCTIONAL] == 2 * 6 * 3 * 8  # QKᵀ and AV: 6 queries × 3 keys × 8
    assert sum(counts.values()) - counts[FUNCTIONAL] == flop_counter_macs(Cross(), (6, 8))


class FramesInTheBatch(nn.Module):
    """A clip's frames folded into dimension 0, a sequence-first layer, and a conv on an unbatched image."""

    def __init__(self):
        super().__init__()
        self.frame = nn.Conv2d(3, 8, 3, padding=1)
        self.token = nn.Linear(8, 5)
        self.single = nn.Conv2d(3, 2, 3)

    def forward(self, clip):  # (N, T, 3, H, W)
        frames = self.frame(clip.flatten(0, 1))  # (N·T, 8, H, W)
        tokens = self.token(frames.mean((2, 3)).view(clip.shape[0], clip.shape[1], 8).transpose(0, 1))  # (T, N, 5)
        return tokens.mean(0) + self.single(clip[0, 0]).sum()


def test_every_output_element_of_the_one_probed_sample_counts_whatever_sits_in_dimension_0():
    model = FramesInTheBatch()
    counts = {c.name: c.macs for c in count_macs(model, (4, 3, 8, 8))}
    assert counts == {"frame": 4 * 8 * 8 * 8 * 27, "token": 4 * 5 * 8, "single": 2 * 6 * 6 * 27}
    assert macs_summary(count_macs(model, (4, 3, 8, 8)))[0] == flop_counter_macs(model, (4, 3, 8, 8))


def test_a_float64_model_is_probed_in_its_own_dtype():
    model = lenet300_100((1, 28, 28), 10).double()
    assert macs_summary(count_macs(model, (1, 28, 28)))[0] == 784 * 300 + 300 * 100 + 100 * 10
