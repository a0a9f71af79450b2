"""The GEMM micro-kernel (minivgg/layers/microkernel.py): its 8-lane operations, the panels, the
product against its naive twin, and Winograd's schedules running on it.

Tolerance. The micro-kernel sums each element of M over c = 0 .. C-1, one fused multiply-add at a time,
in float32. The textbook bound of a C-term float32 dot product holds element by element:
|ours - exact| <= C * 2**-24 * (|V| @ |U|) (exact: the float64 product of the same float32 inputs).
It is checked as such rather than as an rtol on max|M|, so that elements near 0 by cancellation are
held to it too; a wrong panel, a row block shifted by one or a missed tail row is off by order |V||U|.
The convolutions are held to the Winograd tests' 1e-4 of max|ref| (test_winograd.py says why).
"""
import platform
import re

import numba
import numpy as np
import pytest

import conftest
from conftest import one_thread, rand
from test_winograd import conv_case, schedule  # noqa: F401 (schedule: a fixture used below)

import minivgg.jit as jit
import minivgg.layers.winograd_schedules as wg
from minivgg.layers import microkernel as mk
from minivgg.layers.conv import conv2d_direct, conv2d_naive
from minivgg.layers.relu import bias_relu
from minivgg.layers.winograd import conv3x3_winograd_naive, winograd_kernel
from minivgg.layers.winograd2 import winograd2_kernel
from minivgg.layers.winograd_schedules import conv3x3_winograd


# ---------------------------------------------------------------------------------------------
# The 8-lane operations


@numba.njit
def _lanes_demo(a, b, c, x, out):
    # out[0:8] = fma(a, b, c) lane by lane; out[8:16] = x broadcast; out[16:24] = 0
    mk.store8(out, 0, mk.fma8(mk.load8(a, 0), mk.load8(b, 0), mk.load8(c, 0)))
    mk.store8(out, 8, mk.splat8(x))
    mk.store8(out, 16, mk.zeros8())


def test_lanes_load_store_broadcast_and_fuse():
    """load8/store8 move 8 floats at a flat index, splat8 broadcasts, zeros8 is 0, and fma8 rounds once:
    (1 + 2^-12)^2 - (1 + 2^-11) is 2^-24 exactly, which a rounded product (1 + 2^-11 in float32) loses."""
    a = np.full(8, 1 + 2.0**-12, np.float32)
    a[1:] = np.arange(1, 8)  # lanes 1..7: ordinary values, checked lane by lane
    b = a.copy()
    c = np.full(8, -(1 + 2.0**-11), np.float32)
    c[1:] = np.arange(10, 17)
    out = np.full(24, np.nan, np.float32)
    _lanes_demo(a, b, c, np.float32(-2.5), out)
    assert out[0] == np.float32(2.0**-24)  # fused: the product's low bit survives
    assert np.float32(a[0] * b[0]) + c[0] == 0  # the same sum unfused, for contrast
    np.testing.assert_array_equal(out[1:8], a[1:] * b[1:] + c[1:])
    np.testing.assert_array_equal(out[8:16], -2.5)
    np.testing.assert_array_equal(out[16:], 0)


# ---------------------------------------------------------------------------------------------
# The panels and the product


def test_panels_are_16_columns_of_U_row_after_row():
    rng = np.random.default_rng(0)
    U = rand(rng, 3, 5, 48)  # (F, C, K), K = 3 panels
    Up = mk.pack(U)
    assert Up.shape == (3, 3, 5, 16) and Up.flags.c_contiguous and Up.dtype == np.float32
    for f, p, c, j in [(0, 0, 0, 0), (2, 1, 4, 15), (1, 2, 3, 7)]:
        assert Up[f, p, c, j] == U[f, c, 16 * p + j]
    np.testing.assert_array_equal(mk.unpack(Up), U)
    with pytest.raises(ValueError, match="multiple of 16"):
        mk.pack(rand(rng, 3, 5, 40))


@pytest.mark.parametrize("small", [False, True], ids=["F4", "F2"])
def test_the_kernel_transform_writes_the_panels_straight(small):
    """What the model keeps (``fast_kernel``): the transform written in panels, bit for bit ``pack`` of
    the plain transform; where K is not a multiple of 16 (the first layer's dx, 64 -> 3), the plain U."""
    rng = np.random.default_rng(3)
    transform = winograd2_kernel if small else winograd_kernel
    w = rand(rng, 3, 3, 7, 48)
    np.testing.assert_array_equal(wg.fast_kernel(w, small=small), mk.pack(transform(w)))
    odd = rand(rng, 3, 3, 64, 3)
    np.testing.assert_array_equal(wg.fast_kernel(odd, small=small), transform(odd))


