"""The weight gradient of a 3x3 "same" convolution by Winograd F(4x4, 3x3): the forward pass run backwards.

Read ``winograd.py`` first (the matrices, the transforms). Legend as there: N batch, H, W, C input
channels, K output channels, TH, TW tiles down and across, T = N*TH*TW tiles, Tb tiles in one block,
F = 36 frequencies.

The idea. The forward pass computes, per tile t, channel c and filter k (winograd.py),

    U = G g G^T,   V_t = B^T d_t B,   M_t = sum over c of U * V_t,   Y_t = A^T M_t A

Each step is linear, so the chain rule runs it backwards with each matrix transposed (the adjoint):
given dY_t = dL/dY_t, the 4x4 tile of dy,

    dM_t = A dY_t A^T                              (6x6 from 4x4: the output transform, transposed)
    dU[f, c, k] = sum over t of V[f, t, c] * dM[f, t, k]   = 36 GEMMs (C, T) @ (T, K)
    dw[:, :, c, k] = G^T dU[:, :, c, k] G           (3x3 from 6x6: the kernel transform, transposed)

In exact arithmetic Winograd's forward pass is the convolution itself, so this is exactly the usual
dw[di, dj, c, k] = sum over (n, i, j) of xpad[n, i + di, j + dj, c] * dy[n, i, j, k]
(``conv.conv2d_backward_weights``, im2col(x)^T @ dy), with a quarter of its multiplications: 36 per
tile, channel and filter against 16 * 9 = 144. (Nothing here is new beyond winograd.py: each matrix
is used transposed, which is what the chain rule does to a linear map.) Rounding: the transforms hold
2, 4 and 8 (A) and 1/4..1 (G), and each dU sums T tiles: measured against a float64 sum, 4.9e-6 of
the largest |dw| on block5 at batch 16, against 3.3e-7 for im2col (tests/test_winograd_weights.py
holds the bound). That is relative to the largest element, not to each: Adam, which scales each
weight's step by its own gradient's size, takes im2col's dw instead (``train/optimizers.py``).

Outputs past a ragged edge (H or W not a multiple of 4) do not exist: their dy reads as zeros, as the
padding of x does in the input transform.

Two versions: ``conv3x3_winograd_weights_naive``, the formula tile by tile in NumPy (the twin), and
``conv3x3_winograd_weights``, with the input transform of ``winograd.py``, a Numba transform of dy
beside it, the GEMMs through ``jit.matmul`` in blocks of tiles, and a Numba kernel transform.
"""
import numba
import numpy as np

from ..jit import PARALLEL, matmul
from .winograd import AT, BT, CHUNK, FOUR, G, PATCH, TILE, TWO, _input_transform, tiles

BLOCK_FLOATS = 1 << 23  # V and dM of one block hold at most this many floats each (32 MB): few blocks, few partial sums


def _check(x, dy):
    x = np.ascontiguousarray(x, dtype=np.float32)
    dy = np.ascontiguousarray(dy, dtype=np.float32)
    if x.ndim != 4 or dy.ndim != 4 or x.shape[:3] != dy.shape[:3]:
        raise ValueError(f"x (N, H, W, C) and dy (N, H, W, K) must share N, H, W, got {x.shape} and {dy.shape}")
    return x, dy


