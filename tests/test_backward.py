"""Every backward kernel against its naive twin and against central differences; the model's seeds.

Shapes are lopsided (H != W, C != K, odd sizes, N > 1) so that a swapped axis cannot pass.

Tolerances.
- Naive twins against ``numerical_gradient`` (float64, eps = 1e-5): the central difference is exact up
  to ~1e-10 relative here (gradcheck.py), so 1e-7 on ||ours - numeric|| / ||.|| leaves room while a
  wrong tap, a missing flip or a dropped term gives errors near 1.
- Fast kernels (float32) against the naive twins (float64 on float32-representable data): float32
  rounding of sums of at most 5*3*3*7 = 315 products, ~sqrt(315) * 6e-8 = 1e-6 relative; Winograd's
  transforms multiply by up to 8 before dividing and cost a few bits more (the forward tests measure
  the same). Bar: 1e-5, Winograd 5e-5.
- ReLU and pool routing only copy or zero numbers: equal exactly.
"""
import numpy as np
import pytest

from conftest import rand
from minivgg import MinivggError, VGG16
from minivgg.network.backprop import channel_mean, class_score
from minivgg.layers.conv import (conv2d_backward_input, conv2d_backward_naive, conv2d_backward_weights, conv2d_naive,
                          transpose_kernel)
from minivgg.layers.dense import (dense_backward, dense_backward_naive, dense_naive, softmax_backward,
                           softmax_backward_naive, softmax_naive)
from minivgg.layers.gradcheck import numerical_gradient, relative_error
from minivgg.layers.pool import max_pool2d, max_pool2d_argmax_naive, max_pool2d_backward, max_pool2d_backward_naive, max_pool2d_naive
from minivgg.layers.relu import RELU_RULES, relu_backward, relu_backward_naive
from minivgg.jit import shared_gemms
from minivgg.layers.winograd import winograd_kernel

NUMERIC = 1e-7
FAST = 1e-5
WINOGRAD = 5e-5


def f64(rng, *shape):
    """Seeded float32 data held as float64: exactly representable in both precisions."""
    return rand(rng, *shape).astype(np.float64)


# ---- conv ----------------------------------------------------------------------------------------

# (N, H, W, C, K, KH, KW, stride, pad), lopsided on purpose
CONVS = [
    (2, 5, 7, 3, 4, 3, 3, 1, 1),
    (1, 6, 4, 2, 5, 3, 3, 1, 0),
    (3, 7, 6, 4, 2, 3, 2, 2, 1),
    (1, 9, 5, 1, 3, 5, 5, 1, 2),
    (2, 1, 3, 3, 2, 3, 3, 1, 1),  # a 1-pixel-high image: most taps fall in the padding
]


@pytest.mark.parametrize("N, H, W, C, K, KH, KW, stride, pad", CONVS)
def test_conv_backward_naive_equals_central_differences(N, H, W, C, K, KH, KW, stride, pad):
    rng = np.random.default_rng(H * W + C)
    x, w, b = f64(rng, N, H, W, C), f64(rng, KH, KW, C, K), f64(rng, K)
    dy = f64(rng, *conv2d_naive(x, w, b, stride, pad).shape)  # (N, H', W', K)
    dx, dw, db = conv2d_backward_naive(x, w, dy, stride, pad)
    loss = lambda x, w, b: np.sum(dy * conv2d_naive(x, w, b, stride, pad))  # noqa: E731
    assert relative_error(dx, numerical_gradient(lambda v: loss(v, w, b), x)) < NUMERIC
    assert relative_error(dw, numerical_gradient(lambda v: loss(x, v, b), w)) < NUMERIC
    assert relative_error(db, numerical_gradient(lambda v: loss(x, w, v), b)) < NUMERIC


