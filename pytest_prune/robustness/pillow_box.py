"""Pixelate as Pillow gives it for each 8-bit image, computed for a whole batch at once.

Pillow's BOX resampling rounds a fixed-point weighted sum to 8 bits after each pass; the weights are read
off Pillow itself (it resamples basis images) and applied to the whole batch, with Pillow's rounding and in
Pillow's order of the two passes (read off Pillow per shape), so the result is Pillow's to the bit: the
tests compare it with Pillow image by image. When upsampling copies samples (BOX upsampling does), the
vertical pass runs on the transposed planes and the copy back to full size reads them so.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

_PRECISION = 22
"""Pillow resamples 8-bit images in fixed point with 22 fractional bits (``PRECISION_BITS`` in Resample.c)."""


def levels(x: torch.Tensor) -> torch.Tensor:
    """The 8-bit levels of [0, 1] pixels, as integer-valued floats (what an 8-bit image of them holds)."""
    return (x.clamp(0, 1) * 255).round()


@functools.lru_cache(maxsize=64)
def _box_pass(size: int, new_size: int) -> tuple[str, torch.Tensor, torch.Tensor | None]:
    """How Pillow's BOX filter resamples ``size`` samples to ``new_size`` on 8-bit images, in batched form.

    The fixed-point weights are Pillow's own: resizing a 32-bit image whose rows are basis vectors of 2**22
    returns round(weight · 2**22), the integer weight Pillow uses for 8-bit images; an output sample is then
    (Σ weight · input + 2**21) >> 22, clipped to 0–255. Three batched forms compute exactly that:

    * ("take", indices, None) when every output copies one input (weight 2**22), as in upsampling;
    * ("sum", 0/1 matrix, scale) when the weights of each output are equal, as BOX weights are: the float32
      matrix product sums the inputs exactly (≤ 255 · size < 2**24) and ⌊sum · scale + ½⌋ in float32 is the
      fixed-point result, checked here for every possible sum;
    * ("dot", integer weights in float64, None) otherwise, exact in float64.
    """
    from PIL import Image

    basis = np.diag(np.full(size, 1 << _PRECISION, dtype=np.int32))
    weights = np.asarray(Image.fromarray(basis).resize((new_size, size), Image.Resampling.BOX), dtype=np.int64).T
    used = weights != 0
    if (used.sum(1) == 1).all() and (weights.max(1) == 1 << _PRECISION).all():
        return "take", torch.from_numpy(weights.argmax(1)), None
    top = weights.max(1)
    if (weights == np.where(used, top[:, None], 0)).all():
        scale = (top / (1 << _PRECISION)).astype(np.float32)  # exact: weights are below 2**24
        exact = True
        for count, weight, factor in set(zip(used.sum(1).tolist(), top.tolist(), scale.tolist(), strict=True)):
            sums = np.arange(255 * count + 1)
            fixed = (sums * weight + (1 << (_PRECISION - 1))) >> _PRECISION
            single = np.floor(sums.astype(np.float32) * np.float32(factor) + np.float32(0.5))
            exact &= bool((fixed == single).all())
        if exact:
            return "sum", torch.from_numpy(used.T.astype(np.float32)), torch.from_numpy(scale)
    return "dot", torch.from_numpy(weights.T.astype(np.float64)), None


def left_product(rows: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``rows @ plane`` for every (H, W) plane of ``x``, as one matrix product over the planes side by side:
    about twice as fast as the broadcast batched product of many small matrices, and the same sums."""
    height, width = x.shape[-2:]
    planes = x.reshape(-1, height, width).transpose(0, 1).reshape(height, -1)  # (H, planes·W)
    out = torch.matmul(rows, planes).view(rows.shape[0], -1, width).transpose(0, 1)
    return out.reshape(*x.shape[:-2], rows.shape[0], width)


def _resample(levels: torch.Tensor, new_size: int, axis: int) -> torch.Tensor:
    """One Pillow BOX pass along ``axis`` (−1 or −2) of integer-valued ``levels``, rounded as Pillow does."""
    kind, matrix, scale = _box_pass(levels.shape[axis], new_size)
    if kind == "take":
        return levels.index_select(axis, matrix)
    if kind == "sum":
        assert scale is not None  # the "sum" form always comes with its per-output scale
        matrix, scale = matrix.to(levels.dtype), scale.to(levels.dtype)
        if axis == -1:
            return torch.matmul(levels, matrix).mul_(scale).add_(0.5).floor_()
        return left_product(matrix.T, levels).mul_(scale[:, None]).add_(0.5).floor_()
    total = torch.matmul(levels.double(), matrix) if axis == -1 else left_product(matrix.T, levels.double())
    return total.add_(1 << (_PRECISION - 1)).div_(1 << _PRECISION).floor_().clamp_(0, 255).to(levels.dtype)


