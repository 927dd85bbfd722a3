"""The corruption suite: published parameters, formulas checked statistically, determinism, streaming, skips."""

from __future__ import annotations

import colorsys
import io
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pytest_prune.options import CORRUPTION_NAMES
from pytest_prune.robustness import pillow_box, pillow_exact
from pytest_prune.robustness.blur import defocus_kernel, gaussian_kernel
from pytest_prune.robustness.corruptions import (
    BATCH,
    CORRUPTIONS,
    SEVERITIES,
    batch_generator,
    corrupt,
    corrupted_batches,
    hsv_to_rgb,
    rgb_to_hsv,
    severities_of,
)
from pytest_prune.robustness.pixels import PixelSpace
from pytest_prune.robustness.sampling import (
    bernoulli_positions,
    normal_table,
    normals,
    poisson_by_table,
    poisson_tables,
)


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
        before = x.clone()
        raw = corruption.apply(x, param, batch_generator(0, name, 0))
        # the streaming reuses one batch of pixels for every corruption and clamps the result in place
        assert torch.equal(x, before) and raw.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
        out = raw.clamp(0, 1)
        again = corruption.apply(x, param, batch_generator(0, name, 0)).clamp(0, 1)
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


@pytest.mark.parametrize(("height", "width"), [(41, 81), (81, 41)])
def test_rotation_of_an_oblong_image_is_rigid_not_a_shear(height, width):
    """A bar from the centre, rotated by ±30°: the same angle and the same length in pixels as on a square."""
    cy, cx = height // 2, width // 2
    x = torch.zeros(8, 1, height, width)
    x[:, :, cy, cx + 5 : cx + 20] = 1.0
    out = CORRUPTIONS["rotation"].apply(x, 30, torch.Generator().manual_seed(0))[:, 0]
    ys, xs = torch.meshgrid(torch.arange(height) - cy, torch.arange(width) - cx, indexing="ij")
    angles = torch.rad2deg(torch.atan2((out * ys).sum((1, 2)), (out * xs).sum((1, 2)))).abs()
    assert torch.allclose(angles, torch.full_like(angles, 30.0), atol=1.0)
    radius = (out * (xs**2 + ys**2).sqrt()).sum((1, 2)) / out.sum((1, 2))  # mean distance from the centre
    assert torch.allclose(radius, torch.full_like(radius, 12.0), atol=0.3)
    assert torch.allclose(out.sum((1, 2)), torch.full((8,), 15.0), atol=0.5)  # the bar keeps its mass


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


# --- the batched JPEG and pixelate against Pillow, image by image (what CIFAR-10-C does) ---------------------------


def per_image(x, edit):
    """Round to 8 bits, run ``edit`` on each image as a Pillow image, back to [0, 1] floats: the slow reference."""
    pixels = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = []
    for image in pixels:
        edited = edit(Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image))
        out.append(np.asarray(edited, dtype=np.uint8).reshape(image.shape))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255


def pillow_jpeg(quality):
    def edit(image):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return Image.open(buffer).convert(image.mode)

    return edit


def pillow_pixelate(factor):
    def edit(image):
        small = (max(1, int(image.width * factor)), max(1, int(image.height * factor)))
        return image.resize(small, Image.Resampling.BOX).resize(image.size, Image.Resampling.BOX)

    return edit


