"""Every fast kernel held equal to its naive twin, on lopsided shapes.

Shapes are deliberately uneven (H != W, C != K, odd sizes, N > 1) so that a swapped axis or an
off-by-one at an edge cannot pass. Data are seeded.

Tolerances: im2col, ReLU and max-pool only copy or compare numbers, so they must match exactly.
The conv, dense and softmax kernels sum the same products in a different order (BLAS blocks its
sums), so they may differ by float32 rounding: at worst about terms * 2^-24 relative to the size of
the terms. With at most 100 terms per sum here (dense D = 100; a conv window at most 5*3*3 = 45),
that is < 6e-6 of max|reference|, typically far less; we allow 1e-5.
"""
import numpy as np
import pytest

import conftest
from conftest import one_thread, rand

from minivgg.layers.conv import conv2d, conv2d_direct, conv2d_im2col, conv2d_naive
from minivgg.layers.dense import dense, dense_naive, softmax, softmax_naive
from minivgg.layers.im2col import col2im, col2im_naive, im2col, im2col_naive
from minivgg.layers.pool import max_pool2d, max_pool2d_naive
from minivgg.layers.relu import bias_relu, bias_relu_naive, relu, relu_naive

RTOL = 1e-5


def assert_close(ours, theirs, rtol=RTOL):
    conftest.assert_close(ours, theirs, rtol)


# (N, H, W, C, KH, KW, stride, pad): lopsided on purpose
WINDOWS = [
    (2, 7, 5, 3, 3, 3, 1, 1),
    (3, 9, 13, 4, 3, 3, 1, 1),
    (1, 6, 11, 2, 3, 3, 2, 1),
    (2, 8, 5, 5, 2, 3, 1, 0),
    (1, 10, 7, 3, 5, 3, 3, 2),
    (2, 3, 4, 1, 3, 3, 1, 1),
    (1, 1, 1, 6, 3, 3, 1, 1),  # a 1x1 image: every tap but the centre is padding
]


@pytest.mark.parametrize("N,H,W,C,KH,KW,stride,pad", WINDOWS)
def test_im2col_equals_naive(N, H, W, C, KH, KW, stride, pad):
    x = rand(np.random.default_rng(0), N, H, W, C)
    fast, naive = im2col(x, KH, KW, stride, pad), im2col_naive(x, KH, KW, stride, pad)
    np.testing.assert_array_equal(fast, naive)


@pytest.mark.parametrize("N,H,W,C,KH,KW,stride,pad", WINDOWS)
def test_col2im_equals_naive_and_is_im2col_transposed(N, H, W, C, KH, KW, stride, pad):
    """col2im against its twin (the same sums in another order: float32 rounding, RTOL), and as the
    transpose of im2col: <im2col(x), c> = <x, col2im(c)> for any x and c (exact in float64, up to
    rounding here), which a wrong window, tap order or padding offset breaks."""
    rng = np.random.default_rng(3)
    x = rand(rng, N, H, W, C)
    c = rand(rng, *im2col_naive(x, KH, KW, stride, pad).shape)  # (N, H', W', KH*KW*C)
    fast, naive = col2im(c, x.shape, KH, KW, stride, pad), col2im_naive(c, x.shape, KH, KW, stride, pad)
    assert fast.shape == x.shape and fast.dtype == np.float32
    assert_close(fast, naive)
    lhs = np.sum(im2col_naive(x, KH, KW, stride, pad).astype(np.float64) * c)
    rhs = np.sum(x.astype(np.float64) * col2im_naive(c.astype(np.float64), x.shape, KH, KW, stride, pad))
    assert lhs == pytest.approx(rhs, rel=1e-9)
    with pytest.raises(ValueError, match="cols must be"):
        col2im(c[:, :, :-1] if c.shape[2] > 1 else c[..., :-1], x.shape, KH, KW, stride, pad)