# (F, n, C, K): rows below, at and past a multiple of 6 (the kernel's row block), one row, C = 1, an odd C
PRODUCTS = [(1, 1, 1, 16), (2, 5, 3, 16), (1, 6, 17, 32), (3, 7, 64, 48), (2, 13, 9, 16), (4, 49, 70, 64), (1, 60, 5, 80)]


@pytest.mark.parametrize("shape", PRODUCTS, ids=lambda s: "F{}_n{}_C{}_K{}".format(*s))
def test_panel_matmul_equals_the_exact_product_and_its_naive_twin(shape):
    F, n, C, K = shape
    rng = np.random.default_rng(sum(shape))
    V, U = rand(rng, F, n, C), rand(rng, F, C, K)
    ours = mk.panel_matmul(V, mk.pack(U))
    assert ours.shape == (F, n, K) and ours.dtype == np.float32
    exact = V.astype(np.float64) @ U
    bound = C * 2.0**-24 * (np.abs(V.astype(np.float64)) @ np.abs(U))  # see the module docstring
    assert (np.abs(ours - exact) <= bound).all()
    twin = mk.panel_matmul_naive(V, mk.pack(U))
    assert (np.abs(twin - exact) <= bound).all()
    out = np.full((F, n, K), np.nan, np.float32)
    assert mk.panel_matmul(V, mk.pack(U), out=out) is out
    np.testing.assert_array_equal(out, ours)


def test_each_row_is_the_same_bits_whatever_the_other_rows():
    """A row's sum does not depend on the block it falls in (first, middle, the ragged last one, where
    the last row stands in for the missing ones) or on how many rows there are: what makes Winograd on
    panels batch invariant."""
    rng = np.random.default_rng(1)
    V, U = rand(rng, 2, 23, 40), rand(rng, 2, 40, 32)
    Up = mk.pack(U)
    whole = mk.panel_matmul(V, Up)
    for i in (0, 5, 6, 17, 18, 22):
        np.testing.assert_array_equal(mk.panel_matmul(V[:, i:i + 1], Up)[:, 0], whole[:, i])
    turned = np.random.default_rng(2).permutation(23)
    np.testing.assert_array_equal(mk.panel_matmul(V[:, turned], Up), whole[:, turned])
    np.testing.assert_array_equal(mk.panel_matmul(V[:, 3:16], Up), whole[:, 3:16])


def test_the_kernel_asks_for_the_next_panel_ahead():
    """_panel_gemm prefetches the next panel as it reads one (microkernel's docstring, "Prefetching"): its
    compiled code holds LLVM's prefetch, a read kept in the outer caches (locality 2), which x86 runs as
    prefetcht1. The values are the product's with or without it (the tests above hold them); this one
    fails if the hint is dropped, by a change to the kernel or by LLVM, or turned into another."""
    kernel = numba.njit(mk._panel_gemm.py_func)  # not from the cache: cached code cannot be inspected
    sig = (numba.float32[:, ::1], numba.float32[:, :, ::1], numba.float32[:, ::1])  # V (n, C), Up (P, C, 16), M (n, K)
    kernel.compile(sig)
    assert re.search(r"call void @llvm\.prefetch\.\w+\(.*, i32 0, i32 2, i32 1\)", kernel.inspect_llvm(sig))
    if platform.machine() in ("x86_64", "AMD64"):
        assert "prefetcht1" in kernel.inspect_asm(sig)


def test_panel_matmul_rejects_bad_shapes():
    rng = np.random.default_rng(2)
    Up = mk.pack(rand(rng, 2, 8, 16))
    with pytest.raises(ValueError, match="panels"):
        mk.panel_matmul(rand(rng, 2, 4, 7), Up)  # C 7 against the panels' 8
    with pytest.raises(ValueError, match="panels"):
        mk.panel_matmul(rand(rng, 3, 4, 8), Up)  # 3 products, 2 kernels
    with pytest.raises(ValueError, match="panels"):
        mk.panel_matmul(rand(rng, 2, 4, 8), rand(rng, 2, 8, 16))  # U not packed
    with pytest.raises(ValueError, match="out"):
        mk.panel_matmul(rand(rng, 2, 4, 8), Up, out=np.empty((2, 4, 8), np.float32))
    assert mk.panel_matmul(rand(rng, 2, 0, 8), Up).shape == (2, 0, 16)


# ---------------------------------------------------------------------------------------------
# Winograd on panels

