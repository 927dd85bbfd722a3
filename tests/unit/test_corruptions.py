"""The corruption suite: published parameters, formulas checked statistically, determinism, streaming, skips."""

from __future__ import annotations

import colorsys
import math

import pytest
import torch

from pytest_prune.robustness.corruptions import (
    BATCH,
    CORRUPTIONS,
    SEVERITIES,
    PixelSpace,
    batch_generator,
    corrupted_batches,
    defocus_kernel,
    hsv_to_rgb,
    rgb_to_hsv,
)
from pytest_prune.settings import CORRUPTION_NAMES


def images(channels, n=64, size=16, seed=0):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def test_the_suite_is_the_one_settings_offers():
    assert tuple(CORRUPTIONS) == CORRUPTION_NAMES


def test_published_cifar10c_parameters():
    assert CORRUPTIONS["gaussian_noise"].params == (0.04, 0.06, 0.08, 0.09, 0.10)
    assert CORRUPTIONS["shot_noise"].params == (500, 250, 100, 75, 50)
    assert CORRUPTIONS["impulse_noise"].params == (0.01, 0.02, 0.03, 0.05, 0.07)
    assert CORRUPTIONS["contrast"].params == (0.75, 0.5, 0.4, 0.3, 0.15)
    assert CORRUPTIONS["jpeg"].params == (80, 65, 58, 50, 40)
    assert CORRUPTIONS["pixelate"].params == (0.95, 0.9, 0.85, 0.75, 0.65)


@pytest.mark.parametrize("name", CORRUPTION_NAMES)
@pytest.mark.parametrize("channels", [1, 3])
def test_every_corruption_is_deterministic_in_range_and_grows_with_severity(name, channels):
    corruption = CORRUPTIONS[name]
    if corruption.skip_reason(channels):
        pytest.skip(corruption.skip_reason(channels))
    x = images(channels)
    change = []
    for severity in SEVERITIES:
        param = corruption.params[severity - 1]
        out = corruption.apply(x, param, batch_generator(0, name, severity, 0)).clamp(0, 1)
        again = corruption.apply(x, param, batch_generator(0, name, severity, 0)).clamp(0, 1)
        assert out.shape == x.shape and torch.isfinite(out).all() and torch.equal(out, again)
        change.append(float((out - x).abs().mean()))
    assert min(change) > 0
    if name != "saturate":  # saturate's published parameters first desaturate, then oversaturate
        assert change[-1] > change[0]


def test_noise_formulas_match_their_definitions():
    x = torch.full((4, 1, 64, 64), 0.5)
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    noise = CORRUPTIONS["gaussian_noise"].apply(x, 0.1, g()) - x
    assert abs(noise.std().item() - 0.1) < 0.003 and abs(noise.mean().item()) < 0.003
    shot = CORRUPTIONS["shot_noise"].apply(x, 100, g())
    assert abs(shot.mean().item() - 0.5) < 0.005 and abs(shot.var().item() - 0.5 / 100) < 0.0005
    impulse = CORRUPTIONS["impulse_noise"].apply(x, 0.05, g())
    hit = impulse != 0.5
    assert abs(hit.float().mean().item() - 0.05) < 0.005 and set(impulse[hit].unique().tolist()) == {0.0, 1.0}
    speckle = CORRUPTIONS["speckle_noise"].apply(x, 0.2, g()) - x
    assert abs(speckle.std().item() - 0.5 * 0.2) < 0.003


def test_contrast_and_brightness():
    x = images(3)
    out = CORRUPTIONS["contrast"].apply(x, 0.3, None)
    mean = x.mean(dim=(-2, -1), keepdim=True)
    assert torch.allclose(out.mean(dim=(-2, -1), keepdim=True), mean, atol=1e-6)
    assert torch.allclose(out - mean, 0.3 * (x - mean), atol=1e-6)
    grey = images(1)
    assert torch.allclose(CORRUPTIONS["brightness"].apply(grey, 0.2, None), grey + 0.2)
    value = rgb_to_hsv(CORRUPTIONS["brightness"].apply(x, 0.1, None).clamp(0, 1))[:, 2]
    assert torch.allclose(value, (rgb_to_hsv(x)[:, 2] + 0.1).clamp(0, 1), atol=1e-5)


