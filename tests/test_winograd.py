"""Winograd F(4x4, 3x3): its matrices, its naive twin and its fast kernel (against TensorFlow: test_reference.py).

Tolerance. The matrices are checked in float64 to 1e-12: they are exact small fractions, so any
wrong entry shows as an error of order 1. The convolutions compute in float32 and are compared with
``conv2d_naive`` (a direct float32 sum) as max|ours - ref| / max|ref|. A direct sum already rounds at
~1e-6 of that; Winograd adds rounding in its transforms, whose entries reach 8 (A^T) and 5 (B^T) and
whose G has 1/6 and 1/24, so intermediate values grow several times larger than the result and lose a
few bits (measured: up to 4e-6 on the shapes below, 3e-6..8e-6 per VGG16 layer against TensorFlow).
1e-4 leaves over 10x room above that, and stays far below what a real mistake gives: a wrong matrix
entry, a tile shifted by one pixel or a dropped bias each move the result by order 1e-1 of max|ref|.
"""

import numba
import numpy as np
import pytest

import conftest
from conftest import one_thread, rand

import minivgg.jit as jit
import minivgg.network.vgg as vgg_module
import minivgg.layers.winograd as wg_idea
import minivgg.layers.winograd_schedules as wg
from minivgg.layers.conv import conv2d, conv2d_im2col, conv2d_naive
from minivgg.layers.microkernel import pack
from minivgg.network.vgg import VGG16
from minivgg.layers.winograd import AT, BT, G, conv3x3_winograd_naive, conv3x3_winograd_simple, winograd_kernel
from minivgg.layers.winograd_schedules import conv3x3_winograd

RTOL = 1e-4  # see the module docstring
MATRIX_TOL = 1e-12


def assert_close(ours, theirs, rtol=RTOL):
    conftest.assert_close(ours, theirs, rtol)


# ---------------------------------------------------------------------------------------------
# The matrices


@pytest.mark.parametrize("seed", range(5))
def test_matrices_compute_the_1d_correlation(seed):
    # F(4, 3): A^T [(G g) * (B^T d)] = the 4 outputs of the 3-tap "valid" correlation of d with g.
    rng = np.random.default_rng(seed)
    d, g = rng.standard_normal(6), rng.standard_normal(3)  # float64
    ours = AT @ ((G @ g) * (BT @ d))  # (4, 6) @ ((6, 3) @ (3,) * (6, 6) @ (6,)) -> (4,)
    theirs = np.array([d[i:i + 3] @ g for i in range(4)])  # y[i] = sum_k d[i + k] g[k]
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=MATRIX_TOL * np.abs(theirs).max())


def test_matrices_compute_the_2d_correlation():
    # The nested form: A^T [(G g G^T) * (B^T d B)] A = the 4x4 "valid" correlation of a 6x6 d with a 3x3 g.
    rng = np.random.default_rng(7)
    d, g = rng.standard_normal((6, 6)), rng.standard_normal((3, 3))
    ours = AT @ ((G @ g @ G.T) * (BT @ d @ BT.T)) @ AT.T  # (4, 6) (6, 6) (6, 4) -> (4, 4)
    theirs = np.array([[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(4)] for i in range(4)])
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=MATRIX_TOL * np.abs(theirs).max())


def test_winograd_kernel_is_G_g_GT_per_channel_pair():
    rng = np.random.default_rng(3)
    w = rand(rng, 3, 3, 5, 4)  # C = 5, K = 4
    U = winograd_kernel(w)
    assert U.shape == (36, 5, 4) and U.dtype == np.float32 and U.flags.c_contiguous
    for c in range(5):
        for k in range(4):  # every (c, k) pair: a 6x6 block of U each
            want = G @ w[:, :, c, k].astype(np.float64) @ G.T  # (6, 3) (3, 3) (3, 6) -> (6, 6)
            np.testing.assert_allclose(U[:, c, k], want.reshape(36), rtol=1e-6, atol=1e-7)  # float32 rounding


# ---------------------------------------------------------------------------------------------
# Naive twin and fast kernel against direct convolution

