from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from pytest_prune import reference
from pytest_prune.data.embedded import digits
from pytest_prune.reference import WeightsError, load_pretrained, read_manifest, reference_dir
from pytest_prune.registry import ARCHITECTURES, load_builtins

load_builtins()


def test_every_builtin_pair_ships_verified_weights():
    from pytest_prune.cli import BUILTIN_PAIRS

    manifest = read_manifest()
    expected = [f"{d}/{a}{suffix}" for d, a in BUILTIN_PAIRS for suffix in ("", "/seed1")]
    assert sorted(manifest) == sorted(expected)
    for key, entry in manifest.items():
        assert reference.sha256_file(reference_dir() / entry["file"]) == entry["sha256"]
        assert {"top1", "recipe", "seed", "versions", "threads"} <= set(entry)
        assert entry["seed"] == (1 if key.endswith("/seed1") else 0)


def test_the_separately_trained_model_is_shipped_and_differs_from_the_parent(tmp_path):
    data = digits()
    parent = load_pretrained("digits", "lenet5", data, tmp_path)
    separate = load_pretrained("digits", "lenet5", data, tmp_path, seed=reference.SEPARATE_SEED)
    assert separate.source == "shipped" and separate.path.name == "digits-lenet5-seed1.pt"
    assert separate.sha256 != parent.sha256
    assert reference.manifest_key("digits", "lenet5", 1) == "digits/lenet5/seed1"


def test_shipped_weights_load_and_match_the_manifest_accuracy(tmp_path):
    from pytest_prune.train import evaluate

    data = digits()
    dense = load_pretrained("digits", "lenet300_100", data, tmp_path)
    assert dense.source == "shipped"
    top1, _ = evaluate(dense.model, data.test_x, data.test_y)
    assert top1 == pytest.approx(read_manifest()["digits/lenet300_100"]["top1"], abs=1e-4)


def test_tampered_weights_name_the_file_and_both_hashes(tmp_path, monkeypatch):
    folder = tmp_path / "ref"
    shutil.copytree(reference_dir(), folder)
    entry = read_manifest(folder)["digits/lenet5"]
    target = folder / entry["file"]
    target.write_bytes(target.read_bytes()[:-10] + b"0123456789")
    monkeypatch.setattr(reference, "reference_dir", lambda: folder)
    with pytest.raises(WeightsError) as info:
        load_pretrained("digits", "lenet5", digits(), tmp_path)
    message = str(info.value)
    assert str(target) in message and entry["sha256"] in message
    assert reference.sha256_file(target) in message


@pytest.fixture
def user_arch():
    from torch import nn

    def tiny_user_net(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, num_classes))

    ARCHITECTURES.register(tiny_user_net)
    yield "tiny_user_net"
    ARCHITECTURES._entries.pop("tiny_user_net")


def test_an_architecture_without_shipped_weights_trains_once_then_loads_from_cache(tmp_path, user_arch):
    data = digits()
    first = load_pretrained("digits", user_arch, data, tmp_path)
    second = load_pretrained("digits", user_arch, data, tmp_path)
    assert (first.source, second.source) == ("trained", "cached") and first.sha256 == second.sha256
    assert first.origin == second.origin == "trained"  # records say the same whichever process trained it
    assert all(
        torch.equal(a, b)
        for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(), strict=True)
    )
    first.path.write_bytes(b"corrupt")  # a damaged cache entry is retrained, not trusted
    third = load_pretrained("digits", user_arch, data, tmp_path)
    assert third.source == "trained" and third.sha256 == first.sha256


def test_an_architecture_that_rejects_the_input_shape_is_named(tmp_path):
    from torch import nn

    def wants_rgb(input_shape, num_classes):
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(num_classes))

    ARCHITECTURES.register(wants_rgb)
    try:
        with pytest.raises(
            WeightsError, match=r"'wants_rgb' does not accept dataset 'digits' inputs of shape \(1, 8, 8\)"
        ):
            load_pretrained("digits", "wants_rgb", digits(), tmp_path)
    finally:
        ARCHITECTURES._entries.pop("wants_rgb")


def test_manifest_is_valid_json_with_schema():
    document = json.loads((reference_dir() / "manifest.json").read_text())
    assert document["schema"] == "pytest-prune-manifest/1"


def test_the_robustness_stage_is_keyed_by_the_separate_model_and_pillows_codecs(user_arch, monkeypatch):
    """Cells served from the cache must not keep a retrained separate model's similarity, or another codec's JPEG."""
    from pytest_prune.matrix import Case
    from pytest_prune.pipeline import robustness_material
    from pytest_prune.robustness import pillow_exact
    from pytest_prune.settings import build

    settings = build({"robustness": True})
    shipped = robustness_material(settings, Case("mnist5k", "lenet5", "random", 2.0, 0))
    sha = read_manifest()["mnist5k/lenet5/seed1"]["sha256"]
    assert shipped["reference"] == f"shipped {sha}"
    assert shipped["codecs"] == pillow_exact.codec_versions() and shipped["codecs"]["pillow"]
    trained = robustness_material(settings, Case("digits", user_arch, "random", 2.0, 0))["reference"]
    assert trained.startswith("trained ")
    other_threads = build({"robustness": True, "threads": 2})
    assert robustness_material(other_threads, Case("digits", user_arch, "random", 2.0, 0))["reference"] != trained
    monkeypatch.setattr(reference, "read_manifest", lambda folder=None: {})  # the shipped file withdrawn
    assert robustness_material(settings, Case("mnist5k", "lenet5", "random", 2.0, 0))["reference"].startswith("trained")


def test_a_trained_reference_is_keyed_by_its_data_and_the_whole_file_of_its_architecture(tmp_path):
    import importlib.util
    import sys

    source = tmp_path / "user_nets.py"
    text = (
        "from torch import nn\n\nWIDTH = 24\n\n\n"
        "def keyed_user_net(input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, WIDTH), nn.ReLU(), nn.Linear(WIDTH, num_classes))\n"
    )
    source.write_text(text)
    spec = importlib.util.spec_from_file_location("user_nets", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules["user_nets"] = module
    spec.loader.exec_module(module)
    ARCHITECTURES.register(module.keyed_user_net)
    try:
        data = digits()
        assert load_pretrained("digits", "keyed_user_net", data, tmp_path).source == "trained"
        assert load_pretrained("digits", "keyed_user_net", data, tmp_path).source == "cached"
        other = dataclasses.replace(data, train_y=data.train_y.roll(1))  # the same shapes, other labels
        assert load_pretrained("digits", "keyed_user_net", other, tmp_path).source == "trained"
        source.write_text(text.replace("WIDTH = 24", "WIDTH = 24  # the module changed, not the factory"))
        assert load_pretrained("digits", "keyed_user_net", data, tmp_path).source == "trained"
    finally:
        ARCHITECTURES._entries.pop("keyed_user_net")
        sys.modules.pop("user_nets")
