"""Robustness transforms: every step, the images are padded, shifted, scaled and rotated at random
before the network sees them, so that what is found must survive small changes of framing.

Legend: N batch, H, W the image size, OH, OW the size after the transforms, 3 colours.

Lucid's ``standard_transforms`` (``optvis/transform.py``, github.com/tensorflow/lucid, Apache 2.0),
in order, with its constants:

    pad 12 pixels of grey 0.5  ->  jitter 8 (a random crop 8 pixels smaller)  ->  scale by one of
    0.90, 0.92, ..., 1.10  ->  rotate by one of -10 ... 10 degrees (0 five times more often)
    ->  jitter 4

Without them the optimiser finds patterns that work at one exact pixel alignment (a checkerboard
the stride-2 pools pick up), and nothing a person would recognise. One draw per step is shared by
the whole batch (as Lucid draws one per step), so image i's result does not depend on the others.

All five are affine maps of the plane, so here they are composed into one 3x3 matrix A (``draw``,
from the per-step matrices ``pad``, ``crop``, ``scale``, ``rotate``, ``centre_crop``) and applied
as one bilinear resampling, ``resample``: each output pixel reads the input at A @ (row, col, 1),
interpolating its four neighbours, and grey 0.5 outside the image. Lucid interpolates twice (for
the scale, then the rotation); one resampling blurs less and costs one pass. Rotated corners that
leave the padded image are grey here (Lucid's rotation fills them with 0, black).

The backward pass of a resampling is the matching scatter: each output pixel's gradient goes back
to its four input neighbours with the same bilinear weights (``resample_backward``); the grey fill
is a constant and gets none. ``resample_naive`` / ``resample_backward_naive`` are the NumPy twins
(``np.add.at`` for the scatter); the tests hold the Numba kernels to them and to central differences.
"""
from typing import NamedTuple

import numba
import numpy as np

from ..errors import MinivggError
from ..jit import PARALLEL

PAD = 12  # pixels of FILL on every side
FILL = 0.5  # grey, the padding's value (and anything the transforms pull in from outside the image)
JITTER = (8, 4)  # the two random crops: this many pixels smaller, at a random offset 0..d
SCALES = tuple(1 + (i - 5) / 50 for i in range(11))  # 0.90, 0.92, ..., 1.10
ANGLES = tuple(range(-10, 11)) + 5 * (0,)  # degrees; 0 six times out of 26


class Affine(NamedTuple):
    """One draw of the transforms: output pixel (row, col) reads input (row, col) = A @ (row, col, 1)."""
    matrix: np.ndarray  # (3, 3) float64, in pixel-index coordinates
    out_h: int
    out_w: int


# ---- the steps, as matrices from output to input coordinates ----------------------------------
# Coordinates here are continuous: pixel i covers [i, i + 1), its centre at i + 0.5. Each function
# takes the size before the step and returns (matrix: output point -> input point, size after).


def _translate(dy, dx):
    return np.array([[1.0, 0, dy], [0, 1.0, dx], [0, 0, 1.0]])


def pad(h, w, p=PAD):
    """Add p pixels of FILL on every side: output (y, x) is input (y - p, x - p)."""
    return _translate(-p, -p), (h + 2 * p, w + 2 * p)


def crop(h, w, d, oy, ox):
    """Keep an (h - d, w - d) window whose top-left corner is at (oy, ox), 0 <= oy, ox <= d."""
    return _translate(oy, ox), (h - d, w - d)


def scale(h, w, s):
    """Resize by s: the new size is (int(s * h), int(s * w)) and output y is input y * h / int(s * h)."""
    nh, nw = int(s * h), int(s * w)
    return np.diag([h / nh, w / nw, 1.0]), (nh, nw)


def rotate(h, w, degrees):
    """Turn the image by ``degrees`` about its centre (same size): output point q reads input point
    centre + R (q - centre), R the rotation by ``degrees`` in (row, col) coordinates. Lucid draws
    the angle from a symmetric list, so which way is positive does not matter."""
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    turn = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])  # R, in homogeneous (row, col, 1)
    return _translate(h / 2, w / 2) @ turn @ _translate(-h / 2, -w / 2), (h, w)