def conv3x3_winograd_weights_naive(x, dy):
    """Reference: dw and db of a 3x3, stride 1, pad 1 convolution by the formula above, tile by tile.

    Inputs:
    - x: (N, H, W, C), the forward input;  dy: (N, H, W, K), dL/dout
    Returns:
    - dw: (3, 3, C, K) float32;  db: (K,) float32. Computes in float32, as the fast version.
    """
    x, dy = _check(x, dy)
    N, H, W, C = x.shape
    K = dy.shape[3]
    TH, TW = tiles(H, W)
    bt, g, at = BT.astype(np.float32), G.astype(np.float32), AT.astype(np.float32)
    xp = np.zeros((N, TILE * TH + 2, TILE * TW + 2, C), dtype=np.float32)  # as winograd's naive twin
    xp[:, 1:H + 1, 1:W + 1, :] = x
    dyp = np.zeros((N, TILE * TH, TILE * TW, K), dtype=np.float32)  # outputs past the edge: dy = 0
    dyp[:, :H, :W, :] = dy
    dU = np.zeros((PATCH, PATCH, C, K), dtype=np.float32)
    for th in range(TH):
        for tw in range(TW):
            d = xp[:, TILE * th:TILE * th + PATCH, TILE * tw:TILE * tw + PATCH, :]  # (N, 6, 6, C)
            e = dyp[:, TILE * th:TILE * th + TILE, TILE * tw:TILE * tw + TILE, :]  # (N, 4, 4, K)
            V = np.einsum("ia,nabc,jb->nijc", bt, d, bt)  # B^T d B: (N, 6, 6, C)
            dM = np.einsum("ri,nrsk,sj->nijk", at, e, at)  # A dY A^T: (N, 6, 6, K)
            dU += np.einsum("nijc,nijk->ijck", V, dM)  # summed over the tile's images: (6, 6, C, K)
    dw = np.einsum("ia,ijck,jb->abck", g, dU, g)  # G^T dU G: (3, 3, C, K)
    return dw, dy.sum(axis=(0, 1, 2), dtype=np.float64).astype(np.float32)


# ------------------------------------------------------------------------ the transform of dy


@numba.njit(nogil=True, cache=True, inline="always")
def _a(y0, y1, y2, y3, o0, o1, o2, o3, o4, o5):
    # o = A y along the channels (A = (A^T)^T, 6x4): y0..y3 and o0..o5 are (K,) rows, o not aliasing y.
    # A's rows, the columns of A^T (winograd.py):
    #   [1 0 0 0]  [1 1 1 1]  [1 -1 1 -1]  [1 2 4 8]  [1 -2 4 -8]  [0 0 0 1]
    for k in range(o0.shape[0]):
        a0, a1, a2, a3 = y0[k], y1[k], y2[k], y3[k]
        o0[k] = a0
        o1[k] = (a0 + a2) + (a1 + a3)
        o2[k] = (a0 + a2) - (a1 + a3)
        o3[k] = (a0 + FOUR * a2) + TWO * (a1 + FOUR * a3)
        o4[k] = (a0 + FOUR * a2) - TWO * (a1 + FOUR * a3)
        o5[k] = a3


@numba.njit(nogil=True, cache=True)
def _grad_tiles(dy, TH, TW, t0, dM, lo, hi):
    # dy: (N, H, W, K); dM: (36, Tb, K) for tiles t0 .. t0 + Tb - 1. For u in lo .. hi - 1:
    # dM[6*i + j, u, :] = (A e A^T)[i, j], e the 4x4 tile of dy (zeros past the edge). Two 1-D passes:
    # A along each row of e into S (24, K: S[6*r + j]), then A down each of S's 6 columns into dM.
    N, H, W, K = dy.shape
    S = np.empty((24, K), dtype=np.float32)
    zero = np.zeros(K, dtype=np.float32)
    for u in range(lo, hi):
        t = t0 + u
        n, th, tw = t // (TH * TW), (t // TW) % TH, t % TW
        h0, w0 = TILE * th, TILE * tw  # the tile's top-left output
        for r in range(4):
            h = h0 + r
            if h >= H:  # past a ragged bottom edge: zeros
                S[6 * r:6 * r + 6] = 0.0
                continue
            e = dy[n, h]  # (W, K); w0 < W always
            _a(e[w0], e[w0 + 1] if w0 + 1 < W else zero, e[w0 + 2] if w0 + 2 < W else zero,
               e[w0 + 3] if w0 + 3 < W else zero, S[6 * r], S[6 * r + 1], S[6 * r + 2], S[6 * r + 3], S[6 * r + 4],
               S[6 * r + 5])
        for j in range(6):
            _a(S[j], S[6 + j], S[12 + j], S[18 + j], dM[j, u], dM[6 + j, u], dM[12 + j, u], dM[18 + j, u],
               dM[24 + j, u], dM[30 + j, u])