def textured(channels, height, width, n=24, seed=0):
    """Random pixels, with flat areas (one grey level, as MNIST's background) and an 8-bit ramp in some images."""
    x = torch.rand(n, channels, height, width, generator=torch.Generator().manual_seed(seed))
    x[: n // 3, :, : height // 2] = 0.0
    x[n // 3 : n // 2, :, :, : width // 2] = 0.5
    x[n // 2 : 2 * n // 3] = torch.linspace(0, 1, height * width).view(1, 1, height, width)
    return x


SIZES = [(28, 28), (32, 32), (13, 21), (2, 3)]  # whole 8×8 / 16×16 blocks or not, tiny chroma


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", SIZES)
def test_jpeg_equals_pillow_image_by_image(channels, size):
    x = textured(channels, *size)
    for quality in (*CORRUPTIONS["jpeg"].params, 95, 10):
        batched = CORRUPTIONS["jpeg"].apply(x, quality, None)
        assert torch.equal(batched, per_image(x, pillow_jpeg(quality))), quality


def test_jpeg_colour_under_another_codec_goes_through_pillow_image_by_image(monkeypatch):
    monkeypatch.setattr(pillow_exact, "_libjpeg_turbo", lambda: False)
    x = textured(3, 13, 21, n=6)
    prepared = pillow_exact.JpegInput(x)
    assert isinstance(prepared.images, np.ndarray)  # the levels, coded image by image
    for quality in (80, 40):
        assert torch.equal(prepared.round_trip(quality), per_image(x, pillow_jpeg(quality))), quality


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [*SIZES, (9, 40), (40, 5), (48, 20), (100, 10)])  # Pillow passes tall ones upright
def test_pixelate_equals_pillow_image_by_image(channels, size):
    x = textured(channels, *size)
    for factor in (*CORRUPTIONS["pixelate"].params, 0.5, 0.3):
        batched = CORRUPTIONS["pixelate"].apply(x, factor, None)
        assert torch.equal(batched, per_image(x, pillow_pixelate(factor))), factor


def test_pixelate_falls_back_to_pillow_when_no_order_of_its_passes_gives_pillows_result(monkeypatch):
    pillow_box._vertical_first.cache_clear()
    monkeypatch.setattr(pillow_box, "_resample", lambda levels, size, axis: levels.narrow(axis, 0, size) * 0)
    x = textured(1, 40, 5)
    try:
        assert torch.equal(CORRUPTIONS["pixelate"].apply(x, 0.65, None), per_image(x, pillow_pixelate(0.65)))
    finally:
        pillow_box._vertical_first.cache_clear()


# --- the faster noise draws keep their distributions ------------------------------------------------------------


def test_shot_noise_tables_give_the_exact_inverse_cdf():
    photons = 100
    rates = np.arange(256) * (photons / 255)
    cdf, _, outcomes, _ = poisson_tables(photons / 255)
    rows = cdf.reshape(256, outcomes)
    for level in (1, 77, 255):  # the table is the Poisson CDF
        lam = float(rates[level])
        pmf = [math.exp(k * math.log(lam) - lam - math.lgamma(k + 1)) for k in range(outcomes)]
        assert np.allclose(rows[level, :-1], np.cumsum(pmf)[:-1], rtol=1e-12, atol=1e-15)
    rng = np.random.default_rng(0)
    index = rng.integers(1, 256, 50_000)
    u = rng.random(50_000)
    u[:6] = [0.0, 1e-300, 1e-15, 0.5, 1 - 1e-12, 1 - 2**-53]  # the extremes of a float64 uniform draw
    counts = poisson_by_table(photons / 255, index, u)
    expected = [np.searchsorted(rows[level], draw, side="right") for level, draw in zip(index, u, strict=True)]
    assert np.array_equal(counts, expected)  # the k with CDF(k − 1) ≤ u < CDF(k), for every draw


def test_shot_noise_on_8bit_pixels_is_poisson_per_level_and_keeps_black_black():
    photons = 50
    levels = torch.randint(0, 256, (64, 1, 32, 32), generator=torch.Generator().manual_seed(0))
    x = levels.float() / 255
    counts = CORRUPTIONS["shot_noise"].apply(x, photons, batch_generator(0, "shot_noise", 0)) * photons
    assert torch.allclose(counts, counts.round(), atol=1e-4) and (counts[levels == 0] == 0).all()
    counts = counts.round()
    for level in (1, 128, 255):
        drawn = counts[levels == level].double()
        lam = level / 255 * photons
        assert abs(drawn.mean() - lam) < 5 * math.sqrt(lam / len(drawn))
        assert abs(drawn.var() / lam - 1) < 0.3


def test_shot_noise_off_the_8bit_levels_is_torch_poisson():
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = CORRUPTIONS["shot_noise"].apply(x, 100, batch_generator(0, "shot_noise", 0))
    seed = int(torch.randint(0, 2**62, (1,), generator=batch_generator(0, "shot_noise", 0)))
    expected = torch.poisson(x.clamp(0, 1) * 100, generator=torch.Generator().manual_seed(seed)) / 100
    assert torch.equal(out, expected)


@pytest.mark.parametrize("p", [0.01, 0.07, 0.5, 0.95])
def test_impulse_hits_are_a_bernoulli_process(p):
    n = 200_000
    hits = bernoulli_positions(n, p, torch.Generator().manual_seed(3))
    assert (hits[1:] > hits[:-1]).all() and hits[0] >= 0 and hits[-1] < n
    assert abs(len(hits) - n * p) < 5 * math.sqrt(n * p * (1 - p))
    first_half = int((hits < n // 2).sum())
    assert abs(first_half - len(hits) / 2) < 5 * math.sqrt(len(hits) / 4)
    gaps = (hits[1:] - hits[:-1] - 1).double()
    assert abs(gaps.mean() - (1 - p) / p) < 5 * math.sqrt((1 - p) / p**2 / len(gaps))
    assert len(bernoulli_positions(n, 0.0, torch.Generator())) == 0
    assert torch.equal(bernoulli_positions(7, 1.0, torch.Generator()), torch.arange(7))


# --- the matrix forms of the blurs and grids equal the direct ones -------------------------------------------------


@pytest.mark.parametrize("size", [(28, 28), (9, 13), (2, 2)])
def test_blurs_equal_their_padded_convolutions(size):
    x = textured(3, *size, n=6)
    for name, mode in (("gaussian_blur", "replicate"), ("defocus_blur", "reflect")):
        for param in CORRUPTIONS[name].params:
            kernel = gaussian_kernel(param) if name == "gaussian_blur" else defocus_kernel(*param)
            pad = kernel.shape[-1] // 2
            border = "replicate" if mode == "reflect" and min(size) <= pad else mode
            padded = F.pad(x.double(), (pad, pad, pad, pad), mode=border)
            expected = F.conv2d(padded, kernel.expand(3, 1, *kernel.shape), groups=3)
            out = CORRUPTIONS[name].apply(x, param, None)
            assert out.dtype == x.dtype and torch.allclose(out.double(), expected, atol=1e-6), (name, param)


def per_image_affine(x, theta):
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def test_rotation_and_translation_equal_per_image_affine_grids():
    x = textured(3, 28, 28, n=40)
    for degrees in CORRUPTIONS["rotation"].params:
        g = torch.Generator().manual_seed(degrees)
        angle = (torch.randint(0, 2, (len(x),), generator=torch.Generator().manual_seed(degrees)) * 2 - 1).double()
        cos, sin = torch.cos(angle * math.radians(degrees)), torch.sin(angle * math.radians(degrees))
        zero = torch.zeros_like(cos)
        theta = torch.stack((torch.stack((cos, -sin, zero), 1), torch.stack((sin, cos, zero), 1)), 1)
        assert torch.allclose(CORRUPTIONS["rotation"].apply(x, degrees, g), per_image_affine(x, theta), atol=1e-6)
    for fraction in CORRUPTIONS["translation"].params:
        angle = torch.rand(len(x), generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 * math.pi
        shift = torch.stack((torch.cos(angle), torch.sin(angle)), 1) * 2 * fraction
        theta = torch.cat((torch.eye(2, dtype=torch.float64).expand(len(x), 2, 2), -shift[:, :, None]), 2)
        out = CORRUPTIONS["translation"].apply(x, fraction, torch.Generator().manual_seed(1))
        assert torch.allclose(out, per_image_affine(x, theta), atol=1e-6)


@pytest.mark.parametrize(
    "normalisation",
    [{"mean": [0.1307], "std": [0.3081]}, {"mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]}],
    ids=["grey", "colour"],
)
def test_streamed_batches_are_the_normalised_clamped_corruption(normalisation):
    """Every kind of corruption (noise drawn per value, Pillow's 8-bit images), normalised channel by channel."""
    channels = len(normalisation["mean"])
    space = PixelSpace(normalisation, channels)
    x = space.normalised(images(channels, n=BATCH + 5, size=8))
    for name in ("gaussian_noise", "shot_noise", "impulse_noise", "jpeg", "pixelate"):
        for start, batch in corrupted_batches(x, space, CORRUPTIONS[name], 2, seed=4):
            pixels = space.pixels(x[start : start + BATCH])
            shifted = CORRUPTIONS[name].apply(pixels, CORRUPTIONS[name].params[1], batch_generator(4, name, start))
            assert torch.equal(batch, space.normalised(shifted.clamp(0, 1)))


def test_channels_last_images_are_corrupted_as_their_contiguous_copy():
    space = PixelSpace({"mean": [0.5] * 3, "std": [0.25] * 3}, 3)
    x = space.normalised(images(3, n=12, size=8))
    channels_last = x.contiguous(memory_format=torch.channels_last)
    for name in CORRUPTIONS:
        if CORRUPTIONS[name].skip_reason(3) is None:
            ours = [b for _, b in corrupted_batches(channels_last, space, CORRUPTIONS[name], 3, seed=1)]
            theirs = [b for _, b in corrupted_batches(x, space, CORRUPTIONS[name], 3, seed=1)]
            assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True)), name


@pytest.mark.parametrize(
    ("normalisation", "message"),
    [
        ({"mean": [0.5, 0.5], "std": [0.2]}, "does not match 3 channels; give one value or one per channel"),
        ({"mean": "half", "std": 0.2}, "normalisation mean 'half' is not a number or a list of numbers"),
        ({"mean": 0.5, "std": [0.2, 0.0, 0.2]}, "every std must be > 0"),
        ({"mean": [float("nan")], "std": 1}, "normalisation mean \\[nan\\] is not finite"),
    ],
)
def test_a_normalisation_that_cannot_map_pixels_is_named(normalisation, message):
    with pytest.raises(ValueError, match=message):
        PixelSpace(normalisation, 3)


def test_a_single_number_normalises_every_channel():
    space = PixelSpace({"mean": 0.5, "std": 0.25}, 3)
    assert torch.equal(space.normalised(torch.ones(1, 3, 2, 2)), torch.full((1, 3, 2, 2), 2.0))


@pytest.mark.parametrize(("mean", "std"), [([0.1307], [0.3081]), ([0.49, 0.48, 0.45], [0.25, 0.24, 0.26])])
def test_normalising_is_pixels_less_mean_over_std_and_leaves_its_input(mean, std):
    """One mean and std: one pass, pixels·(1/std) − mean/std, within float32 rounding of (pixels − mean)/std."""
    space = PixelSpace({"mean": mean, "std": std}, len(mean))
    pixels = torch.rand(6, len(mean), 5, 5, generator=torch.Generator().manual_seed(0)) * 1.4 - 0.2
    kept = pixels.clone()
    expected = (pixels.double() - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    assert torch.allclose(space.normalised(pixels).double(), expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(pixels, kept)
    clamped = space.normalise_clamped_(pixels)
    assert clamped is pixels  # written over its input
    assert torch.equal(clamped, space.normalised(kept.clamp(0, 1)))


# --- the severities of a batch share one draw ----------------------------------------------------------------------


@pytest.mark.parametrize("eight_bit", [False, True])  # shot noise's tables, or torch.poisson
@pytest.mark.parametrize("channels", [1, 3])
def test_a_severity_is_the_same_whichever_others_run(channels, eight_bit):
    space = PixelSpace({"mean": [0.5] * channels, "std": [0.25] * channels}, channels)
    pixels = textured(channels, 12, 12, n=30)
    if eight_bit:
        pixels = (pixels * 255).round() / 255
    for name, corruption in CORRUPTIONS.items():
        if corruption.skip_reason(channels):
            continue
        every = dict(severities_of(pixels, space, corruption, SEVERITIES, seed=3, start=500))
        for severity in SEVERITIES:
            alone = corrupt(pixels, space, corruption, severity, seed=3, start=500)
            assert torch.equal(alone, every[severity]), (name, severity)
        assert not torch.equal(every[1], every[5]), name
        if name in ("gaussian_noise", "shot_noise", "impulse_noise", "rotation", "translation"):
            other = corrupt(pixels, space, corruption, 3, seed=3, start=0)  # another batch draws anew
            assert not torch.equal(other, every[3]), name


def test_noise_severities_are_coupled_through_one_draw():
    x = torch.full((2, 1, 64, 64), 0.5)
    g = lambda: batch_generator(0, "gaussian_noise", 0)  # noqa: E731
    low, high = (CORRUPTIONS["gaussian_noise"].apply(x, sigma, g()) - 0.5 for sigma in (0.04, 0.10))
    assert torch.allclose(low / 0.04, high / 0.10, atol=1e-5)
    impulse = CORRUPTIONS["impulse_noise"]
    hit = [impulse.apply(x, amount, batch_generator(0, "impulse_noise", 0)) != 0.5 for amount in impulse.params]
    for smaller, larger in itertools.pairwise(hit):
        assert not (smaller & ~larger).any()  # a value hit at one amount is hit at every larger one
    for amount, mask in zip(impulse.params, hit, strict=True):
        assert abs(mask.float().mean().item() - amount) < 5 * math.sqrt(amount / mask.numel())


def test_normal_draws_are_the_normal_distribution_at_16_bits():
    table = torch.from_numpy(normal_table()).double()
    assert len(table) == 2**16 and (table[1:] > table[:-1]).all()
    assert abs(float(table.mean())) < 1e-9 and abs(float(table.square().mean()) - 1) < 1e-6
    # the table's own distribution function is Φ's to within its 2**-16 steps
    cdf = (torch.arange(2**16, dtype=torch.float64) + 0.5) / 2**16
    assert float((torch.special.ndtr(table) - cdf).abs().max()) < 2**-16
    z = normals((400, 1000), torch.Generator().manual_seed(5))
    assert z.dtype == torch.float32 and z.shape == (400, 1000)
    z = z.double()
    assert abs(float(z.mean())) < 5 / 632 and abs(float(z.std()) - 1) < 0.005
    for q in (0.01, 0.16, 0.5, 0.84, 0.99):
        below = float((z <= float(torch.special.ndtri(torch.tensor(q, dtype=torch.float64)))).double().mean())
        assert abs(below - q) < 0.002
    again = normals((400, 1000), torch.Generator().manual_seed(5)).double()
    assert torch.equal(z, again) and not torch.equal(z, normals((400, 1000), torch.Generator().manual_seed(6)).double())