# (N, H, W, C, K): K a multiple of 16 (panels); lopsided, ragged edges, tiles not a multiple of 6
SHAPES = [(2, 13, 10, 6, 32), (1, 9, 17, 5, 16), (3, 8, 8, 7, 48), (1, 22, 26, 3, 16), (2, 5, 30, 19, 16)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}_H{}_W{}_C{}_K{}".format(*s))
@pytest.mark.parametrize("transform", [winograd_kernel, winograd2_kernel], ids=["F4", "F2"])
def test_winograd_on_panels_equals_the_naive_twin_in_every_schedule(shape, transform, schedule):
    x, w, b = conv_case(shape)
    U = transform(w)
    ours = conv3x3_winograd(x, mk.pack(U), b, relu=True)
    assert ours.dtype == np.float32 and ours.flags.c_contiguous and ours.shape == shape[:3] + (shape[4],)
    conftest.assert_close(ours, conv2d_naive(x, w, b, stride=1, pad=1, relu=True), 1e-4)
    if transform is winograd_kernel:
        conftest.assert_close(ours, conv3x3_winograd_naive(x, w, b, relu=True), 1e-4)
    conftest.assert_close(ours, conv3x3_winograd(x, U, b, relu=True), 1e-4)  # BLAS's GEMMs, U unpacked


def test_on_panels_both_schedules_and_per_image_give_the_same_bits(monkeypatch):
    """With panels, every GEMM row is the same sum however the tiles are cut: big blocks, the per-thread
    schedule (several blocks, both threads), one thread, per_image, and each image alone agree bit for bit."""
    monkeypatch.setattr(wg, "CACHE_FLOATS", 0)  # per-thread blocks of 18 tiles: this case spans several
    x, w, b = conv_case((3, 21, 18, 5, 32))  # 6 * 5 = 30 tiles an image
    Up = mk.pack(winograd_kernel(w))
    big = conv3x3_winograd(x, Up, b, relu=True)
    with jit.shared_gemms():
        per_thread = conv3x3_winograd(x, Up, b, relu=True)
        per_image = conv3x3_winograd(x, Up, b, relu=True, per_image=True)
    with one_thread():
        alone = np.concatenate([conv3x3_winograd(x[n:n + 1], Up, b, relu=True) for n in range(3)])
    for other in (per_thread, per_image, alone):
        np.testing.assert_array_equal(other, big)
    conftest.assert_close(big, conv2d_naive(x, w, b, stride=1, pad=1, relu=True), 1e-4)


def test_winograd_rejects_bad_panels():
    x, w, b = conv_case((1, 8, 8, 5, 32))
    Up = mk.pack(winograd_kernel(w))
    with pytest.raises(ValueError, match="panels"):
        conv3x3_winograd(x[..., :4], Up, b)  # C 4 against the panels' 5
    with pytest.raises(ValueError, match="panels"):
        conv3x3_winograd(x, Up[:35], b)  # 35 frequencies
    with pytest.raises(ValueError, match="b must be"):
        conv3x3_winograd(x, Up, b[:16])


# ---------------------------------------------------------------------------------------------
# The same kernel, a direct convolution (the first layer's)


@numba.njit
def _more_lanes_demo(a, i, m, bias, out):
    # out[0:8] = a.flat[i] broadcast; out[8:16] = m + bias; out[16:24] = relu(m)
    mk.store8(out, 0, mk.bcast8(a, i))
    mk.store8(out, 8, mk.add8(mk.load8(m, 0), mk.load8(bias, 0)))
    mk.store8(out, 16, mk.relu8(mk.load8(m, 0)))


def test_lanes_broadcast_from_memory_add_and_relu():
    """bcast8 broadcasts one element at a flat index; add8 adds lane by lane; relu8 does to each value
    what ``relu.bias_relu`` does: 0 below 0, the value elsewhere (-0.0 and NaN kept)."""
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    m = np.array([-1.5, -0.0, 0.0, 2.0, np.nan, -np.inf, np.inf, 1e-30], np.float32)
    bias = np.arange(8, dtype=np.float32)
    out = np.full(24, 7.0, np.float32)
    _more_lanes_demo(a, 9, m, bias, out)
    np.testing.assert_array_equal(out[:8], 9.0)
    np.testing.assert_array_equal(out[8:16], m + bias)
    y = m + bias
    want = y.copy().reshape(1, 8)
    bias_relu(want, np.zeros(8, np.float32), relu=True)  # relu.py's kernel on the same values
    _more_lanes_demo(a, 9, y, np.zeros(8, np.float32), out)
    np.testing.assert_array_equal(out[16:], want[0])  # NaN == NaN here
    _more_lanes_demo(a, 9, m, bias, out)
    np.testing.assert_array_equal(out[16:], np.where(m < 0, np.float32(0), m))
    assert np.signbit(out[17])  # -0.0 is not < 0: kept