@pytest.mark.parametrize("N, H, W, C, K", [(2, 5, 7, 3, 4), (1, 9, 6, 6, 5), (3, 4, 13, 2, 7), (1, 1, 2, 3, 3)])
@pytest.mark.parametrize("method", ["naive", "im2col", "im2col flipped", "winograd"])
def test_conv_backward_input_is_the_flipped_convolution(N, H, W, C, K, method, monkeypatch):
    """"im2col": by col2im, its matrix being small here; "im2col flipped": the limit set to 0, so the
    flipped convolution by im2col, as larger maps take it."""
    import minivgg.layers.conv as conv_module

    if method == "im2col flipped":
        monkeypatch.setattr(conv_module, "COL2IM_FLOATS", 0)
        method = "im2col"
    rng = np.random.default_rng(N + H + W)
    x, w, dy = f64(rng, N, H, W, C), f64(rng, 3, 3, C, K), f64(rng, N, H, W, K)
    want, _, _ = conv2d_backward_naive(x, w, dy, stride=1, pad=1)
    w32 = w.astype(np.float32)
    U_t = winograd_kernel(transpose_kernel(w32)) if method == "winograd" else None  # (36, K, C)
    dx = conv2d_backward_input(dy.astype(np.float32), w32, pad=1, method=method, U_t=U_t)
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert relative_error(dx, want) < (WINOGRAD if method == "winograd" else FAST)


@pytest.mark.parametrize("method", ["naive", "im2col", "winograd"])
@pytest.mark.parametrize("rule", RELU_RULES)
def test_conv_backward_input_then_the_relu_below(method, rule):
    """relu_below=(y, rule): dL/d(the pre-activation of the layer below), one step further down."""
    rng = np.random.default_rng(11)
    N, H, W, C, K = 2, 6, 9, 5, 4
    x, w, dy = f64(rng, N, H, W, C), f64(rng, 3, 3, C, K), f64(rng, N, H, W, K)
    y = np.maximum(x, 0)  # x is the output of a ReLU
    want = relu_backward_naive(y, conv2d_backward_naive(x, w, dy, stride=1, pad=1)[0], rule)
    w32 = w.astype(np.float32)
    U_t = winograd_kernel(transpose_kernel(w32)) if method == "winograd" else None  # (36, K, C)
    dz = conv2d_backward_input(dy.astype(np.float32), w32, pad=1, method=method, U_t=U_t, relu_below=(y, rule))
    assert dz.shape == x.shape and (dz == 0).any()
    assert relative_error(dz, want) < (WINOGRAD if method == "winograd" else FAST)


@pytest.mark.parametrize("rule", RELU_RULES)
def test_pool_backward_then_the_relu_below(rule):
    """relu_rule=: the pool's input is a ReLU's output; routed and ruled in one pass, bit for bit the
    two calls. Windows of zeros (ties, as after a ReLU), negative dy, odd sizes."""
    rng = np.random.default_rng(12)
    x = np.maximum(rand(rng, 2, 7, 9, 5), 0)  # a ReLU output: about half zeros
    x[0, :2, :2, :] = 0.0  # whole windows of zeros
    dy = rand(rng, 2, 3, 4, 5)
    want = relu_backward(x, max_pool2d_backward(x, dy), rule)
    np.testing.assert_array_equal(max_pool2d_backward(x, dy, relu_rule=rule), want)
    assert (want == 0).mean() > 0.75  # most of dx is zero: non-winners, and winners the rule stops


def test_conv_backward_input_other_padding():
    rng = np.random.default_rng(7)
    x, w = f64(rng, 2, 8, 6, 3), f64(rng, 5, 5, 3, 4)
    dy = f64(rng, 2, 6, 4, 4)  # pad 1 with a 5x5 kernel: H' = 8 + 2 - 5 + 1 = 6
    want, _, _ = conv2d_backward_naive(x, w, dy, stride=1, pad=1)
    assert relative_error(conv2d_backward_input(dy.astype(np.float32), w.astype(np.float32), pad=1), want) < FAST


def test_transpose_kernel_flips_and_swaps():
    w = np.arange(3 * 3 * 2 * 5, dtype=np.float32).reshape(3, 3, 2, 5)  # (KH, KW, C, K)
    wt = transpose_kernel(w)
    assert wt.shape == (3, 3, 5, 2)
    assert wt[0, 2, 4, 1] == w[2, 0, 1, 4] and wt[1, 1, 3, 0] == w[1, 1, 0, 3]


