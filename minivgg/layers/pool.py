"""Max-pooling: keep the largest value of each window, channel by channel.

Legend: N batch, H, W height and width, C channels, P pool size, S stride.

    out[n, i, j, c] = max over (di, dj) in P x P of x[n, i*S + di, j*S + dj, c]

VGG16 uses P = 2, S = 2, "valid" padding: the output is H' = (H - P) // S + 1, so an odd size
drops its last row or column, exactly as Keras' ``MaxPooling2D`` does.

Backward. Only the maximum of a window reached the output, so dL/dx is dL/dy at that element and 0
at the others of the window (and 0 at a dropped odd row or column). Ties, which are common (a window
of four ReLU zeros), go to ONE element: the first maximum in row-major order (di, then dj), found by a
strict ``>`` scan. That is TensorFlow's rule (measured: a window of equal values sends its whole
gradient to the top-left element), and it is the order in which the forward kernel scans, so the
forward and backward passes agree on which element "won". ``max_pool2d_argmax`` names that element.

Fine-tuned heads often replace ``flatten`` by a global pool, one number per channel:

    global_avg_pool: out[n, c] = mean over (i, j) of x[n, i, j, c]     (N, H, W, C) -> (N, C)
    global_max_pool: out[n, c] = max over (i, j) of x[n, i, j, c]      (N, H, W, C) -> (N, C)

Each is one NumPy reduction, plain enough to need no Numba kernel and no twin.
"""
import numba
import numpy as np

from ..jit import PARALLEL
from .relu import backward_rule, check_rule


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


@numba.njit(cache=True)
def _winners(x, n, h0, w0, size, m, best):
    # The window at (h0, w0) of image n, every channel at once: m[c] = its maximum, best[c] = which
    # element is its first maximum in row-major order (di * size + dj), by a strict ">" scan. The one
    # place the rule is written: the backward kernel calls it (the forward one needs only the maximum,
    # the same whichever element of a tie wins: _window_max). The inner loop runs along the channels,
    # contiguous in x, m and best: LLVM vectorises it.
    first = x[n, h0, w0]  # (C,)
    for c in range(m.shape[0]):
        m[c] = first[c]
        best[c] = 0
    for di in range(size):
        for dj in range(size):
            row = x[n, h0 + di, w0 + dj]  # (C,)
            p = di * size + dj
            for c in range(m.shape[0]):
                if row[c] > m[c]:
                    m[c] = row[c]
                    best[c] = p


@numba.njit(cache=True, inline="always")
def _window_max(x, n, h0, w0, size, c):
    # The largest value of channel c in the size x size window at (h0, w0) of image n: the forward pass
    # needs only the value, the same whichever element of a tie wins (the backward asks _winners).
    v = x[n, h0, w0, c]
    for di in range(size):
        for dj in range(size):
            if x[n, h0 + di, w0 + dj, c] > v:
                v = x[n, h0 + di, w0 + dj, c]
    return v


@numba.njit(nogil=True, cache=True, inline="always")
def _window_max4(r00, r01, r10, r11, out):
    # A 2x2 window given as its four (C,) rows in row-major order, channel by channel: out[c] = its
    # maximum, by _window_max's scan (the same value, bit for bit). Winograd's output transform pools
    # with it as it writes a conv's output (winograd._put_pooled: the conv and its pool in one pass).
    for c in range(out.shape[0]):
        v = r00[c]
        if r01[c] > v:
            v = r01[c]
        if r10[c] > v:
            v = r10[c]
        if r11[c] > v:
            v = r11[c]
        out[c] = v


@numba.njit(**PARALLEL)
def _max_pool2d(x, size, stride, out):
    # x: (N, H, W, C), out: (N, H', W', C). One task per output row of one image; for each output
    # pixel a loop along the channels, contiguous in x and out, that LLVM vectorises.
    N, OH, OW, C = out.shape
    for nh in numba.prange(N * OH):
        n = nh // OH
        i = nh % OH
        for j in range(OW):
            o = out[n, i, j]  # (C,)
            if size == 2:  # VGG's pools. With the size a constant, LLVM unrolls the window: 2x faster
                for c in range(C):
                    o[c] = _window_max(x, n, i * stride, j * stride, 2, c)
            else:
                for c in range(C):
                    o[c] = _window_max(x, n, i * stride, j * stride, size, c)