def test_kernel_panels_are_the_rows_of_w_tap_by_tap():
    w = rand(np.random.default_rng(5), 3, 2, 5, 32)  # (KH, KW, C, K)
    Wp = mk.pack_kernel(w)
    assert Wp.shape == (2, 3 * 2 * 5, 16) and Wp.flags.c_contiguous
    for di, dj, c, k in [(0, 0, 0, 0), (2, 1, 4, 31), (1, 0, 3, 17)]:
        assert Wp[k // 16, (di * 2 + dj) * 5 + c, k % 16] == w[di, dj, c, k]


# (N, H, W, C, KH, KW, K, stride, pad): the first layer's case (C = 3, 3x3, pad 1) and lopsided ones:
# rows of 1-13 pixels (below, at and past a multiple of 6, the kernel's block), stride 2, pad 0 and 2,
# a window taller than wide, C = 1 and 17, one pixel; K a multiple of 16
DIRECT = [(2, 11, 13, 3, 3, 3, 64, 1, 1), (1, 7, 6, 1, 3, 3, 16, 1, 1), (3, 9, 5, 5, 3, 3, 32, 2, 1),
          (1, 8, 14, 17, 5, 3, 48, 1, 2), (2, 6, 7, 4, 2, 2, 16, 1, 0), (1, 1, 1, 3, 3, 3, 16, 1, 1),
          (1, 12, 25, 2, 1, 1, 32, 3, 0)]


@pytest.mark.parametrize("shape", DIRECT, ids=lambda s: "N{}_H{}_W{}_C{}_{}x{}_K{}_s{}_p{}".format(*s))
@pytest.mark.parametrize("relu", [False, True])
def test_direct_blocked_equals_the_exact_convolution(shape, relu):
    """Against the float64 convolution of the same float32 inputs, element by element, within the
    bound of an L-term float32 dot product plus the bias: (L + 1) * 2^-24 * (|x| * |w| + |b|), L =
    KH*KW*C (the module docstring's bound; the ReLU only shrinks differences). A window shifted by one
    tap or pixel, a wrong panel or a lost tail pixel is off by order |x||w|."""
    N, H, W, C, KH, KW, K, stride, pad = shape
    rng = np.random.default_rng(sum(shape))
    x, w, b = rand(rng, N, H, W, C), rand(rng, KH, KW, C, K), rand(rng, K)
    ours = mk.conv2d_direct_blocked(x, w, b, stride, pad, relu)
    exact = conv2d_naive(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), stride, pad, relu)
    assert ours.shape == exact.shape and ours.dtype == np.float32 and ours.flags.c_contiguous
    size = conv2d_naive(np.abs(x.astype(np.float64)), np.abs(w.astype(np.float64)), np.abs(b.astype(np.float64)),
                        stride, pad)
    assert (np.abs(ours - exact) <= (KH * KW * C + 1) * 2.0**-24 * size).all()
    np.testing.assert_array_equal(conv2d_direct(x, w, b, stride, pad, relu), ours)  # conv's "direct" takes it


def test_direct_blocked_is_batch_invariant():
    """Each pixel is the same sum in the same tap order wherever it lies and whatever the batch (the
    first layer's output for an image does not depend on its company: visualize on many images)."""
    rng = np.random.default_rng(6)
    x, w, b = rand(rng, 4, 9, 20, 3), rand(rng, 3, 3, 3, 64), rand(rng, 64)  # 20 = 3 * 6 + 2: a ragged block
    batch = mk.conv2d_direct_blocked(x, w, b, 1, 1, True)
    for n in range(4):
        np.testing.assert_array_equal(mk.conv2d_direct_blocked(x[n:n + 1], w, b, 1, 1, True)[0], batch[n])
    np.testing.assert_array_equal(mk.conv2d_direct_blocked(x[[2, 0]], w, b, 1, 1, True), batch[[2, 0]])


def test_direct_blocked_rejects_bad_shapes():
    rng = np.random.default_rng(7)
    x, w, b = rand(rng, 1, 8, 8, 3), rand(rng, 3, 3, 3, 40), rand(rng, 40)
    with pytest.raises(ValueError, match="multiple of 16"):
        mk.conv2d_direct_blocked(x, w, b, 1, 1)
    w, b = rand(rng, 3, 3, 4, 16), rand(rng, 16)
    with pytest.raises(ValueError, match="multiple of 16"):
        mk.conv2d_direct_blocked(x, w, b, 1, 1)  # C 3 against w's 4
    with pytest.raises(ValueError, match="does not fit"):
        mk.conv2d_direct_blocked(x[:, :2, :2, :], rand(rng, 3, 3, 3, 16), b, 1, 0)
    assert mk.conv2d_direct_blocked(x[:0], rand(rng, 3, 3, 3, 16), b, 1, 1).shape == (0, 8, 8, 16)