def test_hsv_matches_colorsys_and_round_trips():
    x = images(3, n=40, size=2)
    hsv = rgb_to_hsv(x)
    pixel = x[:, :, 0, 0]
    expected = torch.tensor([colorsys.rgb_to_hsv(*p.tolist()) for p in pixel])
    assert torch.allclose(hsv[:, :, 0, 0], expected, atol=1e-5)
    assert torch.allclose(hsv_to_rgb(hsv), x, atol=1e-5)


def test_defocus_kernel_is_a_normalised_symmetric_disk():
    for radius, sigma in CORRUPTIONS["defocus_blur"].params:
        kernel = defocus_kernel(radius, sigma)
        assert math.isclose(float(kernel.sum()), 1.0, rel_tol=1e-9)
        assert torch.allclose(kernel, kernel.T) and torch.allclose(kernel, kernel.flip(0))
    # radius 1.5 on the integer grid covers the 3×3 square; σ 0.1 smoothing adds ~e^-50 outside it
    assert defocus_kernel(1.5, 0.1).shape == (3, 3) and (defocus_kernel(1.5, 0.1) > 0.1).all()


def test_translation_moves_an_image_by_its_fraction():
    x = torch.zeros(8, 1, 50, 50)
    x[:, :, 20:30, 20:30] = 1.0
    out = CORRUPTIONS["translation"].apply(x, 0.2, torch.Generator().manual_seed(0))
    grid = torch.arange(50, dtype=torch.float32)
    cy = (out[:, 0].sum(2) * grid).sum(1) / out[:, 0].sum((1, 2))
    cx = (out[:, 0].sum(1) * grid).sum(1) / out[:, 0].sum((1, 2))
    distance = ((cy - 24.5) ** 2 + (cx - 24.5) ** 2).sqrt()
    assert torch.allclose(distance, torch.full_like(distance, 10.0), atol=0.3)


def test_rotation_by_its_angle():
    x = torch.zeros(4, 1, 41, 41)
    x[:, :, 20, 25:40] = 1.0  # a bar pointing right from the centre
    out = CORRUPTIONS["rotation"].apply(x, 30, torch.Generator().manual_seed(0))[:, 0]
    ys, xs = torch.meshgrid(torch.arange(41.0) - 20, torch.arange(41.0) - 20, indexing="ij")
    angles = torch.rad2deg(torch.atan2((out * ys).sum((1, 2)), (out * xs).sum((1, 2)))).abs()
    assert torch.allclose(angles, torch.full_like(angles, 30.0), atol=1.0)


def test_skips_name_their_reason():
    assert CORRUPTIONS["saturate"].skip_reason(1) == "saturate needs 3-channel images; the data has 1"
    assert CORRUPTIONS["gaussian_noise"].skip_reason(5) is None
    assert CORRUPTIONS["jpeg"].skip_reason(4) == "jpeg needs 1 or 3-channel images; the data has 4"


def test_streaming_is_batched_normalised_and_independent_of_order():
    space = PixelSpace({"mean": [0.1307], "std": [0.3081]}, 1)
    pixels = images(1, n=BATCH + 37, size=8)
    x = space.normalised(pixels)
    assert torch.allclose(space.pixels(x), pixels, atol=1e-6)
    batches = list(corrupted_batches(x, space, CORRUPTIONS["shot_noise"], 3, seed=0))
    assert [start for start, _ in batches] == [0, BATCH] and len(batches[1][1]) == 37
    again = dict(corrupted_batches(x, space, CORRUPTIONS["shot_noise"], 3, seed=0))
    assert torch.equal(again[BATCH], batches[1][1])
    other_seed = dict(corrupted_batches(x, space, CORRUPTIONS["shot_noise"], 3, seed=1))
    assert not torch.equal(other_seed[0], batches[0][1])
    with pytest.raises(ValueError, match="severity 6 is outside 1–5"):
        next(corrupted_batches(x, space, CORRUPTIONS["shot_noise"], 6, seed=0))
