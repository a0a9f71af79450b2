"""The learning step's parts against their twins: the loss and its gradient (naive twin, central
differences), SGD and Adam (element-by-element twins), with_head (Keras' names and initialiser), and
what a step runs and changes (frozen layers untouched, no backward below the lowest trainable layer)."""
import json
import zipfile

import h5py
import numpy as np
import pytest

from conftest import rand
from minivgg import VGG, MinivggError
from minivgg.network import backprop
from minivgg.train import SGD, Adam, cross_entropy, step, trainable_from, with_head
from minivgg.train.loss import accuracy, cross_entropy_naive
from minivgg.train.optimizers import adam_update_naive, sgd_update_naive
from minivgg.train.step import DropoutMasks

SIZE = (32, 48)


def test_cross_entropy_matches_its_naive_twin():
    rng = np.random.default_rng(0)
    z, y = rand(rng, 5, 7) * 3, np.array([0, 6, 3, 3, 1])  # N != U
    loss, dz = cross_entropy(z, y)
    loss_n, dz_n = cross_entropy_naive(z, y)
    # the twin sums in float64 in another order; dz is rounded to float32 on both sides
    assert abs(loss - loss_n) <= 1e-6 * abs(loss_n)
    np.testing.assert_allclose(dz, dz_n, rtol=1e-5, atol=1e-7)
    assert np.allclose(dz.sum(axis=1), 0, atol=1e-6)  # softmax rows sum to 1, one-hot rows too


def test_cross_entropy_gradient_is_the_central_difference():
    rng = np.random.default_rng(1)
    z, y = (rand(rng, 3, 4) * 2).astype(np.float64), np.array([2, 0, 3])
    _, dz = cross_entropy(z, y)
    eps, num = 1e-2, np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        hi, lo = z.copy(), z.copy()
        hi[idx] += eps
        lo[idx] -= eps
        num[idx] = (cross_entropy(hi, y)[0] - cross_entropy(lo, y)[0]) / (2 * eps)
    # error of the central difference O(eps^2 * L''') ~ 1e-5 here, z rounded to float32 inside: 1e-3 of the max
    assert np.abs(num - dz).max() <= 1e-3 * np.abs(dz).max()


def test_cross_entropy_is_stable_for_large_scores():
    z = np.array([[1e4, 0.0, -1e4], [5e3, 5e3, 0.0]], np.float32)
    loss, dz = cross_entropy(z, np.array([1, 0]))
    assert np.isfinite(loss) and np.isfinite(dz).all()
    assert loss == pytest.approx((1e4 + np.log(2)) / 2, rel=1e-6)  # -log p: 1e4 for the first, log 2 for the second
    with pytest.raises(MinivggError):
        cross_entropy(z, np.array([3, 0]))


def test_accuracy_top_k():
    z = np.array([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05]])
    assert accuracy(z, np.array([2, 0])) == 0.5 and accuracy(z, np.array([2, 0]), k=2) == 1.0


