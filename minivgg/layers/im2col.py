"""im2col: unroll every receptive field of an image into one row of a matrix.

Legend: N batch, H, W input height and width, C channels, KH, KW kernel size,
H', W' output height and width.

A convolution slides a KH x KW x C window over the (zero-padded) input. im2col copies each
window position into one row, so that the whole convolution becomes a single matrix product:

    cols (N*H'*W', KH*KW*C)  @  w (KH*KW*C, K)  ->  (N*H'*W', K)

The row is laid out in (kh, kw, c) order, the same order as a Keras kernel ``w (KH, KW, C, K)``
flattened with ``w.reshape(KH*KW*C, K)``, so no transpose is ever needed.

Two versions, side by side:
- ``im2col_naive``: pad with ``np.pad``, then one slice per output position. Obviously right.
- ``im2col``: a parallel Numba loop that writes the zeros of the padding itself (no padded copy).
"""
import numba
import numpy as np

from ..jit import PARALLEL


def output_size(size, k, stride, pad):
    """H' = 1 + (H + 2*pad - KH) // stride  (the same formula for W')."""
    return 1 + (size + 2 * pad - k) // stride


def _check(x, kh, kw, stride, pad):
    if x.ndim != 4:
        raise ValueError(f"x must be (N, H, W, C), got shape {x.shape}")
    if kh < 1 or kw < 1 or stride < 1 or pad < 0:
        raise ValueError(f"bad kernel {kh}x{kw}, stride {stride}, pad {pad}")
    N, H, W, C = x.shape
    if output_size(H, kh, stride, pad) < 1 or output_size(W, kw, stride, pad) < 1:
        raise ValueError(f"a {kh}x{kw} kernel does not fit a {H}x{W} input with pad {pad}")


def im2col_naive(x, kh, kw, stride=1, pad=0):
    """Reference im2col.

    Inputs:
    - x: (N, H, W, C)
    - kh, kw: kernel height and width; stride; pad: zeros added on every side
    Returns:
    - cols: (N, H', W', KH*KW*C), H' = 1 + (H + 2*pad - KH) // stride, likewise W'
    """
    _check(x, kh, kw, stride, pad)
    N, H, W, C = x.shape
    OH, OW = output_size(H, kh, stride, pad), output_size(W, kw, stride, pad)
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))  # (N, H+2p, W+2p, C)
    cols = np.empty((N, OH, OW, kh * kw * C), dtype=x.dtype)
    for i in range(OH):
        for j in range(OW):
            window = xp[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]  # (N, KH, KW, C)
            cols[:, i, j, :] = window.reshape(N, kh * kw * C)  # (N, KH*KW*C), (kh, kw, c) order
    return cols


@numba.njit(**PARALLEL)
def _im2col(x, kh, kw, stride, pad, cols):
    # x: (N, H, W, C), cols: (N, H', W', KH*KW*C); no checks, the caller validated.
    N, H, W, C = x.shape
    _, OH, OW, _ = cols.shape
    for nh in numba.prange(N * OH):  # one output row of one image per task
        n = nh // OH
        oh = nh % OH
        for ow in range(OW):
            for i in range(kh):
                ih = oh * stride - pad + i
                for j in range(kw):
                    iw = ow * stride - pad + j
                    base = (i * kw + j) * C
                    if 0 <= ih < H and 0 <= iw < W:
                        for c in range(C):
                            cols[n, oh, ow, base + c] = x[n, ih, iw, c]
                    else:  # this tap falls in the zero padding
                        for c in range(C):
                            cols[n, oh, ow, base + c] = 0.0


def im2col(x, kh, kw, stride=1, pad=0):
    """Fast im2col; same contract as ``im2col_naive``.

    Inputs:
    - x: (N, H, W, C) float32 (other float dtypes are converted)
    Returns:
    - cols: (N, H', W', KH*KW*C) float32, C-contiguous
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    _check(x, kh, kw, stride, pad)
    N, H, W, C = x.shape
    OH, OW = output_size(H, kh, stride, pad), output_size(W, kw, stride, pad)
    cols = np.empty((N, OH, OW, kh * kw * C), dtype=np.float32)
    _im2col(x, kh, kw, stride, pad, cols)
    return cols
