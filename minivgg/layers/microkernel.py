"""A GEMM of our own for Winograd's few-row products: a register-blocked micro-kernel.

Legend: F frequencies (36, or 16 for F(2x2)), n rows (tiles), C inner dimension (input channels),
K columns (output channels), P = K / 16 panels of 16 columns.

Why. Winograd turns a layer into F matrix products M[f] = V[f] @ U[f], (n, C) @ (C, K) (``winograd.py``).
With one image, n is small: 49 tiles on block4's 28x28 maps, 18-60 in the cache-sized blocks of the
early layers. OpenBLAS, like every BLAS, copies ("packs") both operands into its own layout at every
call before it multiplies (Goto & van de Geijn, "Anatomy of High-Performance Matrix Multiplication",
ACM TOMS 2008): for a 512 x 512 U and 49 rows that copy costs about as much as the arithmetic, and
measured here those GEMMs ran at 55-65% of the rate a large one reaches. U is a layer's weights: it
never changes from call to call. So pack it once, when the kernel is transformed (the model's
kernels are written in panels by the transform itself, ``winograd.transform_kernel(width=16)``;
``pack`` does it for a U at hand), and multiply with a kernel that reads the panels straight.

The idea, a register-blocked micro-kernel (the BLIS one: Van Zee & van de Geijn, "BLIS: A Framework
for Rapidly Instantiating BLAS Functionality", ACM TOMS 2015). A block of the product, 6 rows by 16
columns of M, is a sum over c of rank-1 updates:

    M[r0:r0+6, 16p:16p+16] = sum over c of  V[r0:r0+6, c] (a column)  x  U[c, 16p:16p+16] (a row)

Hold those 96 sums in 12 registers of 8 float32 lanes (two per row) the whole time c runs; each
step loads the 16 values of U's row c (2 registers, contiguous in the packed panel), broadcasts each
of the 6 values of V to a register, and does 12 fused multiply-adds. Nothing is stored until c is
done, so the time goes into multiply-adds, not into loads and stores of partial sums, which is what
held every plain Numba loop to a third of OpenBLAS (docs/performance.md, "Measured and dropped").
LLVM keeps values in registers; Numba's arrays live in memory. So the 8-lane register is a type of
its own here (``Lanes8``, an LLVM ``<8 x float>`` value) with five operations written as Numba
intrinsics (a few lines of LLVM each): ``zeros8``, ``load8``, ``store8``, ``splat8``, ``fma8`` (and
three more for the direct convolution below: ``bcast8``, ``add8``, ``relu8``). The kernel itself is
ordinary Numba code. On a CPU with AVX2 each becomes one instruction (one without
fused multiply-adds gets fma8 computed in software by LLVM: the same result, slowly). ``llvmlite``,
which writes that LLVM, is Numba's own compiler library, not another dependency.

What it buys, measured (docs/performance.md, "A GEMM of our own"): 0.5-0.95x OpenBLAS's time on the
products of VGG16's Winograd layers, least gain where the products have hundreds of rows; the
forward pass at one image in 0.85x the time.

The panels. ``pack(U)``: U (F, C, K) -> Up (F, P, C, 16), Up[f, p, c, j] = U[f, c, 16p + j]: each panel
holds 16 columns of U, row after row, so the kernel reads one contiguous run of C*16 floats for a
panel (in U's own layout, row c of the panel would be 16 floats every K floats apart, and the
cache's sets would thrash).

Prefetching. A panel (C*16 floats: 32 KB at C = 512) is read once from memory by the first block of
rows and from the cache by the others; U is the layer's weights, 38 MB for a 512 -> 512 layer, far
more than the cache, so with one image (49 or 16 rows, 9 or 3 blocks) the first block waits on
memory, one line at a time, while the others leave it idle. So each block asks for a share of the
*next* panel ahead of time (``prefetch``, a hint that changes no value): one line every ``blocks``
steps, the whole panel over the current one's blocks*C steps, and it arrives while the current one
is read from the cache. Measured at one image, 224, 2 threads (docs/performance.md, "Prefetching the
next panel"): block4's and block5's layers 0.8-0.9x their time in a pass, the forward pass 0.93-0.94x.

Rows past the last (n not a multiple of 6): the last block takes the last row in the missing rows'
place and stores only the real ones. Every row of M is the same sum, in the same order (c = 0, 1,
..., C-1, one fused multiply-add each) whatever block it falls in, so a row's result never depends
on the other rows: the product is batch invariant by construction (``winograd_schedules``, reason 3).

Two versions:
- ``panel_matmul_naive``: the panels unpacked, then ``np.matmul`` (the twin);
- ``panel_matmul``: the micro-kernel, one Numba thread per frequency (``_panel_gemms``), or one
  product in the calling thread (``_panel_gemm``, which ``winograd_schedules._chains`` calls per block).

The same kernel, a direct convolution (``conv2d_direct_blocked``, at the bottom; its twin is
``conv.conv2d_naive``). A convolution is a GEMM whose rows are the output pixels' windows (im2col's
rows) and whose right-hand side is w as a (KH*KW*C, K) matrix. The 6 rows of a block are then 6
pixels of one output row, and their values are broadcast straight from the input, where the windows
lie, instead of from a copy: no im2col matrix. The first layer (C = 3) runs on it: a 27-deep product,
too shallow for BLAS, the layer's time going into memory more than into arithmetic.
"""
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

