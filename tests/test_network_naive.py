"""The network's naive twins (``network/naive.py``) against the fast passes (``model.forward``,
``model.gradients``): every layer's output, the input gradient, every layer's and every weight's gradient.

The naive passes run in float64 with plain loops; the fast ones in float32 with im2col, Winograd,
fused ReLU rules and cached kernels. So the two differ by the fast pass's float32 rounding alone:
a conv output sums up to 3*3*512 = 4608 products, each rounded at ~6e-8 relative, a random-walk
error of ~sqrt(4608) * 6e-8 ~ 4e-6 of the largest value per layer, and a layer passes its input's
error on (measured here: at most 5e-6 forward, 1.3e-5 for the gradients, through 13 conv layers).
TOL = 1e-4 leaves a factor 7 over that; a wrong rule (a missed ReLU mask, a pool routing to the wrong
element, a missing bias) is an error of order 1.

Decisions. Rounding can also flip a decision: a pre-activation within rounding of 0 is a ReLU "on" in
one pass and "off" in the other (about one unit in 400 K at these sizes, at half the seeds tried), and
then that unit's gradient differs by its whole size. So the backward comparisons differentiate
through the fast pass's own outputs (``gradients_naive(..., outputs=...)``: both then take the same
decisions, and the chain rule is what is compared), and the one end-to-end comparison first asserts
that the two forward passes took the same decisions at its seed.

Sizes: the naive conv is one tensordot per output pixel: VGG16 at 32x48, batch 2, takes ~1 s forward
and ~3 s backward here; the heads sit on block 1 only (a table of rows built by hand), where the
global pools see 16x24 maps.
"""
import copy

import numpy as np
import pytest

from minivgg.jit import shared_gemms
from minivgg.layers.pool import max_pool2d_argmax_naive
from minivgg.network.backprop import channel_mean, class_score
from minivgg.network.naive import forward_naive, gradients_naive
from minivgg.network.table import Row, shapes
from minivgg.network.vgg import VGG16

TOL = 1e-4  # float32 against float64, see above


def relative_error(ours, theirs):
    """max|ours - theirs| / max|theirs|, after checking the shapes agree."""
    assert np.shape(ours) == np.shape(theirs), f"shape ours {np.shape(ours)} != naive {np.shape(theirs)}"
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-30))


def assert_all_close(fast, naive, what):
    assert list(fast) == list(naive), f"{what}: keys ours {list(fast)} != naive {list(naive)}"
    errors = {name: relative_error(fast[name], naive[name]) for name in naive}
    worst = max(errors, key=errors.get)
    assert errors[worst] < TOL, f"{what}: {worst} differs by {errors[worst]:.3g} (max|ours - naive| / max|naive|)"


def seeded_biases(model, seed):
    """The model with non-zero biases (zero biases would hide a dropped bias)."""
    rng = np.random.default_rng(seed)
    return model.with_params({name: (k, rng.uniform(-0.1, 0.1, b.shape).astype(np.float32))
                              for name, (k, b) in model.params.items()})


def with_head(model, base, head, height, width, seed):
    """A copy of ``model`` whose table is its first ``base`` rows and then ``head`` (rows built by hand, as
    a fine-tuned network's saved config gives them), with seeded weights for the head's dense rows."""
    rng = np.random.default_rng(seed)
    new = copy.copy(model)
    new.layers = tuple(model.layers[:base]) + tuple(head)
    new.params = {name: p for name, p in model.params.items() if name in {row.name for row in new.layers}}
    for row, _, params in shapes(new.layers, height, width):
        if row.kind == "dense":
            (d, u), _ = params
            new.params[row.name] = ((rng.standard_normal((d, u)) / np.sqrt(d)).astype(np.float32),
                                    rng.uniform(-0.1, 0.1, u).astype(np.float32))
    return new


@pytest.fixture(scope="module")
def vgg16():
    """Random VGG16 without the top (non-zero biases), and a lopsided batch of 2 at 32x48.

    Inputs of +-2 (a preprocessed image is +-120; the ReLU layers scale along) keep the heads' logits
    of order 1: a saturated softmax or sigmoid has gradients that float32 rounds to 0."""
    x = np.random.default_rng(0).uniform(-2, 2, (2, 32, 48, 3)).astype(np.float32)
    return seeded_biases(VGG16(weights=None, include_top=False), 0), x


def fast_forward(model, x, logits=False):
    with shared_gemms():  # as model.activations runs it
        return {name: a for name, a in model.forward(x, logits=logits)}


@pytest.fixture(scope="module")
def naive_forward(vgg16):
    model, x = vgg16
    return forward_naive(model, x)


