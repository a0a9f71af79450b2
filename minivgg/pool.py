"""Max-pooling: keep the largest value of each window, channel by channel.

Legend: N batch, H, W height and width, C channels, P pool size, S stride.

    out[n, i, j, c] = max over (di, dj) in P x P of x[n, i*S + di, j*S + dj, c]

VGG16 uses P = 2, S = 2, "valid" padding: the output is H' = (H - P) // S + 1, so an odd size
drops its last row or column, exactly as Keras' ``MaxPooling2D`` does.
"""
import numba
import numpy as np

from .jit import PARALLEL


def _out_shape(x, size, stride):
    if x.ndim != 4:
        raise ValueError(f"x must be (N, H, W, C), got shape {x.shape}")
    N, H, W, C = x.shape
    if H < size or W < size:
        raise ValueError(f"a {size}x{size} pool does not fit a {H}x{W} input")
    return N, (H - size) // stride + 1, (W - size) // stride + 1, C


def max_pool2d_naive(x, size=2, stride=2):
    """Reference max-pool.

    Inputs:
    - x: (N, H, W, C)
    Returns:
    - out: (N, H', W', C), H' = (H - size) // stride + 1, likewise W'
    """
    N, OH, OW, C = _out_shape(x, size, stride)
    out = np.empty((N, OH, OW, C), dtype=x.dtype)
    for i in range(OH):
        for j in range(OW):
            window = x[:, i * stride:i * stride + size, j * stride:j * stride + size, :]  # (N, P, P, C)
            out[:, i, j, :] = window.max(axis=(1, 2))
    return out


@numba.njit(**PARALLEL)
def _max_pool2d(x, size, stride, out):
    # x: (N, H, W, C), out: (N, H', W', C)
    N, OH, OW, C = out.shape
    for nh in numba.prange(N * OH):
        n = nh // OH
        i = nh % OH
        for j in range(OW):
            for c in range(C):
                m = x[n, i * stride, j * stride, c]
                for di in range(size):
                    for dj in range(size):
                        v = x[n, i * stride + di, j * stride + dj, c]
                        if v > m:
                            m = v
                out[n, i, j, c] = m


def max_pool2d(x, size=2, stride=2):
    """Fast max-pool; same contract as ``max_pool2d_naive``, float32 out."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty(_out_shape(x, size, stride), dtype=np.float32)
    _max_pool2d(x, size, stride, out)
    return out