from ..jit import PARALLEL
from .im2col import _check as _check_window, output_size

LANES = 8  # float32 lanes of one register (AVX2's ymm; LLVM splits or joins them elsewhere)
WIDTH = 2 * LANES  # columns of a panel: two registers a row
ROWS = 6  # rows of M a block holds: 6 x 2 = 12 of the 16 AVX2 registers, as BLIS's Haswell kernel

# ---------------------------------------------------------------------------------- the 8-lane type

_VEC = ir.VectorType(ir.FloatType(), LANES)  # LLVM's <8 x float>


class Lanes8(types.Type):
    """Numba's type for 8 float32 lanes held in one register: a value, like a float, never an array."""

    def __init__(self):
        super().__init__(name="Lanes8")


lanes8 = Lanes8()


@register_model(Lanes8)
class _Lanes8Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VEC)


def _address(context, builder, array_type, array, i):
    # A pointer to 8 lanes at the flat element index i of a C-contiguous float32 array.
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [i]), _VEC.as_pointer())


@intrinsic
def zeros8(typingctx):
    """8 lanes of 0."""
    return lanes8(), lambda context, builder, sig, args: ir.Constant(_VEC, [0.0] * LANES)


@intrinsic
def load8(typingctx, array, i):
    """array.flat[i:i + 8] as 8 lanes (array: C-contiguous float32; i + 8 <= array.size, unchecked)."""
    def codegen(context, builder, sig, args):
        return builder.load(_address(context, builder, sig.args[0], args[0], args[1]), align=4)
    return lanes8(array, i), codegen


@intrinsic
def store8(typingctx, array, i, v):
    """array.flat[i:i + 8] = the 8 lanes of v (unchecked, as load8)."""
    def codegen(context, builder, sig, args):
        builder.store(args[2], _address(context, builder, sig.args[0], args[0], args[1]), align=4)
    return types.void(array, i, v), codegen


@intrinsic
def splat8(typingctx, x):
    """8 lanes, each the float32 x (a broadcast)."""
    return lanes8(types.float32), lambda context, builder, sig, args: _splat(builder, args[0])


@intrinsic
def fma8(typingctx, a, b, c):
    """a * b + c lane by lane, rounded once (a fused multiply-add, as BLAS's kernels do)."""
    def codegen(context, builder, sig, args):
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC] * 3), "llvm.fma.v8f32")
        return builder.call(fma, args)
    return lanes8(lanes8, lanes8, lanes8), codegen


@intrinsic
def bcast8(typingctx, array, i):
    """8 lanes, each array.flat[i] (a broadcast straight from memory; C-contiguous float32, unchecked).
    ``splat8(array[i])`` computes the same, but Numba's index arithmetic for ``array[i]`` (a negative i
    counts from the end) kept the direct convolution's six addresses from fitting in registers."""
    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        return _splat(builder, builder.load(builder.gep(data, [args[1]]), align=4))
    return lanes8(array, i), codegen