@numba.njit(**PARALLEL)
def _grad_transform(dy, TH, TW, t0, dM):
    # dy: (N, H, W, K), dM: (36, Tb, K) for tiles t0 .. t0 + Tb - 1; CHUNK tiles per task.
    Tb = dM.shape[1]
    for task in numba.prange((Tb + CHUNK - 1) // CHUNK):
        _grad_tiles(dy, TH, TW, t0, dM, task * CHUNK, min(Tb, (task + 1) * CHUNK))


# ------------------------------------------------------------------- the kernel transform, adjoint


@numba.njit(**PARALLEL)
def _kernel_adjoint(dU, g_mat, dw):
    # dU: (36, C, K) float32, g_mat: G (6, 3) float64, dw: (3, 3, C, K) float32 out:
    # dw[a, b, c, k] = sum over (i, j) of G[i, a] dU[6*i + j, c, k] G[j, b], in float64, rounded once.
    _, C, K = dU.shape
    for c in numba.prange(C):
        t = np.empty((PATCH, 3, K))  # dU G for this channel: (6, 3, K), float64
        for i in range(PATCH):
            for b in range(3):
                for k in range(K):
                    s = 0.0
                    for j in range(PATCH):
                        s += dU[PATCH * i + j, c, k] * g_mat[j, b]
                    t[i, b, k] = s
        for a in range(3):
            for b in range(3):
                for k in range(K):
                    s = 0.0
                    for i in range(PATCH):
                        s += g_mat[i, a] * t[i, b, k]
                    dw[a, b, c, k] = s


def conv3x3_winograd_weights(x, dy):
    """dw and db of a 3x3, stride 1, pad 1 convolution by Winograd F(4x4, 3x3); same result as
    ``conv3x3_winograd_weights_naive`` and as ``conv.conv2d_backward_weights`` up to float32 rounding.

    Inputs:
    - x: (N, H, W, C) float32, the forward input;  dy: (N, H, W, K), dL/dout
    Returns:
    - dw: (3, 3, C, K) float32;  db: (K,) float32 (summed in float64, then rounded)

    The tiles go through in blocks of at most ``BLOCK_FLOATS // (36 * max(C, K))``: per block, V
    (36, Tb, C) and dM (36, Tb, K), then dU += V^T dM, 36 GEMMs (36, C, Tb) @ (36, Tb, K).
    """
    x, dy = _check(x, dy)
    N, H, W, C = x.shape
    K = dy.shape[3]
    TH, TW = tiles(H, W)
    T = N * TH * TW
    most = max(1, BLOCK_FLOATS // (PATCH * PATCH * max(C, K)))  # tiles per block, at most
    dU = np.zeros((PATCH * PATCH, C, K), dtype=np.float32)
    part = np.empty_like(dU) if T > most else None  # one block's dU, added to the sum
    for t0 in range(0, T, most):
        Tb = min(most, T - t0)
        V = np.empty((PATCH * PATCH, Tb, C), dtype=np.float32)  # (36, Tb, C)
        dM = np.empty((PATCH * PATCH, Tb, K), dtype=np.float32)  # (36, Tb, K)
        _input_transform(x, TH, TW, t0, V)  # V[:, u] = B^T d B of tile t0 + u (winograd.py)
        _grad_transform(dy, TH, TW, t0, dM)  # dM[:, u] = A e A^T
        # (36, Tb, C) -> (36, C, Tb), a transposed view; 36 GEMMs (36, C, Tb) @ (36, Tb, K) -> (36, C, K)
        if part is None:
            matmul(V.transpose(0, 2, 1), dM, out=dU)
        else:
            dU += matmul(V.transpose(0, 2, 1), dM, out=part)
    dw = np.empty((3, 3, C, K), dtype=np.float32)
    _kernel_adjoint(dU, G, dw)  # G^T dU G
    return dw, dy.sum(axis=(0, 1, 2), dtype=np.float64).astype(np.float32)
