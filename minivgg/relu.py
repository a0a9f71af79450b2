"""ReLU, and the bias-add that every conv and dense layer ends with.

Legend: any shape; the last axis holds the K channels (or units).

    relu(x) = max(x, 0), element by element.

``bias_relu`` adds a per-channel bias and optionally applies the ReLU in the same pass over memory,
in place: after a GEMM the output is read once instead of twice. Conv and dense layers call it.
"""
import numba
import numpy as np

from .jit import PARALLEL


def relu_naive(x):
    """Reference ReLU. x: any shape -> same shape."""
    return np.maximum(x, 0)


@numba.njit(**PARALLEL)
def _relu(flat, out):
    # flat, out: (M,)
    for i in numba.prange(flat.size):
        v = flat[i]
        out[i] = v if v > 0 else 0.0


def relu(x):
    """Fast ReLU. x: any shape, float32 -> a new float32 array of the same shape."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(x)
    _relu(x.reshape(-1), out.reshape(-1))  # (M,) views of both
    return out


def bias_relu_naive(y, b, relu=False):
    """Reference: y + b, then max(., 0) if ``relu``. y: (..., K), b: (K,) -> (..., K)."""
    y = y + b
    return np.maximum(y, 0) if relu else y


@numba.njit(**PARALLEL)
def _bias_relu(y, b, relu):
    # y: (M, K) modified in place, b: (K,)
    M, K = y.shape
    for m in numba.prange(M):
        for k in range(K):
            v = y[m, k] + b[k]
            if relu and v < 0:
                v = 0.0
            y[m, k] = v


def bias_relu(y, b, relu=False):
    """Fast, in place: y += b, then max(y, 0) if ``relu``.

    Inputs:
    - y: (..., K) float32, C-contiguous; overwritten
    - b: (K,)
    Returns:
    - y itself
    """
    if y.dtype != np.float32 or not y.flags.c_contiguous:
        raise ValueError("bias_relu works in place on a C-contiguous float32 array")
    if b.shape != (y.shape[-1],):
        raise ValueError(f"bias shape {b.shape} does not match {y.shape[-1]} channels")
    _bias_relu(y.reshape(-1, y.shape[-1]), np.ascontiguousarray(b, dtype=np.float32), relu)  # (M, K)
    return y
