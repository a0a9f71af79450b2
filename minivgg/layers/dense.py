"""The classifier head: fully connected (dense) layers and softmax.

Legend: N batch, D input features, U output units.

    dense:   y = x @ w + b            x (N, D), w (D, U), b (U,) -> (N, U)
    softmax: p[n] = exp(y[n] - max y[n]) / sum(exp(y[n] - max y[n]))   (N, U) -> (N, U)
    sigmoid: s = 1 / (1 + exp(-y)), element by element                   (N, U) -> (N, U)

Subtracting the row maximum does not change softmax but keeps exp() from overflowing.

Backward, with dy = dL/d(output):

    dense:   dx = dy @ w^T   (N, U) @ (U, D);   dw = x^T @ dy   (D, N) @ (N, U);   db = sum over n of dy
    softmax: dx[n] = p[n] * (dy[n] - <dy[n], p[n]>)        (the Jacobian-vector product)

The softmax Jacobian is J = diag(p) - p p^T (U x U per image, 4 MB for 1000 classes); J^T dy = J dy
expands to the line above, which never builds it.

A dense layer ends with one of ``ACTIVATIONS``: these are the ones minivgg computes exactly (a
fine-tuned head with any other is refused when its config is read).
"""
import numba
import numpy as np

from ..jit import PARALLEL, matmul  # matmul: np.matmul, shared among minivgg's threads inside jit.shared_gemms()
from .relu import bias_relu

ACTIVATIONS = ("linear", "relu", "softmax", "sigmoid")  # Keras' names; "linear" is the identity


def _check(x, w, b):
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0] or b.shape != (w.shape[1],):
        raise ValueError(f"dense needs x (N, D), w (D, U), b (U,); got {x.shape}, {w.shape}, {b.shape}")


def dense_naive(x, w, b, relu=False):
    """Reference dense layer, plain loops over (n, u) with a dot product inside.

    Inputs: x (N, D), w (D, U), b (U,). Returns (N, U).
    """
    _check(x, w, b)
    N, U = x.shape[0], w.shape[1]
    y = np.empty((N, U), dtype=np.result_type(x, w, b))
    for n in range(N):
        for u in range(U):
            y[n, u] = np.dot(x[n], w[:, u]) + b[u]
    return np.maximum(y, 0) if relu else y


