"""The patches: what each catalogue entry's unit saw, cut from the image, and the sprite sheets.

Legend: S the input side, R a layer's receptive-field size, T the tile side on the sheets, K entries
per channel.

    cut(img, rf, row, col)  -> (R, R, 3) uint8: the unit's receptive field, grey where it hung over the edge
    Sheets(layer, rf, C, K) -> where each (channel, entry) tile goes; ``paste`` and ``save`` fill and write
    resize(patches, T)      -> (M, T, T, 3): a batch of patches to the sheets' tile size

One sprite sheet holds ``PER_SHEET`` channels as blocks of K tiles (3x3 for K = 9), ``ACROSS`` blocks
a row, so a layer of 512 channels is 8 JPEG files, not 4608: the page shows each sheet as one image
and crops single tiles out of it with CSS (background-position).

Projections (``--projections``, Zeiler & Fergus 2014, sec. 2.1 and fig. 2): the gradient of the one
unit of the entry back to the input, every ReLU passing back the positive part of the signal
(``model.gradients(x, seed, relu="deconvnet")``), cut to the same box and drawn on its own scale.
"""
import math
import os

import numpy as np
from PIL import Image

from ..files.atomic import replacing

GREY = 128  # where the receptive field hangs over the image's edge
PER_SHEET, ACROSS, GAP = 64, 8, 4  # channels per sheet, channel blocks per row, pixels between blocks


def tile_side(size):
    """T for a receptive field of R pixels: R itself from 48 to 96, blown up (nearest) or shrunk beyond."""
    return int(min(max(size, 48), 96))


def cut(img, rf, row, col):
    """img: (S, S', 3) uint8, the image as the network saw it. Returns (R, R, 3) uint8: unit (row, col)'s
    receptive field, GREY where it lies outside the image."""
    top, left, bottom, right = rf.box(row, col)
    t, l, b, r = rf.box(row, col, shape=img.shape[:2])  # clipped
    patch = np.full((rf.size, rf.size, 3), GREY, np.uint8)
    patch[t - top:b - top, l - left:r - left] = img[t:b, l:r]
    return patch


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
    """(M, R, R, 3) uint8 -> (M, T, T, 3) uint8. Blown up (R < T): nearest, so single pixels show as
    squares, in NumPy for the whole batch; shrunk (R > T): Pillow's box filter (each output pixel the
    mean of the input pixels its cell covers: no aliasing), one call a patch (~80 us; a NumPy box filter
    over the batch was 15x slower)."""
    R = patches.shape[1]
    if R == T:
        return patches
    if R < T:
        idx = (2 * np.arange(T) + 1) * R // (2 * T)  # (T,) the input pixel under each output pixel's centre
        return patches[:, idx][:, :, idx]
    return np.stack([np.asarray(Image.fromarray(p).resize((T, T), Image.Resampling.BOX)) for p in patches])
