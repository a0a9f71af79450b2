"""Winograd F(4x4, 3x3) scheduled for speed: ``conv3x3_winograd``, the version minivgg runs.

Read ``winograd.py`` first: the idea, the matrices, the naive twin, the transforms and
``conv3x3_winograd_simple``, which does each step once over all the tiles. This file computes
exactly those steps, with the same transforms and the same GEMMs, in a different order, for seven
reasons. None of it changes what a convolution is; all of it is tested equal to the naive twin
(tests/test_winograd.py).

Legend: as in winograd.py (N, H, W, C, K, TH, TW, T tiles, Tb tiles in one block).

1. Bounded memory: blocks of tiles. The simple version holds V and M for all T tiles at once, which
   grows with the batch. Here the tiles go through in blocks of at most
   ``BLOCK_FLOATS // (36 * max(C, K))``, so V and M stay under ``BLOCK_FLOATS`` floats each whatever
   the batch size, in scratch buffers kept between calls (``jit.scratch`` says why).
2. Cache: the per-thread schedule (``_per_thread``). Inside ``jit.shared_gemms()``, where each thread
   may call its own GEMMs, or with one thread in all (``--threads 1``, NUMBA_NUM_THREADS=1: one share,
   in the calling thread), a layer with a small U takes the tiles one share per thread, each share
   through all three steps in blocks that stay in that core's cache (``_cache_blocked``).
3. Batch invariance, on request (``per_image=True``). Then each image of a batch comes out bit for bit
   as it does alone, so a feature map does not depend on which images shared its batch
   (minivgg-visualize on many images writes the same files as on each one). The transforms work tile
   by tile, so they are; a GEMM's rounding is not, in general: BLAS picks its kernels by the matrix
   sizes (a single row goes through a matrix-vector kernel, and measured here a (3, 512) @ (512, 512)
   product rounds differently from a (4, 512) one). So with ``per_image`` the GEMMs never mix images:
   an image larger than a block is cut at the same tiles whatever its batch, and the images of a block
   get one GEMM each, of exactly the size they get alone. It is not the default because it gives up
   what a batch buys: on small maps (block5 at 14x14 is 16 tiles an image) one GEMM per image reads
   all of U (36 MB for 512 -> 512) once per image instead of once per block, and the GEMMs become
   memory-bound. Batched work that needs no such guarantee (gradients, SmoothGrad, feature
   visualisation) keeps the one GEMM per block. (On the micro-kernel of reason 6, which the model
   uses, no row of a GEMM depends on another, and every schedule is batch invariant.)
4. A fused backward ReLU (``relu_below``). In a backward pass the convolution's result dx is at once
   passed through the backward rule of the ReLU below (``relu.relu_backward``); the output transform
   does that as it writes each value, which saves one pass over dx.
5. Small maps: smaller tiles. Given a (16, C, K) kernel from ``winograd2.winograd2_kernel``, the same
   schedules run F(2x2, 3x3)'s transforms (``steps``); ``small_tiles`` says where that is faster (few
   tiles, a large kernel: block5 with one or two images), and the model asks it layer by layer.
6. A GEMM of our own. Given U as its panels (``microkernel.pack(U)``, (F, K/16, C, 16), as the model
   keeps every Winograd layer's kernel), the GEMMs run on ``microkernel.py``'s register-blocked kernel,
   which reads the panels straight, instead of OpenBLAS, which packs U again at every call: faster on
   every VGG16 shape measured, most where the GEMMs have few rows (docs/performance.md, "A GEMM of our
   own"). Each row of M is then the same sum whatever the other rows, so both schedules and ``per_image``
   give the same bits.
7. A fused pool (``pool=True``). A conv followed by a 2x2 max-pool, where nothing needs the conv's own
   output (the model's passes that return one layer: ``VGG._fused``), has the output transform pool
   each pair of a tile's output rows as it makes them (``winograd._put_pooled``; tiles start at even
   rows and columns, so a tile holds whole windows): the full map is never written, nor read back by
   the pool (docs/performance.md, "Pools fused into the output transform"). The same bits as the two calls.

Given U as ``winograd_kernel`` makes it, (F, C, K), the GEMMs go through ``jit.matmul``: ``np.matmul``,
which inside ``jit.shared_gemms()`` is cut into shares run on minivgg's own threads (OpenBLAS then
single-threaded), else one plain ``np.matmul``; in the per-thread schedule, ``jit.gemm``.
"""
from collections import namedtuple

