"""2-D convolution, the way Keras' ``Conv2D`` computes it (a cross-correlation, no kernel flip).

Legend: N batch, H, W input height and width, C input channels, K output channels,
KH, KW kernel size, H', W' output size.

    out[n, i, j, k] = b[k] + sum over (di, dj, c) of
                      xpad[n, i*stride + di, j*stride + dj, c] * w[di, dj, c, k]

with ``xpad`` the input with ``pad`` zeros on every side and H' = 1 + (H + 2*pad - KH) // stride.
VGG16 always uses 3x3 kernels, stride 1 and pad 1 ("same": H' = H).

The methods, side by side (``conv2d(..., method=...)``):

| method     | how                                                  | trade-off                               |
|------------|------------------------------------------------------|-----------------------------------------|
| "naive"    | one tensordot per output pixel                       | obviously right; slow; the reference    |
| "im2col"   | im2col, then one GEMM through NumPy's BLAS           | any kernel/stride/pad; KH*KW x the input |
|            |                                                      | in memory; ~2*N*H'*W'*K*KH*KW*C flops   |
| "winograd" | Winograd F(4x4,3x3), see ``winograd.py``             | 3x3, stride 1 only; 4x fewer multiplies |

``DEFAULT`` (im2col) names the method ``conv2d`` uses when none is given: the one that handles any
kernel, stride and padding. The VGG16 model has its own default, ``"auto"``, which picks a method
per layer (``vgg16.plan``): Winograd wherever C >= 64, im2col for the first layer.
"""
import numpy as np

from .im2col import _check as _check_window, im2col, output_size
from .relu import bias_relu

METHODS = ("naive", "im2col", "winograd")
DEFAULT = "im2col"


def _check(x, w, b, stride, pad):
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d needs x (N, H, W, C) and w (KH, KW, C, K); got {x.shape}, {w.shape}")
    if x.shape[3] != w.shape[2]:
        raise ValueError(f"x has {x.shape[3]} channels but w expects {w.shape[2]}")
    if b.shape != (w.shape[3],):
        raise ValueError(f"b must be ({w.shape[3]},), got {b.shape}")
    _check_window(x, w.shape[0], w.shape[1], stride, pad)


def conv2d_naive(x, w, b, stride=1, pad=0, relu=False):
    """Reference convolution, straight from the formula above.

    Inputs:
    - x: (N, H, W, C);  w: (KH, KW, C, K);  b: (K,)
    - stride, pad: as in the formula; relu: apply max(., 0) to the result
    Returns:
    - out: (N, H', W', K), H' = 1 + (H + 2*pad - KH) // stride, likewise W'
    """
    _check(x, w, b, stride, pad)
    N, H, W, C = x.shape
    KH, KW, _, K = w.shape
    OH, OW = output_size(H, KH, stride, pad), output_size(W, KW, stride, pad)
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))  # (N, H+2p, W+2p, C)
    out = np.empty((N, OH, OW, K), dtype=np.float32)
    for i in range(OH):
        for j in range(OW):
            window = xp[:, i * stride:i * stride + KH, j * stride:j * stride + KW, :]  # (N, KH, KW, C)
            out[:, i, j, :] = np.tensordot(window, w, axes=3) + b  # sum over (KH, KW, C) -> (N, K)
    return np.maximum(out, 0) if relu else out


def conv2d_im2col(x, w, b, stride=1, pad=0, relu=False):
    """Convolution as im2col + one GEMM + bias (+ ReLU); same contract as ``conv2d_naive``.

    All arrays float32; returns a new C-contiguous (N, H', W', K) array.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    _check(x, w, b, stride, pad)
    KH, KW, C, K = w.shape
    cols = im2col(x, KH, KW, stride, pad)  # (N, H', W', KH*KW*C)
    N, OH, OW, _ = cols.shape
    w2 = np.ascontiguousarray(w, dtype=np.float32).reshape(KH * KW * C, K)  # (KH, KW, C, K) -> (KH*KW*C, K)
    y = cols.reshape(N * OH * OW, KH * KW * C) @ w2  # (N*H'*W', KH*KW*C) @ (KH*KW*C, K) -> (N*H'*W', K)
    bias_relu(y, b, relu)
    return y.reshape(N, OH, OW, K)  # (N*H'*W', K) -> (N, H', W', K)


def conv2d(x, w, b, stride=1, pad=0, relu=False, method=DEFAULT):
    """Convolution by the named method (see the table at the top of this file).

    Inputs:
    - x: (N, H, W, C);  w: (KH, KW, C, K) (Keras' HWIO layout);  b: (K,)
    Returns:
    - out: (N, H', W', K) float32, H' = 1 + (H + 2*pad - KH) // stride, likewise W'
    """
    if method == "naive":
        return conv2d_naive(x, w, b, stride, pad, relu)
    if method == "im2col":
        return conv2d_im2col(x, w, b, stride, pad, relu)
    if method == "winograd":
        from .winograd import conv3x3_winograd, winograd_kernel

        if w.shape[:2] != (3, 3) or stride != 1 or pad != 1:
            raise ValueError("winograd handles 3x3 kernels with stride 1 and pad 1 only")
        return conv3x3_winograd(x, winograd_kernel(w), b, relu)
    raise ValueError(f"unknown conv method {method!r}; choose one of {METHODS}")
