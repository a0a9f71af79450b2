"""Winograd F(4x4, 3x3): a 3x3 "same" convolution with 4x fewer multiplications.

Legend: N batch, H, W height and width, C input channels, K output channels,
TH, TW tiles down and across (TH = ceil(H/4), TW = ceil(W/4)), T = N*TH*TW tiles,
Tb tiles in one block (all T in ``conv3x3_winograd_simple``; ``winograd_schedules`` cuts blocks),
F = 36 frequencies (the 6x6 points of a transformed tile).

The idea. Source: A. Lavin and S. Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR
2016 (arXiv:1509.09308). A 3-tap filter g slid over 6 inputs d gives 4 outputs, 4*3 = 12
multiplications done directly. Winograd's minimal filtering algorithm F(4, 3) gets them with 6:

    y = A^T [(G g) * (B^T d)]                      (1-D: 4 outputs of a 3-tap filter, 6 inputs)

where ``*`` multiplies element by element. It is the Cook-Toom way of multiplying polynomials: G
evaluates the 3 taps, read as a polynomial's coefficients, at 6 points (the "frequencies"), B^T
prepares the 6 inputs to match, one multiplication per point, and A^T interpolates the 6 products
back into the 4 outputs.
Section 4 nests it into 2-D, Y = A^T [(G g G^T) * (B^T d B)] A: a 4x4 output tile from a 6x6 input
patch with 36 multiplications instead of 16 * 9 = 144. Section 4.3 ("F(4x4, 3x3)") gives the
matrices below, from the interpolation points 0, 1, -1, 2, -2 and infinity. They are exactly what
the authors' tool prints for ``wincnn.showCookToomFilter((0, 1, -1, 2, -2), 4, 3)``
(github.com/andravin/wincnn).

How one layer is computed. The output is cut into 4x4 tiles; tile (th, tw) needs the 6x6 input
patch d starting at row 4*th - 1, column 4*tw - 1 (the -1 is the "same" padding; rows and columns
outside the image read as zeros, so the tiles past a ragged edge just produce outputs we drop).
Tiles are numbered t = (n*TH + th)*TW + tw. Per tile t, channel c, filter k and frequency f = 6*i + j:

    U[f, c, k] = (G g[:, :, c, k] G^T)[i, j]        kernel transform, once per layer (6x6 from 3x3)
    V[f, t, c] = (B^T d[t, :, :, c] B)[i, j]        input transform (6x6 from 6x6)
    M[f, t, k] = sum over c of V[f, t, c] * U[f, c, k]   = 36 GEMMs (T, C) @ (C, K)
    Y[t, :, :, k] = A^T M[:, t, k] A + b[k]         output transform (4x4 from 6x6), then ReLU

The sum over channels is what turns the 36 element-wise products into 36 matrix products (GEMMs),
one per frequency: that is where the time goes, and where the saving is.

The count. Direct convolution spends 9 multiply-adds per output pixel, channel and filter; Winograd
spends 36 per 16 outputs, 2.25: 4x fewer. The price: the transforms (additions, done once per tile
and channel, not per filter), 36/9 = 4x more memory for U than for the kernel, and a few times more
float32 rounding than a direct sum (B^T and A^T hold 4, 5 and 8, G holds 1/6 and 1/24: intermediate
values outgrow the result). Measured on VGG16 against TensorFlow: 3e-6..8e-6 of max|output| per
layer, against 1e-6..3e-6 for im2col.

Three versions, from the idea to the fast one:
- ``conv3x3_winograd_naive``: straight from the formula, tile by tile, in plain NumPy (the twin).
- ``conv3x3_winograd_simple`` (this file): the transforms as Numba loops over tiles, vectorised
  along channels, with the padding fused in; the 36 GEMMs as one batched ``np.matmul``.
- ``winograd_schedules.conv3x3_winograd``: the same transforms and GEMMs, scheduled for speed (blocks
  of tiles in scratch buffers, a per-thread schedule, batch invariance, a fused backward ReLU). It is
  the one the model, ``conv.conv2d(method="winograd")`` and the benchmarks call.
Smaller tiles, for small maps: ``winograd2.py``, F(2x2, 3x3), the same steps with 4x4 patches; the
schedules run either, told by the transformed kernel's shape.
"""
import numba
import numpy as np