def centre_crop(h, w, oh, ow):
    """Crop or pad (with FILL) about the centre to (oh, ow): for a network that needs one input size."""
    return _translate((h - oh) / 2, (w - ow) / 2), (oh, ow)


def compose(h, w, steps):
    """Chain steps (each a function (h, w) -> (matrix, size)) into one ``Affine`` in pixel indices."""
    A = np.eye(3)
    for step in steps:
        M, (h, w) = step(h, w)
        A = A @ M  # input <- ... <- this step's input <- this step's output
    index = _translate(0.5, 0.5)  # pixel index -> continuous (its centre)
    return Affine(_translate(-0.5, -0.5) @ A @ index, h, w)


def draw(rng, h, w, size=None):
    """One random draw of Lucid's standard transforms for (h, w) images, as one ``Affine``.

    ``size``: (OH, OW) to crop or pad the result to, about its centre, for a network that needs one
    input size (VGG16 with its top: 224x224); None keeps the size the transforms give.
    """
    oy1, ox1 = rng.integers(0, JITTER[0] + 1, 2)
    s = SCALES[rng.integers(len(SCALES))]
    degrees = ANGLES[rng.integers(len(ANGLES))]
    oy2, ox2 = rng.integers(0, JITTER[1] + 1, 2)
    steps = [
        pad,
        lambda h, w: crop(h, w, JITTER[0], oy1, ox1),
        lambda h, w: scale(h, w, s),
        lambda h, w: rotate(h, w, degrees),
        lambda h, w: crop(h, w, JITTER[1], oy2, ox2),
    ]
    if size is not None:
        steps.append(lambda h, w: centre_crop(h, w, *size))
    return compose(h, w, steps)


def identity(h, w):
    """No transform (for a run without them, and for the final look at the images)."""
    return Affine(np.eye(3), h, w)


# ---- bilinear resampling and its backward --------------------------------------------------------


def _check(x, affine):
    if x.ndim != 4 or x.shape[3] != 3:
        raise MinivggError(f"images must be (N, H, W, 3), got {x.shape}")
    if affine.out_h < 1 or affine.out_w < 1:
        raise MinivggError(f"the transforms leave no image ({affine.out_h}x{affine.out_w})")