def test_im2col_row_layout_matches_keras_kernel_flattening():
    # One row must be the (kh, kw, c) window, so that cols @ w.reshape(KH*KW*C, K) is the conv.
    x = np.arange(2 * 4 * 5 * 3, dtype=np.float32).reshape(2, 4, 5, 3)
    cols = im2col(x, 3, 3, 1, 0)  # (2, 2, 3, 27)
    np.testing.assert_array_equal(cols[1, 1, 2], x[1, 1:4, 2:5, :].reshape(-1))


@pytest.mark.parametrize("N,H,W,C,KH,KW,stride,pad", WINDOWS)
@pytest.mark.parametrize("use_relu", [False, True])
def test_conv2d_equals_naive(N, H, W, C, KH, KW, stride, pad, use_relu):
    rng = np.random.default_rng(1)
    K = C + 3  # C != K
    x, w, b = rand(rng, N, H, W, C), rand(rng, KH, KW, C, K), rand(rng, K)
    ref = conv2d_naive(x, w, b, stride, pad, use_relu)
    assert_close(conv2d_im2col(x, w, b, stride, pad, use_relu), ref)
    assert_close(conv2d(x, w, b, stride, pad, use_relu, method="im2col"), ref)
    assert_close(conv2d_direct(x, w, b, stride, pad, use_relu), ref)
    assert_close(conv2d(x, w, b, stride, pad, use_relu, method="direct"), ref)


@pytest.fixture(params=["shared GEMMs", "one thread"])
def blocked(request):
    """conv2d_im2col's blocked version (``conv._im2col_blocked``): taken inside ``jit.shared_gemms()``,
    where each thread calls its own GEMMs, and with one Numba thread."""
    from minivgg import jit

    if request.param == "shared GEMMs":
        with jit.shared_gemms() as sharing:
            assert sharing, "OpenBLAS not found or one thread: the blocked version is not taken"
            yield
    else:
        with one_thread():
            yield