# 2x2 is VGG16's smallest map (block5 at a 32..63 px input). Ragged sizes drop outputs of the last
# tile; multiples of 4 (all VGG16 maps at 224) make the last tile read the padding after the edge.
SIZES = (1, 2, 3, 4, 5, 7, 8, 12, 14, 17)
# (N, H, W, C, K): every size in SIZES as H and as W, mostly H != W, C != K, N > 1 in most
SHAPES = [
    (2, 1, 1, 3, 5),
    (1, 1, 7, 4, 2),
    (2, 2, 2, 5, 3),
    (3, 2, 3, 6, 4),
    (2, 3, 5, 3, 7),
    (2, 5, 3, 8, 5),
    (2, 7, 5, 3, 4),
    (1, 7, 14, 6, 9),
    (2, 14, 7, 5, 8),
    (2, 17, 14, 4, 6),
    (1, 14, 17, 9, 4),
    (2, 17, 1, 3, 2),
    (3, 9, 13, 4, 6),
    (2, 4, 9, 3, 5),
    (2, 8, 12, 5, 3),
    (1, 12, 4, 4, 7),
    (2, 5, 8, 6, 4),
]


@pytest.fixture(params=["big blocks", "per thread", "one thread"])
def schedule(request, monkeypatch):
    """conv3x3_winograd's two schedules (``winograd_schedules._per_thread``): outside ``jit.shared_gemms``, one
    big block of tiles at a time; inside, each thread its share of the tiles, here in blocks of the
    least size (16 tiles), so that the larger cases span several blocks and both threads; and with one
    Numba thread, the per-thread schedule's one share, in the calling thread."""
    if request.param == "per thread":
        monkeypatch.setattr(wg, "CACHE_FLOATS", 0)
        with jit.shared_gemms() as sharing:
            assert sharing, "OpenBLAS not found or one thread: the per-thread schedule cannot run"
            yield request.param
    elif request.param == "one thread":
        monkeypatch.setattr(wg, "CACHE_FLOATS", 0)
        with one_thread():
            yield request.param
    else:
        assert numba.get_num_threads() > 1, "one thread: the big-block schedule is not taken"
        yield request.param


def conv_case(shape, seed=0):
    N, H, W, C, K = shape
    rng = np.random.default_rng(seed)
    x, w = rand(rng, N, H, W, C), rand(rng, 3, 3, C, K)
    b = rng.uniform(-1, 1, K).astype(np.float32)  # non-zero: a dropped bias must show
    return x, w, b


def test_shapes_cover_every_size():
    assert {s[1] for s in SHAPES} >= set(SIZES) and {s[2] for s in SHAPES} >= set(SIZES)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}_H{}_W{}_C{}_K{}".format(*s))
@pytest.mark.parametrize("relu", [False, True])
def test_naive_twin_equals_direct_convolution(shape, relu):
    x, w, b = conv_case(shape)
    ref = conv2d_naive(x, w, b, stride=1, pad=1, relu=relu)
    ours = conv3x3_winograd_naive(x, w, b, relu=relu)
    assert ours.dtype == np.float32
    assert_close(ours, ref)
    assert_close(ours, conv2d_im2col(x, w, b, stride=1, pad=1, relu=relu))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}_H{}_W{}_C{}_K{}".format(*s))
@pytest.mark.parametrize("relu", [False, True])
def test_fast_kernel_equals_direct_convolution_and_naive_twin(shape, relu, schedule):
    x, w, b = conv_case(shape)
    ours = conv3x3_winograd(x, winograd_kernel(w), b, relu=relu)
    assert ours.dtype == np.float32 and ours.flags.c_contiguous
    assert_close(ours, conv2d_naive(x, w, b, stride=1, pad=1, relu=relu))
    assert_close(ours, conv3x3_winograd_naive(x, w, b, relu=relu))
    assert_close(conv2d(x, w, b, stride=1, pad=1, relu=relu, method="winograd"), ours)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}_H{}_W{}_C{}_K{}".format(*s))
@pytest.mark.parametrize("relu", [False, True])
def test_simple_version_equals_naive_twin_and_scheduled_one(shape, relu, schedule):
    # winograd.conv3x3_winograd_simple (the readable fast version: the three steps once over all the
    # tiles, one batched np.matmul) against the naive twin, direct convolution and the scheduled
    # version in both its schedules; same float32 transforms, so the same tolerance (module docstring).
    x, w, b = conv_case(shape)
    U = winograd_kernel(w)
    ours = conv3x3_winograd_simple(x, U, b, relu=relu)
    assert ours.dtype == np.float32 and ours.flags.c_contiguous and ours.shape == shape[:3] + (shape[4],)
    assert_close(ours, conv3x3_winograd_naive(x, w, b, relu=relu))
    assert_close(ours, conv2d_naive(x, w, b, stride=1, pad=1, relu=relu))
    assert_close(ours, conv3x3_winograd(x, U, b, relu=relu))
    if relu:
        assert (ours >= 0).all() and (ours == 0).any()