from ..jit import PARALLEL
from .pool import _window_max4
from .relu import backward_rule

# Lavin & Gray 2016, section 4.3: F(4x4, 3x3), interpolation points 0, 1, -1, 2, -2, infinity.
BT = np.array([  # B^T (6, 6): input transform, V = B^T d B
    [4, 0, -5, 0, 1, 0],
    [0, -4, -4, 1, 1, 0],
    [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0],
    [0, 2, -1, -2, 1, 0],
    [0, 4, 0, -5, 0, 1],
], dtype=np.float64)
G = np.array([  # G (6, 3): kernel transform, U = G g G^T
    [1 / 4, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6],
    [1 / 24, -1 / 12, 1 / 6],
    [0, 0, 1],
], dtype=np.float64)
AT = np.array([  # A^T (4, 6): output transform, Y = A^T M A
    [1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -2, 0],
    [0, 1, 1, 4, 4, 0],
    [0, 1, -1, 8, -8, 1],
], dtype=np.float64)
TILE = 4  # outputs per tile side (m)
PATCH = 6  # inputs per tile side (m + r - 1)


def tiles(H, W):
    """Tiles down and across: TH = ceil(H / 4), TW = ceil(W / 4)."""
    return -(-H // TILE), -(-W // TILE)


def _check_kernel(w):
    if w.ndim != 4 or w.shape[:2] != (3, 3):
        raise ValueError(f"Winograd needs a (3, 3, C, K) kernel, got {w.shape}")


def conv3x3_winograd_naive(x, w, b, relu=False):
    """Reference Winograd convolution: the formula above, tile by tile, in plain NumPy.

    Inputs:
    - x: (N, H, W, C);  w: (3, 3, C, K);  b: (K,);  relu: apply max(., 0) to the result
    Returns:
    - out: (N, H, W, K) float32: stride 1, pad 1, so H' = H and W' = W
    Computes in float32, so it rounds about as much as the fast versions.
    """
    return winograd_naive(x, w, b, relu, BT, G, AT)


def winograd_naive(x, w, b, relu, bt, g, at):
    """``conv3x3_winograd_naive`` for any tile: F(m x m, 3x3) from its matrices B^T (P, P), G (P, 3)
    and A^T (m, P), P = m + 2 (``winograd2.py`` uses it with its own)."""
    _check_kernel(w)
    N, H, W, C = x.shape
    K = w.shape[3]
    m, P = at.shape  # outputs and inputs per tile side: 4 and 6 here
    TH, TW = -(-H // m), -(-W // m)
    bt, g, at = bt.astype(np.float32), g.astype(np.float32), at.astype(np.float32)
    U = np.einsum("ia,abck,jb->ijck", g, w.astype(np.float32), g)  # G g G^T: (P, P, C, K)
    # 1 zero row/column of padding before, and enough after for whole tiles: (N, m*TH + 2, m*TW + 2, C)
    xp = np.zeros((N, m * TH + 2, m * TW + 2, C), dtype=np.float32)
    xp[:, 1:H + 1, 1:W + 1, :] = x
    out = np.empty((N, m * TH, m * TW, K), dtype=np.float32)
    for th in range(TH):
        for tw in range(TW):
            d = xp[:, m * th:m * th + P, m * tw:m * tw + P, :]  # (N, P, P, C)
            V = np.einsum("ia,nabc,jb->nijc", bt, d, bt)  # B^T d B: (N, P, P, C)
            M = np.einsum("nijc,ijck->nijk", V, U)  # (G g G^T) * (B^T d B), summed over c: (N, P, P, K)
            Y = np.einsum("ri,nijk,sj->nrsk", at, M, at)  # A^T M A: (N, m, m, K)
            out[:, m * th:m * th + m, m * tw:m * tw + m, :] = Y
    out = out[:, :H, :W, :] + b  # drop the outputs past a ragged edge: (N, H, W, K)
    return np.maximum(out, 0) if relu else out


# ---------------------------------------------------------------------------- the kernel transform


@numba.njit(**PARALLEL)
def _winograd_kernel(w, g_mat, U):
    # w: (3, 3, C, K) float32, g_mat: G (P, 3) float64 (P = 6 here, 4 for winograd2), U: (P*P, Q, C, R)
    # float32 out, U[f, q, c, r] for filter k = q*R + r: (P*P, 1, C, K) for U's own layout (P*P, C, K),
    # or panels of R columns (see transform_kernel)
    _, _, C, K = w.shape
    P = g_mat.shape[0]
    Q, R = U.shape[1], U.shape[3]
    for c in numba.prange(C):
        t = np.empty((P, 3, K))  # G g for this channel, float64: (P, 3, K)
        for i in range(P):
            for b in range(3):
                for k in range(K):
                    t[i, b, k] = g_mat[i, 0] * w[0, b, c, k] + g_mat[i, 1] * w[1, b, c, k] + g_mat[i, 2] * w[2, b, c, k]
        for i in range(P):
            for j in range(P):  # (G g) G^T, rounded to float32 once
                for q in range(Q):
                    for r in range(R):
                        k = q * R + r
                        U[P * i + j, q, c, r] = t[i, 0, k] * g_mat[j, 0] + t[i, 1, k] * g_mat[j, 1] + t[i, 2, k] * g_mat[j, 2]


def winograd_kernel(w):
    """The kernel transform, done once when the weights load.

    Inputs:
    - w: (3, 3, C, K), Keras' HWIO layout
    Returns:
    - U: (36, C, K) float32, C-contiguous; U[6*i + j, c, k] = (G w[:, :, c, k] G^T)[i, j]
    Readable form (the naive twin uses it): np.einsum("ia,abck,jb->ijck", G, w, G).reshape(36, C, K).
    Computed in float64 and rounded once; a parallel loop over C, vectorised along K.
    """
    return transform_kernel(w, G)


def transform_kernel(w, g, width=None):
    """``winograd_kernel`` for any tile, from its G (P, 3): U (P*P, C, K) (``winograd2.py`` uses it).
    ``width``: U written straight in panels of that many columns instead, (P*P, K / width, C, width),
    the layout ``microkernel.py``'s GEMM reads (the same values as ``microkernel.pack(U)``)."""
    _check_kernel(w)
    C, K = w.shape[2:]
    P = g.shape[0]
    w = np.ascontiguousarray(w, dtype=np.float32)
    if width is None:
        U = np.empty((P * P, C, K), dtype=np.float32)
        _winograd_kernel(w, g, U.reshape(P * P, 1, C, K))  # (P*P, C, K) -> (P*P, 1, C, K): one panel of all K
    else:
        if K % width:
            raise ValueError(f"panels of {width} columns need K a multiple of {width}, got w {w.shape}")
        U = np.empty((P * P, K // width, C, width), dtype=np.float32)
        _winograd_kernel(w, g, U)
    return U


# ------------------------------------------------------------------------------ the tile transforms

# The transforms in float32 (a float literal would make Numba compute in float64, at half the speed).
ZERO, TWO, FOUR, FIVE, EIGHT = (np.float32(v) for v in (0, 2, 4, 5, 8))
CHUNK = 16  # tiles per task of the parallel transforms (each task allocates its small scratch once)
# _bt and _at are inlined into their callers (inline="always"): a tile calls each a dozen times, and as
# separate functions every call built its row views and ran LLVM's overlap checks before a loop of only
# C (or K) steps, which cost 2-5x the arithmetic at C = 64 (docs/performance.md, "Inlined transforms").


@numba.njit(nogil=True, cache=True, inline="always")
def _bt(e0, e1, e2, e3, e4, e5, o0, o1, o2, o3, o4, o5):
    # o = B^T e along the channels: e0..e5 and o0..o5 are (C,) rows, o not aliasing e. The rows of B^T:
    #   [4  0 -5  0  1  0]   [0 -4 -4  1  1  0]   [0  4 -4 -1  1  0]
    #   [0 -2 -1  2  1  0]   [0  2 -1 -2  1  0]   [0  4  0 -5  0  1]
    for c in range(o0.shape[0]):  # contiguous rows, no aliasing: LLVM vectorises this loop
        a0, a1, a2, a3, a4, a5 = e0[c], e1[c], e2[c], e3[c], e4[c], e5[c]
        o0[c] = FOUR * a0 - FIVE * a2 + a4
        o1[c] = (a4 - FOUR * a2) - (FOUR * a1 - a3)
        o2[c] = (a4 - FOUR * a2) + (FOUR * a1 - a3)
        o3[c] = (a4 - a2) + TWO * (a3 - a1)
        o4[c] = (a4 - a2) - TWO * (a3 - a1)
        o5[c] = FOUR * a1 - FIVE * a3 + a5


@numba.njit(nogil=True, cache=True, inline="always")
def _at(m0, m1, m2, m3, m4, m5, b, relu, o0, o1, o2, o3):
    # o = A^T m + b along the channels (then max(., 0) if relu): m0..m5, o0..o3 and b are (K,) rows, o
    # not aliasing m. A^T's rows:
    #   [1 1 1 1 1 0]  [0 1 -1 2 -2 0]  [0 1 1 4 4 0]  [0 1 -1 8 -8 1]
    for k in range(o0.shape[0]):
        a0, a1, a2, a3, a4, a5 = m0[k], m1[k], m2[k], m3[k], m4[k], m5[k]
        y0 = a0 + (a1 + a2) + (a3 + a4) + b[k]
        y1 = (a1 - a2) + TWO * (a3 - a4) + b[k]
        y2 = (a1 + a2) + FOUR * (a3 + a4) + b[k]
        y3 = (a1 - a2) + EIGHT * (a3 - a4) + a5 + b[k]
        if relu:
            y0, y1, y2, y3 = max(y0, ZERO), max(y1, ZERO), max(y2, ZERO), max(y3, ZERO)
        o0[k], o1[k], o2[k], o3[k] = y0, y1, y2, y3


@numba.njit(nogil=True, cache=True)
def _input_tiles(x, TH, TW, t0, V, lo, hi):
    # x: (N, H, W, C); V: (36, Tb, C) for tiles t0 .. t0 + Tb - 1 of the N*TH*TW, numbered (n, th, tw).
    # For u in lo .. hi - 1: V[6*i + j, u, :] = (B^T d B)[i, j], d the 6x6 patch of tile t0 + u. Two 1-D
    # passes: B^T along each row of d into S (36, C), then B^T down each column of S into V.
    N, H, W, C = x.shape
    S = np.empty((36, C), dtype=np.float32)
    zero = np.zeros(C, dtype=np.float32)  # a column of padding
    for u in range(lo, hi):
        t = t0 + u
        n, th, tw = t // (TH * TW), (t // TW) % TH, t % TW
        h0, w0 = 4 * th - 1, 4 * tw - 1  # the patch's top-left corner; -1 for the padding
        for i in range(6):  # rows of d: S[6*i + j] = (B^T d[i, :])[j]
            h = h0 + i
            if h < 0 or h >= H:  # a row of padding: zeros
                S[6 * i:6 * i + 6] = 0.0
                continue
            r = x[n, h]  # (W, C); d[i, j] = r[w0 + j], zeros outside the image
            _bt(r[w0] if w0 >= 0 else zero, r[w0 + 1] if w0 + 1 < W else zero, r[w0 + 2] if w0 + 2 < W else zero,
                r[w0 + 3] if w0 + 3 < W else zero, r[w0 + 4] if w0 + 4 < W else zero,
                r[w0 + 5] if w0 + 5 < W else zero, S[6 * i], S[6 * i + 1], S[6 * i + 2], S[6 * i + 3], S[6 * i + 4],
                S[6 * i + 5])
        for j in range(6):  # columns: V[6*i + j] = (B^T S[:, j])[i]
            _bt(S[j], S[6 + j], S[12 + j], S[18 + j], S[24 + j], S[30 + j], V[j, u], V[6 + j, u],
                V[12 + j, u], V[18 + j, u], V[24 + j, u], V[30 + j, u])


@numba.njit(nogil=True, cache=True, inline="always")
def _put_row(R, count, gate, rule, out, n, h, w0):
    # out[n, h, w0 + s] = R[s] for s < count: one row of an output tile, as far as the image reaches.
    # R: (m, K); rule >= 0: each value v through relu.backward_rule(v, gate[n, h, w0 + s, k], rule),
    # gate (N, H, W, K); rule -1: copied. (winograd2's output transform uses it too.)
    for s in range(count):
        o, y = out[n, h, w0 + s], R[s]  # (K,) each
        if rule >= 0:
            g = gate[n, h, w0 + s]  # (K,)
            for k in range(o.shape[0]):
                o[k] = backward_rule(y[k], g[k], rule)
        else:
            for k in range(o.shape[0]):
                o[k] = y[k]


@numba.njit(nogil=True, cache=True, inline="always")
def _put_pooled(R0, R1, count, out, n, ph, pw0):
    # A 2x2 max-pool of two rows of an output tile, R0 (above) and R1 (m, K): out[n, ph, pw0 + s] = the
    # maximum of R0[2s], R0[2s + 1], R1[2s], R1[2s + 1], for s < count (pool.max_pool2d's rule, the same
    # bits). out: (N, H // 2, W // 2, K). (winograd2's output transform uses it too.)
    for s in range(count):
        _window_max4(R0[2 * s], R0[2 * s + 1], R1[2 * s], R1[2 * s + 1], out[n, ph, pw0 + s])


@numba.njit(nogil=True, cache=True)
def _output_tiles(M, b, relu, gate, rule, TH, TW, t0, out, lo, hi, pool=False):
    # M: (36, Tb, K) for tiles t0 .. t0 + Tb - 1; b: (K,); out: (N, H, W, K). For u in lo .. hi - 1:
    # out[n, 4*th + r, 4*tw + s, :] = (A^T M[:, u] A)[r, s] + b, then the ReLU. Two 1-D passes: A^T
    # down each column of M into S (24, K), then A^T along each of S's 4 rows into R (4, K), whose rows
    # are copied into ``out`` as far as the image reaches (outputs past a ragged edge are dropped).
    # rule >= 0: each value v is copied as relu.backward_rule(v, gate[same place], rule), gate
    # (N, H, W, K) the output of the ReLU below (a backward pass, winograd_schedules' relu_below);
    # rule -1: gate is unused (any (1, 1, 1, K') array).
    # Why R: written straight into four pixels of ``out`` (some of them a junk row past a ragged edge)
    # with four rows of the gate beside them, _at's loop had a dozen arrays that LLVM had to check for
    # overlap at run time; into R, then copied, the layer ran 0.95-0.98x the time forward and 0.82-0.94x
    # with a backward ReLU fused in, bit for bit the same (docs/performance.md, "Staged output rows").
    # pool: out is (N, H // 2, W // 2, K), the 2x2 max-pool of the convolution's output: each pair of
    # rows of an output tile is pooled as it is made (its 4x4 outputs are 2x2 windows: tiles start at
    # even rows and columns), and the full map is never written (rule -1 only).
    N, H, W, K = out.shape  # with pool: the pooled map's
    S = np.empty((24, K), dtype=np.float32)
    R = np.empty((2, 4, K), dtype=np.float32)  # rows of the output tile, in turn: a pool has each pair together
    zero = np.zeros(K, dtype=np.float32)
    for u in range(lo, hi):
        t = t0 + u
        n, th, tw = t // (TH * TW), (t // TW) % TH, t % TW
        h0, w0 = 4 * th, 4 * tw
        for j in range(6):  # columns: S[6*r + j] = (A^T M[:, u])[r, j]
            _at(M[j, u], M[6 + j, u], M[12 + j, u], M[18 + j, u], M[24 + j, u], M[30 + j, u], zero, False,
                S[j], S[6 + j], S[12 + j], S[18 + j])
        for r in range(4):  # rows: R[., s] = (A^T S[r] A)[s] + b
            h = h0 + r
            if (h // 2 if pool else h) >= H:  # past a ragged bottom edge (or the pool's last row): dropped
                break
            Rr = R[r % 2]  # (4, K)
            _at(S[6 * r], S[6 * r + 1], S[6 * r + 2], S[6 * r + 3], S[6 * r + 4], S[6 * r + 5], b, relu,
                Rr[0], Rr[1], Rr[2], Rr[3])
            if not pool:
                _put_row(Rr, min(4, W - w0), gate, rule, out, n, h, w0)  # w0 < W always: a tile starts inside the image
            elif r % 2 == 1:  # rows h - 1 and h made: pooled row h // 2, as far as the pooled map reaches
                _put_pooled(R[0], R[1], min(2, W - w0 // 2), out, n, h // 2, w0 // 2)


@numba.njit(**PARALLEL)
def _input_transform(x, TH, TW, t0, V):
    # x: (N, H, W, C), V: (36, Tb, C) for tiles t0 .. t0 + Tb - 1; CHUNK tiles per task.
    Tb = V.shape[1]
    for task in numba.prange((Tb + CHUNK - 1) // CHUNK):
        _input_tiles(x, TH, TW, t0, V, task * CHUNK, min(Tb, (task + 1) * CHUNK))


@numba.njit(**PARALLEL)
def _output_transform(M, b, relu, gate, rule, TH, TW, t0, out, pool=False):
    # M: (36, Tb, K) for tiles t0 .. t0 + Tb - 1; b: (K,); out: (N, H, W, K), or pooled (N, H // 2, W // 2, K)
    # with pool. CHUNK tiles per task.
    Tb = M.shape[1]
    for task in numba.prange((Tb + CHUNK - 1) // CHUNK):
        _output_tiles(M, b, relu, gate, rule, TH, TW, t0, out, task * CHUNK, min(Tb, (task + 1) * CHUNK), pool)


# -------------------------------------------------------------------- the simplest fast version


def _check(x, U, b, frequencies=(PATCH * PATCH,)):
    """x, U, b as float32 C-contiguous arrays, after checking their shapes against each other.
    ``frequencies``: the U.shape[0] allowed (36 here; the schedules also take winograd2's 16)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"x must be (N, H, W, C), got shape {x.shape}")
    C = x.shape[3]
    if U.ndim != 3 or U.shape[0] not in frequencies or U.shape[1] != C:
        want = " or ".join(f"({f}, {C}, K)" for f in frequencies)
        raise ValueError(f"U must be {want} from winograd_kernel(w), got {U.shape}")
    K = U.shape[2]
    if b.shape != (K,):
        raise ValueError(f"b must be ({K},), got {b.shape}")
    return x, np.ascontiguousarray(U, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32)


def conv3x3_winograd_simple(x, U, b, relu=False):
    """The simplest fast Winograd convolution: the three steps, each once, over all the tiles.

    Inputs:
    - x: (N, H, W, C) float32 (other float dtypes are converted)
    - U: (36, C, K) float32, the transformed kernel from ``winograd_kernel(w)``
    - b: (K,);  relu: apply max(., 0), fused in the output transform
    Returns:
    - out: (N, H, W, K) float32, C-contiguous: stride 1, pad 1, so H' = H and W' = W
    Same result as ``conv3x3_winograd_naive`` (up to float32 rounding) and as
    ``winograd_schedules.conv3x3_winograd``, which schedules these same steps for speed and memory
    (here V and M hold all T tiles at once: 36*T*(C + K) floats, 58 MB for block1_conv2 at 224x224).
    """
    x, U, b = _check(x, U, b)
    N, H, W, C = x.shape
    K = U.shape[2]
    TH, TW = tiles(H, W)
    T = N * TH * TW
    V = np.empty((PATCH * PATCH, T, C), dtype=np.float32)  # (36, T, C)
    _input_transform(x, TH, TW, 0, V)  # V[:, t] = B^T d B of every tile t, first tile 0
    M = np.matmul(V, U)  # 36 GEMMs, one per frequency: (36, T, C) @ (36, C, K) -> (36, T, K)
    out = np.empty((N, H, W, K), dtype=np.float32)
    no_gate = np.zeros((1, 1, 1, 1), dtype=np.float32)  # rule -1: no backward ReLU fused in
    _output_transform(M, b, bool(relu), no_gate, -1, TH, TW, 0, out)  # out = A^T M A + b, per tile
    return out
