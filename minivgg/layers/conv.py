"""2-D convolution, the way Keras' ``Conv2D`` computes it (a cross-correlation, no kernel flip).

Legend: N batch, H, W input height and width, C input channels, K output channels,
KH, KW kernel size, H', W' output size. Layouts as Keras keeps them: activations NHWC (N, H, W, C),
kernels HWIO (KH, KW, C, K): w[di, dj, c, k] weighs input channel c at tap (di, dj) for filter k.

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
| "direct"   | the formula as Numba loops: per output pixel, the    | no copy, no GEMM: fast where C is small |
|            | KH*KW*C taps, each times a (K,) row of w, summed     | (the first layer, C = 3: im2col's GEMM  |
|            | into K accumulators; K a multiple of 16: the same    | is only 27 deep); slow for large C      |
|            | sums register-blocked (``microkernel.py``)           |                                         |

(A GEMM, "general matrix multiply", is a matrix product A @ B as BLAS computes it, BLAS being the
optimised linear-algebra library behind ``np.matmul``.)

``DEFAULT`` (im2col) names the method ``conv2d`` uses when none is given: the one that handles any
kernel, stride and padding. The VGG16 model has its own default, ``"auto"``, which picks a method
per layer (``network/table.py``, ``plan``): Winograd wherever C >= 64, "direct" for the first layer
(on the micro-kernel it is about half im2col's time there: ``plan`` gives the figures).

Backward. Given dy = dL/dout (N, H', W', K), the chain rule through the formula above gives

    db[k]          = sum over (n, i, j) of dy[n, i, j, k]
    dw[di, dj, c, k] = sum over (n, i, j) of xpad[n, i*stride + di, j*stride + dj, c] * dy[n, i, j, k]
                   = (im2col(x)^T @ dy)  as matrices: (KH*KW*C, N*H'*W') @ (N*H'*W', K)
    dxpad[n, i*stride + di, j*stride + dj, c] += dy[n, i, j, k] * w[di, dj, c, k]   (every i, j, di, dj, k)

For stride 1 the last sum is itself a convolution. Input pixel (p, q) was seen by output (i, j) =
(p + pad - di, q + pad - dj) through tap (di, dj); write di = KH-1-a, dj = KW-1-b:

    dx[n, p, q, c] = sum over (a, b, k) of dypad[n, p + a, q + b, k] * w[KH-1-a, KW-1-b, c, k]

with dy padded by KH-1-pad: a convolution of dy with the kernel flipped in both spatial axes and its
C and K axes swapped, w_t = ``transpose_kernel(w)`` (KH, KW, K, C). For VGG16's 3x3 "same" convs
(pad 1) it is again a 3x3 "same" conv, so im2col and Winograd compute the backward pass too.
"""
import numba
import numpy as np

from ..jit import GEMM_IN_NUMBA, PARALLEL, gemm, matmul, scratch, sharing  # matmul: np.matmul, shared inside jit.shared_gemms()
from .im2col import _check as _check_window, _im2col_rows, col2im, im2col, output_size
from .microkernel import conv2d_direct_blocked, packable
from .relu import _bias_relu_rows, bias_relu, relu_backward

BLOCK_COLS_FLOATS = 1 << 16  # im2col's blocks of rows (``_im2col_blocked``): at most this many floats of cols (256 KB)
# dx by col2im where its matrix holds at most this many floats (16 MB), else by the flipped convolution, whose
# im2col goes in cache-sized blocks: col2im's matrix is built whole. Measured, one image, 2 threads, ms, col2im
# / flipped: 224x224, 3 <- 64: 1.7 / 5.6; 28x28, 256 <- 512: 5.1 / 8.4; 14x14, 512 <- 512: 2.8 / 8.1;
# 56x56, 128 <- 256: 6.7 / 6.8; but 112x112, 64 <- 128 (7.2M floats): 9.0 / 7.0; 224x224, 64 <- 64: 33.5 / 13.1.
COL2IM_FLOATS = 1 << 22

METHODS = ("naive", "im2col", "winograd", "direct")
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
    out = np.empty((N, OH, OW, K), dtype=np.result_type(x, w, b))  # float64 in, float64 out (gradient checks)
    for i in range(OH):
        for j in range(OW):
            window = xp[:, i * stride:i * stride + KH, j * stride:j * stride + KW, :]  # (N, KH, KW, C)
            out[:, i, j, :] = np.tensordot(window, w, axes=3) + b  # sum over (KH, KW, C) -> (N, K)
    return np.maximum(out, 0) if relu else out