import numba
import numpy as np
from numba.extending import overload

from . import winograd, winograd2
from ..jit import GEMM_IN_NUMBA, PARALLEL, gemm, matmul, scratch, sharing
from .microkernel import ROWS, WIDTH, _panel_gemm, _panel_gemms, packable
from .relu import check_rule

BLOCK_FLOATS = 1 << 22  # floats per scratch buffer (16 MB): V and M hold at most this many
CACHE_FLOATS = 1 << 18  # per thread, V and M of one block together (1 MB, a core's L2 cache here), see _per_thread
PER_THREAD_CK = 128 * 256  # C * K at most for _per_thread: U (36*C*K floats, 4.7 MB) re-read from cache per block
ONE_THREAD_CK = 128 * 128  # the same with one thread in all: its one core re-reads U alone (see _cache_blocked)

# One tile size's steps: outputs and inputs per tile side, and its transforms (per tile, and parallel).
Steps = namedtuple("Steps", "tile patch input_tiles output_tiles input_transform output_transform")
F4 = Steps(winograd.TILE, winograd.PATCH, winograd._input_tiles, winograd._output_tiles,
           winograd._input_transform, winograd._output_transform)
F2 = Steps(winograd2.TILE, winograd2.PATCH, winograd2._input_tiles, winograd2._output_tiles,
           winograd2._input_transform, winograd2._output_transform)


def steps(U):
    """The tile size a transformed kernel was made for, told by its frequencies: F4's steps for U
    (36, C, K) from ``winograd_kernel``, F2's for U (16, C, K) from ``winograd2.winograd2_kernel`` (or
    their panels, (36 or 16, K/16, C, 16))."""
    return F2 if U.shape[0] == F2.patch ** 2 else F4


def sizes(U):
    """F, C, K of a transformed kernel: U (F, C, K) as the kernel transform makes it, or its panels
    (F, K/16, C, 16) from ``microkernel.pack``."""
    if U.ndim == 4:
        F, P, C, _ = U.shape
        return F, C, P * WIDTH
    return U.shape


def fast_kernel(w, small=False):
    """w (3, 3, C, K) transformed as ``conv3x3_winograd`` runs it fastest: ``winograd_kernel(w)`` (36, C, K),
    or with ``small`` F(2x2)'s ``winograd2.winograd2_kernel(w)`` (16, C, K), as panels where K allows
    (``microkernel.packable``), written so by the transform itself (packing U after it took twice the
    transform's time: 22 against 12 ms for 512 -> 512). What the model keeps for each Winograd layer."""
    g = winograd2.G if small else winograd.G
    return winograd.transform_kernel(w, g, width=WIDTH if packable(w.shape[3]) else None)


def _product(v, u, m):
    """m = v @ u, one frequency's GEMM, (n, C) @ (C, K) -> (n, K): by BLAS (``jit.gemm``) for u (C, K),
    by the micro-kernel (``microkernel._panel_gemm``) for u as panels (K/16, C, 16). Compiled code only:
    Numba picks the body by u's number of dimensions when it compiles the caller (``_product_body``)."""
    raise NotImplementedError("called from Numba-compiled code only")


@overload(_product)
def _product_body(v, u, m):
    if u.ndim == 3:  # panels
        return lambda v, u, m: _panel_gemm(v, u, m)
    return lambda v, u, m: gemm(v, u, m)


SMALL_TILES = 32  # F(4x4) tiles at most (over the GEMMs' rows) for small_tiles to choose F(2x2)
SMALL_MIN_CK = 256 * 256  # and C * K at least: F(4x4)'s U is then 9.4 MB or more