@pytest.mark.parametrize("version", [conv3x3_winograd_simple, conv3x3_winograd], ids=["simple", "fast"])
def test_both_versions_reject_bad_shapes(version):
    x, w, b = conv_case((1, 5, 6, 3, 4))
    U = winograd_kernel(w)
    with pytest.raises(ValueError, match="U must be"):
        version(x, U[:, :2], b)  # C mismatch
    with pytest.raises(ValueError, match="b must be"):
        version(x, U, b[:3])
    with pytest.raises(ValueError, match="x must be"):
        version(x[0], U, b)


def test_relu_fused_in_output_transform(schedule):
    x, w, b = conv_case((2, 7, 9, 4, 6), seed=5)
    y, y_relu = (conv3x3_winograd(x, winograd_kernel(w), b, relu=r) for r in (False, True))
    assert (y < 0).any() and (y_relu >= 0).all()
    np.testing.assert_array_equal(y_relu, np.maximum(y, 0))


@pytest.mark.parametrize("rule", ["plain", "guided", "deconvnet"])
@pytest.mark.parametrize("shape", [(2, 7, 9, 4, 6), (1, 5, 6, 3, 8), (3, 4, 3, 5, 2), (3, 21, 26, 3, 5)])
def test_relu_backward_fused_in_output_transform(shape, rule, schedule):
    """relu_below=(y, rule): bit for bit relu_backward(y, conv, rule), ragged edges included."""
    from minivgg.layers.relu import relu_backward

    x, w, b = conv_case(shape, seed=6)
    U = winograd_kernel(w)
    y = np.maximum(rand(np.random.default_rng(7), *shape[:3], shape[4]), 0)  # a ReLU output: zeros and positives
    y[0, 0, :2] = 0.0
    plain = conv3x3_winograd(x, U, b)
    fused = conv3x3_winograd(x, U, b, relu_below=(y, rule))
    assert (y == 0).any() and (plain < 0).any()
    np.testing.assert_array_equal(fused, relu_backward(y, plain, rule))
    with pytest.raises(ValueError, match="relu_below's y must be"):
        conv3x3_winograd(x, U, b, relu_below=(y[:, :-1], rule))


# (N, H, W, C, K): odd sizes (the pool drops a last row or column; tiles past the edge), a 2x2 map (one
# pooled pixel), maps of 2 and 3 tiles, a batch spanning blocks; K = 16 and 32 so that panels run too
POOLED = [(2, 7, 9, 4, 16), (1, 2, 2, 3, 16), (3, 13, 10, 6, 32), (1, 5, 22, 3, 16), (2, 12, 8, 5, 16)]