def conv2d_im2col(x, w, b, stride=1, pad=0, relu=False):
    """Convolution as im2col + one GEMM + bias (+ ReLU); same contract as ``conv2d_naive``.

    All arrays float32; returns a new C-contiguous (N, H', W', K) array. The GEMM goes through
    ``jit.matmul``: ``np.matmul``, shared among minivgg's threads inside ``jit.shared_gemms()``, else a
    plain ``np.matmul``.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    _check(x, w, b, stride, pad)
    if sharing() or (GEMM_IN_NUMBA and numba.get_num_threads() == 1):  # each thread calls its own GEMMs: cache-sized blocks
        return _im2col_blocked(x, w, b, stride, pad, relu)
    KH, KW, C, K = w.shape
    cols = im2col(x, KH, KW, stride, pad)  # (N, H', W', KH*KW*C)
    N, OH, OW, _ = cols.shape
    w2 = np.ascontiguousarray(w, dtype=np.float32).reshape(KH * KW * C, K)  # (KH, KW, C, K) -> (KH*KW*C, K)
    rows = cols.reshape(N * OH * OW, KH * KW * C)  # (N, H', W', KH*KW*C) -> (N*H'*W', KH*KW*C)
    y = np.empty((N * OH * OW, K), dtype=np.float32)
    # readable form: y = rows @ w2, one GEMM (N*H'*W', KH*KW*C) @ (KH*KW*C, K) -> (N*H'*W', K). Done as one
    # GEMM per image, each of the size it has alone: BLAS picks its kernels by the matrix sizes, and
    # measured here (block1_conv1, K = 27) an image's rows rounded differently inside a larger GEMM.
    # So an image's output does not depend on its batch, to the bit (see winograd_schedules.py, "Batch invariance").
    step = OH * OW
    for n in range(N):
        matmul(rows[n * step:(n + 1) * step], w2, out=y[n * step:(n + 1) * step])  # (H'*W', KH*KW*C) @ (KH*KW*C, K)
    bias_relu(y, b, relu)
    return y.reshape(N, OH, OW, K)  # (N*H'*W', K) -> (N, H', W', K)


def _im2col_blocked(x, w, b, stride, pad, relu):
    """``conv2d_im2col`` in blocks of output rows, each taken through im2col, its GEMM and the bias +
    ReLU before the next, so that its rows of cols (``BLOCK_COLS_FLOATS`` at most) and its outputs stay
    in the core's cache; the blocks shared among Numba's threads (``_blocks``, ``jit.gemm``), each with its
    own scratch for cols, its GEMM writing straight into the output.

    Why: the plain version writes all of cols out to memory and reads it back, then reads and writes
    the whole output again for the bias and ReLU. On the first layer (C = 3, a 27-deep GEMM) that was
    more than the GEMM: block1_conv1 at 224, 2 threads, 2.0 ms plain, 1.1 ms blocked
    (docs/performance.md). Needs each thread to call its own BLAS (inside ``jit.shared_gemms()``), or
    one thread in all. Blocks hold rows of one image, cut the same whatever the batch: each image's
    output is bit for bit what it is alone.
    """
    KH, KW, C, K = w.shape
    N, H, W, _ = x.shape
    OH, OW = output_size(H, KH, stride, pad), output_size(W, KW, stride, pad)
    L = KH * KW * C  # one row of cols
    w2 = np.ascontiguousarray(w, dtype=np.float32).reshape(L, K)  # (KH, KW, C, K) -> (KH*KW*C, K)
    b = np.ascontiguousarray(b, dtype=np.float32)
    out = np.empty((N, OH, OW, K), dtype=np.float32)
    R = max(1, BLOCK_COLS_FLOATS // (OW * L))  # output rows per block
    blocks = np.array([(n, r0, min(r0 + R, OH)) for n in range(N) for r0 in range(0, OH, R)], dtype=np.int64)  # (image, first row, end)
    shares = min(numba.get_num_threads(), len(blocks))
    cols = scratch("cols", shares * R * OW * L).reshape(shares, R * OW * L)  # each share's own rows of cols
    _blocks(x, KH, KW, stride, pad, w2, b, bool(relu), blocks, shares, cols, out)
    return out


@numba.njit(**PARALLEL)
def _blocks(x, KH, KW, stride, pad, w2, b, relu, blocks, shares, cols, out):
    # Share i: blocks B*i//shares .. B*(i+1)//shares - 1 of the B, each through im2col into its rows of
    # cols, one GEMM into out (a view of its rows), the bias and ReLU.
    N, OH, OW, K = out.shape
    L = w2.shape[0]
    B = blocks.shape[0]
    for i in numba.prange(shares):
        for j in range(B * i // shares, B * (i + 1) // shares):
            n, r0, r1 = blocks[j, 0], blocks[j, 1], blocks[j, 2]
            c = cols[i, :(r1 - r0) * OW * L].reshape((r1 - r0, OW, L))  # (rows*W'*L,) -> (rows, W', KH*KW*C)
            _im2col_rows(x, KH, KW, stride, pad, n, r0, r1, c)
            y = out[n, r0:r1].reshape(((r1 - r0) * OW, K))  # (rows, W', K) -> (rows*W', K), a view of out
            gemm(c.reshape(((r1 - r0) * OW, L)), w2, y)  # (rows*W', KH*KW*C) @ (KH*KW*C, K)
            _bias_relu_rows(y, b, relu, 0, y.shape[0])


@numba.njit(**PARALLEL)
def _conv2d_direct(x, w2, b, KH, KW, stride, pad, relu, out):
    N, H, W, C = x.shape
    K = w2.shape[1]
    _, OH, OW, _ = out.shape
    zero = np.float32(0.0)
    for ni in numba.prange(N * OH):  # one output row of one image per task
        n, i = ni // OH, ni % OH
        acc0, acc1 = np.empty(K, dtype=np.float32), np.empty(K, dtype=np.float32)  # (K,) each: two pixels' sums
        for j in range(0, OW, 2):  # output pixels (i, j) and (i, j + 1) together: each row of w read once for both
            acc0[:] = b
            acc1[:] = b
            for di in range(KH):
                r = i * stride + di - pad  # the input row of tap (di, .); outside [0, H) it is padding: skipped
                if r < 0 or r >= H:
                    continue
                for dj in range(KW):
                    q0 = j * stride + dj - pad  # the input columns of tap (di, dj) for pixels j and j + 1
                    q1 = q0 + stride
                    t = (di * KW + dj) * C  # the row of w2 for tap (di, dj, c = 0)
                    for c in range(C):
                        v0 = x[n, r, q0, c] if 0 <= q0 < W else zero  # padding: 0 (for j + 1 = OW, unused)
                        v1 = x[n, r, q1, c] if 0 <= q1 < W else zero
                        # readable form: acc0 += v0 * w[di, dj, c]; acc1 += v1 * w[di, dj, c], (K,) rows
                        for k in range(K):
                            acc0[k] += v0 * w2[t + c, k]
                            acc1[k] += v1 * w2[t + c, k]
            for k in range(K):
                out[n, i, j, k] = max(acc0[k], zero) if relu else acc0[k]
            if j + 1 < OW:
                for k in range(K):
                    out[n, i, j + 1, k] = max(acc1[k], zero) if relu else acc1[k]


def conv2d_direct(x, w, b, stride=1, pad=0, relu=False):
    """Direct convolution, the formula as loops; same contract as ``conv2d_naive``.

    Each output pixel (n, i, j) starts from b and adds, tap by tap in (di, dj, c) order, the input value
    times the (K,) row w[di, dj, c] (taps that fall in the padding are skipped). The loop over K is the
    innermost, over a contiguous row of w and a (K,) accumulator that stays in the core's L1 cache:
    Numba compiles it to vector instructions. Two neighbouring pixels of a row go together, so each
    row of w is read once for both. Nothing is copied (no im2col, no padded input), there is no GEMM
    and no separate bias pass: for the first layer, C = 3, a GEMM would be only 27 deep, and this does
    just the formula's 27 multiply-adds per output. For large C a GEMM's blocking wins (im2col,
    Winograd). Measured on block1_conv1 at 224, one thread: one pixel at a time 6.4 ms, accumulating
    straight into the output 7.5 ms, two pixels at a time 4.5-5.3 ms; four at a time was slower again.
    Batch invariant: each pixel's sum is the same float32 operations whatever the batch, so each
    image comes out bit for bit as it does alone.

    For K a multiple of 16 (every VGG layer's), the same sums go to the GEMM micro-kernel instead
    (``microkernel.conv2d_direct_blocked``: 6 pixels x 16 filters of sums held in registers while the
    taps run, the bias and ReLU applied before the one store), about half these loops' time on
    block1_conv1 (docs/performance.md, "The first layer on the micro-kernel"); these loops serve any
    other K. Both are batch invariant.

    All arrays float32 (others are converted); returns a new C-contiguous (N, H', W', K) array.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    _check(x, w, b, stride, pad)
    N, H, W, C = x.shape
    KH, KW, _, K = w.shape
    if packable(K):  # the same sums, register-blocked (microkernel.py)
        return conv2d_direct_blocked(x, w, b, stride, pad, relu)
    w2 = np.ascontiguousarray(w, dtype=np.float32).reshape(KH * KW * C, K)  # (KH, KW, C, K) -> (KH*KW*C, K)
    b = np.ascontiguousarray(b, dtype=np.float32)  # (K,)
    out = np.empty((N, output_size(H, KH, stride, pad), output_size(W, KW, stride, pad), K), dtype=np.float32)
    _conv2d_direct(x, w2, b, KH, KW, stride, pad, bool(relu), out)
    return out


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
    if method == "direct":
        return conv2d_direct(x, w, b, stride, pad, relu)
    if method == "winograd":
        from .winograd import winograd_kernel
        from .winograd_schedules import conv3x3_winograd

        if w.shape[:2] != (3, 3) or stride != 1 or pad != 1:
            raise ValueError("winograd handles 3x3 kernels with stride 1 and pad 1 only")
        return conv3x3_winograd(x, winograd_kernel(w), b, relu)
    raise ValueError(f"unknown conv method {method!r}; choose one of {METHODS}")


# ---------------------------------------------------------------------------------------- backward


def transpose_kernel(w):
    """The kernel of the backward convolution: w (KH, KW, C, K) -> w_t (KH, KW, K, C), with
    w_t[a, b, k, c] = w[KH-1-a, KW-1-b, c, k] (flipped in both spatial axes, C and K swapped)."""
    return np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2))  # (KH, KW, C, K) -> (KH, KW, K, C)