def small_tiles(N, H, W, C, K):
    """Whether a C -> K layer on N maps H x W runs faster with F(2x2, 3x3)'s tiles (``winograd2.py``)
    than with F(4x4)'s: where F(4x4) would have few tiles (2 to ``SMALL_TILES``) and a large transformed
    kernel (C * K >= ``SMALL_MIN_CK``). Its 36 GEMMs then have 2-32 rows, and their time goes into
    reading and packing U (36*C*K floats) more than into multiplying; F(2x2) has 1.78x the
    multiplications (4 per output pixel, channel and filter, against 2.25) but a U of 16*C*K floats and
    3-4x the rows (49 tiles against 16 on a 14x14 map). Measured (224, 2 threads, side by side, F2 / F4): block5
    (14x14, 512 -> 512) 0.59-0.73 at one image, 0.88 at two, 1.05-1.07 at three or four; 14x14,
    256 -> 256: 0.77; 28x28, 512 -> 512 (49 tiles): 1.15; 16x16, 128 -> 128: 1.61; a single tile (4x4
    maps, a matrix-vector product for F(4x4)): 1.17 (docs/performance.md, "Small maps: F(2x2, 3x3)").
    With ``per_image`` GEMMs, N is 1: each image is its own GEMMs, and so chooses as it does alone."""
    return C * K >= SMALL_MIN_CK and 2 <= N * -(-H // winograd.TILE) * -(-W // winograd.TILE) <= SMALL_TILES


def _per_thread(x, U, b, relu, gate, rule, TH, TW, out, pool):
    """conv3x3_winograd's other schedule: the tiles cut into one contiguous share per thread, and each
    thread takes its share through the whole chain (input transform, 36 GEMMs, output transform) in
    blocks small enough that V and M stay in its core's cache (``CACHE_FLOATS``).

    Why: in the schedule of one big block at a time, V and M (16 MB each) go out to memory and back
    between the three steps, and where C and K are small that costs more than the GEMMs (measured
    faster on the layers it takes: docs/performance.md). Where U is large (C * K > ``PER_THREAD_CK``)
    small blocks read all of it once per block, which was measured no faster, so those layers keep
    the big blocks.
    Needs OpenBLAS single-threaded (``jit.shared_gemms``), each thread calling its own GEMMs (from
    compiled code, ``jit.gemm``), or one thread in all: then there is one share (``_cache_blocked``).
    """
    N, H, W, C = x.shape
    F, _, K = sizes(U)  # F frequencies: 36, or 16 for F2
    T = N * TH * TW
    Tb = max(16, CACHE_FLOATS // (F * (C + K)))  # tiles per block
    if U.ndim == 4:  # panels: a whole number of the micro-kernel's 6-row blocks
        Tb = -(-Tb // ROWS) * ROWS
    shares = max(1, min(numba.get_num_threads(), T // Tb))
    V = scratch("v", shares * F * Tb * C).reshape(shares, F * Tb * C)  # each share's own V and M
    M = scratch("m", shares * F * Tb * K).reshape(shares, F * Tb * K)
    _chains(x, U, b, relu, gate, rule, TH, TW, out, Tb, shares, V, M, pool)


@numba.njit(**PARALLEL)
def _chains(x, U, b, relu, gate, rule, TH, TW, out, Tb, shares, V, M, pool):
    # Share i: tiles T*i//shares .. T*(i+1)//shares - 1 of the T = N*TH*TW, in blocks of Tb, each block
    # through the input transform into its V (F, n, C), F GEMMs into its M (F, n, K), the output transform
    # (pooled with pool: out is then (N, H // 2, W // 2, K)).
    F, C, K = U.shape[0], x.shape[3], out.shape[3]
    T = x.shape[0] * TH * TW
    for i in numba.prange(shares):
        for t0 in range(T * i // shares, T * (i + 1) // shares, Tb):
            n = min(Tb, T * (i + 1) // shares - t0)
            Vn = V[i, :F * n * C].reshape((F, n, C))  # (F*n*C,) -> (F, n, C)
            Mn = M[i, :F * n * K].reshape((F, n, K))  # (F*n*K,) -> (F, n, K)
            if F == 36:
                winograd._input_tiles(x, TH, TW, t0, Vn, 0, n)
            else:
                winograd2._input_tiles(x, TH, TW, t0, Vn, 0, n)
            for f in range(F):
                _product(Vn[f], U[f], Mn[f])  # (n, C) @ (C, K) -> (n, K)
            if F == 36:
                winograd._output_tiles(Mn, b, relu, gate, rule, TH, TW, t0, out, 0, n, pool)
            else:
                winograd2._output_tiles(Mn, b, relu, gate, rule, TH, TW, t0, out, 0, n, pool)


def _cache_blocked(C, K):
    """Whether ``conv3x3_winograd`` takes the per-thread schedule for a C -> K layer: inside
    ``jit.shared_gemms()`` where C * K <= ``PER_THREAD_CK``, or with one Numba thread where C * K <=
    ``ONE_THREAD_CK``. ``shared_gemms`` does not switch on with one thread (there is nothing to share),
    yet one thread gains from blocks that stay in its cache too: without the second case it fell back
    to the big blocks, V and M going out to memory and back between the three steps. Measured at one
    thread, 224, batch 1, side by side, big blocks / per thread: 1.15-1.25x on 64 -> 64, 1.01-1.13x on
    64 -> 128, 0.94-1.09x on 128 -> 128, 0.80-0.97x on 128 -> 256 (one core re-reading the 4.7 MB U
    per block of tiles, with no second core's cache to share it), hence the lower limit. The whole
    forward pass gains little from it: 0.98-1.04x in three interleaved runs, within the noise."""
    if sharing():
        return C * K <= PER_THREAD_CK
    return GEMM_IN_NUMBA and numba.get_num_threads() == 1 and C * K <= ONE_THREAD_CK


def _check(x, U, b):
    """x, U, b as float32 C-contiguous arrays, after checking their shapes against each other; U (F, C, K)
    or its panels (F, K/16, C, 16), F = 36 (F(4x4)) or 16 (F(2x2))."""
    if U.ndim != 4:
        return winograd._check(x, U, b, frequencies=(F4.patch ** 2, F2.patch ** 2))
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"x must be (N, H, W, C), got shape {x.shape}")
    F, P, C, width = U.shape
    if F not in (F4.patch ** 2, F2.patch ** 2) or C != x.shape[3] or width != WIDTH:
        raise ValueError(f"U's panels must be (36 or 16, K/{WIDTH}, {x.shape[3]}, {WIDTH}) from microkernel.pack, got {U.shape}")
    if b.shape != (P * WIDTH,):
        raise ValueError(f"b must be ({P * WIDTH},), got {b.shape}")
    return x, np.ascontiguousarray(U, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32)


def conv3x3_winograd(x, U, b, relu=False, per_image=False, relu_below=None, pool=False):
    """Fast Winograd F(4x4, 3x3) convolution (or F(2x2, 3x3), by U); same result as
    ``winograd.conv3x3_winograd_naive`` and ``winograd.conv3x3_winograd_simple`` (``winograd2``'s naive twin).

    Inputs:
    - x: (N, H, W, C) float32 (other float dtypes are converted)
    - U: (36, C, K) float32, the transformed kernel from ``winograd_kernel(w)``, or (16, C, K) from
      ``winograd2.winograd2_kernel(w)`` for F(2x2, 3x3)'s tiles (see ``small_tiles``); or either as its
      panels, (F, K/16, C, 16) from ``microkernel.pack(U)``: the GEMMs then run on the micro-kernel
    - b: (K,);  relu: apply max(., 0), fused in the output transform
    - per_image: GEMMs never mix images, so out[n] is bit for bit what x[n:n+1] gives alone (see
      reason 3 above); False (default): one GEMM per block of tiles, faster on a batch
    - relu_below: None, or (y, rule) in a backward pass, where this convolution computes dL/d(the
      output y of the ReLU below): then out = ``relu.relu_backward(y, out, rule)``, y (N, H, W, K),
      fused in the output transform (one pass over dx saved; bit for bit the same as the two calls)
    - pool: the convolution followed by a 2x2 max-pool (``pool.max_pool2d``), fused in the output
      transform: each 2x2 window is pooled as its tile's rows are made, and the full map is never
      written (one pass over it saved, and most of its writes; bit for bit the same as the two calls).
      Not with relu_below (a forward-pass fusion); H and W at least 2
    Returns:
    - out: (N, H, W, K) float32, C-contiguous: stride 1, pad 1, so H' = H and W' = W; with pool,
      (N, H // 2, W // 2, K)

    The tiles go through in blocks of at most ``BLOCK_FLOATS // (36 * max(C, K))``, so V and M, the
    two scratch buffers, stay under ``BLOCK_FLOATS`` floats each whatever the batch size. With
    ``per_image``, blocks hold whole images (or, for a large image, the same part of each), one GEMM
    per image. Inside ``jit.shared_gemms()`` or with one thread, a layer with a small U
    (``_cache_blocked``) takes the other schedule, ``_per_thread`` (with ``per_image``, one image at a
    time, cut as it is alone); the results agree to float32 rounding (the GEMMs are cut differently).
    With U as panels, every GEMM row is the same sum however the tiles are cut, so the two schedules
    and ``per_image`` give the same bits.
    """
    x, U, b = _check(x, U, b)
    st = steps(U)  # F(4x4, 3x3) or F(2x2, 3x3), from U's shape
    N, H, W, C = x.shape
    F, _, K = sizes(U)
    if relu_below is None:
        gate, rule = np.zeros((1, 1, 1, 1), dtype=np.float32), -1  # unused
    else:
        gate, rule = np.ascontiguousarray(relu_below[0], dtype=np.float32), check_rule(relu_below[1])
        if gate.shape != (N, H, W, K):
            raise ValueError(f"relu_below's y must be {(N, H, W, K)}, got {gate.shape}")
    if pool and (rule >= 0 or H < 2 or W < 2):
        raise ValueError(f"pool: a forward convolution (no relu_below) on maps of 2x2 or more, got {x.shape}")
    TH, TW = -(-H // st.tile), -(-W // st.tile)  # tiles down and across
    out = np.empty((N, H // 2, W // 2, K) if pool else (N, H, W, K), dtype=np.float32)
    if _cache_blocked(C, K):  # see _per_thread; with per_image, one image at a time (as it runs alone)
        for n0, n1 in ([(n, n + 1) for n in range(N)] if per_image else [(0, N)]):
            _per_thread(x[n0:n1], U, b, bool(relu), gate if rule < 0 else gate[n0:n1], rule, TH, TW, out[n0:n1],
                        bool(pool))
        return out
    P = TH * TW  # tiles per image
    most = max(1, BLOCK_FLOATS // (F * max(C, K)))  # tiles per block, at most
    if not per_image:  # blocks of ``most`` tiles, one GEMM each, images mixed: (first tile, count, per GEMM)
        blocks = [(t0, min(most, N * P - t0), min(most, N * P - t0)) for t0 in range(0, N * P, most)]
    elif P >= most:  # an image spans blocks, cut at the same tiles in every image: (first tile, count, per GEMM)
        blocks = [(n * P + s, min(most, P - s), min(most, P - s)) for n in range(N) for s in range(0, P, most)]
    else:  # whole images per block, one GEMM each
        g = most // P  # images per block
        blocks = [(n * P, min(g, N - n) * P, P) for n in range(0, N, g)]
    block = max(count for _, count, _ in blocks)
    v_buf, m_buf = scratch("V", F * block * C), scratch("M", F * block * K)
    for t0, Tb, per in blocks:
        V = v_buf[:F * Tb * C].reshape(F, Tb, C)  # (F, Tb, C)
        M = m_buf[:F * Tb * K].reshape(F, Tb, K)  # (F, Tb, K)
        st.input_transform(x, TH, TW, t0, V)
        if U.ndim == 4:  # panels: F GEMMs on the micro-kernel, one thread a frequency; rows never mix
            _panel_gemms(V, U, M)  # (F, Tb, C) @ (F, C, K) -> (F, Tb, K)
        else:
            for s in range(0, Tb, per):  # readable form: np.matmul(V, U, out=M), one GEMM for all the tiles
                matmul(V[:, s:s + per], U, out=M[:, s:s + per])  # F GEMMs: (F, per, C) @ (F, C, K) -> (F, per, K)
        st.output_transform(M, b, bool(relu), gate, rule, TH, TW, t0, out, bool(pool))
    return out
