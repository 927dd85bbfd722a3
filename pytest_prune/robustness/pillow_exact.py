"""JPEG as Pillow gives it for each 8-bit image, computed for a whole batch at once.

JPEG: a baseline JPEG codes each 8×8 block of a component on its own, so the blocks of a whole batch
(every image padded to whole blocks by repeating its edge, as the encoder pads) go through Pillow as one
mosaic, and blocks of one grey level decode through a table. Colour images are split into the encoder's
own Y, Cb and Cr planes (libjpeg's integer colour conversion and 2×2 chroma averaging), whose blocks go
through Pillow as grey mosaics with the colour tables, and are joined again by libjpeg-turbo's "fancy"
chroma upsampling and integer colour conversion (with another codec behind Pillow, colour images go
through Pillow one by one). A batch's blocks are sorted and laid out once (``JpegInput``) and serve every
quality. It is exact: the tests compare it with Pillow image by image. Pixelate, Pillow's BOX resampling
batched the same way, is ``pillow_box``.
"""

from __future__ import annotations

import functools
import io
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from .pillow_box import levels

if TYPE_CHECKING:
    from PIL.JpegImagePlugin import JpegImageFile


# --- JPEG: Pillow on mosaics of 8×8 blocks -----------------------------------------------------------------------


_REPEAT = np.uint64(0x0101010101010101)
"""Times a byte, the 8-byte word of eight copies of it."""