@pytest.mark.parametrize("N, H, W, C, K, KH, KW, stride, pad", CONVS)
def test_conv_backward_weights_equals_naive(N, H, W, C, K, KH, KW, stride, pad):
    rng = np.random.default_rng(K * 11 + H)
    x, w = f64(rng, N, H, W, C), f64(rng, KH, KW, C, K)
    dy = f64(rng, *conv2d_naive(x, w, np.zeros(K), stride, pad).shape)
    _, dw_want, db_want = conv2d_backward_naive(x, w, dy, stride, pad)
    dw, db = conv2d_backward_weights(x.astype(np.float32), dy.astype(np.float32), KH, KW, stride, pad)
    assert dw.shape == w.shape and db.shape == (K,)
    assert relative_error(dw, dw_want) < FAST and relative_error(db, db_want) < FAST


# ---- ReLU ----------------------------------------------------------------------------------------


def test_relu_rules_on_a_worked_example():
    y = np.array([0.0, 0.0, 2.0, 3.0], dtype=np.float32)  # the ReLU's output: x <= 0, x <= 0, x > 0, x > 0
    dy = np.array([-1.0, 4.0, -5.0, 6.0], dtype=np.float32)
    want = {"plain": [0, 0, -5, 6], "guided": [0, 0, 0, 6], "deconvnet": [0, 4, 0, 6]}
    for rule in RELU_RULES:
        np.testing.assert_array_equal(relu_backward(y, dy, rule), want[rule], err_msg=rule)
        np.testing.assert_array_equal(relu_backward_naive(y, dy, rule), want[rule], err_msg=rule)


@pytest.mark.parametrize("rule", RELU_RULES)
def test_relu_backward_equals_naive(rule):
    rng = np.random.default_rng(3)
    y = np.maximum(rand(rng, 2, 5, 7, 3), 0)  # (N, H, W, C), about half zeros
    dy = rand(rng, 2, 5, 7, 3)
    np.testing.assert_array_equal(relu_backward(y, dy, rule), relu_backward_naive(y, dy, rule))


def test_plain_relu_rule_is_the_derivative():
    rng = np.random.default_rng(4)
    x = f64(rng, 3, 4, 5)
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink at 0
    dy = f64(rng, 3, 4, 5)
    numeric = numerical_gradient(lambda v: np.sum(dy * np.maximum(v, 0)), x)
    assert relative_error(relu_backward_naive(np.maximum(x, 0), dy), numeric) < NUMERIC


def test_unknown_relu_rule_is_refused():
    with pytest.raises(ValueError, match="unknown ReLU rule"):
        relu_backward(np.zeros(3, np.float32), np.zeros(3, np.float32), "leaky")


# ---- max-pool ------------------------------------------------------------------------------------


def test_pool_ties_go_to_the_first_maximum_row_major():
    x = np.zeros((1, 4, 6, 2), dtype=np.float32)  # every window a tie of four zeros
    x[0, 2, 2:4, 1] = 5.0  # window (1, 1) of channel 1: a tie between its top row's two elements
    x[0, 3, 4, 0], x[0, 2, 5, 0] = 7.0, 7.0  # window (1, 2) of channel 0: (1, 0) and (0, 1) tie
    dy = np.arange(1, 1 + 2 * 3 * 2, dtype=np.float32).reshape(1, 2, 3, 2)  # (N, H', W', C)
    dx = max_pool2d_backward(x, dy)
    idx = max_pool2d_argmax_naive(x)
    assert idx[0, 0, 0, 0] == 0 and idx[0, 1, 1, 1] == 0 and idx[0, 1, 2, 0] == 1  # di * 2 + dj
    assert dx[0, 0, 0, 0] == dy[0, 0, 0, 0] and dx[0, 0:2, 0:2, 0].sum() == dy[0, 0, 0, 0]  # top-left wins
    assert dx[0, 2, 2, 1] == dy[0, 1, 1, 1] and dx[0, 2, 3, 1] == 0
    assert dx[0, 2, 5, 0] == dy[0, 1, 2, 0] and dx[0, 3, 4, 0] == 0  # row-major: (0, 1) before (1, 0)
    np.testing.assert_array_equal(dx, max_pool2d_backward_naive(x, dy))