def _splat(builder, value):
    # LLVM for 8 lanes of one float: insert it into lane 0, then shuffle lane 0 into all 8.
    one = builder.insert_element(ir.Constant(_VEC, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(_VEC, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))


@intrinsic
def add8(typingctx, a, b):
    """a + b lane by lane."""
    return lanes8(lanes8, lanes8), lambda context, builder, sig, args: builder.fadd(args[0], args[1])


@intrinsic
def prefetch(typingctx, array, i):
    """Ask for the cache line that holds array.flat[i] to be brought into the L2 cache, and go on at once
    (LLVM's ``llvm.prefetch``, read, locality 2: ``prefetcht1`` on x86). A hint: it changes no value,
    and never faults (C-contiguous float32 array; i within it, unchecked)."""
    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        byte, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [byte, i32, i32, i32]),
                                            "llvm.prefetch.p0i8")
        # (address, 0: a read, 2: keep it in the outer caches, not L1, which the panel being read fills, 1: data)
        builder.call(fn, [builder.bitcast(builder.gep(data, [args[1]]), byte), ir.Constant(i32, 0), ir.Constant(i32, 2),
                          ir.Constant(i32, 1)])
    return types.void(array, i), codegen


@intrinsic
def relu8(typingctx, a):
    """max(a, 0) lane by lane, as ``relu.bias_relu`` writes it: 0 where a < 0, a elsewhere (NaN stays NaN)."""
    def codegen(context, builder, sig, args):
        zero = ir.Constant(_VEC, [0.0] * LANES)
        return builder.select(builder.fcmp_ordered("<", args[0], zero), zero, args[0])
    return lanes8(lanes8), codegen


# -------------------------------------------------------------------------------------- the panels


def packable(K):
    """Whether a product with K columns can run on panels: K a multiple of 16 (every VGG layer's)."""
    return K % WIDTH == 0