def _to_blocks(planes: np.ndarray) -> np.ndarray:
    """(P, H, W) uint8 planes as their 8×8 blocks in raster order, each as 8 uint64 words (one per row).

    Planes are first padded to whole blocks by repeating the last row and column, as the encoder pads.
    """
    count, height, width = planes.shape
    rows, columns = -(-height // 8) * 8, -(-width // 8) * 8
    padded = np.empty((count, rows, columns), dtype=np.uint8)
    padded[:, :height, :width] = planes
    padded[:, height:, :width] = planes[:, -1:]
    padded[:, :, width:] = padded[:, :, width - 1 : width]
    words = padded.view(np.uint64).reshape(count, rows // 8, 8, columns // 8)
    return np.ascontiguousarray(words.transpose(0, 1, 3, 2)).reshape(-1, 8)


def _from_blocks(blocks: np.ndarray, count: int, height: int, width: int) -> np.ndarray:
    """Inverse of ``_to_blocks``: (P, H, W) uint8 planes from their blocks, padding dropped."""
    rows, columns = -(-height // 8) * 8, -(-width // 8) * 8
    words = blocks.reshape(count, rows // 8, columns // 8, 8).transpose(0, 1, 3, 2)
    return np.ascontiguousarray(words).reshape(count, rows, columns // 8).view(np.uint8)[:, :height, :width]


_MOSAIC_ROW = 64
"""Blocks per mosaic row."""
_MOSAIC_BLOCKS = 64 * 4096
"""Blocks per Pillow call (a 512 × 32768 mosaic)."""


@functools.lru_cache(maxsize=16)
def _jpeg_tables(quality: int) -> tuple[list[int], list[int]]:
    """The luminance and chrominance quantisation tables Pillow writes for ``quality``, as Pillow reports them."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "JPEG", quality=quality)
    tables = cast("JpegImageFile", Image.open(buffer)).quantization  # a JPEG buffer opens as a JpegImageFile
    return list(tables[0]), list(tables[1])


def _mosaics(blocks: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """(M, 8) uint64 blocks laid out as grey mosaic images of ``_MOSAIC_ROW`` blocks a row, with the count in each."""
    out = []
    for start in range(0, len(blocks), _MOSAIC_BLOCKS):
        part = blocks[start : start + _MOSAIC_BLOCKS]
        rows = -(-len(part) // _MOSAIC_ROW)
        tiles = np.zeros((rows * _MOSAIC_ROW, 8), dtype=np.uint64)
        tiles[: len(part)] = part
        mosaic = tiles.reshape(rows, _MOSAIC_ROW, 8).transpose(0, 2, 1).copy().view(np.uint8)
        out.append((mosaic.reshape(rows * 8, _MOSAIC_ROW * 8), len(part)))
    return out


def _code(mosaics: list[tuple[np.ndarray, int]], quality: int, chroma: bool) -> np.ndarray:
    """Encode and decode ``_mosaics`` with Pillow at ``quality`` (the chroma table if ``chroma``): their blocks, (M, 8).

    Baseline JPEG quantises each 8×8 block of a component on its own, so a block decodes the same wherever it
    sits: a mosaic of the blocks of many images costs one Pillow call instead of one per image.
    """
    from PIL import Image

    options: dict[str, Any] = {"qtables": [_jpeg_tables(quality)[1]]} if chroma else {"quality": quality}
    out = []
    for mosaic, count in mosaics:
        buffer = io.BytesIO()
        Image.fromarray(mosaic).save(buffer, "JPEG", **options)
        rows = len(mosaic) // 8
        decoded = np.asarray(Image.open(buffer)).view(np.uint64).reshape(rows, 8, _MOSAIC_ROW)  # a grey JPEG: 'L'
        out.append(decoded.transpose(0, 2, 1).reshape(-1, 8)[:count])
    return np.concatenate(out) if out else np.empty((0, 8), dtype=np.uint64)


@functools.lru_cache(maxsize=32)
def _flat_blocks(quality: int, chroma: bool) -> np.ndarray:
    """What a block of one grey level decodes to, per level, as a word of 8 samples: still one level, as only
    its DC coefficient is non-zero."""
    grey = np.arange(256, dtype=np.uint64) * _REPEAT
    return _code(_mosaics(np.repeat(grey[:, None], 8, 1)), quality, chroma)[:, 0]


class _Blocks:
    """The 8×8 blocks of (P, H, W) uint8 component planes, sorted once into flat ones (one grey level), which
    decode through a table, and busy ones, laid out as mosaics for Pillow: ready to code at any quality."""

    def __init__(self, planes: np.ndarray) -> None:
        self.shape = planes.shape
        blocks = _to_blocks(planes)
        first = blocks[:, 0]
        grey = first & np.uint64(0xFF)
        flat = (blocks == first[:, None]).all(1) & (first == grey * _REPEAT)
        self.grey = grey.astype(np.intp)
        self.busy = np.flatnonzero(~flat)
        self.mosaics = _mosaics(blocks[self.busy])

    def round_trip(self, quality: int, chroma: bool) -> np.ndarray:
        """Pillow's JPEG round trip of the planes at ``quality``, as (P, H, W) uint8."""
        out = np.repeat(_flat_blocks(quality, chroma)[self.grey][:, None], 8, 1)
        if len(self.busy):
            out[self.busy] = _code(self.mosaics, quality, chroma)
        return _from_blocks(out, *self.shape)


# libjpeg's fixed-point colour conversion (jccolor.c, jdcolor.c): constants scaled by 2**16, rounded
_FIX = {c: int(c * 65536 + 0.5) for c in (0.299, 0.587, 0.114, 0.16874, 0.33126, 0.5, 0.41869, 0.08131)}
_FIX.update({c: int(c * 65536 + 0.5) for c in (1.402, 1.772, 0.71414, 0.34414)})
_HALF = 1 << 15


def _rgb_to_ycc(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """libjpeg's RGB → YCbCr on (N, 3, H, W) uint8, as int32 planes."""
    r, g, b = (rgb[:, c].astype(np.int32) for c in range(3))
    y = (_FIX[0.299] * r + _FIX[0.587] * g + _FIX[0.114] * b + _HALF) >> 16
    offset = (128 << 16) + _HALF - 1
    cb = (-_FIX[0.16874] * r - _FIX[0.33126] * g + _FIX[0.5] * b + offset) >> 16
    cr = (_FIX[0.5] * r - _FIX[0.41869] * g - _FIX[0.08131] * b + offset) >> 16
    return y, cb, cr


def _downsample_chroma(plane: np.ndarray) -> np.ndarray:
    """libjpeg's 2×2 chroma averaging of (N, H, W), with the encoder's padding to whole 8×8 chroma blocks.

    The full-size plane is widened to twice the padded chroma width and to even height by repeating its last
    column and row; sums are rounded with the alternating bias 1, 2, 1, 2, ... along each row; the chroma rows
    are then padded to whole blocks by repeating the last one.
    """
    _, height, width = plane.shape
    columns, rows = -(-width // 16) * 8, -(-height // 16) * 8
    wide = np.pad(plane, ((0, 0), (0, height % 2), (0, 2 * columns - width)), mode="edge")
    sums = wide[:, 0::2, 0::2] + wide[:, 0::2, 1::2] + wide[:, 1::2, 0::2] + wide[:, 1::2, 1::2]
    small = (sums + np.tile(np.array([1, 2], dtype=np.int32), columns // 2)) >> 2
    return np.pad(small, ((0, 0), (0, rows - small.shape[1]), (0, 0)), mode="edge")


def _upsample_chroma(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """libjpeg-turbo's decoder upsampling of (N, ⌈H/2⌉, ⌈W/2⌉) chroma to (N, H, W): "fancy" (triangle) 2×2.

    Each output sample weighs its chroma sample 3/4 and the next nearest 1/4 in each direction, the edges
    repeating; the rounding biases alternate 8, 7 along a row. Planes two samples wide or less are copied
    into 2×2 squares instead, as libjpeg-turbo does.
    """
    if plane.shape[2] <= 2:
        return plane.repeat(2, 1).repeat(2, 2)[:, :height, :width]
    tall = np.pad(plane, ((0, 0), (1, 1), (0, 0)), mode="edge")
    above, below = 3 * plane + tall[:, :-2], 3 * plane + tall[:, 2:]
    sums = np.stack((above, below), 2).reshape(len(plane), -1, plane.shape[2])  # rows 2i (above), 2i+1 (below)
    wide = np.pad(sums, ((0, 0), (0, 0), (1, 1)), mode="edge")
    left, right = (3 * sums + wide[:, :, :-2] + 8) >> 4, (3 * sums + wide[:, :, 2:] + 7) >> 4
    return np.stack((left, right), 3).reshape(len(plane), sums.shape[1], -1)[:, :height, :width]


def _ycc_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """libjpeg's YCbCr → RGB on int32 planes, as (N, 3, H, W) uint8."""
    cb, cr = cb - 128, cr - 128
    red = y + ((_FIX[1.402] * cr + _HALF) >> 16)
    green = y + ((-_FIX[0.34414] * cb + _HALF - _FIX[0.71414] * cr) >> 16)
    blue = y + ((_FIX[1.772] * cb + _HALF) >> 16)
    return np.clip(np.stack((red, green, blue), 1), 0, 255).astype(np.uint8)


class _Colour:
    """(N, 3, H, W) uint8 RGB images as libjpeg-turbo's encoder prepares them (integer YCbCr, 2×2 chroma averaging
    with its padding), their Y, Cb and Cr blocks sorted for Pillow."""

    def __init__(self, rgb: np.ndarray) -> None:
        self.height, self.width = rgb.shape[-2:]
        y, cb, cr = _rgb_to_ycc(rgb)
        self.luma = _Blocks(y.astype(np.uint8))
        self.chroma = _Blocks(np.concatenate((_downsample_chroma(cb), _downsample_chroma(cr))).astype(np.uint8))

    def round_trip(self, quality: int) -> np.ndarray:
        """Pillow's JPEG round trip at ``quality`` with 4:2:0 chroma: the decoder's fancy upsampling, integer RGB."""
        height, width = self.height, self.width
        y = self.luma.round_trip(quality, chroma=False).astype(np.int32)
        chroma = self.chroma.round_trip(quality, chroma=True)[:, : -(-height // 2), : -(-width // 2)].astype(np.int32)
        cb, cr = (_upsample_chroma(plane, height, width) for plane in np.split(chroma, 2))
        return _ycc_to_rgb(y, cb, cr)


def _jpeg_per_image(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Pillow's JPEG round trip of (N, 3, H, W) uint8 RGB images, one Pillow call per image."""
    from PIL import Image

    out = np.empty_like(rgb)
    for i, image in enumerate(rgb.transpose(0, 2, 3, 1)):
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image)).save(buffer, "JPEG", quality=quality)
        out[i] = np.asarray(Image.open(buffer).convert("RGB")).transpose(2, 0, 1)
    return out


@functools.cache
def codec_versions() -> dict[str, str | None]:
    """Pillow's version and its JPEG codec's: what JPEG and pixelate give depends on them."""
    import PIL
    from PIL import features

    jpeg, turbo = features.version("jpg"), features.version("libjpeg_turbo")
    return {"pillow": PIL.__version__, "jpeg": jpeg, "libjpeg_turbo": turbo}


@functools.cache
def _libjpeg_turbo() -> bool:
    """Whether Pillow's JPEG codec is libjpeg-turbo, whose colour conversion and upsampling ``_Colour`` follows."""
    from PIL import features

    return bool(features.check_feature("libjpeg_turbo"))


class JpegInput:
    """A batch of [0, 1] images made ready for Pillow's JPEG at any quality: its 8-bit levels, and for grey images or
    colour under libjpeg-turbo their blocks sorted and laid out (done once, shared by every quality)."""

    def __init__(self, x: torch.Tensor) -> None:
        self.dtype = x.dtype
        images = levels(x).numpy().astype(np.uint8)  # numpy converts to 8 bits several times faster than torch
        self.images: _Blocks | _Colour | np.ndarray
        if images.shape[1] == 1:
            self.images = _Blocks(images[:, 0])
        elif _libjpeg_turbo():
            self.images = _Colour(images)
        else:  # another codec may upsample chroma its own way: code each image as it would
            self.images = images

    def round_trip(self, quality: int) -> torch.Tensor:
        """Pillow's JPEG at ``quality`` with its defaults (4:2:0 chroma for colour), as if coded image by image."""
        if isinstance(self.images, _Blocks):
            out = self.images.round_trip(quality, chroma=False)[:, None]
        elif isinstance(self.images, _Colour):
            out = self.images.round_trip(quality)
        else:
            out = _jpeg_per_image(self.images, quality)
        return torch.from_numpy(out.astype(np.float32)).to(self.dtype).div_(255)
