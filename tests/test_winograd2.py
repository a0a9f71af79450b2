"""Winograd F(2x2, 3x3) (``minivgg/layers/winograd2.py``): its matrices, its naive twin, the fast
kernel in both schedules, and where the model takes it (``winograd_schedules.small_tiles``).

Tolerances as in test_winograd.py (its docstring says why): matrices to 1e-12 in float64, the
convolutions to 1e-4 of max|reference| against a direct float32 sum. F(2x2)'s matrices hold only 0,
+-1 and 1/2, so it rounds less than F(4x4) (measured below 2e-7 on these shapes): 1e-4 is loose for
it, and still far below what a wrong entry, a shifted tile or a dropped bias give (order 1e-1).
"""
import numpy as np
import pytest

import conftest
from conftest import rand
from test_winograd import SHAPES, conv_case, schedule  # noqa: F401 (schedule: a fixture used below)

import minivgg.layers.winograd_schedules as wg
import minivgg.network.backprop as backprop_module
import minivgg.network.vgg as vgg_module
from minivgg.benchmarks.harness import reference_conv
from minivgg.layers.conv import conv2d_naive
from minivgg.layers.relu import relu_backward
from minivgg.layers.winograd import winograd_kernel
from minivgg.layers.winograd2 import AT, BT, G, conv3x3_winograd2_naive, winograd2_kernel
from minivgg.layers.winograd_schedules import conv3x3_winograd, small_tiles
from minivgg.network.table import layers as table_layers
from minivgg.network.vgg import VGG16

RTOL = 1e-4  # see the module docstring
MATRIX_TOL = 1e-12
BAR = 1e-4  # the agreement bar of test_reference.py: max|ours - reference| / max|reference| per layer


def assert_close(ours, theirs, rtol=RTOL):
    conftest.assert_close(ours, theirs, rtol)


@pytest.mark.parametrize("seed", range(5))
def test_matrices_compute_the_1d_and_2d_correlation(seed):
    # F(2, 3): A^T [(G g) * (B^T d)] = the 2 outputs of the 3-tap "valid" correlation of 4 inputs; nested,
    # the 2x2 "valid" correlation of a 4x4 d with a 3x3 g.
    rng = np.random.default_rng(seed)
    d, g = rng.standard_normal(4), rng.standard_normal(3)  # float64
    theirs = np.array([d[i:i + 3] @ g for i in range(2)])
    np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), theirs, rtol=0, atol=MATRIX_TOL * np.abs(theirs).max())
    d, g = rng.standard_normal((4, 4)), rng.standard_normal((3, 3))
    ours = AT @ ((G @ g @ G.T) * (BT @ d @ BT.T)) @ AT.T  # (2, 4) (4, 4) (4, 2) -> (2, 2)
    theirs = np.array([[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(2)] for i in range(2)])
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=MATRIX_TOL * np.abs(theirs).max())


def test_kernel_transform_is_G_g_GT_per_channel_pair():
    w = rand(np.random.default_rng(3), 3, 3, 5, 4)  # C = 5, K = 4
    U = winograd2_kernel(w)
    assert U.shape == (16, 5, 4) and U.dtype == np.float32 and U.flags.c_contiguous
    for c in range(5):
        for k in range(4):
            want = G @ w[:, :, c, k].astype(np.float64) @ G.T  # (4, 3) (3, 3) (3, 4) -> (4, 4)
            np.testing.assert_allclose(U[:, c, k], want.reshape(16), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}_H{}_W{}_C{}_K{}".format(*s))
@pytest.mark.parametrize("relu", [False, True])
def test_naive_twin_and_fast_kernel_equal_direct_convolution(shape, relu, schedule):
    x, w, b = conv_case(shape)
    ref = conv2d_naive(x, w, b, stride=1, pad=1, relu=relu)
    naive = conv3x3_winograd2_naive(x, w, b, relu=relu)
    ours = conv3x3_winograd(x, winograd2_kernel(w), b, relu=relu)
    assert ours.dtype == np.float32 and ours.flags.c_contiguous and ours.shape == ref.shape
    assert_close(naive, ref)
    assert_close(ours, ref)
    assert_close(ours, naive)


@pytest.mark.parametrize("rule", ["plain", "guided", "deconvnet"])
@pytest.mark.parametrize("shape", [(2, 7, 9, 4, 6), (3, 4, 3, 5, 2), (1, 13, 6, 3, 5)])
def test_relu_backward_fused_in_output_transform(shape, rule, schedule):
    """relu_below=(y, rule): bit for bit relu_backward(y, conv, rule), ragged edges included."""
    x, w, b = conv_case(shape, seed=6)
    U = winograd2_kernel(w)
    y = np.maximum(rand(np.random.default_rng(7), *shape[:3], shape[4]), 0)  # a ReLU output: zeros and positives
    plain = conv3x3_winograd(x, U, b)
    np.testing.assert_array_equal(conv3x3_winograd(x, U, b, relu_below=(y, rule)), relu_backward(y, plain, rule))