def conv2d_backward_naive(x, w, dy, stride=1, pad=0):
    """Reference convolution backward, straight from the sums above (any stride and pad).

    Inputs:
    - x: (N, H, W, C), the forward input;  w: (KH, KW, C, K);  dy: (N, H', W', K), dL/dout
      (for a conv followed by a ReLU, dy is taken after the ReLU's backward rule)
    Returns:
    - dx: (N, H, W, C);  dw: (KH, KW, C, K);  db: (K,), in the inputs' precision
    """
    _check(x, w, np.zeros(w.shape[3]), stride, pad)
    N, H, W, C = x.shape
    KH, KW, _, K = w.shape
    OH, OW = output_size(H, KH, stride, pad), output_size(W, KW, stride, pad)
    if dy.shape != (N, OH, OW, K):
        raise ValueError(f"dy must be {(N, OH, OW, K)}, got {dy.shape}")
    dtype = np.result_type(x, w, dy)
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))).astype(dtype)  # (N, H+2p, W+2p, C)
    dxp = np.zeros_like(xp)
    dw = np.zeros((KH, KW, C, K), dtype=dtype)
    for i in range(OH):
        for j in range(OW):
            rows, cols = slice(i * stride, i * stride + KH), slice(j * stride, j * stride + KW)
            g = dy[:, i, j, :]  # (N, K)
            dxp[:, rows, cols, :] += np.tensordot(g, w, axes=([1], [3]))  # (N, K) . (KH, KW, C, K) -> (N, KH, KW, C)
            dw += np.tensordot(xp[:, rows, cols, :], g, axes=([0], [0]))  # (N, KH, KW, C) . (N, K) -> (KH, KW, C, K)
    db = dy.sum(axis=(0, 1, 2)).astype(dtype)
    return dxp[:, pad:pad + H, pad:pad + W, :], dw, db  # drop the padding: (N, H, W, C)


