"""Winograd F(2x2, 3x3): the same three steps as ``winograd.py``, with smaller tiles, for small maps.

Legend: as in winograd.py (N, H, W, C, K, TH, TW tiles down and across, now ceil(H/2) and ceil(W/2),
T = N*TH*TW tiles, Tb tiles in one block), F = 16 frequencies (the 4x4 points of a transformed tile).

Read ``winograd.py`` first: the idea, F(4x4, 3x3) and the fast transforms. Nothing changes but the
size of a tile. A 3-tap filter over 4 inputs gives 2 outputs, 6 multiplications directly; F(2, 3),
from the points 0, 1, -1 and infinity (Lavin and Gray, CVPR 2016, section 4.1), gets them with 4:

    y = A^T [(G g) * (B^T d)]                      (1-D: 2 outputs of a 3-tap filter, 4 inputs)

and nested into 2-D, a 2x2 output tile from a 4x4 input patch with 16 multiplications instead of
4 * 9 = 36: 4 per output pixel, channel and filter, against F(4x4)'s 2.25 and the direct sum's 9.

Why a tile that saves less: the transformed kernel U has 16*C*K floats, against F(4x4)'s 36*C*K. Where
a layer has few tiles, its 36 GEMMs (T, C) @ (C, K) have few rows, and their time goes into reading and
packing U rather than into multiplying: block5 at 224 with one image is 16 tiles of F(4x4), and its 36
GEMMs (16, 512) @ (512, 512) ran at a quarter of NumPy's sgemm rate (docs/performance.md, "Where a
batch-1 pass spends its time"). As F(2x2) the same layer is 49 tiles and 16 GEMMs (49, 512) @ (512, 512):
more multiplications, less than half the kernel to read. With a batch the tiles add up, the GEMMs
become compute-bound and F(4x4) wins again, so the model takes F(2x2) only below a number of tiles
(``SMALL_TILES`` in ``winograd_schedules.py``). Its rounding is smaller than F(4x4)'s: B^T, G and A^T
hold only 0, 1, -1 and 1/2.

Here: the matrices, the two 1-D transforms of 4 points, and the per-tile transforms, written as in
``winograd.py``. The kernel transform is ``winograd2_kernel``, the naive twin
``conv3x3_winograd2_naive``; the fast convolution is ``winograd_schedules.conv3x3_winograd`` given a
(16, C, K) kernel.
"""
import numba
import numpy as np

from ..jit import PARALLEL
from .winograd import _put_pooled, _put_row, transform_kernel, winograd_naive

# Lavin & Gray 2016, section 4.1: F(2x2, 3x3), interpolation points 0, 1, -1, infinity.
BT = np.array([  # B^T (4, 4): input transform, V = B^T d B
    [1, 0, -1, 0],
    [0, 1, 1, 0],
    [0, -1, 1, 0],
    [0, 1, 0, -1],
], dtype=np.float64)
G = np.array([  # G (4, 3): kernel transform, U = G g G^T
    [1, 0, 0],
    [1 / 2, 1 / 2, 1 / 2],
    [1 / 2, -1 / 2, 1 / 2],
    [0, 0, 1],
], dtype=np.float64)
AT = np.array([  # A^T (2, 4): output transform, Y = A^T M A
    [1, 1, 1, 0],
    [0, 1, -1, -1],
], dtype=np.float64)
TILE = 2  # outputs per tile side (m)
PATCH = 4  # inputs per tile side (m + r - 1)
ZERO = np.float32(0)
CHUNK = 32  # tiles per task of the parallel transforms


@numba.njit(nogil=True, cache=True, inline="always")
def _bt(e0, e1, e2, e3, o0, o1, o2, o3):
    # o = B^T e along the channels: e0..e3 and o0..o3 are (C,) rows, o not aliasing e. B^T's rows:
    #   [1 0 -1 0]  [0 1 1 0]  [0 -1 1 0]  [0 1 0 -1]
    for c in range(o0.shape[0]):
        a0, a1, a2, a3 = e0[c], e1[c], e2[c], e3[c]
        o0[c], o1[c], o2[c], o3[c] = a0 - a2, a1 + a2, a2 - a1, a1 - a3


@numba.njit(nogil=True, cache=True, inline="always")
def _at(m0, m1, m2, m3, b, relu, o0, o1):
    # o = A^T m + b along the channels (then max(., 0) if relu): m0..m3, o0, o1 and b are (K,) rows, o
    # not aliasing m. A^T's rows: [1 1 1 0]  [0 1 -1 -1]
    for k in range(o0.shape[0]):
        y0 = m0[k] + m1[k] + m2[k] + b[k]
        y1 = m1[k] - m2[k] - m3[k] + b[k]
        if relu:
            y0, y1 = max(y0, ZERO), max(y1, ZERO)
        o0[k], o1[k] = y0, y1