def test_pool_tie_rule_is_tensorflows(tf):
    rng = np.random.default_rng(5)
    x = rng.integers(0, 3, (2, 6, 5, 3)).astype(np.float32)  # small integers: many ties, odd width
    dy = rand(rng, 2, 3, 2, 3)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = tf.nn.max_pool2d(xt, 2, 2, "VALID")
    theirs = tape.gradient(y, xt, output_gradients=tf.constant(dy)).numpy()
    np.testing.assert_array_equal(max_pool2d_backward(x, dy), theirs)


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (1, 8, 3, 4), (3, 2, 2, 1)])
def test_pool_backward_equals_naive_and_central_differences(shape):
    rng = np.random.default_rng(sum(shape))
    x = f64(rng, *shape)  # continuous values: no ties, no kinks within eps
    dy = f64(rng, *max_pool2d_naive(x).shape)
    want = max_pool2d_backward_naive(x, dy)
    assert relative_error(want, numerical_gradient(lambda v: np.sum(dy * max_pool2d_naive(v)), x)) < NUMERIC
    np.testing.assert_array_equal(max_pool2d_backward(x.astype(np.float32), dy.astype(np.float32)), want)


@pytest.mark.parametrize("shape, size, stride", [((2, 5, 7, 3), 2, 2), ((1, 8, 9, 2), 2, 3), ((3, 7, 4, 1), 3, 3)])
def test_pool_backward_kernel_writes_every_element(shape, size, stride):
    """The fast kernel zeroes dx itself, in parallel (no np.zeros pass first): handed a dx full of NaN,
    it leaves none, including the rows no window covers (odd sizes, stride > size)."""
    from minivgg.layers.pool import _max_pool2d_backward

    rng = np.random.default_rng(sum(shape) + stride)
    x = rand(rng, *shape)
    dy = rand(rng, *max_pool2d_naive(x, size, stride).shape)
    dx = np.full_like(x, np.nan)
    _max_pool2d_backward(x, dy, size, stride, -1, dx)
    np.testing.assert_array_equal(dx, max_pool2d_backward_naive(x, dy, size, stride))
    assert dx.shape == x.shape


def test_pool_backward_agrees_with_the_forward_choice():
    rng = np.random.default_rng(6)
    x = np.maximum(rand(rng, 2, 9, 6, 5), 0)  # ReLU output: many windows of zeros
    y = max_pool2d(x)
    dx = max_pool2d_backward(x, np.ones_like(y))
    routed = x * (dx > 0)  # one element per window, the one the forward pass took
    np.testing.assert_array_equal(max_pool2d(routed), y)
    assert (dx > 0).sum() == y.size


def test_overlapping_windows_add_up_in_the_naive_twin():
    rng = np.random.default_rng(8)
    x = f64(rng, 1, 5, 6, 2)
    dy = f64(rng, *max_pool2d_naive(x, 3, 1).shape)
    numeric = numerical_gradient(lambda v: np.sum(dy * max_pool2d_naive(v, 3, 1)), x)
    assert relative_error(max_pool2d_backward_naive(x, dy, 3, 1), numeric) < NUMERIC


# ---- dense and softmax ---------------------------------------------------------------------------


@pytest.mark.parametrize("N, D, U", [(3, 7, 5), (1, 4, 9), (2, 1, 1)])
def test_dense_backward(N, D, U):
    rng = np.random.default_rng(N * D * U)
    x, w, b, dy = f64(rng, N, D), f64(rng, D, U), f64(rng, U), f64(rng, N, U)
    dx, dw, db = dense_backward_naive(x, w, dy)
    loss = lambda x, w, b: np.sum(dy * dense_naive(x, w, b))  # noqa: E731
    assert relative_error(dx, numerical_gradient(lambda v: loss(v, w, b), x)) < NUMERIC
    assert relative_error(dw, numerical_gradient(lambda v: loss(x, v, b), w)) < NUMERIC
    assert relative_error(db, numerical_gradient(lambda v: loss(x, w, v), b)) < NUMERIC
    fast = dense_backward(x.astype(np.float32), w.astype(np.float32), dy.astype(np.float32))
    for ours, want in zip(fast, (dx, dw, db)):
        assert ours.dtype == np.float32 and relative_error(ours, want) < FAST
    only_dx = dense_backward(x.astype(np.float32), w.astype(np.float32), dy.astype(np.float32), need_weights=False)
    assert only_dx[1] is None and relative_error(only_dx[0], dx) < FAST


