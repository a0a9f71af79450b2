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
intrinsics (a few lines of LLVM each): ``zeros8``, ``load8``, ``store8``, ``splat8``, ``fma8``. The
kernel itself is ordinary Numba code. On a CPU with AVX2 each becomes one instruction (one without
fused multiply-adds gets fma8 computed in software by LLVM: the same result, slowly). ``llvmlite``,
which writes that LLVM, is Numba's own compiler library, not another dependency.

What it buys, measured (docs/performance.md, "A GEMM of our own"): 0.5-0.95x OpenBLAS's time on the
products of VGG16's Winograd layers, least gain where the products have hundreds of rows; the
forward pass at one image in 0.85x the time.

The panels. ``pack(U)``: U (F, C, K) -> Up (F, P, C, 16), Up[f, p, c, j] = U[f, c, 16p + j]: each panel
holds 16 columns of U, row after row, so the kernel reads one contiguous run of C*16 floats for a
panel (in U's own layout, row c of the panel would be 16 floats every K floats apart, and the
cache's sets would thrash).

Rows past the last (n not a multiple of 6): the last block takes the last row in the missing rows'
place and stores only the real ones. Every row of M is the same sum, in the same order (c = 0, 1,
..., C-1, one fused multiply-add each) whatever block it falls in, so a row's result never depends
on the other rows: the product is batch invariant by construction (``winograd_schedules``, reason 3).

Two versions:
- ``panel_matmul_naive``: the panels unpacked, then ``np.matmul`` (the twin);
- ``panel_matmul``: the micro-kernel, one Numba thread per frequency (``_panel_gemms``), or one
  product in the calling thread (``_panel_gemm``, which ``winograd_schedules._chains`` calls per block).
"""
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

from ..jit import PARALLEL

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
    def codegen(context, builder, sig, args):
        one = builder.insert_element(ir.Constant(_VEC, ir.Undefined), args[0], ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(one, ir.Constant(_VEC, ir.Undefined),
                                      ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))
    return lanes8(types.float32), codegen


@intrinsic
def fma8(typingctx, a, b, c):
    """a * b + c lane by lane, rounded once (a fused multiply-add, as BLAS's kernels do)."""
    def codegen(context, builder, sig, args):
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC] * 3), "llvm.fma.v8f32")
        return builder.call(fma, args)
    return lanes8(lanes8, lanes8, lanes8), codegen


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
def _update(v, u0, u1, m0, m1):
    # One row's step: (m0, m1) += v * (u0, u1), its 16 sums in two registers; v a float32 of V.
    a = splat8(v)
    return fma8(a, u0, m0), fma8(a, u1, m1)


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
    for p in range(P):
        for r0 in range(0, n, ROWS):
            # rows r0 .. r0+5; past the last row, the last row again (computed twice, stored once)
            v0, v1, v2 = V[min(r0, n - 1)], V[min(r0 + 1, n - 1)], V[min(r0 + 2, n - 1)]  # (C,) each
            v3, v4, v5 = V[min(r0 + 3, n - 1)], V[min(r0 + 4, n - 1)], V[min(r0 + 5, n - 1)]
            m00, m01, m10, m11, m20, m21 = zeros8(), zeros8(), zeros8(), zeros8(), zeros8(), zeros8()
            m30, m31, m40, m41, m50, m51 = zeros8(), zeros8(), zeros8(), zeros8(), zeros8(), zeros8()
            at = p * C * WIDTH  # Up[p, 0, 0]
            for c in range(C):  # readable form: M[r0 + i, 16p + j] += V[r0 + i, c] * U[c, 16p + j]
                u0, u1 = load8(panels, at), load8(panels, at + LANES)  # U[c, 16p:16p+8], U[c, 16p+8:16p+16]
                at += WIDTH
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