def test_forward_naive_equals_fast_at_every_layer(vgg16, naive_forward):
    model, x = vgg16
    naive = naive_forward
    assert [name for name, _ in naive] == [row.name for row in model.layers]
    assert naive[-1][1].shape == (2, 1, 1, 512) and naive[-1][1].dtype == np.float64
    assert_all_close(fast_forward(model, x), dict(naive), "forward")


def test_gradients_naive_equals_fast(vgg16):
    """Three seeds (they add up on the way down), every layer's gradient and every weight's; and with
    layers=[] (no layer's own gradient kept), where the fast pass fuses each ReLU rule it can into the
    kernel above it (not block3_conv2's: that layer is seeded, so dL/d(its output) is needed)."""
    model, x = vgg16
    seeds = {**channel_mean(model, x, "block5_conv3", [3, 300]), **channel_mean(model, x, "block3_conv2", 9),
             **channel_mean(model, x, "block2_pool", 7)}
    naive = gradients_naive(model, x, seeds, weights=True, outputs=fast_forward(model, x))
    fast = model.gradients(x, seeds, weights=True)
    assert naive["input"].shape == x.shape and "block1_conv1/kernel" in naive and "block5_pool" not in naive
    assert_all_close(fast, naive, "gradients")
    fused = model.gradients(x, seeds, weights=True, layers=[])
    assert_all_close(fused, {k: v for k, v in naive.items() if k == "input" or "/" in k}, "gradients, fused")


def decisions(model, outputs):
    """Every ReLU's on/off and every pool window's winner, from a forward pass's outputs."""
    found, below = [], None
    for row in model.layers:
        if row.kind == "conv":
            found.append(outputs[row.name] > 0)
        elif row.kind == "pool":
            found.append(max_pool2d_argmax_naive(outputs[below]))
        below = row.name
    return found


def test_gradients_naive_equal_fast_end_to_end(vgg16, naive_forward):
    """The naive twins alone, forward and backward, against model.gradients."""
    model, x = vgg16
    naive_forward = dict(naive_forward)  # forward_naive's outputs, as gradients_naive would make them
    same = [np.array_equal(a, b) for a, b in zip(decisions(model, fast_forward(model, x)), decisions(model, naive_forward))]
    assert all(same), "float32 and float64 forward passes take another ReLU/pool decision at this seed: pick another"
    seeds = channel_mean(model, x, "block5_pool", [11, 400])
    naive = gradients_naive(model, x, seeds, weights=True, outputs=naive_forward)
    fast = model.gradients(x, seeds, weights=True)
    assert_all_close(fast, naive, "end to end")


HEADS = {  # fine-tuned heads on block 1 (3 rows): the row kinds and activations a saved config gives
    "avg-softmax": (Row("gap", "global_avg_pool"), Row("fc", "dense", 12, "relu"), Row("drop", "dropout"),
                    Row("out", "dense", 5, "softmax")),
    "max-sigmoid": (Row("gmp", "global_max_pool"), Row("out", "dense", 4, "sigmoid")),
    "flatten-linear": (Row("flat", "flatten"), Row("fc", "dense", 6, "relu"), Row("out", "dense", 3, "linear")),
    "avg-relu": (Row("gap", "global_avg_pool"), Row("out", "dense", 3, "relu")),  # a ReLU last: logits keep it
}


@pytest.mark.parametrize("head, logits", [("avg-softmax", False), ("avg-softmax", True), ("max-sigmoid", False),
                                          ("flatten-linear", True), ("avg-relu", True)])
def test_heads_naive_equal_fast(vgg16, head, logits):
    model, x = vgg16
    model = with_head(model, 3, HEADS[head], *x.shape[1:3], seed=len(head))
    naive = forward_naive(model, x, logits=logits)
    fast = fast_forward(model, x, logits=logits)
    assert_all_close(fast, dict(naive), f"{head} forward")
    seeds = class_score(model, x, [1, 2])
    assert_all_close(model.gradients(x, seeds, logits=logits, weights=True),
                     gradients_naive(model, x, seeds, logits=logits, weights=True, outputs=fast), f"{head} gradients")


@pytest.mark.parametrize("rule", ["guided", "deconvnet"])
def test_relu_rules_naive_equal_fast(vgg16, rule):
    """The visualisation rules, which the fast pass fuses into the kernel above each ReLU."""
    model, x = vgg16
    model = with_head(model, 3, HEADS["avg-softmax"], *x.shape[1:3], seed=3)
    seeds = class_score(model, x, 4)
    fast = model.gradients(x, seeds, relu=rule, layers=[])["input"]  # layers=[]: every ReLU rule fused
    outputs = fast_forward(model, x)
    naive = gradients_naive(model, x, seeds, relu=rule, outputs=outputs)["input"]
    assert relative_error(fast, naive) < TOL
    plain = gradients_naive(model, x, seeds, outputs=outputs)["input"]
    assert relative_error(plain, naive) > 0.05  # the rule made a difference