def resample_naive(x, affine, fill=FILL):
    """Bilinear resampling, the plain NumPy way.

    Inputs:
    - x: (N, H, W, 3); affine: the matrix and (OH, OW)
    Returns:
    - out: (N, OH, OW, 3), out[n, i, j] = sum over the 4 neighbours (y0 or y0 + 1, x0 or x0 + 1) of
      (source y, x) = A @ (i, j, 1) of weight * (x[n, y, x] if inside the image else fill)
    """
    x = np.asarray(x)
    _check(x, affine)
    _, H, W, _ = x.shape
    out = np.zeros((x.shape[0], affine.out_h, affine.out_w, 3), x.dtype)
    for (yy, xx), wgt in _corners(affine):  # each (OH, OW)
        inside = (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
        v = x[:, np.clip(yy, 0, H - 1), np.clip(xx, 0, W - 1)]  # (N, OH, OW, 3) gathered
        out += (wgt * np.where(inside, 1.0, 0.0))[None, :, :, None] * v + (wgt * ~inside * fill)[None, :, :, None]
    return out


def resample_backward_naive(dout, affine, H, W):
    """dL/dx from dL/dout for ``out = resample(x, affine)``: every output gradient scattered back to
    its four sources with the bilinear weights (``np.add.at`` adds repeated indices). (N, H, W, 3)."""
    dx = np.zeros((dout.shape[0], H, W, 3), dout.dtype)
    for (yy, xx), wgt in _corners(affine):
        inside = (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
        np.add.at(dx, (slice(None), yy[inside], xx[inside]), wgt[inside][None, :, None] * dout[:, inside])
    return dx


def _corners(affine):
    """The four bilinear neighbours of every output pixel: [((rows, cols), weights)], each (OH, OW)."""
    i, j = np.meshgrid(np.arange(affine.out_h), np.arange(affine.out_w), indexing="ij")  # (OH, OW) each
    A = affine.matrix
    sy = A[0, 0] * i + A[0, 1] * j + A[0, 2]  # source row, (OH, OW)
    sx = A[1, 0] * i + A[1, 1] * j + A[1, 2]
    y0, x0 = np.floor(sy), np.floor(sx)
    fy, fx = sy - y0, sx - x0
    y0, x0 = y0.astype(np.int64), x0.astype(np.int64)
    return [((y0, x0), (1 - fy) * (1 - fx)), ((y0, x0 + 1), (1 - fy) * fx),
            ((y0 + 1, x0), fy * (1 - fx)), ((y0 + 1, x0 + 1), fy * fx)]


def resample(x, affine, fill=FILL):
    """Bilinear resampling (the Numba kernel; == ``resample_naive``).

    Inputs:
    - x: (N, H, W, 3) float32 or float64; affine: the (3, 3) matrix and (OH, OW)
    Returns:
    - out: (N, OH, OW, 3), same dtype
    """
    x = np.ascontiguousarray(x)
    _check(x, affine)
    out = np.empty((x.shape[0], affine.out_h, affine.out_w, 3), x.dtype)
    _resample(x, np.ascontiguousarray(affine.matrix, np.float64), fill, out)
    return out


def resample_backward(dout, affine, H, W):
    """dL/dx (N, H, W, 3) from dL/dout (N, OH, OW, 3): the scatter (== ``resample_backward_naive``)."""
    dout = np.ascontiguousarray(dout)
    if dout.ndim != 4 or dout.shape[1:] != (affine.out_h, affine.out_w, 3):
        raise MinivggError(f"dL/dout must be (N, {affine.out_h}, {affine.out_w}, 3), got {dout.shape}")
    dx = np.zeros((dout.shape[0], H, W, 3), dout.dtype)
    _resample_backward(dout, np.ascontiguousarray(affine.matrix, np.float64), dx)
    return dx


@numba.njit(**PARALLEL)
def _resample(x, A, fill, out):
    N, H, W, C = x.shape
    _, OH, OW, _ = out.shape
    for r in numba.prange(N * OH):  # one output row of one image per task
        n, i = r // OH, r % OH
        for j in range(OW):
            sy = A[0, 0] * i + A[0, 1] * j + A[0, 2]
            sx = A[1, 0] * i + A[1, 1] * j + A[1, 2]
            y0, x0 = int(np.floor(sy)), int(np.floor(sx))
            fy, fx = sy - y0, sx - x0
            for c in range(C):
                acc = 0.0
                for dy in range(2):
                    for dx in range(2):
                        wgt = (fy if dy else 1.0 - fy) * (fx if dx else 1.0 - fx)
                        y, xx = y0 + dy, x0 + dx
                        if 0 <= y < H and 0 <= xx < W:
                            acc += wgt * x[n, y, xx, c]
                        else:
                            acc += wgt * fill
                out[n, i, j, c] = acc


@numba.njit(**PARALLEL)
def _resample_backward(dout, A, dx):
    N, OH, OW, C = dout.shape
    _, H, W, _ = dx.shape
    for n in numba.prange(N):  # one image per task: the scatters of two images never meet
        for i in range(OH):
            for j in range(OW):
                sy = A[0, 0] * i + A[0, 1] * j + A[0, 2]
                sx = A[1, 0] * i + A[1, 1] * j + A[1, 2]
                y0, x0 = int(np.floor(sy)), int(np.floor(sx))
                fy, fx = sy - y0, sx - x0
                for dy in range(2):
                    for dxx in range(2):
                        y, xx = y0 + dy, x0 + dxx
                        if 0 <= y < H and 0 <= xx < W:
                            wgt = (fy if dy else 1.0 - fy) * (fx if dxx else 1.0 - fx)
                            for c in range(C):
                                dx[n, y, xx, c] += wgt * dout[n, i, j, c]