@pytest.mark.parametrize("N, U", [(3, 7), (2, 1000), (1, 2)])
def test_softmax_backward_is_the_jacobian_vector_product(N, U):
    rng = np.random.default_rng(U)
    z, dy = 3 * f64(rng, N, U), f64(rng, N, U)
    p = softmax_naive(z)
    want = softmax_backward_naive(p, dy)
    if U <= 7:  # the numerical gradient costs 2*U softmaxes per image
        assert relative_error(want, numerical_gradient(lambda v: np.sum(dy * softmax_naive(v)), z)) < NUMERIC
    assert relative_error(softmax_backward(p.astype(np.float32), dy.astype(np.float32)), want) < FAST


# ---- the model -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    """Random He-normal VGG16 without the top, and a lopsided batch of 2 at 40x56."""
    x = np.random.default_rng(9).uniform(-100, 100, (2, 40, 56, 3)).astype(np.float32)
    return VGG16(weights=None, include_top=False), x


def test_gradients_see_exactly_the_activations(small):
    model, x = small
    seeds = {name: np.ones(a.shape, np.float32) for name, a in model.activations(x).items()}
    _, outs = model.gradients(x, seeds, outputs=True)
    for name, a in model.activations(x).items():
        np.testing.assert_array_equal(outs[name], a, err_msg=name)  # the same forward pass, bit for bit


def test_gradients_chain_through_the_layer_kernels(small):
    """Each layer's gradient is the one above pushed through that layer's backward kernel."""
    model, x = small
    acts = model.activations(x)
    seeds = channel_mean(model, x, "block3_conv2", [5, 200])
    g = model.gradients(x, seeds, weights=True)
    assert list(g)[:9] == ["input", "block1_conv1", "block1_conv2", "block1_pool", "block2_conv1", "block2_conv2",
                           "block2_pool", "block3_conv1", "block3_conv2"]
    np.testing.assert_array_equal(g["block3_conv2"], seeds["block3_conv2"])
    np.testing.assert_array_equal(g["block2_conv2"], max_pool2d_backward(acts["block2_conv2"], g["block2_pool"]))
    # conv: mask by the ReLU, then the naive backward convolution (Winograd in the model: rounding)
    dz = relu_backward_naive(acts["block3_conv1"], g["block3_conv1"].astype(np.float64))
    dx, dw, db = conv2d_backward_naive(acts["block2_pool"].astype(np.float64), model.params["block3_conv1"][0], dz, 1, 1)
    assert relative_error(g["block2_pool"], dx) < WINOGRAD
    assert relative_error(g["block3_conv1/kernel"], dw) < FAST and relative_error(g["block3_conv1/bias"], db) < FAST
    assert g["block1_conv1/kernel"].shape == (3, 3, 3, 64) and "block3_conv3/kernel" not in g


@pytest.mark.parametrize("rule", RELU_RULES)
def test_fused_relu_rules_change_nothing(small, rule):
    """With layers=[] (no layer's own gradient kept) each conv fuses the ReLU rule of the conv below
    into its backward convolution; with every layer kept it cannot. Same input gradient, bit for bit."""
    model, x = small
    seeds = channel_mean(model, x, "block3_conv3", 7)
    fused = model.gradients(x, seeds, relu=rule, layers=[])["input"]
    np.testing.assert_array_equal(fused, model.gradients(x, seeds, relu=rule)["input"])


def test_seeds_add_up_and_layers_filter(small):
    model, x = small
    a, b = channel_mean(model, x, "block2_conv1", 3), channel_mean(model, x, "block4_pool", 9)
    both = model.gradients(x, {**a, **b}, layers=["block1_pool"])
    assert set(both) == {"input", "block1_pool"}
    ga, gb = model.gradients(x, a), model.gradients(x, b)
    assert relative_error(both["input"], ga["input"] + gb["input"]) < FAST


def test_callable_seed_is_given_the_activation(small):
    model, x = small
    act = model.activations(x, ["block2_pool"])["block2_pool"]
    by_array = model.gradients(x, {"block2_pool": 2 * act})
    by_function = model.gradients(x, {"block2_pool": lambda a: 2 * a})  # L = sum(a^2): "deep dream"
    np.testing.assert_array_equal(by_function["input"], by_array["input"])