@pytest.mark.parametrize("H, W", [(7, 7), (5, 9)])
def test_each_image_of_a_batch_is_bit_for_bit_as_alone(H, W):
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 3, (3, H, W, 512)).astype(np.float32)  # block5's C = K = 512
    w = (rng.standard_normal((3, 3, 512, 512)) * np.sqrt(2 / (9 * 512))).astype(np.float32)
    U, b = winograd2_kernel(w), rng.uniform(-0.5, 0.5, 512).astype(np.float32)
    batch = conv3x3_winograd(x, U, b, relu=True, per_image=True)
    for n in range(3):
        np.testing.assert_array_equal(batch[n], conv3x3_winograd(x[n:n + 1], U, b, relu=True, per_image=True)[0])
    assert_close(batch, conv2d_naive(x, w, b, stride=1, pad=1, relu=True))


def test_small_tiles_rule():
    # block5 at 224 (14x14, 512 -> 512): 16 F(4x4) tiles an image
    assert small_tiles(1, 14, 14, 512, 512) and small_tiles(2, 14, 14, 512, 512)
    assert not small_tiles(3, 14, 14, 512, 512)  # 48 tiles: F(4x4)'s GEMMs have rows enough
    assert not small_tiles(1, 28, 28, 512, 512)  # block4 at 224: 49 tiles
    assert small_tiles(1, 14, 14, 256, 256) and not small_tiles(1, 14, 14, 128, 256)  # U of 9.4 MB and more only
    assert not small_tiles(1, 4, 4, 512, 512)  # one tile: F(4x4)'s product is a matrix-vector one, faster
    assert small_tiles(1, 11, 17, 512, 512)  # 3 * 5 tiles, ragged


def test_the_model_takes_small_tiles_where_the_rule_says(monkeypatch):
    """Forward and backward, each Winograd call gets F(2x2)'s kernel exactly where ``small_tiles`` says
    (here at 112x112: block4 at 14x14 and block5 at 7x7 with one image, block5 only with eight), the
    kernels made once and kept; and the results agree with F(4x4) everywhere to float32 rounding."""
    model = VGG16(weights=None, include_top=False)
    calls, real = [], wg.conv3x3_winograd
    monkeypatch.setattr(vgg_module, "conv3x3_winograd", lambda x, U, *a, **k: calls.append((x.shape, wg.sizes(U))) or real(x, U, *a, **k))
    rng = np.random.default_rng(0)
    for N in (1, 8):
        x = rng.uniform(-120, 150, (N, 112, 112, 3)).astype(np.float32)
        calls.clear()
        ours = model(x)
        for (n, h, w, c), (f, _, k) in calls:
            assert f == (16 if small_tiles(n, h, w, c, k) else 36), (n, h, w, c, k, f)
        small = [s for s, (f, _, _) in calls if f == 16]
        assert [s[1] for s in small] == ([14, 14, 14, 7, 7, 7] if N == 1 else [7, 7, 7])
        monkeypatch.setattr(vgg_module, "small_tiles", lambda *a: False)
        assert_close(ours, model(x))
        monkeypatch.undo()
        monkeypatch.setattr(vgg_module, "conv3x3_winograd", lambda x, U, *a, **k: calls.append((x.shape, wg.sizes(U))) or real(x, U, *a, **k))
    assert {kind for _, kind in model._made} == {"small"}  # made on first use, kept
    seeds = {"block5_pool": np.ones((1, 3, 3, 512), np.float32)}
    x = x[:1]
    grads = model.gradients(x, seeds, layers=[])["input"]
    assert {name for name, kind in model._made if kind == "small dx"} == {  # dz at 14x14 and 7x7: F(2x2)'s dx
        "block4_conv1", "block4_conv2", "block4_conv3", "block5_conv1", "block5_conv2", "block5_conv3"}
    monkeypatch.setattr(backprop_module, "small_tiles", lambda *a: False)
    monkeypatch.setattr(vgg_module, "small_tiles", lambda *a: False)
    assert_close(grads, model.gradients(x, seeds, layers=[])["input"], rtol=1e-4)


@pytest.mark.parametrize("layer", [row.name for row in table_layers("vgg16", False) if row.kind == "conv"][1:])
def test_every_tile_the_model_may_take_is_inside_the_bar(layer):
    """For every Winograd layer of VGG16 (real C and K, a 10x14 map, He-scaled weights, a ReLU-like
    input, non-zero bias), each tile the model may run it with (F(4x4) always, F(2x2) where
    ``small_tiles`` can choose it) computes it inside the agreement bar against a float64 direct sum
    (measured: 2e-7..1e-5), and inside its own twin's tolerance."""
    model = VGG16(weights=None, include_top=False)
    assert model.plan[layer] == "winograd"
    w = model.params[layer][0]
    C, K = w.shape[2:]
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 2, (1, 10, 14, C)).astype(np.float32)
    b = rng.uniform(-0.5, 0.5, K).astype(np.float32)
    ref = reference_conv(x, w, b)  # float64, ReLU applied
    kernels = [winograd_kernel(w)] + ([winograd2_kernel(w)] if C * K >= wg.SMALL_MIN_CK else [])
    for U in kernels:
        err = np.abs(conv3x3_winograd(x, U, b, relu=True) - ref).max() / np.abs(ref).max()
        assert err <= BAR, (layer, U.shape[0], err)
