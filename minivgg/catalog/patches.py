"""The patches: what each catalogue entry's unit saw, cut from the image, and the sprite sheets.

Legend: S the input side, R a layer's receptive-field size, T the tile side on the sheets, K entries
per channel.

    cut(img, rf, row, col)  -> (R, R, 3) uint8: the unit's receptive field, grey where it hung over the edge
    cut_many(imgs, rf, entries) -> (M, R, R, 3): the same for many entries, into one array
    Sheets(layer, rf, C, K) -> where each (channel, entry) tile goes; ``paste`` and ``save`` fill and write
    resize(patches, T)      -> (M, T, T, 3): a batch of patches to the sheets' tile size
    shrink(patches, f)      -> (M, R/f, R/f, 3): the box filter ``resize`` shrinks with (twin: shrink_naive)

One sprite sheet holds ``PER_SHEET`` channels as blocks of K tiles (3x3 for K = 9), ``ACROSS`` blocks
a row, so a layer of 512 channels is 8 JPEG files, not 4608: the page shows each sheet as one image
and crops single tiles out of it with CSS (background-position).

Projections (``--projections``, Zeiler & Fergus 2014, sec. 2.1 and fig. 2): the gradient of the one
unit of the entry back to the input, every ReLU passing back the positive part of the signal
(``model.gradients(x, seed, relu="deconvnet")``), cut to the same box and drawn on its own scale.
"""
import math
import os

import numba
import numpy as np
from PIL import Image

from ..files.atomic import replacing
from ..jit import PARALLEL

GREY = 128  # where the receptive field hangs over the image's edge
PER_SHEET, ACROSS, GAP = 64, 8, 4  # channels per sheet, channel blocks per row, pixels between blocks


