"""ReLU, the bias-add that every conv and dense layer ends with, and the ReLU's backward rules.

Legend: any shape; the last axis holds the K channels (or units).

    relu(x) = max(x, 0), element by element.

``bias_relu`` adds a per-channel bias and optionally applies the ReLU in the same pass over memory,
in place: after a GEMM the output is read once instead of twice. Conv and dense layers call it.

Backward. With y = relu(x) and dy = dL/dy arriving from above, the rules (``RELU_RULES``) are

    "plain"      dx = dy * [x > 0]              the true derivative (the chain rule)
    "guided"     dx = dy * [x > 0] * [dy > 0]   guided backprop (Springenberg et al. 2015, sec. 3.4)
    "deconvnet"  dx = dy * [dy > 0]             the deconvnet's "rectified" unpooling path
                                                (Zeiler & Fergus 2014, sec. 2.1)

Only "plain" is a derivative; the other two are the rules of two visualisation papers, which keep
only the evidence that pushes the output up. [x > 0] equals [y > 0], so the backward pass needs only
the layer's output y, which the forward pass already has.
"""
import numba
import numpy as np

from ..jit import PARALLEL


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


@numba.njit(nogil=True, cache=True)
def _bias_relu_rows(y, b, relu, lo, hi):
    # y: (M, K) modified in place, rows lo .. hi - 1; b: (K,)
    K = y.shape[1]
    for m in range(lo, hi):
        for k in range(K):
            v = y[m, k] + b[k]
            if relu and v < 0:
                v = 0.0
            y[m, k] = v


@numba.njit(**PARALLEL)
def _bias_relu(y, b, relu):
    # y: (M, K) modified in place, b: (K,); 64 rows per task
    M = y.shape[0]
    for task in numba.prange((M + 63) // 64):
        _bias_relu_rows(y, b, relu, 64 * task, min(M, 64 * task + 64))


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


RELU_RULES = ("plain", "guided", "deconvnet")


def check_rule(rule):
    if rule not in RELU_RULES:
        raise ValueError(f"unknown ReLU rule {rule!r}; choose one of {RELU_RULES}")
    return RELU_RULES.index(rule)  # 0, 1, 2: the number the Numba kernel switches on


def relu_backward_naive(y, dy, rule="plain"):
    """Reference ReLU backward: the three rules above as NumPy expressions.

    Inputs:
    - y: the ReLU's output, any shape (only its sign is used: [y > 0] = [x > 0])
    - dy: dL/dy, same shape
    Returns:
    - dx: dL/dx by the named rule, same shape
    """
    check_rule(rule)
    if rule == "plain":
        return dy * (y > 0)
    if rule == "guided":
        return dy * (y > 0) * (dy > 0)
    return dy * (dy > 0)  # deconvnet


@numba.njit(cache=True)
def backward_rule(g, y, rule):
    """One element of dx: g = dL/dy, y the ReLU's output there; rule: 0 plain, 1 guided, 2 deconvnet.
    Written once, called by ``_relu_backward`` and by the two kernels that fuse it into their own pass:
    the Winograd output transform (``winograd_schedules.conv3x3_winograd(..., relu_below=...)``) and the max-pool
    backward (``pool.max_pool2d_backward(..., relu_rule=...)``)."""
    if (rule != 2 and y <= 0) or (rule != 0 and g <= 0):
        return 0.0
    return g


@numba.njit(**PARALLEL)
def _relu_backward(y, dy, rule, dx):
    # y, dy, dx: (M,); rule: 0 plain, 1 guided, 2 deconvnet
    for i in numba.prange(dy.size):
        dx[i] = backward_rule(dy[i], y[i], rule)


def relu_backward(y, dy, rule="plain"):
    """Fast ReLU backward; same contract as ``relu_backward_naive``, float32 out.

    One pass over memory, in parallel. (-0.0 and 0.0 both count as "not > 0", as in the naive twin.)
    """
    code = check_rule(rule)
    dy = np.ascontiguousarray(dy, dtype=np.float32)
    y = np.ascontiguousarray(y, dtype=np.float32)
    if y.shape != dy.shape:
        raise ValueError(f"y {y.shape} and dy {dy.shape} must have the same shape")
    dx = np.empty_like(dy)
    _relu_backward(y.reshape(-1), dy.reshape(-1), code, dx.reshape(-1))  # (M,) views
    return dx