def test_methods_agree(small):
    _, x = small
    seeds = None
    results = {}
    for method in ("im2col", "winograd", "auto"):
        model = VGG16(weights=None, include_top=False, method=method)
        seeds = seeds or channel_mean(model, x, "block3_pool", 17)
        results[method] = model.gradients(x, seeds)["input"]
    for method in ("winograd", "auto"):
        assert relative_error(results[method], results["im2col"]) < 1e-4, method  # float32, 8 conv layers


@pytest.mark.parametrize("rule", ["guided", "deconvnet"])
def test_other_rules_run_and_differ(small, rule):
    model, x = small
    seeds = channel_mean(model, x, "block2_conv2", 1)
    plain, other = model.gradients(x, seeds)["input"], model.gradients(x, seeds, relu=rule)["input"]
    assert other.shape == plain.shape and relative_error(other, plain) > 0.05


def test_class_score_and_logits():
    model = VGG16(weights=None, include_top=True)
    x = np.random.default_rng(10).uniform(-3, 3, (2, 224, 224, 3)).astype(np.float32)
    seeds = class_score(model, x, [1, 999])
    assert seeds["predictions"].shape == (2, 1000) and seeds["predictions"][1, 999] == 1
    g, outs = model.gradients(x, seeds, logits=True, layers=["fc2"], outputs=True)
    with shared_gemms():  # the BLAS split gradients runs its forward pass under: the same sums, the same bits
        logits = dict(model.forward(x, logits=True))["predictions"]
    np.testing.assert_array_equal(outs["predictions"], logits)
    np.testing.assert_allclose(g["fc2"], model.params["predictions"][0][:, [1, 999]].T, rtol=1e-6)  # d logit / d fc2
    p = model(x)
    gp = model.gradients(x, seeds, layers=["fc2"])  # through the softmax: p_k (w_k - sum_j p_j w_j)
    w = model.params["predictions"][0]
    want = np.stack([p[n, k] * (w[:, k] - w @ p[n]) for n, k in enumerate([1, 999])])
    assert relative_error(gp["fc2"], want) < 1e-4


@pytest.mark.parametrize("seeds, message", [
    ({"block9_conv1": 0}, "no layer 'block9_conv1'"),
    ({"block1_pool": np.ones((2, 20, 28, 63))}, "shape"),
    ({"block1_pool": np.full((2, 20, 28, 64), np.nan)}, "NaN"),
    ({"block1_pool": lambda a: a[:1]}, "shape"),
    ({}, "non-empty"),
])
def test_bad_seeds_are_one_line_errors(small, seeds, message):
    model, x = small
    with pytest.raises(MinivggError, match=message) as e:
        model.gradients(x, seeds)
    assert "\n" not in str(e.value)


def test_bad_options_are_one_line_errors(small):
    model, x = small
    seeds = channel_mean(model, x, "block1_pool", 0)
    with pytest.raises(MinivggError, match="ReLU rule"):
        model.gradients(x, seeds, relu="leaky")
    with pytest.raises(MinivggError, match="below the highest seed"):
        model.gradients(x, seeds, layers=["block2_conv1"])
    with pytest.raises(MinivggError, match="channels 0 to 63"):
        channel_mean(model, x, "block1_pool", 64)
    with pytest.raises(MinivggError, match="not a conv or pool layer"):
        channel_mean(model, x, "fc1", 0)


def test_backward_kernels_kept_only_when_the_model_keeps_its_transforms(small):
    _, x = small
    kept = VGG16(weights=None, include_top=False)
    lean = VGG16(weights=None, include_top=False, keep_transformed=False)  # the same seeded random weights
    seeds = channel_mean(kept, x, "block3_pool", 2)
    np.testing.assert_array_equal(lean.gradients(x, seeds)["input"], kept.gradients(x, seeds)["input"])
    assert lean._made == {} and {kind for _, kind in kept._made} <= {"dx", "small dx", "small"}
    assert {name for name, kind in kept._made if kind != "small"} == {  # each layer's flipped kernel, either tile
        "block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2", "block3_conv1", "block3_conv2", "block3_conv3"}