def tile_side(size):
    """T for a receptive field of R pixels: R itself from 48 to 96; below, blown up to 48 (nearest);
    above, shrunk by the smallest whole factor f that brings it to 96 or less, T = ceil(R / f)
    (VGG16's block5_conv1, 132 pixels: f = 2, T = 66; block5_pool, 212: f = 3, T = 71)."""
    if size > 96:
        f = -(-size // 96)
        return int(-(-size // f))
    return int(max(size, 48))


def cut(img, rf, row, col, out=None):
    """img: (S, S', 3) uint8, the image as the network saw it. Returns (R, R, 3) uint8: unit (row, col)'s
    receptive field, GREY where it lies outside the image; written into ``out`` (R, R, 3) if given."""
    top, left, bottom, right = rf.box(row, col)
    t, l, b, r = rf.box(row, col, shape=img.shape[:2])  # clipped
    patch = np.empty((rf.size, rf.size, 3), np.uint8) if out is None else out
    if (t, l, b, r) != (top, left, bottom, right):  # it hangs over an edge
        patch[:] = GREY
    patch[t - top:b - top, l - left:r - left] = img[t:b, l:r]
    return patch


def cut_many(imgs, rf, entries):
    """The patches of entries [(image index, row, col)]: (M, R, R, 3) uint8, ``cut`` into one array."""
    patches = np.empty((len(entries), rf.size, rf.size, 3), np.uint8)  # (M, R, R, 3)
    for m, (i, row, col) in enumerate(entries):
        cut(imgs[i], rf, row, col, out=patches[m])
    return patches


def projection_image(grad, rf, row, col):
    """grad: (S, S', 3) the deconvnet projection of one unit. Returns (R, R, 3) uint8: cut like ``cut``,
    each pixel 128 + 127 * g / max|g| (grey = 0), so the sign shows; all grey if the unit is 0."""
    top, left, bottom, right = rf.box(row, col)
    t, l, b, r = rf.box(row, col, shape=grad.shape[:2])
    g = grad[t:b, l:r]
    scale = float(np.abs(g).max())
    patch = np.full((rf.size, rf.size, 3), GREY, np.uint8)
    if scale > 0:
        patch[t - top:b - top, l - left:r - left] = np.clip(np.rint(128 + 127 * g / scale), 0, 255).astype(np.uint8)
    return patch


class Sheets:
    """The sprite sheets of one layer: channel c, entry e -> (sheet number, x, y) of its T x T tile."""

    def __init__(self, layer, size, channels, k, suffix=""):
        self.layer, self.channels, self.k, self.suffix = layer, channels, k, suffix
        self.T = tile_side(size)
        self.cols = math.ceil(math.sqrt(k))  # tiles across a channel's block: 3 for K = 9
        self.rows = math.ceil(k / self.cols)
        self.block_w, self.block_h = self.cols * self.T + GAP, self.rows * self.T + GAP
        self.count = math.ceil(channels / PER_SHEET)
        self._images = {}

    def name(self, n):
        return f"sheets/{self.layer}{self.suffix}-{n}.jpg"

    def size(self, n):
        """(width, height) of sheet n in pixels."""
        blocks = min(PER_SHEET, self.channels - n * PER_SHEET)
        return ACROSS * self.block_w, math.ceil(blocks / ACROSS) * self.block_h

    def block(self, c):
        """(sheet, x, y) of channel c's block."""
        n, b = divmod(c, PER_SHEET)
        return n, (b % ACROSS) * self.block_w, (b // ACROSS) * self.block_h

    def where(self, c, e):
        """(sheet, x, y) of entry e of channel c."""
        n, x, y = self.block(c)
        return n, x + (e % self.cols) * self.T, y + (e // self.cols) * self.T

    def sheets_of(self, channels):
        return sorted({c // PER_SHEET for c in channels})

    def paste(self, where, patches):
        """Put patches (M, R, R, 3) uint8 at their tiles, where = [(channel, entry)] * M, resized to T x T."""
        tiles = resize(patches, self.T)  # (M, T, T, 3)
        for (c, e), tile in zip(where, tiles):
            n, x, y = self.where(c, e)
            if n not in self._images:
                w, h = self.size(n)
                self._images[n] = np.full((h, w, 3), 255, np.uint8)  # (height, width, 3), white between blocks
            self._images[n][y:y + self.T, x:x + self.T] = tile

    def save(self, out, n):
        """Write sheet n under ``out`` (a temporary file, then os.replace) and let it go."""
        w, h = self.size(n)
        img = Image.fromarray(self._images.pop(n, None) if n in self._images else np.full((h, w, 3), 255, np.uint8))
        path = os.path.join(out, self.name(n))
        with replacing(path) as tmp:
            img.save(tmp, format="JPEG", quality=90)


def resize(patches, T):
    """(M, R, R, 3) uint8 -> (M, T, T, 3) uint8, T = ``tile_side(R)`` (or R). Blown up (R < T): nearest,
    so single pixels show as squares, in NumPy for the whole batch; shrunk (R > T): ``shrink`` by the
    whole factor f = ceil(R / T), which gives T."""
    R = patches.shape[1]
    if R == T:
        return patches
    if R < T:
        idx = (2 * np.arange(T) + 1) * R // (2 * T)  # (T,) the input pixel under each output pixel's centre
        return patches[:, idx][:, :, idx]
    f = -(-R // T)
    if -(-R // f) != T:
        raise ValueError(f"{R} pixels do not shrink to {T} by a whole factor (use tile_side({R}) = {tile_side(R)})")
    return shrink(patches, f)


def shrink_naive(patches, f):
    """The twin of ``shrink``, in NumPy: the patches padded by repeating their last row and column, then
    the f x f blocks added up."""
    M, R = patches.shape[:2]
    T = -(-R // f)
    padded = np.pad(patches, ((0, 0), (0, T * f - R), (0, T * f - R), (0, 0)), mode="edge")  # (M, T*f, T*f, 3)
    total = padded.reshape(M, T, f, T, f, 3).sum(axis=(2, 4), dtype=np.int64)  # (M, T, T, 3)
    return ((total + f * f // 2) // (f * f)).astype(np.uint8)


@numba.njit(**PARALLEL)
def _shrink(patches, f, out):
    # patches (M, R, R, 3) uint8 -> out (M, T, T, 3) uint8, T = ceil(R / f); one task a patch.
    M, R = patches.shape[:2]
    T = out.shape[1]
    half, area = f * f // 2, f * f
    for m in numba.prange(M):
        for t in range(T):
            for u in range(T):
                for ch in range(3):
                    total = 0
                    for dy in range(f):
                        y = min(t * f + dy, R - 1)  # past the last row: the last row again
                        for dx in range(f):
                            total += patches[m, y, min(u * f + dx, R - 1), ch]
                    out[m, t, u, ch] = (total + half) // area  # the mean, rounded half up


def shrink(patches, f):
    """(M, R, R, 3) uint8 -> (M, T, T, 3) uint8, T = ceil(R / f): each output pixel the mean of an f x f
    block of input pixels (a box filter: no aliasing), the last row and column repeated where R is not a
    multiple of f. Same as ``shrink_naive``. Compiled, over the whole batch: it replaced one Pillow resize
    a patch, which was half the time a catalogue took to make its sheets (docs/catalog.md)."""
    if patches.ndim != 4 or patches.shape[1] != patches.shape[2] or patches.shape[3] != 3 or patches.dtype != np.uint8:
        raise ValueError(f"patches must be (M, R, R, 3) uint8, got {patches.shape} {patches.dtype}")
    if f < 1:
        raise ValueError(f"the factor must be a whole number >= 1, got {f}")
    T = -(-patches.shape[1] // f)
    out = np.empty((patches.shape[0], T, T, 3), np.uint8)
    _shrink(np.ascontiguousarray(patches), int(f), out)
    return out
