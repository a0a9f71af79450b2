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
- ``im2col``: a parallel Numba loop that writes the zeros of the padding itself (no padded copy),
  one output row per task (``_im2col_rows``, which ``conv.conv2d_im2col`` also calls on blocks of rows).

Its transpose, col2im, goes the other way: each row of a (N, H', W', KH*KW*C) matrix added back into
the window it came from. A convolution's input gradient is dx = col2im(dy @ w^T) (``conv.py``, the
backward pass), as ``col2im_naive`` (the twin: window by window) and ``col2im`` (a parallel loop over
input rows, each pixel gathering from the windows that read it) compute it.
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


@numba.njit(nogil=True, cache=True)
def _im2col_rows(x, kh, kw, stride, pad, n, r0, r1, cols):
    # x: (N, H, W, C); cols: (r1 - r0, W', KH*KW*C), the rows of output rows r0 .. r1 - 1 of image n.
    # One window row (kernel row i: kw taps of C values) is kw*C contiguous values of x's row, so it
    # is copied as one run where it lies inside the image; taps in the padding are zeros.
    N, H, W, C = x.shape
    OW = cols.shape[1]
    KC = kw * C  # one window row's values
    for oh in range(r0, r1):
        for i in range(kh):
            ih = oh * stride - pad + i
            if ih < 0 or ih >= H:  # this kernel row falls in the zero padding
                for ow in range(OW):
                    for t in range(KC):
                        cols[oh - r0, ow, i * KC + t] = 0.0
                continue
            row = x[n, ih].reshape(W * C)  # (W, C) -> (W*C,): pixel iw's channels at iw*C
            for ow in range(OW):
                iw0 = ow * stride - pad  # the window's first column
                if iw0 >= 0 and iw0 + kw <= W:  # inside: one contiguous run
                    for t in range(KC):
                        cols[oh - r0, ow, i * KC + t] = row[iw0 * C + t]
                else:  # at a left or right edge: tap by tap
                    for j in range(kw):
                        iw = iw0 + j
                        for c in range(C):
                            cols[oh - r0, ow, i * KC + j * C + c] = row[iw * C + c] if 0 <= iw < W else 0.0


@numba.njit(**PARALLEL)
def _im2col(x, kh, kw, stride, pad, cols):
    # x: (N, H, W, C), cols: (N, H', W', KH*KW*C); no checks, the caller validated.
    N = x.shape[0]
    OH = cols.shape[1]
    for nh in numba.prange(N * OH):  # one output row of one image per task
        n, oh = nh // OH, nh % OH
        _im2col_rows(x, kh, kw, stride, pad, n, oh, oh + 1, cols[n, oh:oh + 1])


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


def col2im_naive(cols, x_shape, kh, kw, stride=1, pad=0):
    """Reference col2im, the transpose of im2col: every row of cols added back into its window.

    Inputs:
    - cols: (N, H', W', KH*KW*C), in im2col's (kh, kw, c) order
    - x_shape: (N, H, W, C), the shape im2col read; kh, kw, stride, pad as im2col's
    Returns:
    - x: (N, H, W, C), x[n, ih, iw, c] = the sum of the cols entries that im2col copied from there
    """
    N, H, W, C = x_shape
    _, OH, OW, _ = cols.shape
    xp = np.zeros((N, H + 2 * pad, W + 2 * pad, C), dtype=cols.dtype)  # padded, as im2col_naive reads it
    for i in range(OH):
        for j in range(OW):
            window = cols[:, i, j, :].reshape(N, kh, kw, C)  # (N, KH*KW*C) -> (N, KH, KW, C)
            xp[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :] += window
    return xp[:, pad:pad + H, pad:pad + W, :]  # the padding's share dropped


@numba.njit(**PARALLEL)
def _col2im(cols, kh, kw, stride, pad, x):
    # cols: (N, H', W', KH*KW*C), x: (N, H, W, C) out; one input row of one image per task. Pixel
    # (ih, iw) was read by tap (i, j) of window (oh, ow) where ih = oh*stride - pad + i, likewise iw.
    # For a row ih and a tap (i, j): the one oh, if any, and the run of ow whose pixels lie in the
    # image, found once, then added up in a loop with no tests inside.
    N, H, W, C = x.shape
    _, OH, OW, L = cols.shape
    for nh in numba.prange(N * H):
        n, ih = nh // H, nh % H
        xr = x[n, ih].reshape(W * C)  # (W, C) -> (W*C,): pixel iw's channels at iw*C
        xr[:] = 0.0
        for i in range(kh):
            t = ih + pad - i  # = oh * stride
            if t < 0 or t % stride != 0 or t // stride >= OH:
                continue
            cr = cols[n, t // stride].reshape(OW * L)  # (W', KH*KW*C) -> (W'*KH*KW*C,)
            for j in range(kw):
                base = (i * kw + j) * C
                lo = max(0, -((j - pad) // stride))  # the first ow with iw = ow*stride - pad + j >= 0
                hi = min(OW, (W - 1 + pad - j) // stride + 1)  # past the last with iw <= W - 1
                for ow in range(lo, hi):
                    iw = ow * stride - pad + j
                    for c in range(C):
                        xr[iw * C + c] += cr[ow * L + base + c]


def col2im(cols, x_shape, kh, kw, stride=1, pad=0):
    """Fast col2im; same contract as ``col2im_naive``.

    Inputs:
    - cols: (N, H', W', KH*KW*C) float32 (other float dtypes are converted); x_shape: (N, H, W, C)
    Returns:
    - x: (N, H, W, C) float32, C-contiguous
    """
    N, H, W, C = x_shape
    if kh < 1 or kw < 1 or stride < 1 or pad < 0:
        raise ValueError(f"bad kernel {kh}x{kw}, stride {stride}, pad {pad}")
    OH, OW = output_size(H, kh, stride, pad), output_size(W, kw, stride, pad)
    if cols.shape != (N, OH, OW, kh * kw * C):
        raise ValueError(f"cols must be {(N, OH, OW, kh * kw * C)} for x {tuple(x_shape)}, got {cols.shape}")
    x = np.empty((N, H, W, C), dtype=np.float32)
    _col2im(np.ascontiguousarray(cols, dtype=np.float32), kh, kw, stride, pad, x)
    return x
