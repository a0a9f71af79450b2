"""The loss a classifier learns from: mean categorical cross-entropy on integer labels.

Legend: N batch, U classes (units of the last dense layer).

With z (N, U) the logits (the last layer's scores before its softmax) and y (N,) the labels:

    log p[n, u] = z[n, u] - logsumexp(z[n])                 log-softmax, the row max taken out first
    L           = -(1/N) * sum over n of log p[n, y[n]]     Keras' sparse_categorical_crossentropy, mean over the batch
    dL/dz       = (softmax(z) - onehot(y)) / N              the gradient, written out

logsumexp(z) = m + log(sum(exp(z - m))) with m = max(z): exp never sees a large positive number, so
scores of 1e4 give a finite loss. The gradient needs no chain through the softmax's Jacobian: the
(diag(p) - p p^T) of ``dense.softmax_backward`` and the 1/p of the log cancel to p - onehot.
"""
import numpy as np

from ..errors import MinivggError


def _check(z, y):
    z = np.asarray(z, dtype=np.float32)
    y = np.asarray(y)
    if z.ndim != 2 or y.shape != (z.shape[0],):
        raise MinivggError(f"the loss takes logits (N, U) and labels (N,), got {z.shape} and {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or (y.size and (y.min() < 0 or y.max() >= z.shape[1])):
        raise MinivggError(f"labels must be integers from 0 to {z.shape[1] - 1}")
    return z, y.astype(np.int64)


def log_softmax(z):
    """z: (N, U) -> log softmax(z): (N, U), stable for large scores (computed in float64)."""
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=1, keepdims=True)  # (N, 1)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))  # (N, U)


def cross_entropy(z, y):
    """Mean cross-entropy of logits z (N, U) against labels y (N,), and its gradient.

    Returns (loss: float, dz: (N, U) float32 = (softmax(z) - onehot(y)) / N).
    """
    z, y = _check(z, y)
    N = z.shape[0]
    logp = log_softmax(z)  # (N, U)
    loss = -logp[np.arange(N), y].mean()
    dz = np.exp(logp)  # softmax(z), (N, U)
    dz[np.arange(N), y] -= 1.0  # - onehot(y)
    return float(loss), (dz / N).astype(np.float32)


def cross_entropy_naive(z, y):
    """The same, as the formula reads: a softmax per row, then -log p of the label, in plain loops.

    Not stable for large scores (exp overflows above ~700): the twin the tests hold ``cross_entropy`` to.
    """
    z, y = _check(z, y)
    N, U = z.shape
    loss, dz = 0.0, np.zeros((N, U))
    for n in range(N):
        e = [np.exp(float(z[n, u])) for u in range(U)]
        s = sum(e)
        for u in range(U):
            p = e[u] / s
            dz[n, u] = (p - (1.0 if u == y[n] else 0.0)) / N
        loss -= np.log(e[y[n]] / s) / N
    return float(loss), dz.astype(np.float32)


def accuracy(z, y, k=1):
    """Top-k accuracy: the share of rows whose label is among the k highest scores of z (N, U)."""
    z, y = np.asarray(z), np.asarray(y)
    k = min(k, z.shape[1])
    top = np.argsort(-z, axis=1, kind="stable")[:, :k]  # (N, k)
    return float((top == y[:, None]).any(axis=1).mean()) if len(y) else 0.0