@pytest.mark.parametrize("shape", POOLED, ids=lambda s: "N{}_H{}_W{}_C{}_K{}".format(*s))
@pytest.mark.parametrize("kernel", ["F4", "F4 panels", "F2", "F2 panels"])
def test_pool_fused_in_output_transform(shape, kernel, schedule):
    """pool=True: bit for bit max_pool2d of the convolution (the maximum is exact, and taken in the
    pool's own scan order), with and without the ReLU, in every schedule, F(4x4) and F(2x2), U plain
    and as panels, and with per_image; what the model's passes run for a conv before a pool."""
    from minivgg.layers.pool import max_pool2d
    from minivgg.layers.winograd2 import winograd2_kernel

    x, w, b = conv_case(shape, seed=8)
    U = (winograd2_kernel if kernel.startswith("F2") else winograd_kernel)(w)
    U = pack(U) if kernel.endswith("panels") else U
    for relu in (False, True):
        full = conv3x3_winograd(x, U, b, relu=relu)
        pooled = conv3x3_winograd(x, U, b, relu=relu, pool=True)
        assert pooled.shape == (shape[0], shape[1] // 2, shape[2] // 2, shape[4]) and pooled.flags.c_contiguous
        np.testing.assert_array_equal(pooled, max_pool2d(full))
        np.testing.assert_array_equal(conv3x3_winograd(x, U, b, relu=relu, pool=True, per_image=True),
                                      max_pool2d(conv3x3_winograd(x, U, b, relu=relu, per_image=True)))
    assert (full > 0).any() and (full == 0).any()  # the ReLU's zeros: ties in a window


def test_pool_fused_refuses_what_it_cannot_do():
    x, w, b = conv_case((1, 1, 5, 3, 16))
    with pytest.raises(ValueError, match="pool"):
        conv3x3_winograd(x, winograd_kernel(w), b, pool=True)  # a 1-row map: no 2x2 window
    x, w, b = conv_case((1, 4, 4, 3, 16))
    y = np.zeros((1, 4, 4, 16), np.float32)
    with pytest.raises(ValueError, match="pool"):
        conv3x3_winograd(x, winograd_kernel(w), b, relu_below=(y, "plain"), pool=True)


@pytest.mark.parametrize("block_floats", [36 * 8 * 1, 36 * 8 * 5])
def test_tiles_in_blocks_give_the_same_result(monkeypatch, block_floats):
    # With max(C, K) = 8, 1 and 5 tiles per block: many blocks, the last one ragged (36 tiles here).
    x, w, b = conv_case((2, 13, 10, 8, 5), seed=4)  # 2 * 4 * 3 = 24 tiles
    U = winograd_kernel(w)
    whole = conv3x3_winograd(x, U, b, relu=True)
    monkeypatch.setattr(wg, "BLOCK_FLOATS", block_floats)
    blocked = conv3x3_winograd(x, U, b, relu=True)
    assert_close(blocked, whole)
    assert_close(blocked, conv2d_naive(x, w, b, stride=1, pad=1, relu=True))


@pytest.mark.parametrize("H, W, block_floats", [(4, 3, None), (6, 9, None), (13, 10, 36 * 512 * 5)])
def test_each_image_of_a_batch_is_bit_for_bit_as_alone(monkeypatch, H, W, block_floats):
    # 1 tile per image (a single row: BLAS's matrix-vector kernel when alone), 6 tiles, and images
    # larger than a block (12 tiles, blocks of 5 with max(C, K) = 512). Exact equality: this is what lets many-image runs
    # write the same bytes as one-image runs.
    if block_floats:
        monkeypatch.setattr(wg, "BLOCK_FLOATS", block_floats)
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 3, (5, H, W, 512)).astype(np.float32)  # block5's C = K = 512: long sums round apart
    w = (rng.standard_normal((3, 3, 512, 512)) * np.sqrt(2 / (9 * 512))).astype(np.float32)
    U, b = winograd_kernel(w), rng.uniform(-0.5, 0.5, 512).astype(np.float32)
    batch = conv3x3_winograd(x, U, b, relu=True, per_image=True)
    for n in range(5):
        alone = conv3x3_winograd(x[n:n + 1], U, b, relu=True, per_image=True)[0]
        np.testing.assert_array_equal(batch[n], alone, err_msg=f"image {n}")
        assert_close(alone, conv3x3_winograd(x[n:n + 1], U, b, relu=True)[0])  # the same, but for rounding, as the default


def test_each_image_is_as_alone_in_the_cache_blocked_schedule(monkeypatch):
    # The per-thread schedule (a small U, inside shared_gemms or with one thread) with per_image takes the
    # images one at a time, each cut into shares and blocks as it is alone: exact equality again.
    rng = np.random.default_rng(8)
    x = rng.uniform(0, 3, (3, 24, 20, 64)).astype(np.float32)  # 30 tiles an image
    w = (rng.standard_normal((3, 3, 64, 64)) * np.sqrt(2 / (9 * 64))).astype(np.float32)
    U, b = winograd_kernel(w), rng.uniform(-0.5, 0.5, 64).astype(np.float32)
    calls, per_thread = [], wg._per_thread
    monkeypatch.setattr(wg, "_per_thread", lambda x, *a: calls.append(len(x)) or per_thread(x, *a))  # images per call
    with jit.shared_gemms():
        assert wg._cache_blocked(64, 64)  # the schedule under test
        batch = conv3x3_winograd(x, U, b, relu=True, per_image=True)
        alone = [conv3x3_winograd(x[n:n + 1], U, b, relu=True, per_image=True)[0] for n in range(3)]
    assert calls == [1, 1, 1, 1, 1, 1]  # the batch one image at a time, then each image alone
    for n in range(3):
        np.testing.assert_array_equal(batch[n], alone[n], err_msg=f"image {n}")
    assert_close(batch, conv2d_naive(x, w, b, stride=1, pad=1, relu=True))


def test_vgg16_sized_layer():
    # One real VGG16 shape (block4_conv1 of a 112x112 input: 14x14, 256 -> 512 channels), He-scaled
    # weights as in the model; long sums (2304 terms) are where float32 rounding adds up.
    rng = np.random.default_rng(6)
    x = rng.uniform(0, 3, (1, 14, 14, 256)).astype(np.float32)  # post-ReLU activations are >= 0
    w = (rng.standard_normal((3, 3, 256, 512)) * np.sqrt(2 / (9 * 256))).astype(np.float32)
    b = rng.uniform(-0.5, 0.5, 512).astype(np.float32)
    ref = conv2d_naive(x, w, b, stride=1, pad=1, relu=True)
    assert_close(conv3x3_winograd(x, winograd_kernel(w), b, relu=True), ref)