@functools.lru_cache(maxsize=64)
def _vertical_first(height: int, width: int, new_height: int, new_width: int) -> bool | None:
    """Whether Pillow resizes (height, width) to (new_height, new_width) with BOX doing its vertical pass first.

    The order matters, as each pass rounds to 8 bits, and Pillow (13) runs the vertical pass first for some
    shapes (tall ones among them) by a rule it does not document; so it is read off Pillow: random 8-bit
    images, resized by Pillow and by both orders here. None when neither order gives Pillow's result.
    """
    from PIL import Image

    if new_height == height or new_width == width:
        return False  # one pass
    images = np.random.default_rng(0).integers(0, 256, (16, height, width), dtype=np.uint8)
    pillow = np.stack(
        [np.asarray(Image.fromarray(image).resize((new_width, new_height), Image.Resampling.BOX)) for image in images]
    )
    x = torch.from_numpy(images.astype(np.float32))
    for vertical in (False, True):
        first, second = ((new_height, -2), (new_width, -1)) if vertical else ((new_width, -1), (new_height, -2))
        if np.array_equal(_resample(_resample(x, *first), *second).numpy(), pillow):
            return vertical
    return None


def _pillow_resize(levels: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """``Image.resize((width, height), BOX)`` of every (H, W) plane of ``levels`` by Pillow, plane by plane."""
    from PIL import Image

    planes = levels.reshape(-1, *levels.shape[-2:]).to(torch.uint8).numpy()
    out = [np.asarray(Image.fromarray(plane).resize((width, height), Image.Resampling.BOX)) for plane in planes]
    return torch.from_numpy(np.stack(out).astype(np.float32)).view(*levels.shape[:-2], height, width)


def _resize(levels: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """``Image.resize((width, height), BOX)`` of every (H, W) plane, both passes in Pillow's order."""
    rows, columns = _box_pass(levels.shape[-2], height), _box_pass(levels.shape[-1], width)
    if rows[0] == columns[0] == "take":  # both passes copy samples: one gather does both (numpy's is faster)
        flat = (rows[1][:, None] * levels.shape[-1] + columns[1][None, :]).flatten().numpy()
        planes = levels.contiguous().numpy().reshape(*levels.shape[:-2], -1)
        return torch.from_numpy(planes[..., flat].reshape(*levels.shape[:-2], height, width))
    vertical = _vertical_first(*levels.shape[-2:], height, width)
    if vertical is None:
        return _pillow_resize(levels, width, height).to(levels.dtype)
    for axis in (-2, -1) if vertical else (-1, -2):
        size = height if axis == -2 else width
        if levels.shape[axis] != size:
            levels = _resample(levels, size, axis)
    return levels


def pixelate(levels: torch.Tensor, factor: float) -> torch.Tensor:
    """Pillow's BOX downsampling to ``factor`` of the size and BOX upsampling back, of 8-bit ``levels``, in [0, 1]."""
    height, width = levels.shape[-2:]
    small_width, small_height = max(1, int(width * factor)), max(1, int(height * factor))
    rows, columns = _box_pass(small_height, height), _box_pass(small_width, width)
    if (
        rows[0] != "take"
        or columns[0] != "take"
        or _vertical_first(height, width, small_height, small_width) is not False
    ):
        small = _resize(levels, small_width, small_height)
        return _resize(small, width, height).contiguous().div_(255)
    # Upsampling copies samples, as BOX upsampling does: downsample horizontally, then vertically on the
    # transposed planes (a product from the right again, so no product needs its planes side by side), and
    # gather the full-size image straight from the transposed small one
    across = _resample(levels, small_width, -1).transpose(-1, -2).contiguous()
    planes = _resample(across, small_height, -1).reshape(*levels.shape[:-2], -1).numpy()
    flat = (rows[1][:, None] + columns[1][None, :] * small_height).flatten().numpy()
    return torch.from_numpy(planes[..., flat].reshape(levels.shape)).div_(255)