def conv2d_backward_input(dy, w, pad=1, method=DEFAULT, U_t=None, relu_below=None):
    """dL/dx of a stride-1 convolution, as the convolution of dy with ``transpose_kernel(w)``.

    Inputs:
    - dy: (N, H', W', K), dL/dout;  w: (KH, KW, C, K) with KH == KW and pad <= KH - 1
    - method: "naive"; "im2col": the flipped convolution by im2col, or, where its (N*H'*W', KH*KW*C)
      matrix holds at most ``COL2IM_FLOATS``, as im2col's transpose: dx = col2im(dy @ w^T), a GEMM
      (N*H'*W', K) @ (K, KH*KW*C) whose rows are added back into their windows (the same
      multiplications; the matrix is KH*KW*C wide, not KH*KW*K: 27 floats a pixel for the first
      layer's dx, against 576); or "winograd" (3x3, pad 1 only; pass U_t = winograd_kernel(
      transpose_kernel(w)), (36, K, C), or its panels (``microkernel.pack``), to reuse a transform done once)
    - relu_below: None, or (y, rule) when x is the output y of a ReLU: then the result is
      ``relu_backward(y, dx, rule)``, dL/d(that ReLU's input), the next step down the chain (Winograd
      does it in its output transform, the others after)
    Returns:
    - dx: (N, H, W, C) float32, H = H' + KH - 1 - 2*pad (= H' for "same")
    """
    KH, KW, C, K = w.shape
    if KH != KW or not 0 <= pad <= KH - 1:
        raise ValueError(f"conv2d_backward_input needs a square kernel and 0 <= pad < KH, got {w.shape}, pad {pad}")
    zeros = np.zeros(C, dtype=np.float32)  # the backward conv has no bias
    N, OH, OW, _ = dy.shape
    if method == "im2col" and N * OH * OW * KH * KW * C <= COL2IM_FLOATS:  # im2col's transpose (see above)
        dy = np.ascontiguousarray(dy, dtype=np.float32)
        w2 = np.ascontiguousarray(w, dtype=np.float32).reshape(KH * KW * C, K)  # (KH, KW, C, K) -> (KH*KW*C, K)
        dcols = matmul(dy.reshape(N * OH * OW, K), w2.T)  # (N*H'*W', K) @ (K, KH*KW*C)
        shape = (N, OH + KH - 1 - 2 * pad, OW + KW - 1 - 2 * pad, C)  # x's, stride 1
        dx = col2im(dcols.reshape(N, OH, OW, KH * KW * C), shape, KH, KW, 1, pad)  # (N, H, W, C)
        return dx if relu_below is None else relu_backward(relu_below[0], dx, relu_below[1])
    if method == "winograd" and U_t is not None:
        from .winograd_schedules import conv3x3_winograd

        if (KH, pad) != (3, 1):
            raise ValueError("winograd handles 3x3 kernels with pad 1 only")
        return conv3x3_winograd(dy, U_t, zeros, relu_below=relu_below)
    dx = conv2d(dy, transpose_kernel(w), zeros, stride=1, pad=KH - 1 - pad, method=method)
    return dx if relu_below is None else relu_backward(relu_below[0], dx, relu_below[1])