def test_kernel_transform_rejects_a_kernel_that_is_not_3x3():
    with pytest.raises(ValueError, match="3, 3, C, K"):
        winograd_kernel(np.zeros((5, 5, 3, 4), np.float32))


# ---------------------------------------------------------------------------------------------
# In the model


def test_auto_plan_and_kernels_transformed_once(monkeypatch):
    model = VGG16(weights=None, include_top=False, method="auto")
    assert model.plan["block1_conv1"] == "direct"  # C = 3
    assert model.plan["block1_conv2"] == "winograd"
    assert set(model._winograd) == {name for name, m in model.plan.items() if m == "winograd"}
    for name, U in model._winograd.items():  # kept as the micro-kernel's panels (every VGG16 K is a multiple of 16)
        np.testing.assert_array_equal(U, pack(winograd_kernel(model.params[name][0])))

    def fail(w, small=False):  # F(2x2)'s kernels (small maps) are made on first use, and allowed
        if not small:
            raise AssertionError("winograd_kernel called during forward: it belongs in __init__")
        return made(w, small)

    made = vgg_module.fast_kernel
    monkeypatch.setattr(vgg_module, "fast_kernel", fail)
    monkeypatch.setattr(wg_idea, "winograd_kernel", fail)
    out = model(np.random.default_rng(0).uniform(-120, 150, (1, 40, 48, 3)).astype(np.float32))
    assert out.shape == (1, 1, 1, 512)


def test_model_passes_take_the_per_thread_schedule(monkeypatch):
    """model(x), activations and gradients hold jit.shared_gemms for the whole pass, so the Winograd
    layers with a small U (C * K <= PER_THREAD_CK) go per thread, the others in big blocks; and the
    results are those of the big-block schedule (tolerance: see the module docstring)."""
    model = VGG16(weights=None, include_top=False, method="winograd")
    x = np.random.default_rng(1).uniform(-120, 150, (2, 37, 45, 3)).astype(np.float32)
    small = {name for name, (w, _) in model.params.items() if w.shape[2] * w.shape[3] <= wg.PER_THREAD_CK}
    assert small and small != set(model.params)
    ks = []
    real = wg._per_thread
    monkeypatch.setattr(wg, "_per_thread", lambda x, U, *rest: ks.append(wg.sizes(U)[1:]) or real(x, U, *rest))
    ours = model.activations(x)
    assert sorted(ks) == sorted(model.params[n][0].shape[2:] for n in small)
    grads = model.gradients(x, {"block3_pool": np.ones_like(ours["block3_pool"])})
    assert len(ks) > 2 * len(small)  # the backward pass's dx too
    monkeypatch.setattr(jit, "sharing", lambda: False)
    monkeypatch.setattr(wg, "sharing", lambda: False)
    ks.clear()
    for name, a in model.activations(x).items():
        assert_close(ours[name], a)
    assert_close(grads["input"], model.gradients(x, {"block3_pool": np.ones_like(ours["block3_pool"])})["input"])
    assert not ks


def test_one_thread_takes_the_cache_blocked_schedule(monkeypatch):
    """With one Numba thread, ``jit.shared_gemms`` does not switch on (nothing to share), and yet the
    layers with a small U (C * K <= ONE_THREAD_CK) take the per-thread (cache-blocked) schedule, in one
    share; the layers with a larger U keep the big blocks. The result agrees with the big-block schedule and the naive twin
    within the module's tolerance (not bit for bit: the GEMMs are cut at other tiles)."""
    calls = []
    real = wg._per_thread
    monkeypatch.setattr(wg, "_per_thread", lambda x, U, *rest: calls.append(U.shape[1:]) or real(x, U, *rest))
    monkeypatch.setattr(wg, "CACHE_FLOATS", 0)  # blocks of 16 tiles: this case spans several
    x, w, b = conv_case((2, 13, 10, 6, 9))  # 2 * 4 * 3 = 24 tiles, C != K
    U = winograd_kernel(w)
    big = conv3x3_winograd(x, U, b, relu=True)  # two threads, outside shared_gemms: big blocks
    assert not calls
    with one_thread():
        with jit.shared_gemms() as sharing:
            assert not sharing  # one thread: no sharing, which made it fall back to big blocks before
            ours = conv3x3_winograd(x, U, b, relu=True)
        monkeypatch.setattr(wg, "ONE_THREAD_CK", 6 * 9 - 1)  # U too large for one thread's blocks: big blocks
        conv3x3_winograd(x, U, b, relu=True)
    assert calls == [(6, 9)]
    assert_close(ours, big)
    assert_close(ours, conv3x3_winograd_naive(x, w, b, relu=True))
