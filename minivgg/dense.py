"""The classifier head: fully connected (dense) layers and softmax.

Legend: N batch, D input features, U output units.

    dense:   y = x @ w + b            x (N, D), w (D, U), b (U,) -> (N, U)
    softmax: p[n] = exp(y[n] - max y[n]) / sum(exp(y[n] - max y[n]))   (N, U) -> (N, U)

Subtracting the row maximum does not change softmax but keeps exp() from overflowing.
"""
import numba
import numpy as np

from .jit import PARALLEL
from .relu import bias_relu


def _check(x, w, b):
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0] or b.shape != (w.shape[1],):
        raise ValueError(f"dense needs x (N, D), w (D, U), b (U,); got {x.shape}, {w.shape}, {b.shape}")


def dense_naive(x, w, b, relu=False):
    """Reference dense layer, plain loops over (n, u) with a dot product inside.

    Inputs: x (N, D), w (D, U), b (U,). Returns (N, U).
    """
    _check(x, w, b)
    N, U = x.shape[0], w.shape[1]
    y = np.empty((N, U), dtype=np.float32)
    for n in range(N):
        for u in range(U):
            y[n, u] = np.dot(x[n], w[:, u]) + b[u]
    return np.maximum(y, 0) if relu else y


def dense(x, w, b, relu=False):
    """Fast dense layer: one BLAS matmul, then the bias (and ReLU) in one pass.

    Inputs: x (N, D), w (D, U), b (U,), all float32. Returns (N, U) float32.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    _check(x, w, b)
    y = x @ w  # (N, D) @ (D, U) -> (N, U)
    return bias_relu(y, b, relu)


def softmax_naive(y):
    """Reference softmax over the last axis. y: (N, U) -> (N, U)."""
    e = np.exp(y - y.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@numba.njit(**PARALLEL)
def _softmax(y, out):
    # y, out: (N, U)
    N, U = y.shape
    for n in numba.prange(N):
        m = y[n, 0]
        for u in range(U):
            m = max(m, y[n, u])
        s = 0.0
        for u in range(U):
            e = np.exp(y[n, u] - m)
            out[n, u] = e
            s += e
        for u in range(U):
            out[n, u] /= s


def softmax(y):
    """Fast softmax over the last axis. y: (N, U) float32 -> (N, U) float32, rows sum to 1."""
    y = np.ascontiguousarray(y, dtype=np.float32)
    if y.ndim != 2:
        raise ValueError(f"softmax needs (N, U), got {y.shape}")
    out = np.empty_like(y)
    _softmax(y, out)
    return out