def conv2d_backward_weights(x, dy, kh, kw, stride=1, pad=1):
    """dL/dw and dL/db of a convolution: dw = im2col(x)^T @ dy, db = dy summed over (N, H', W').

    Inputs:
    - x: (N, H, W, C), the forward input;  dy: (N, H', W', K), dL/dout
    Returns:
    - dw: (KH, KW, C, K) float32;  db: (K,) float32 (summed in float64, then rounded)
    """
    cols = im2col(x, kh, kw, stride, pad)  # (N, H', W', KH*KW*C)
    N, OH, OW, L = cols.shape
    K = dy.shape[-1]
    if dy.shape != (N, OH, OW, K):
        raise ValueError(f"dy must be (N, H', W', K) = {(N, OH, OW)} + (K,), got {dy.shape}")
    g = np.ascontiguousarray(dy, dtype=np.float32).reshape(N * OH * OW, K)  # (N, H', W', K) -> (N*H'*W', K)
    dw = matmul(cols.reshape(N * OH * OW, L).T, g)  # (KH*KW*C, N*H'*W') @ (N*H'*W', K) -> (KH*KW*C, K)
    db = g.sum(axis=0, dtype=np.float64).astype(np.float32)  # (K,)
    return dw.reshape(kh, kw, x.shape[3], K), db  # (KH*KW*C, K) -> (KH, KW, C, K)