@pytest.mark.parametrize("N,H,W,C,KH,KW,stride,pad", WINDOWS)
@pytest.mark.parametrize("block_floats", [1, 1 << 16])  # a block per output row (many blocks), and the default
def test_conv2d_im2col_in_blocks_equals_naive(N, H, W, C, KH, KW, stride, pad, block_floats, blocked, monkeypatch):
    import minivgg.layers.conv as conv_module

    calls, real = [], conv_module._blocks  # the compiled loop over the blocks, given their list
    monkeypatch.setattr(conv_module, "_blocks", lambda *a: calls.extend(map(tuple, a[8].tolist())) or real(*a))
    monkeypatch.setattr(conv_module, "BLOCK_COLS_FLOATS", block_floats)
    rng = np.random.default_rng(1)
    K = C + 3
    x, w, b = rand(rng, N, H, W, C), rand(rng, KH, KW, C, K), rand(rng, K)
    for use_relu in (False, True):
        assert_close(conv2d_im2col(x, w, b, stride, pad, use_relu), conv2d_naive(x, w, b, stride, pad, use_relu))
    OH, OW = (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1
    R = max(1, block_floats // (OW * KH * KW * C))  # output rows per block
    want = [(n, r0, min(r0 + R, OH)) for n in range(N) for r0 in range(0, OH, R)]  # rows of one image each
    assert sorted(calls) == sorted(2 * want)  # two convolutions, each cut into these blocks (each computed: out
    # starts as np.empty, so a block left out would fail the comparison above)


def test_conv2d_im2col_in_blocks_is_batch_invariant(blocked, monkeypatch):
    import minivgg.layers.conv as conv_module

    monkeypatch.setattr(conv_module, "BLOCK_COLS_FLOATS", 5 * 13 * 27)  # 5 of the 13 rows a block: a ragged last one
    rng = np.random.default_rng(2)
    x, w, b = rand(rng, 4, 13, 9, 3), rand(rng, 3, 3, 3, 64), rand(rng, 64)
    batch = conv2d_im2col(x, w, b, 1, 1, True)
    for n in range(4):
        np.testing.assert_array_equal(batch[n], conv2d_im2col(x[n:n + 1], w, b, 1, 1, True)[0])


@pytest.mark.parametrize("C,K", [(3, 64), (3, 5), (7, 2), (1, 17)])
def test_conv2d_direct_equals_naive_first_layer_shapes(C, K):
    # The direct kernel's case: few input channels, more output channels (block1_conv1 is 3 -> 64);
    # K = 17 and 5 leave a remainder after the vectorised part of the loop over K. H != W, odd, N > 1.
    rng = np.random.default_rng(3)
    x, w, b = rand(rng, 3, 11, 6, C), rand(rng, 3, 3, C, K), rand(rng, K)
    assert_close(conv2d_direct(x, w, b, 1, 1, True), conv2d_naive(x, w, b, 1, 1, True))


def test_conv2d_direct_is_batch_invariant():
    # Each image of a batch comes out bit for bit as it does alone (visualize on many images relies on
    # it for the first layer): whatever the batch, a pixel's sum is the same float32 operations.
    rng = np.random.default_rng(4)
    x, w, b = rand(rng, 5, 13, 9, 3), rand(rng, 3, 3, 3, 64), rand(rng, 64)
    batch = conv2d_direct(x, w, b, 1, 1, True)
    for n in range(len(x)):
        np.testing.assert_array_equal(batch[n:n + 1], conv2d_direct(x[n:n + 1], w, b, 1, 1, True))
    np.testing.assert_array_equal(batch[[3, 1]], conv2d_direct(x[[3, 1]], w, b, 1, 1, True))  # any company


def test_conv2d_naive_is_the_textbook_sum():
    # The reference itself, checked at a few points against the definition written as loops.
    rng = np.random.default_rng(2)
    x, w, b = rand(rng, 2, 5, 4, 3), rand(rng, 3, 3, 3, 4), rand(rng, 4)
    out = conv2d_naive(x, w, b, stride=1, pad=1)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    for n, i, j, k in [(0, 0, 0, 0), (1, 4, 3, 3), (1, 2, 1, 2), (0, 4, 0, 1)]:
        want = b[k] + sum(
            float(xp[n, i + di, j + dj, c]) * float(w[di, dj, c, k]) for di in range(3) for dj in range(3) for c in range(3)
        )
        assert abs(out[n, i, j, k] - want) <= 1e-5 * max(1.0, abs(want))


def test_conv2d_rejects_mismatched_shapes():
    x, w, b = np.zeros((1, 5, 5, 3), np.float32), np.zeros((3, 3, 4, 8), np.float32), np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="channels"):
        conv2d(x, w, b, pad=1)
    with pytest.raises(ValueError, match="unknown conv method"):
        conv2d(np.zeros((1, 5, 5, 4), np.float32), w, b, pad=1, method="fft")


@pytest.mark.parametrize("shape", [(2, 7, 5, 3), (1, 13, 4, 6), (5,), (3, 1001)])
def test_relu_equals_naive(shape):
    x = rand(np.random.default_rng(3), *shape)
    np.testing.assert_array_equal(relu(x), relu_naive(x))


@pytest.mark.parametrize("use_relu", [False, True])
def test_bias_relu_equals_naive(use_relu):
    rng = np.random.default_rng(4)
    y, b = rand(rng, 2, 5, 3, 7), rand(rng, 7)
    want = bias_relu_naive(y, b, use_relu)
    np.testing.assert_array_equal(bias_relu(y.copy(), b, use_relu), want)


@pytest.mark.parametrize("shape", [(2, 8, 6, 3), (1, 7, 5, 4), (3, 9, 12, 1), (1, 2, 3, 5), (2, 15, 15, 2), (2, 6, 9, 37)])
def test_max_pool_equals_naive_and_floors_odd_sizes(shape):
    x = rand(np.random.default_rng(5), *shape)
    fast, naive = max_pool2d(x), max_pool2d_naive(x)
    np.testing.assert_array_equal(fast, naive)
    N, H, W, C = shape
    assert fast.shape == (N, H // 2, W // 2, C)  # "valid": an odd last row/column is dropped


def test_max_pool_other_window():
    x = rand(np.random.default_rng(6), 2, 11, 8, 37)  # 37 channels: a vectorised loop and its remainder
    np.testing.assert_array_equal(max_pool2d(x, size=3, stride=2), max_pool2d_naive(x, size=3, stride=2))
    np.testing.assert_array_equal(max_pool2d(x, size=2, stride=3), max_pool2d_naive(x, size=2, stride=3))


@pytest.mark.parametrize("N,D,U", [(1, 37, 5), (3, 100, 17), (4, 8, 64)])
@pytest.mark.parametrize("use_relu", [False, True])
def test_dense_equals_naive(N, D, U, use_relu):
    rng = np.random.default_rng(7)
    x, w, b = rand(rng, N, D), rand(rng, D, U), rand(rng, U)
    assert_close(dense(x, w, b, use_relu), dense_naive(x, w, b, use_relu))


@pytest.mark.parametrize("D,U,zeros", [(37, 5, 0.5), (1001, 67, 0.4), (9, 3, 0.0), (8, 64, 1.0), (3, 17, 0.67)])
def test_one_image_dense_reads_only_the_rows_its_nonzero_inputs_meet(D, U, zeros):
    """One image (``dense``'s matrix-vector path, ``matvec_nonzero``): the naive twin's result on a ReLU
    output with zeros (none, some, all; an odd count of the rest, fewer than the threads), and the rows
    of w that meet a zero are never read: NaN there (which a full product would spread) changes nothing."""
    from minivgg.layers.dense import matvec_nonzero

    rng = np.random.default_rng(D)
    x, w, b = np.abs(rand(rng, 1, D)) + 0.1, rand(rng, D, U), rand(rng, U)
    x[0, : int(round(zeros * D))] = 0.0
    rng.shuffle(x[0])
    want = dense_naive(x, w, b)
    w[x[0] == 0] = np.nan  # rows no nonzero input meets
    assert_close(dense(x, w, b), want)
    assert_close(matvec_nonzero(x[0], w), want[0] - b)


@pytest.mark.parametrize("N,U", [(1, 10), (3, 1000), (2, 1)])
def test_softmax_equals_naive(N, U):
    y = rand(np.random.default_rng(8), N, U) * 30  # large logits: the max-subtraction matters
    p = softmax(y)
    assert_close(p, softmax_naive(y))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# GEMMs shared among minivgg's threads (jit.matmul inside jit.shared_gemms)


@pytest.mark.parametrize("a_shape, b_shape, b_transposed", [
    ((37, 130, 9), (37, 9, 5), False), ((1, 200, 40), (1, 40, 70), False),  # stacks, by products
    ((3001, 27), (27, 64), False),  # a the larger: by rows of a
    ((1, 2049), (2049, 999), False), ((9, 2049), (2049, 999), False),  # b the larger, as laid out: by its rows
    ((5, 700), (700, 3), False), ((1, 700), (700, 1001), True), ((65, 300), (300, 999), True),  # b = w.T: by columns
    ((8, 999), (999, 2049), True), ((2, 300), (300, 999), True),  # b = w.T, 2 to 64 rows: turned, by rows of w
])
def test_shared_matmul_equals_np_matmul(a_shape, b_shape, b_transposed):
    """A stack shared by products (F not a multiple of the threads, F = 1); a matrix by rows of a,
    where a is the larger; else by b: by its rows (the inner dimension, the shares' products added
    up) where b is laid out as is, by its columns where b is a transposed array (a dense layer's
    w.T), or, for 2 to ``jit.FEW_ROWS`` rows of a, turned around, (w @ a^T)^T, by rows of w (shared
    or not). The same products as np.matmul with BLAS at one thread, up to rounding: float32 sums of at
    most 2049 terms, the inner-dimension split adding two partial sums (the tolerance allows that)."""
    from minivgg import jit

    rng = np.random.default_rng(len(a_shape) + a_shape[0])
    a = rand(rng, *a_shape)
    b = rand(rng, *b_shape[::-1]).T if b_transposed else rand(rng, *b_shape)  # (K, N), F-ordered if transposed
    assert b.shape == b_shape and b.flags.f_contiguous == b_transposed or b.ndim == 3
    assert_close(jit.matmul(a, b), np.matmul(a, b))  # not shared
    with jit.shared_gemms() as sharing:
        assert sharing, "OpenBLAS not found or one thread: nothing is shared"
        want = np.matmul(a, b)
        out = np.full(want.shape, np.nan, dtype=np.float32)
        assert jit.matmul(a, b, out=out) is out
        given = jit.matmul(a, b)
    assert_close(out, want)
    np.testing.assert_array_equal(given, out)


def test_dense_layers_share_their_kernel_by_rows(monkeypatch):
    """Inside shared_gemms a dense layer's kernel w (D, U), the larger operand, is cut by rows: the
    forward pass x @ w by the inner dimension (``jit._inner_shares``), dL/dx = dy @ w.T turned around
    for a small batch (``jit._turned``: w @ dy^T by rows of w), else by the columns of w.T, which are
    rows of w; an im2col product, whose a is the larger, by rows of a."""
    from minivgg import jit
    from minivgg.layers.dense import dense_backward

    calls, inner, turned = [], jit._inner_shares, jit._turned
    monkeypatch.setattr(jit, "_inner_shares", lambda a, b, *rest: calls.append(("inner", b.shape)) or inner(a, b, *rest))
    monkeypatch.setattr(jit, "_turned", lambda a, w, out: calls.append(("turned", a.shape)) or turned(a, w, out))
    rng = np.random.default_rng(9)
    x, w, b, dy = rand(rng, 8, 999), rand(rng, 999, 2049), rand(rng, 2049), rand(rng, 8, 2049)
    with jit.shared_gemms():
        y = dense(x, w, b)
        assert calls == [("inner", (999, 2049))]
        dx, _, _ = dense_backward(x, w, dy, need_weights=False)
        assert calls[1:] == [("turned", (8, 2049))]
        for rows in (1, jit.FEW_ROWS + 1):  # one row (a matrix-vector product) and many: not turned
            assert_close(dense_backward(x[:1].repeat(rows, 0), w, dy[:1].repeat(rows, 0), need_weights=False)[0],
                         dy[:1].repeat(rows, 0) @ w.T)
        jit.matmul(rand(rng, 3001, 27), rand(rng, 27, 64))
    assert calls == [("inner", (999, 2049)), ("turned", (8, 2049))]  # nor the im2col product by the inner dimension
    assert_close(y, dense_naive(x, w, b))
    assert_close(dx, dy @ w.T)


def test_shared_gemms_nests_and_restores():
    from minivgg import jit

    before = jit.blas_threads(2)
    assert before is not None, "NumPy's BLAS is not an OpenBLAS found in this process"
    get = jit._find_openblas()[0]
    try:
        assert not jit.sharing()
        with jit.shared_gemms():
            assert jit.sharing() and get() == 1
            with jit.shared_gemms():
                assert get() == 1
            assert jit.sharing() and get() == 1  # the inner exit does not restore while the outer is inside
        assert not jit.sharing() and get() == 2
        with pytest.raises(KeyError):
            with jit.shared_gemms():
                raise KeyError("x")
        assert not jit.sharing() and get() == 2
    finally:
        jit.blas_threads(before)


@pytest.mark.parametrize("M,K,N", [(1, 7, 5), (6, 1, 3), (9, 13, 11)])
def test_gemm_from_compiled_code_takes_every_layout(M, K, N):
    """jit.gemm (OpenBLAS's GEMM called from compiled code): a and b with rows or columns contiguous (a
    transposed view), slices of larger arrays (a step between rows longer than a row), c a slice too."""
    from minivgg import jit

    if not jit.GEMM_IN_NUMBA:
        pytest.skip("NumPy's BLAS is not an OpenBLAS with cblas_sgemm64_: the shares run as one np.matmul")
    rng = np.random.default_rng(3)
    big_a, big_b = rand(rng, M + 2, K + 3), rand(rng, K + 4, N + 2)
    for a in (rand(rng, M, K), np.ascontiguousarray(rand(rng, K, M).T), big_a[1:M + 1, 2:K + 2], big_a.T.copy().T[:M, :K]):
        for b in (rand(rng, K, N), np.ascontiguousarray(rand(rng, N, K).T), big_b[3:K + 3, 1:N + 1]):
            c = np.full((M + 1, N + 3), np.nan, dtype=np.float32)
            jit.gemm(a, b, c[1:, 2:N + 2])
            np.testing.assert_allclose(c[1:, 2:N + 2], a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)
            assert np.isnan(c[0]).all() and np.isnan(c[:, :2]).all() and np.isnan(c[:, N + 2:]).all()  # only c written


def test_shared_matmul_each_cut_equals_numpy(monkeypatch):
    """jit.matmul inside shared_gemms, each way it cuts a product (by products, rows, columns, the inner
    dimension), on lopsided shapes: the exact product to float32 rounding, within the textbook bound of
    a K-term float32 dot product, |error| <= K * 2**-24 * (|a| @ |b|) element by element (values near 0
    by cancellation can miss a plain rtol). The products are small, so SHARE_FLOPS is set to 0 (else
    they stay one np.matmul), and each case checks which cut ran."""
    import numba

    from minivgg import jit

    if not jit.GEMM_IN_NUMBA or numba.get_num_threads() < 2:
        pytest.skip("no shares here: one thread, or no OpenBLAS GEMM callable from compiled code")
    monkeypatch.setattr(jit, "SHARE_FLOPS", 0)
    ran = []
    for cut in ("_product_shares", "_row_shares", "_column_shares", "_inner_parts"):
        real = getattr(jit, cut)
        monkeypatch.setattr(jit, cut, lambda *a, cut=cut, real=real: ran.append(cut) or real(*a))
    rng = np.random.default_rng(4)
    cases = [(rand(rng, 5, 33, 70), rand(rng, 5, 70, 41), "_product_shares"),  # a stack, by products
             (rand(rng, 300, 70), rand(rng, 70, 41), "_row_shares"),  # by rows of a
             (rand(rng, 1, 900), np.ascontiguousarray(rand(rng, 130, 900)).T, "_column_shares"),  # b = w.T: by its columns
             (rand(rng, 3, 900), rand(rng, 900, 130), "_inner_parts")]  # by the inner dimension
    with jit.shared_gemms():
        for a, b, cut in cases:
            ran.clear()
            got, want = jit.matmul(a, b), a.astype(np.float64) @ b
            bound = a.shape[-1] * 2.0**-24 * (np.abs(a.astype(np.float64)) @ np.abs(b))
            assert (np.abs(got - want) <= bound).all()
            assert ran == [cut]


def test_numba_threads_are_openmp_where_the_gemm_runs_in_compiled_code():
    """With jit.gemm available and no layer chosen by the user, minivgg runs Numba on GNU OpenMP (its
    workers start a loop in microseconds), with GNU OpenMP's spin set short and not left in the environment."""
    import os

    import numba

    from minivgg import jit
    from minivgg.layers.pool import max_pool2d

    max_pool2d(np.zeros((1, 4, 4, 2), np.float32))  # a parallel kernel has run: the layer is chosen
    if "NUMBA_THREADING_LAYER" in os.environ:
        pytest.skip("the user chose Numba's threading layer")
    assert numba.threading_layer() == ("omp" if jit.GEMM_IN_NUMBA and jit._omp_loads() else "workqueue")
    assert "GOMP_SPINCOUNT" not in os.environ or os.environ.get("GOMP_SPINCOUNT") != "10000"


def test_workqueue_chosen_by_the_user_is_kept_and_survives_fork(tmp_path):
    """The way out for programs that fork after minivgg ran (GNU OpenMP does not survive fork(), see
    jit.py): NUMBA_THREADING_LAYER=workqueue is respected, and a forked child runs the kernels."""
    import os
    import subprocess
    import sys

    script = tmp_path / "fork.py"
    script.write_text(
        "import multiprocessing as mp, numba, numpy as np\n"
        "from minivgg.layers.pool import max_pool2d\n"
        "x = np.arange(2 * 6 * 4 * 3, dtype=np.float32).reshape(2, 6, 4, 3)\n"
        "want = float(max_pool2d(x).sum())\n"
        "def child(q):\n"
        "    q.put(float(max_pool2d(x).sum()))\n"
        "if __name__ == '__main__':\n"
        "    ctx = mp.get_context('fork')\n"
        "    q = ctx.Queue(); p = ctx.Process(target=child, args=(q,)); p.start(); p.join(60)\n"
        "    print(numba.threading_layer(), p.exitcode, q.get(timeout=5) == want)\n")
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["workqueue", "0", "True"], out.stdout + out.stderr


def test_openblas_workers_spin_briefly_where_minivgg_loads_numpy(tmp_path):
    """``import minivgg`` before NumPy: after a GEMM on OpenBLAS's two threads, its worker spins about
    0.5 ms (OPENBLAS_THREAD_TIMEOUT=20, set only while NumPy loads), not OpenBLAS's default 2**28 cycles
    (0.12 s at this machine's 2.2 GHz clock), which slowed the passes that followed (jit.py). Measured
    as the process's CPU time in 0.3 s of sleep just after the GEMM; the control, NumPy imported first,
    shows that the measure sees the default spin (>= 0.05 s CPU for any clock up to 5 GHz)."""
    import os
    import subprocess
    import sys

    script = tmp_path / "spin.py"
    script.write_text(
        "import os, sys, time\n"
        "if sys.argv[1] == 'numpy-first': import numpy\n"
        "import minivgg, numpy as np\n"
        "a = np.random.default_rng(0).random((512, 512))\n"
        "np.matmul(a, a); time.sleep(0.5)  # the worker started and asleep again\n"
        "np.matmul(a, a); t = time.process_time(); time.sleep(0.3)\n"
        "print(time.process_time() - t, os.environ.get('OPENBLAS_THREAD_TIMEOUT'))\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    env["OPENBLAS_NUM_THREADS"] = "2"
    spins = {}
    for order in ("minivgg-first", "numpy-first"):
        out = subprocess.run([sys.executable, str(script), order], env=env, capture_output=True, text=True, timeout=120)
        cpu, left = out.stdout.split()
        assert left == "None", "the setting was left in the environment"
        spins[order] = float(cpu)
    assert spins["minivgg-first"] < 0.02 and spins["numpy-first"] > 0.05, spins


def test_kernels_are_cached_in_a_folder_named_by_all_the_sources(tmp_path):
    """jit.cache_folder: a hash of every .py file under the package, their names and contents (other files
    and __pycache__ left out), under its __pycache__. A process that imports minivgg caches there, also
    after Numba reads its settings again (a NUMBA_ variable changed, as the benchmark scripts do); a
    NUMBA_CACHE_DIR the user set is kept."""
    import os
    import subprocess
    import sys

    from minivgg import jit

    (tmp_path / "sub").mkdir()
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    first = jit.cache_folder(str(tmp_path))
    assert first == jit.cache_folder(str(tmp_path))
    assert os.path.dirname(first) == str(tmp_path / "__pycache__") and os.path.basename(first).startswith("numba-")
    (tmp_path / "notes.txt").write_text("not a source")
    (tmp_path / "__pycache__" / "c.py").write_text("z = 3\n")
    assert jit.cache_folder(str(tmp_path)) == first  # neither is a source of the package
    (tmp_path / "sub" / "b.py").write_text("y = 3\n")
    second = jit.cache_folder(str(tmp_path))
    assert second != first
    (tmp_path / "sub" / "b.py").rename(tmp_path / "sub" / "c.py")
    assert jit.cache_folder(str(tmp_path)) not in (first, second)  # a file's name counts too

    script = ("import os, numba, minivgg\n"
              "from minivgg import jit\n"
              "before = numba.config.CACHE_DIR\n"
              "os.environ['NUMBA_NUM_THREADS'] = '1'\n"
              "numba.core.config.reload_config()  # as Numba's compiler does when a NUMBA_ variable changed\n"
              "print(before == numba.config.CACHE_DIR, before == jit.cache_folder(), before)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "NUMBA_NUM_THREADS")}
    for user in (None, str(tmp_path / "mine")):
        out = subprocess.run([sys.executable, "-c", script], env=env if user is None else {**env, "NUMBA_CACHE_DIR": user},
                             capture_output=True, text=True, timeout=120)
        kept, ours, folder = out.stdout.split()
        assert kept == "True", out.stderr  # survived the reload
        assert (ours, folder) == (("True", jit.cache_folder()) if user is None else ("False", user))


def test_cache_folders_unchanged_for_a_week_are_removed(tmp_path):
    """jit._forget_old_caches: the numba-* folders beside the one in use, unchanged for 7 days (an older
    source's), are removed; newer ones, the one in use and anything else are kept."""
    import os
    import time

    from minivgg import jit

    week = 7 * 86400
    for name, age in [("numba-old", week + 60), ("numba-recent", week - 3600), ("numba-current", 2 * week),
                      ("other", 2 * week)]:
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (time.time() - age,) * 2)
    jit._forget_old_caches(str(tmp_path / "numba-current"))
    assert sorted(os.listdir(tmp_path)) == ["numba-current", "numba-recent", "other"]
    jit._forget_old_caches(str(tmp_path / "absent" / "numba-x"))  # no such parent yet: nothing to do


def test_an_edit_to_a_helper_reaches_the_kernels_cached_from_another_file(tmp_path):
    """Numba checks a cached kernel against its own file only (jit.py); the cache folder named by all the
    sources makes an edit reach the kernels that compiled a helper in. In a copy of the package: the
    max-pool's backward pass with the plain ReLU rule fused in (pool.py) compiles relu.backward_rule
    (relu.py) into itself; with that rule changed to pass every gradient, the same call in a new process
    sees the change, though pool.py did not change (with each file's kernels cached beside it, as before, it
    did not: the test fails so)."""
    import os
    import shutil
    import subprocess
    import sys

    import minivgg

    package = tmp_path / "minivgg"
    shutil.copytree(os.path.dirname(minivgg.__file__), package, ignore=shutil.ignore_patterns("__pycache__"))
    script = ("import numpy as np, minivgg\n"
              "from minivgg.layers.pool import max_pool2d_backward\n"
              "x = np.zeros((1, 2, 2, 1), np.float32)  # a ReLU's output of zeros: the plain rule passes nothing\n"
              "dx = max_pool2d_backward(x, np.ones((1, 1, 1, 1), np.float32), relu_rule='plain')\n"
              "print(minivgg.__file__, float(dx.sum()))\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["PYTHONPATH"] = str(tmp_path)

    def run():
        out = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr
        where, total = out.stdout.split()
        assert where == str(package / "__init__.py")  # the copy, not the checkout
        return float(total)

    assert run() == 0.0  # compiled, and cached
    relu = package / "layers" / "relu.py"
    rule = "    if (rule != 2 and y <= 0) or (rule != 0 and g <= 0):\n        return 0.0\n    return g\n"
    assert rule in relu.read_text()
    relu.write_text(relu.read_text().replace(rule, "    return g\n"))  # every gradient through
    assert run() == 1.0


def test_keep_freed_memory_nests_and_restores(monkeypatch):
    """keep_freed_memory: glibc's mallopt switched once for nested callers, and to the thresholds
    glibc's own rule reaches when the last one leaves (also on an exception)."""
    from minivgg import jit

    libc = jit._glibc()
    assert libc is not None, "not glibc: keep_freed_memory changes nothing here"
    calls = []

    class Spy:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1


    monkeypatch.setattr(jit, "_glibc", lambda: Spy())
    with pytest.raises(KeyError):
        with jit.keep_freed_memory() as kept:
            assert kept and calls == [(jit.M_MMAP_MAX, 0), (jit.M_TRIM_THRESHOLD, 2**31 - 1)]
            with jit.passes():
                assert len(calls) == 2 and jit.sharing()
            assert len(calls) == 2
            raise KeyError("x")
    assert calls[2:] == [(jit.M_MMAP_MAX, 65536), (jit.M_MMAP_THRESHOLD, 32 << 20), (jit.M_TRIM_THRESHOLD, 64 << 20)]
    assert not jit.sharing()