@numba.njit(nogil=True, cache=True)
def _input_tiles(x, TH, TW, t0, V, lo, hi):
    # x: (N, H, W, C); V: (16, Tb, C) for tiles t0 .. t0 + Tb - 1, numbered (n, th, tw). For u in
    # lo .. hi - 1: V[4*i + j, u, :] = (B^T d B)[i, j], d the 4x4 patch of tile t0 + u, whose top-left
    # corner is (2*th - 1, 2*tw - 1). As winograd._input_tiles: B^T along each row into S (16, C), then
    # down each column into V.
    N, H, W, C = x.shape
    S = np.empty((16, C), dtype=np.float32)
    zero = np.zeros(C, dtype=np.float32)  # a column of padding
    for u in range(lo, hi):
        t = t0 + u
        n, th, tw = t // (TH * TW), (t // TW) % TH, t % TW
        h0, w0 = 2 * th - 1, 2 * tw - 1
        for i in range(4):  # rows of d: S[4*i + j] = (B^T d[i, :])[j]
            h = h0 + i
            if h < 0 or h >= H:  # a row of padding: zeros
                S[4 * i:4 * i + 4] = 0.0
                continue
            r = x[n, h]  # (W, C); d[i, j] = r[w0 + j], zeros outside the image
            _bt(r[w0] if w0 >= 0 else zero, r[w0 + 1] if w0 + 1 < W else zero, r[w0 + 2] if w0 + 2 < W else zero,
                r[w0 + 3] if w0 + 3 < W else zero, S[4 * i], S[4 * i + 1], S[4 * i + 2], S[4 * i + 3])
        for j in range(4):  # columns: V[4*i + j] = (B^T S[:, j])[i]
            _bt(S[j], S[4 + j], S[8 + j], S[12 + j], V[j, u], V[4 + j, u], V[8 + j, u], V[12 + j, u])


@numba.njit(nogil=True, cache=True)
def _output_tiles(M, b, relu, gate, rule, TH, TW, t0, out, lo, hi, pool=False):
    # M: (16, Tb, K) for tiles t0 .. t0 + Tb - 1; b: (K,); out: (N, H, W, K). For u in lo .. hi - 1:
    # out[n, 2*th + r, 2*tw + s, :] = (A^T M[:, u] A)[r, s] + b, then the ReLU, as winograd._output_tiles:
    # A^T down each column into S (8, K), then along each of S's 2 rows into R (2, K), copied into
    # ``out`` as far as the image reaches (rule >= 0: through relu.backward_rule against gate).
    # pool: out is (N, H // 2, W // 2, K): the tile's 2x2 outputs are one window of the 2x2 max-pool.
    N, H, W, K = out.shape  # with pool: the pooled map's
    S = np.empty((8, K), dtype=np.float32)
    R = np.empty((2, 2, K), dtype=np.float32)  # the tile's two rows of outputs
    zero = np.zeros(K, dtype=np.float32)
    for u in range(lo, hi):
        t = t0 + u
        n, th, tw = t // (TH * TW), (t // TW) % TH, t % TW
        h0, w0 = 2 * th, 2 * tw
        for j in range(4):  # columns: S[4*r + j] = (A^T M[:, u])[r, j]
            _at(M[j, u], M[4 + j, u], M[8 + j, u], M[12 + j, u], zero, False, S[j], S[4 + j])
        for r in range(2):  # rows: R[r, s] = (A^T S[r] A)[s] + b
            h = h0 + r
            if (h // 2 if pool else h) >= H:  # past a ragged bottom edge (or the pool's last row): dropped
                break
            _at(S[4 * r], S[4 * r + 1], S[4 * r + 2], S[4 * r + 3], b, relu, R[r, 0], R[r, 1])
            if not pool:
                _put_row(R[r], min(2, W - w0), gate, rule, out, n, h, w0)  # w0 < W always: a tile starts inside the image
            elif r == 1:  # the tile's window: pooled pixel (h // 2, w0 // 2), if the pooled map reaches it
                _put_pooled(R[0], R[1], min(1, W - w0 // 2), out, n, h // 2, w0 // 2)


@numba.njit(**PARALLEL)
def _input_transform(x, TH, TW, t0, V):
    # x: (N, H, W, C), V: (16, Tb, C) for tiles t0 .. t0 + Tb - 1; CHUNK tiles per task.
    Tb = V.shape[1]
    for task in numba.prange((Tb + CHUNK - 1) // CHUNK):
        _input_tiles(x, TH, TW, t0, V, task * CHUNK, min(Tb, (task + 1) * CHUNK))


@numba.njit(**PARALLEL)
def _output_transform(M, b, relu, gate, rule, TH, TW, t0, out, pool=False):
    # M: (16, Tb, K) for tiles t0 .. t0 + Tb - 1; b: (K,); out: (N, H, W, K), or pooled with pool.
    # CHUNK tiles per task.
    Tb = M.shape[1]
    for task in numba.prange((Tb + CHUNK - 1) // CHUNK):
        _output_tiles(M, b, relu, gate, rule, TH, TW, t0, out, task * CHUNK, min(Tb, (task + 1) * CHUNK), pool)


def winograd2_kernel(w):
    """The kernel transform of F(2x2, 3x3).

    Inputs:
    - w: (3, 3, C, K), Keras' HWIO layout
    Returns:
    - U: (16, C, K) float32, C-contiguous; U[4*i + j, c, k] = (G w[:, :, c, k] G^T)[i, j], this file's G
    Computed in float64 and rounded once, as ``winograd.winograd_kernel``.
    """
    return transform_kernel(w, G)


def conv3x3_winograd2_naive(x, w, b, relu=False):
    """Reference F(2x2, 3x3) convolution, tile by tile in plain NumPy (``winograd.winograd_naive``).

    Inputs:
    - x: (N, H, W, C);  w: (3, 3, C, K);  b: (K,);  relu: apply max(., 0) to the result
    Returns:
    - out: (N, H, W, K) float32: stride 1, pad 1, so H' = H and W' = W
    """
    return winograd_naive(x, w, b, relu, BT, G, AT)