def max_pool2d(x, size=2, stride=2):
    """Fast max-pool; same contract as ``max_pool2d_naive``, float32 out."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty(_out_shape(x, size, stride), dtype=np.float32)
    _max_pool2d(x, size, stride, out)
    return out


def max_pool2d_argmax_naive(x, size=2, stride=2):
    """Reference: which element of each window is the maximum (ties: the first, row-major).

    Inputs:
    - x: (N, H, W, C)
    Returns:
    - idx: (N, H', W', C) uint8, idx = di * size + dj of the winning element of each window
    """
    N, OH, OW, C = _out_shape(x, size, stride)
    idx = np.empty((N, OH, OW, C), dtype=np.uint8)
    for i in range(OH):
        for j in range(OW):
            window = x[:, i * stride:i * stride + size, j * stride:j * stride + size, :]  # (N, P, P, C)
            idx[:, i, j, :] = window.reshape(N, size * size, C).argmax(axis=1)  # np.argmax: first maximum
    return idx


def max_pool2d_backward_naive(x, dy, size=2, stride=2):
    """Reference max-pool backward: route each dy to its window's winning element.

    Inputs:
    - x: (N, H, W, C), the pool's input in the forward pass
    - dy: (N, H', W', C), dL/d(the pool's output)
    Returns:
    - dx: (N, H, W, C), dL/dx; overlapping windows (stride < size) add up
    """
    idx = max_pool2d_argmax_naive(x, size, stride)  # (N, H', W', C)
    if dy.shape != idx.shape:
        raise ValueError(f"dy must be {idx.shape} for a pool of {x.shape}, got {dy.shape}")
    N, OH, OW, C = dy.shape
    dx = np.zeros(x.shape, dtype=np.result_type(x, dy))
    n, c = np.arange(N)[:, None], np.arange(C)[None, :]  # (N, 1), (1, C): broadcast over the window grid
    for i in range(OH):
        for j in range(OW):
            di, dj = np.divmod(idx[:, i, j, :], size)  # (N, C) each
            dx[n, i * stride + di, j * stride + dj, c] += dy[:, i, j, :]
    return dx


@numba.njit(**PARALLEL)
def _max_pool2d_backward(x, dy, size, stride, rule, dx):
    # x, dx: (N, H, W, C), dx not initialised; dy: (N, H', W', C). Windows do not overlap (stride >=
    # size), so each task (one output row of one image) owns rows i*stride .. (i+1)*stride - 1 of dx
    # (the last task also the rows below, which no window covers) and writes every element of them:
    # each window element gets dy or 0, the rest (between or after windows) 0. rule >= 0: the ReLU
    # rule whose output x is, applied to each routed value (relu.backward_rule); -1: none.
    N, OH, OW, C = dy.shape
    H, W = x.shape[1], x.shape[2]
    gaps = stride > size or W > OW * stride  # elements of these rows outside every window
    for nh in numba.prange(N * OH):
        n = nh // OH
        i = nh % OH
        h0 = i * stride
        for h in range(h0, H if i == OH - 1 else h0 + stride):  # this task's rows (the last: all below too)
            if gaps or h >= OH * stride:  # a row with elements outside every window: zero it first
                row = dx[n, h]  # (W, C)
                for w in range(W):
                    for c in range(C):
                        row[w, c] = 0.0
        m = np.empty(C, dtype=np.float32)
        best = np.empty(C, dtype=np.int64)
        for j in range(OW):
            w0 = j * stride
            _winners(x, n, h0, w0, size, m, best)
            g = dy[n, i, j]  # (C,)
            for di in range(size):
                for dj in range(size):
                    p = di * size + dj
                    out = dx[n, h0 + di, w0 + dj]  # (C,)
                    at = x[n, h0 + di, w0 + dj]  # (C,)
                    for c in range(C):
                        v = g[c] if rule < 0 else backward_rule(g[c], at[c], rule)
                        out[c] = v if best[c] == p else 0.0


def max_pool2d_backward(x, dy, size=2, stride=2, relu_rule=None):
    """Fast max-pool backward; same contract as ``max_pool2d_backward_naive`` for windows that do
    not overlap (stride >= size, as in VGG16); float32 out.

    relu_rule: None, or a ReLU rule ("plain", "guided", "deconvnet") when x is a ReLU's output: then
    the result is ``relu.relu_backward(x, dx, relu_rule)``, one step further down the chain, in the
    same pass (bit for bit the same as the two calls; the non-winners are 0 either way).
    """
    if stride < size:
        raise ValueError("the fast max-pool backward needs stride >= size; use max_pool2d_backward_naive")
    x = np.ascontiguousarray(x, dtype=np.float32)
    dy = np.ascontiguousarray(dy, dtype=np.float32)
    if dy.shape != _out_shape(x, size, stride):
        raise ValueError(f"dy must be {_out_shape(x, size, stride)} for a pool of {x.shape}, got {dy.shape}")
    dx = np.empty_like(x)  # (N, H, W, C), zeroed by the kernel in parallel (a map has at least one window)
    _max_pool2d_backward(x, dy, size, stride, -1 if relu_rule is None else check_rule(relu_rule), dx)
    return dx

def global_avg_pool(x):
    """Keras' GlobalAveragePooling2D. x: (N, H, W, C) -> (N, C) float32, the mean of each channel."""
    if x.ndim != 4:
        raise ValueError(f"x must be (N, H, W, C), got shape {x.shape}")
    return x.mean(axis=(1, 2), dtype=np.float32)  # (N, H, W, C) -> (N, C)


def global_max_pool(x):
    """Keras' GlobalMaxPooling2D. x: (N, H, W, C) -> (N, C) float32, the largest value of each channel."""
    if x.ndim != 4:
        raise ValueError(f"x must be (N, H, W, C), got shape {x.shape}")
    return x.max(axis=(1, 2)).astype(np.float32, copy=False)  # (N, H, W, C) -> (N, C)