def pack(U):
    """U (F, C, K) -> its panels Up (F, K / 16, C, 16) float32, C-contiguous: Up[f, p, c, j] = U[f, c, 16p + j].
    The readable form of the layout, for a U at hand; the model's kernels are written in it by the
    transform itself (``winograd.transform_kernel(width=16)``). K must be a multiple of 16 (``packable``)."""
    F, C, K = U.shape
    if not packable(K):
        raise ValueError(f"panels need K a multiple of {WIDTH}, got U {U.shape}")
    return np.ascontiguousarray(np.asarray(U, np.float32).reshape(F, C, K // WIDTH, WIDTH).transpose(0, 2, 1, 3))  # (F, C, P, 16) -> (F, P, C, 16)


def unpack(Up):
    """The panels back to U (F, C, K): the readable layout (the twin multiplies with it)."""
    F, P, C, _ = Up.shape
    return np.ascontiguousarray(Up.transpose(0, 2, 1, 3)).reshape(F, C, P * WIDTH)  # (F, C, P, 16) -> (F, C, K)


def panel_matmul_naive(V, Up):
    """The naive twin: V (F, n, C) @ unpack(Up) (F, C, K) -> M (F, n, K), by np.matmul."""
    return np.matmul(np.asarray(V, np.float32), unpack(Up))


# -------------------------------------------------------------------------------- the micro-kernel


@numba.njit(cache=True, inline="always")
def _fma2(a, u0, u1, m0, m1):
    # One row's step: (m0, m1) += a * (u0, u1), its 16 sums in two registers; a: the row's value in 8 lanes.
    return fma8(a, u0, m0), fma8(a, u1, m1)


@numba.njit(cache=True, inline="always")
def _update(v, u0, u1, m0, m1):
    # The same for v, a float32 of V, broadcast.
    return _fma2(splat8(v), u0, u1, m0, m1)


@numba.njit(cache=True, inline="always")
def _store_row(out, o, m0, m1):
    # out.flat[o:o + 16] = one row's 16 sums.
    store8(out, o, m0)
    store8(out, o + LANES, m1)


@numba.njit(cache=True)
def _panel_gemm(V, Up, M):
    # One product: V (n, C) @ U (C, K) -> M (n, K), U given as its panels Up (P, C, 16); all C-contiguous.
    # For each panel p and each block of 6 rows: 12 registers of sums, a rank-1 update per c.
    n, C = V.shape
    P = Up.shape[0]
    K = M.shape[1]
    panels, out = Up.reshape(P * C * WIDTH), M.reshape(n * K)  # flat: load8 and store8 take a flat index
    blocks = -(-n // ROWS)  # blocks of 6 rows: each reads the whole panel
    last = P * C * WIDTH - WIDTH  # Up[P - 1, C - 1, 0], the last row of the last panel
    for p in range(P):
        ahead = (p + 1) * C * WIDTH  # Up[p + 1, 0, 0], the next panel
        for r0 in range(0, n, ROWS):
            # rows r0 .. r0+5; past the last row, the last row again (computed twice, stored once)
            v0, v1, v2 = V[min(r0, n - 1)], V[min(r0 + 1, n - 1)], V[min(r0 + 2, n - 1)]  # (C,) each
            v3, v4, v5 = V[min(r0 + 3, n - 1)], V[min(r0 + 4, n - 1)], V[min(r0 + 5, n - 1)]
            m00, m01, m10, m11, m20, m21 = zeros8(), zeros8(), zeros8(), zeros8(), zeros8(), zeros8()
            m30, m31, m40, m41, m50, m51 = zeros8(), zeros8(), zeros8(), zeros8(), zeros8(), zeros8()
            at = p * C * WIDTH  # Up[p, 0, 0]
            # The next panel's C rows (a cache line each) are asked for one every ``blocks`` steps of this
            # panel's blocks*C, so that all of it is on its way while this one is read from the cache
            # (see "Prefetching" above): step ``ask`` of this block asks for row ``line``.
            done = (r0 // ROWS) * C  # steps this panel's blocks took before this one
            ask = -done % blocks  # the first step whose number in the panel, done + ask, is a multiple of blocks
            line = (done + ask) // blocks
            for c in range(C):  # readable form: M[r0 + i, 16p + j] += V[r0 + i, c] * U[c, 16p + j]
                u0, u1 = load8(panels, at), load8(panels, at + LANES)  # U[c, 16p:16p+8], U[c, 16p+8:16p+16]
                at += WIDTH
                if c == ask:  # (a count: testing (done + c) % blocks, a division every step, cost half the speed)
                    prefetch(panels, min(ahead + line * WIDTH, last))  # Up[p + 1, line, 0] (the last panel: none ahead)
                    ask += blocks
                    line += 1
                m00, m01 = _update(v0[c], u0, u1, m00, m01)
                m10, m11 = _update(v1[c], u0, u1, m10, m11)
                m20, m21 = _update(v2[c], u0, u1, m20, m21)
                m30, m31 = _update(v3[c], u0, u1, m30, m31)
                m40, m41 = _update(v4[c], u0, u1, m40, m41)
                m50, m51 = _update(v5[c], u0, u1, m50, m51)
            o = r0 * K + p * WIDTH  # M[r0, 16p]
            _store_row(out, o, m00, m01)
            if r0 + 1 < n:
                _store_row(out, o + K, m10, m11)
            if r0 + 2 < n:
                _store_row(out, o + 2 * K, m20, m21)
            if r0 + 3 < n:
                _store_row(out, o + 3 * K, m30, m31)
            if r0 + 4 < n:
                _store_row(out, o + 4 * K, m40, m41)
            if r0 + 5 < n:
                _store_row(out, o + 5 * K, m50, m51)


@numba.njit(**PARALLEL)
def _panel_gemms(V, Up, M):
    # F products, one per task: V (F, n, C) @ U[f] from Up (F, P, C, 16) -> M (F, n, K).
    for f in numba.prange(V.shape[0]):
        _panel_gemm(V[f], Up[f], M[f])


def panel_matmul(V, Up, out=None):
    """F matrix products by the micro-kernel: V (F, n, C) @ U (F, C, K), U given as its panels.

    Inputs:
    - V: (F, n, C) float32 (other float dtypes are converted)
    - Up: (F, K / 16, C, 16) float32 panels from ``pack(U)``
    - out: None, or (F, n, K) float32 C-contiguous to write into
    Returns:
    - M: (F, n, K) float32, M[f] = V[f] @ U[f]; each row's sum in the order c = 0 .. C-1, so row t of
      M[f] is the same bits whatever the other rows (same result as ``panel_matmul_naive`` up to float32
      rounding)
    """
    V = np.ascontiguousarray(V, dtype=np.float32)
    if V.ndim != 3 or Up.ndim != 4 or Up.shape[3] != WIDTH or Up.shape[0] != V.shape[0] or Up.shape[2] != V.shape[2]:
        raise ValueError(f"need V (F, n, C) and panels (F, K/{WIDTH}, C, {WIDTH}), got {V.shape} and {Up.shape}")
    F, n, C = V.shape
    K = Up.shape[1] * WIDTH
    Up = np.ascontiguousarray(Up, dtype=np.float32)
    if out is None:
        out = np.empty((F, n, K), dtype=np.float32)
    elif out.shape != (F, n, K) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous float32 {(F, n, K)}, got {out.dtype} {out.shape}")
    if n:
        _panel_gemms(V, Up, out)
    return out


# ------------------------------------------------------------- the same kernel, a direct convolution


def pack_kernel(w):
    """w (KH, KW, C, K) -> its panels (K / 16, KH*KW*C, 16) float32: the rows of w as a matrix
    (KH*KW*C, K), tap (di, dj, c) by tap, in 16-column panels, for ``conv2d_direct_blocked``."""
    KH, KW, C, K = w.shape
    return pack(np.asarray(w, np.float32).reshape(1, KH * KW * C, K))[0]  # (KH, KW, C, K) -> (1, KH*KW*C, K) -> (P, KH*KW*C, 16)


@numba.njit(cache=True, inline="always")
def _finish(m, bias, relu):
    # A register of sums + 8 biases, through the ReLU if asked.
    y = add8(m, bias)
    return relu8(y) if relu else y


@numba.njit(**PARALLEL)
def _direct_rows(x, Wp, b, KH, KW, stride, pad, relu, out):
    # x (N, H, W, C); Wp (P, KH*KW*C, 16), w's panels (pack_kernel); b (K,); out (N, H', W', K).
    # One task per output row (n, i): the KH input rows it reads are copied into a zero-padded strip
    # (KH, W + 2*pad, C), so that every tap of every pixel is inside it (the padding's zeros add 0);
    # then for each block of 6 output pixels and each panel, 12 registers of sums over the taps.
    N, H, W, C = x.shape
    _, OH, OW, K = out.shape
    P, L = Wp.shape[0], Wp.shape[1]
    SW = W + 2 * pad
    panels, flat = Wp.reshape(P * L * WIDTH), out.reshape(out.size)  # flat: load8 and store8 take a flat index
    for task in numba.prange(N * OH):
        n, i = task // OH, task % OH
        strip = np.zeros((KH, SW, C), dtype=np.float32)
        for di in range(KH):
            r = i * stride + di - pad  # input row of tap (di, .); outside the image: a row of padding
            if 0 <= r < H:
                strip[di, pad:pad + W] = x[n, r]
        s = strip.reshape(KH * SW * C)  # (KH, W + 2*pad, C) -> (KH*(W + 2*pad)*C,)
        for j0 in range(0, OW, ROWS):
            # pixels j0 .. j0+5 of the row (past the last, the last again: computed twice, stored once);
            # a_q: where pixel q's window starts in the strip, tap (0, 0, 0)
            a0 = j0 * stride * C
            a1, a2 = min(j0 + 1, OW - 1) * stride * C, min(j0 + 2, OW - 1) * stride * C
            a3, a4 = min(j0 + 3, OW - 1) * stride * C, min(j0 + 4, OW - 1) * stride * C
            a5 = min(j0 + 5, OW - 1) * stride * C
            for p in range(P):
                m00, m01, m10, m11, m20, m21 = zeros8(), zeros8(), zeros8(), zeros8(), zeros8(), zeros8()
                m30, m31, m40, m41, m50, m51 = zeros8(), zeros8(), zeros8(), zeros8(), zeros8(), zeros8()
                at = p * L * WIDTH  # Wp[p, 0, 0]
                for di in range(KH):
                    # taps (di, dj, c) for dj < KW, c < C: side by side in the strip (KW*C values from
                    # di*SW*C past a window's start), as in the panel; one loop over all of them
                    for e in range(di * SW * C, di * SW * C + KW * C):
                        # readable form: out[n, i, j0 + q, 16p + j] += window_q[di, dj, c] * w[di, dj, c, 16p + j]
                        u0, u1 = load8(panels, at), load8(panels, at + LANES)
                        at += WIDTH
                        m00, m01 = _fma2(bcast8(s, a0 + e), u0, u1, m00, m01)
                        m10, m11 = _fma2(bcast8(s, a1 + e), u0, u1, m10, m11)
                        m20, m21 = _fma2(bcast8(s, a2 + e), u0, u1, m20, m21)
                        m30, m31 = _fma2(bcast8(s, a3 + e), u0, u1, m30, m31)
                        m40, m41 = _fma2(bcast8(s, a4 + e), u0, u1, m40, m41)
                        m50, m51 = _fma2(bcast8(s, a5 + e), u0, u1, m50, m51)
                b0, b1 = load8(b, p * WIDTH), load8(b, p * WIDTH + LANES)
                o = ((n * OH + i) * OW + j0) * K + p * WIDTH  # out[n, i, j0, 16p]
                _store_row(flat, o, _finish(m00, b0, relu), _finish(m01, b1, relu))
                if j0 + 1 < OW:
                    _store_row(flat, o + K, _finish(m10, b0, relu), _finish(m11, b1, relu))
                if j0 + 2 < OW:
                    _store_row(flat, o + 2 * K, _finish(m20, b0, relu), _finish(m21, b1, relu))
                if j0 + 3 < OW:
                    _store_row(flat, o + 3 * K, _finish(m30, b0, relu), _finish(m31, b1, relu))
                if j0 + 4 < OW:
                    _store_row(flat, o + 4 * K, _finish(m40, b0, relu), _finish(m41, b1, relu))
                if j0 + 5 < OW:
                    _store_row(flat, o + 5 * K, _finish(m50, b0, relu), _finish(m51, b1, relu))


def conv2d_direct_blocked(x, w, b, stride=1, pad=0, relu=False):
    """A direct convolution on the micro-kernel: the same contract as ``conv.conv2d_naive`` (its twin),
    for K a multiple of 16 (``packable``; ``conv.conv2d_direct`` takes it then, its loops otherwise).

    The convolution is a GEMM whose left-hand rows are the output pixels' windows (im2col's rows) and
    whose right-hand side is w as a (KH*KW*C, K) matrix (``conv.py``). Here those rows are never built:
    a block of 6 pixels of one output row reads its 6 windows where they lie in the (padded) input,
    one tap at a time, broadcasting each value, while 16 columns of w come from a panel as in
    ``_panel_gemm``. Made for the first layer (C = 3: 27 taps, a GEMM too shallow for BLAS to run
    well, and an im2col matrix 9x the input); the bias and ReLU are applied in registers before the
    store, so the output is written once. Each pixel is the same sum in the same tap order wherever it
    lies: batch invariant.

    Inputs:
    - x: (N, H, W, C) float32 (others converted);  w: (KH, KW, C, K), K a multiple of 16;  b: (K,)
    - stride, pad, relu: as ``conv.conv2d_naive``
    Returns:
    - out: (N, H', W', K) float32, C-contiguous
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if w.ndim != 4 or x.ndim != 4 or x.shape[3] != w.shape[2] or b.shape != (w.shape[3],) or not packable(w.shape[3]):
        raise ValueError(f"need x (N, H, W, C), w (KH, KW, C, K) with K a multiple of {WIDTH}, b (K,); got "
                         f"{x.shape}, {w.shape}, {b.shape}")
    KH, KW, _, K = w.shape
    _check_window(x, KH, KW, stride, pad)
    N, H, W, _ = x.shape
    out = np.empty((N, output_size(H, KH, stride, pad), output_size(W, KW, stride, pad), K), dtype=np.float32)
    if out.size:
        _direct_rows(x, pack_kernel(w), np.ascontiguousarray(b, dtype=np.float32), KH, KW, stride, pad, bool(relu), out)
    return out