@pytest.mark.parametrize("momentum, nesterov, wd", [(0.0, False, None), (0.9, False, None), (0.9, True, 0.01)])
def test_sgd_matches_its_naive_twin(momentum, nesterov, wd):
    rng = np.random.default_rng(2)
    w0 = rand(rng, 3, 5, 2)
    w, m = w0.copy(), np.zeros_like(w0)
    opt = SGD(learning_rate=0.1, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    variables = {"a/kernel": w0.copy()}
    for t in range(3):
        g = rand(rng, 3, 5, 2)
        opt.update(variables, {"a/kernel": g})
        w, m = sgd_update_naive(w, g, m, 0.1, momentum, nesterov, wd)
    # float32 against float64 over three steps: 1e-5 of the weights' scale
    np.testing.assert_allclose(variables["a/kernel"], w, rtol=1e-5, atol=1e-6)
    assert not np.allclose(variables["a/kernel"], w0)


def test_adam_matches_its_naive_twin_and_keras_epsilon_placement():
    rng = np.random.default_rng(3)
    w0 = rand(rng, 4, 3)
    w, m, v = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    opt = Adam(learning_rate=0.01, weight_decay=0.004)
    variables = {"a/bias": w0.copy()}
    for t in range(1, 4):
        g = rand(rng, 4, 3) * 10.0 ** -t  # shrinking gradients: epsilon's placement shows up in later steps
        opt.update(variables, {"a/bias": g})
        w, m, v = adam_update_naive(w, g, m, v, t, 0.01, weight_decay=0.004)
    np.testing.assert_allclose(variables["a/bias"], w, rtol=1e-5, atol=1e-7)  # float32 vs float64
    assert opt.iterations == 3
    state = opt.state()
    again = Adam(learning_rate=0.01, weight_decay=0.004)
    again.load_state(state)
    a, b = {"a/bias": w0.copy()}, {"a/bias": w0.copy()}
    g = rand(rng, 4, 3)
    opt.update(a, {"a/bias": g})
    again.update(b, {"a/bias": g})
    assert np.array_equal(a["a/bias"], b["a/bias"])  # a restored optimiser steps exactly as the original


@pytest.fixture(scope="module")
def base():
    return VGG(weights=None, include_top=False)


def test_with_head_names_and_glorot_uniform(base):
    model = with_head(base, ["x", "y", "z"], hidden=(16, 8), dropout=0.25, size=SIZE)
    assert [r.name for r in model.top] == ["flatten", "dense", "dropout", "dense_1", "dropout_1", "dense_2"]
    assert model.input_size == SIZE and model.classes == ["x", "y", "z"]
    kernel, bias = model.params["dense"]
    assert kernel.shape == (1 * 1 * 512, 16) and not bias.any()
    limit = np.sqrt(6 / (512 + 16))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.95 * limit
    assert kernel.std() == pytest.approx(limit / np.sqrt(3), rel=0.05)  # U(-l, l) has std l / sqrt(3); 8192 draws
    gap = with_head(base, 4, head="gap", hidden=(), dropout=0.0)
    assert [r.name for r in gap.top] == ["global_average_pooling2d", "dense"] and gap.input_size is None
    assert base.params["block1_conv1"][0] is model.params["block1_conv1"][0]  # the base is shared, not copied
    with pytest.raises(MinivggError, match="two classes"):
        with_head(base, 1)


def count_calls(monkeypatch, names):
    calls = {n: 0 for n in names}
    for n in names:
        f = getattr(backprop, n)

        def wrapped(*a, _f=f, _n=n, **k):
            calls[_n] += 1
            return _f(*a, **k)
        monkeypatch.setattr(backprop, n, wrapped)
    return calls


def test_a_step_trains_only_the_trainable_layers_and_runs_no_backward_below(base, monkeypatch):
    model = with_head(base, 3, hidden=(16,), dropout=0.5, size=SIZE)
    rng = np.random.default_rng(4)
    x, y = rand(rng, 2, *SIZE, 3) * 30, np.array([1, 2])
    frozen = {n: [a.copy() for a in model.params[n]] for n in model.params}
    calls = count_calls(monkeypatch, ["conv3x3_winograd_weights", "conv2d_backward_input", "max_pool2d_backward"])
    step(model, x, y, SGD(0.01))
    assert calls == {"conv3x3_winograd_weights": 0, "conv2d_backward_input": 0, "max_pool2d_backward": 0}
    for name in model.params:
        changed = any(not np.array_equal(a, b) for a, b in zip(model.params[name], frozen[name]))
        assert changed == (name in ("dense", "dense_1")), name
    block5 = trainable_from(model, "block5_conv1")
    assert block5 == ["block5_conv1", "block5_conv2", "block5_conv3", "dense", "dense_1"]
    step(model, x, y, SGD(0.01), trainable=block5)
    # three weight gradients (by Winograd, as the forward pass); dL/d(input) for conv3 and conv2 only:
    # block5_conv1's input needs none
    assert calls == {"conv3x3_winograd_weights": 3, "conv2d_backward_input": 2, "max_pool2d_backward": 1}
    assert np.array_equal(model.params["block4_conv3"][0], frozen["block4_conv3"][0])
    assert np.array_equal(base.params["block5_conv1"][0], frozen["block5_conv1"][0])  # the base model is untouched


def test_steps_lower_the_loss_and_dropout_is_seeded(base):
    rng = np.random.default_rng(6)
    x, y = rand(rng, 4, *SIZE, 3) * 30, np.array([0, 1, 2, 1])
    losses = []
    for seed in (0, 0):
        model = with_head(base, 3, hidden=(32,), dropout=0.5, size=SIZE)
        opt = Adam(1e-3)
        losses.append([step(model, x, y, opt, seed=seed) for _ in range(8)])
    assert losses[0] == losses[1]  # same seed, same masks, same steps
    assert losses[0][-1] < losses[0][0]
    model = with_head(base, 3, hidden=(32,), dropout=0.5, size=SIZE)
    assert step(model, x, y, Adam(1e-3), seed=1) != losses[0][0]  # other masks


def test_save_refuses_unknown_formats_and_unwritable_folders_in_one_line(base, tmp_path):
    model = with_head(base, 2, head="gap", hidden=(), dropout=0.0)
    for path, match in ((tmp_path / "m.pt", "name it .keras"), (tmp_path / "missing" / "m.keras", "cannot write")):
        with pytest.raises(MinivggError, match=match) as e:
            model.save(path)
        assert "\n" not in str(e.value)


def test_a_failed_save_leaves_the_old_file_as_it_was(base, tmp_path, monkeypatch):
    from minivgg.files import keras_write

    model = with_head(base, 2, head="gap", hidden=(), dropout=0.0)
    path = tmp_path / "m.keras"
    model.save(path)
    old = path.read_bytes()

    def broken(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(keras_write, "_weights_keras3", broken)
    with pytest.raises(OSError):
        model.save(path)
    assert path.read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]


def test_saved_files_read_back_in_minivgg_with_their_head(base, tmp_path):
    rng = np.random.default_rng(8)
    x = rand(rng, 2, *SIZE, 3) * 30
    for head in ("flatten", "gap"):
        model = with_head(base, ["a", "b", "c"], head=head, hidden=(8,), size=SIZE)
        for ext in ("keras", "h5"):
            back = VGG(weights=model.save(tmp_path / f"{head}.{ext}"))
            assert back.layers == model.layers and back.input_size == model.input_size
            assert np.array_equal(back(x), model(x))


def saved_rates(path):
    """{Dropout layer: rate} as a saved file's config says, read without minivgg."""
    path = str(path)
    if path.endswith(".keras"):
        with zipfile.ZipFile(path) as z:
            cfg = json.loads(z.read("config.json"))
    else:
        with h5py.File(path, "r") as f:
            cfg = json.loads(f.attrs["model_config"])
    return {layer["config"]["name"]: layer["config"]["rate"] for layer in cfg["config"]["layers"]
            if layer["class_name"] == "Dropout"}


def dropped_share(model, x, layer, rate, seed=0):
    """A training-mode forward pass with step's masks: the share of ``layer``'s live inputs (not zero
    already: ReLU outputs) that it zeroes; the kept ones must come out scaled by 1 / (1 - rate)."""
    names = [row.name for row in model.layers]
    below = names[names.index(layer) - 1]
    acts = {name: a for name, a in model.forward(x, dropout=DropoutMasks(model, seed))}
    a_in, a_out = acts[below], acts[layer]  # (N, D) each
    live = a_in != 0
    kept = live & (a_out != 0)
    # a float32 product against float32 1/(1-rate): a few ulps
    np.testing.assert_allclose(a_out[kept], a_in[kept] / (1 - rate), rtol=1e-6)
    return float(1 - kept.sum() / live.sum())


def test_dropout_rates_travel_through_saved_files(base, tmp_path):
    rng = np.random.default_rng(9)
    x, y = rand(rng, 2, *SIZE, 3) * 30, np.array([0, 2])
    model = with_head(base, 3, hidden=(1024,), dropout=0.3, size=SIZE)
    assert model.dropout == {"dropout": 0.3}
    for ext in ("keras", "h5"):
        path = model.save(tmp_path / f"m.{ext}")
        assert saved_rates(path) == {"dropout": 0.3}
        back = VGG(weights=path)
        assert back.dropout == {"dropout": 0.3}  # was no attribute at all: 0.5 in training
        again = back.save(tmp_path / f"again.{ext}")
        assert saved_rates(again) == {"dropout": 0.3} and VGG(weights=again).dropout == {"dropout": 0.3}
        notop = VGG(weights=path, include_top=False)  # what minivgg-train's --weights reads: a new head follows
        assert notop.dropout == {}
        assert with_head(notop, 3, hidden=(4,), dropout=0.6, size=SIZE).dropout == {"dropout": 0.6}  # --dropout
        # ~1000 live units of 2 x 1024: the share dropped has std sqrt(0.3 * 0.7 / 1000) ~ 0.015, so
        # +-0.05 is over 3 std, and 0.5 (the old assumption) is 13 std outside
        assert abs(dropped_share(back, x, "dropout", 0.3) - 0.3) < 0.05
        # the step itself: the same weights, seed and masks as the model it was saved from, the same loss
        assert step(back, x, y, SGD(0.01), seed=3) == step(with_head(base, 3, hidden=(1024,), dropout=0.3, size=SIZE),
                                                           x, y, SGD(0.01), seed=3)