def dense(x, w, b, relu=False):
    """Fast dense layer: one BLAS matmul, then the bias (and ReLU) in one pass; for one image, the
    rows of w whose input is 0 skipped (``matvec_nonzero``, at the bottom of this file).

    The matmul is ``jit.matmul``: ``np.matmul``, shared among minivgg's threads inside
    ``jit.shared_gemms()``, else a plain ``np.matmul``.

    Inputs: x (N, D), w (D, U), b (U,), all float32. Returns (N, U) float32.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    _check(x, w, b)
    if x.shape[0] == 1:  # one image: y = sum over d of x[d] * w[d], only where x[d] != 0
        y = matvec_nonzero(x[0], w)[None]  # (U,) -> (1, U)
    else:
        y = matmul(x, w)  # (N, D) @ (D, U) -> (N, U)
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


def dense_backward_naive(x, w, dy):
    """Reference dense backward, plain loops over (n, d, u).

    Inputs: x (N, D), the forward input; w (D, U); dy (N, U), dL/dy (after the activation's backward).
    Returns: dx (N, D), dw (D, U), db (U,), in the inputs' precision.
    """
    N, D = x.shape
    U = w.shape[1]
    dtype = np.result_type(x, w, dy)
    dx, dw = np.zeros((N, D), dtype), np.zeros((D, U), dtype)
    for n in range(N):
        for d in range(D):
            for u in range(U):
                dx[n, d] += dy[n, u] * w[d, u]
                dw[d, u] += x[n, d] * dy[n, u]
    return dx, dw, dy.sum(axis=0).astype(dtype)


def dense_backward(x, w, dy, need_weights=True):
    """Fast dense backward: two BLAS matmuls (``jit.matmul``, as in ``dense``) and a sum; same
    contract as ``dense_backward_naive``.

    ``need_weights=False`` skips dw and db (returned as None): the input gradient alone needs only w.
    """
    dy = np.ascontiguousarray(dy, dtype=np.float32)
    if dy.shape != (x.shape[0], w.shape[1]):
        raise ValueError(f"dy must be {(x.shape[0], w.shape[1])}, got {dy.shape}")
    dx = matmul(dy, w.T)  # (N, U) @ (U, D) -> (N, D)
    if not need_weights:
        return dx, None, None
    dw = matmul(np.asarray(x, dtype=np.float32).T, dy)  # (D, N) @ (N, U) -> (D, U)
    return dx, dw, dy.sum(axis=0, dtype=np.float64).astype(np.float32)


def softmax_backward_naive(p, dy):
    """Reference: the full Jacobian J[n] = diag(p[n]) - p[n] p[n]^T, then J[n]^T @ dy[n].

    Inputs: p (N, U), softmax's output; dy (N, U), dL/dp. Returns dx (N, U), dL/d(logits).
    """
    dx = np.empty(np.broadcast_shapes(p.shape, dy.shape), dtype=np.result_type(p, dy))
    for n in range(p.shape[0]):
        J = np.diag(p[n]) - np.outer(p[n], p[n])  # (U, U), symmetric
        dx[n] = J.T @ dy[n]  # (U, U) @ (U,) -> (U,)
    return dx


def softmax_backward(p, dy):
    """Fast softmax backward, the Jacobian-vector product p * (dy - <dy, p>); same contract as the twin.

    The dot product is summed in float64: with p near one-hot, dy - <dy, p> cancels.
    """
    p = np.asarray(p, dtype=np.float32)
    dy = np.asarray(dy, dtype=np.float32)
    if p.shape != dy.shape or p.ndim != 2:
        raise ValueError(f"softmax_backward needs p and dy of one (N, U) shape, got {p.shape}, {dy.shape}")
    dot = np.einsum("nu,nu->n", p.astype(np.float64), dy)[:, None]  # (N, 1): <dy[n], p[n]>
    return (p * (dy - dot)).astype(np.float32)  # (N, U)


def sigmoid(y):
    """Logistic sigmoid, element by element: (N, U) float32 -> (N, U) float32, in (0, 1).

    Written as exp(-log(1 + exp(-y))) (``np.logaddexp(0, -y)`` = log(1 + exp(-y)) without overflow),
    so a large negative y gives a tiny number instead of an overflow warning; the plain form is
    1 / (1 + np.exp(-y)). One NumPy expression: no Numba kernel, so no naive twin to hold it to.
    """
    y = np.asarray(y, dtype=np.float32)
    return np.exp(-np.logaddexp(np.float32(0), -y)).astype(np.float32)


# ---- Performance: skip on a first read. One image's dense layer reads only the rows of w it needs.
#
# With one image, x @ w reads all of w (fc1's is 411 MB) to multiply it by one row of x, and the time is
# that of reading w from memory. x is a ReLU's output (fc1's input is block5_pool's, fc2's is fc1's):
# 40-50% of it is 0 with random weights, and the rows of w those zeros meet add nothing to y. Reading
# only the others takes the time down with them: fc1 6.1 ms instead of BLAS's 11.3 at 51% zeros, no
# slower than BLAS with none (docs/performance.md).


def matvec_nonzero(x, w):
    """y = x @ w for one row x (D,) and w (D, U), reading only the rows w[d] with x[d] != 0; the same
    sum as ``dense_naive``'s without its zero terms (a 0 times a finite weight adds nothing).
    Returns y (U,) float32."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 1 or w.ndim != 2 or x.shape[0] != w.shape[0]:
        raise ValueError(f"matvec_nonzero needs x (D,) and w (D, U), got {x.shape}, {w.shape}")
    rows = np.flatnonzero(x)  # (R,) the inputs that are not 0
    parts = np.empty((max(1, min(numba.get_num_threads(), len(rows))), w.shape[1]), dtype=np.float32)  # (T, U)
    _matvec_nonzero(x, w, rows, parts)
    return parts.sum(axis=0) if len(parts) > 1 else parts[0]


@numba.njit(**PARALLEL)
def _matvec_nonzero(x, w, rows, parts):
    # x: (D,), w: (D, U), rows: (R,) indices d with x[d] != 0, parts: (T, U). Share t sums x[d] * w[d]
    # over its contiguous share of ``rows`` into parts[t], two rows of w a pass (each one streamed once);
    # the loop along U, contiguous in w and parts, LLVM vectorises.
    T, U = parts.shape
    R = rows.shape[0]
    for t in numba.prange(T):
        acc = parts[t]  # (U,)
        acc[:] = 0.0
        i, end = R * t // T, R * (t + 1) // T
        while i + 1 < end:
            a0, a1 = x[rows[i]], x[rows[i + 1]]
            r0, r1 = w[rows[i]], w[rows[i + 1]]  # (U,) each
            for u in range(U):
                acc[u] += a0 * r0[u] + a1 * r1[u]
            i += 2
        if i < end:  # an odd row left
            a0, r0 = x[rows[i]], w[rows[i]]
            for u in range(U):
                acc[u] += a0 * r0[u]
