"""minivgg.features (feature visualisation) and minivgg-features (the command).

Property tests of each piece use small lopsided shapes and float64 (central differences need it);
the optimisation tests use random He-normal weights (``VGG16(weights=None)``); the command runs on a
Keras-written notop weight file (conftest) at small sizes and few steps.
"""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minivgg import VGG16
from minivgg.visualize import report
from minivgg.visualize import cli as visualize_cli
from minivgg.errors import MinivggError
from minivgg.features import cli, optimise as O, page as pages, param as P, transforms as T
from minivgg.layers.gradcheck import numerical_gradient, relative_error

REPO = Path(__file__).resolve().parents[1]
EXACT = 1e-7  # an exact backward agrees with float64 central differences to ~1e-9 (gradcheck.py); a wrong one by >1e-2


@pytest.fixture(scope="module")
def random_model():
    return VGG16(weights=None, include_top=False)  # He-normal weights, zero biases


# ---- parameterisation -------------------------------------------------------------------------


@pytest.mark.parametrize("h, w", [(5, 6), (6, 7), (7, 4)])  # even and odd W (with and without a Nyquist column)
def test_fourier_backward_equals_central_differences(h, w):
    rng = np.random.default_rng(h * w)
    p = rng.standard_normal((2, 2, 3, h, w // 2 + 1))
    g = rng.standard_normal((2, h, w, 3))
    num = numerical_gradient(lambda p: np.sum(g * P.fourier_image(p, h, w)), p)
    assert relative_error(P.fourier_image_backward(g), num) < EXACT


@pytest.mark.parametrize("h, w", [(6, 9), (8, 8)])
def test_fourier_round_trips(h, w):
    img = np.random.default_rng(0).standard_normal((3, h, w, 3))
    np.testing.assert_allclose(P.fourier_image(P.fourier_from_image(img), h, w), img, atol=1e-5)  # float32 p
    rgb = np.random.default_rng(1).uniform(0.02, 0.98, (2, h, w, 3)).astype(np.float32)
    for kind in P.PARAMS:  # the whole parameterisation, inverted and run again
        np.testing.assert_allclose(P.Image.from_rgb(kind, rgb).rgb(), rgb, atol=1e-5)


def test_spectrum_scale_is_lucids():
    s = P.spectrum_scale(4, 6)  # frequencies: rows 0, 1/4, 1/2, -1/4; columns 0, 1/6, 1/3, 1/2
    assert s.shape == (4, 4)
    assert s[0, 0] == pytest.approx(np.sqrt(24) * 6)  # f = 0: floored at 1 / max(h, w)
    assert s[2, 3] == pytest.approx(np.sqrt(24) / np.sqrt(0.25 + 0.25))
    assert s[1, 1] == pytest.approx(np.sqrt(24) / np.hypot(1 / 4, 1 / 6))


@pytest.mark.parametrize("forward, backward, needs_output", [
    (P.decorrelate_colours, P.decorrelate_colours_backward, False),
    (P.sigmoid, P.sigmoid_backward, True),
    (P.to_network_input, P.to_network_input_backward, False),
])
def test_elementwise_steps_backward(forward, backward, needs_output):
    rng = np.random.default_rng(2)
    t = rng.standard_normal((2, 3, 5, 3))  # (N, H, W, 3), H != W
    g = rng.standard_normal(t.shape)
    num = numerical_gradient(lambda t: np.sum(g * forward(t)), t)
    ours = backward(forward(t), g) if needs_output else backward(g)
    assert relative_error(ours, num) < EXACT


def test_preprocess_matches_the_package():
    from minivgg.files.preprocess import preprocess_input

    rgb = np.random.default_rng(3).uniform(0, 1, (2, 4, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(P.to_network_input(rgb), preprocess_input(255 * rgb), atol=1e-4)
    assert P.COLOUR.dtype == np.float32 and np.max(np.linalg.norm(P.COLOUR, axis=0)) == pytest.approx(1)


# ---- transforms -------------------------------------------------------------------------------


def _steps():
    rng = np.random.default_rng(4)
    return {
        "pad": [T.pad],
        "jitter": [lambda h, w: T.crop(h, w, 3, 2, 1)],
        "scale": [lambda h, w: T.scale(h, w, 1.1)],
        "rotate": [lambda h, w: T.rotate(h, w, 10)],
        "centre crop": [lambda h, w: T.centre_crop(h, w, 9, 6)],
        "draw": None,
        "_rng": rng,
    }


@pytest.mark.parametrize("name", ["pad", "jitter", "scale", "rotate", "centre crop", "draw"])
def test_each_transform_equals_naive_and_central_differences(name):
    steps = _steps()
    h, w = 11, 8
    affine = T.draw(steps["_rng"], h, w) if name == "draw" else T.compose(h, w, steps[name])
    x = np.random.default_rng(5).uniform(0, 1, (2, h, w, 3))  # (N, H, W, 3), N > 1
    out = T.resample(x, affine)
    np.testing.assert_allclose(out, T.resample_naive(x, affine), atol=1e-12)
    g = np.random.default_rng(6).standard_normal(out.shape)
    dx = T.resample_backward(g, affine, h, w)
    np.testing.assert_allclose(dx, T.resample_backward_naive(g, affine, h, w), atol=1e-12)
    assert relative_error(dx, numerical_gradient(lambda x: np.sum(g * T.resample(x, affine)), x)) < EXACT
    x32 = x.astype(np.float32)  # the dtype the optimiser uses
    np.testing.assert_allclose(T.resample(x32, affine), out, atol=1e-6)


def test_transform_geometry():
    x = np.random.default_rng(7).uniform(0, 1, (1, 6, 9, 3))
    np.testing.assert_array_equal(T.resample(x, T.identity(6, 9)), x)
    padded = T.resample(x, T.compose(6, 9, [lambda h, w: T.pad(h, w, 2)]))
    assert padded.shape == (1, 10, 13, 3)
    np.testing.assert_allclose(padded[:, 2:-2, 2:-2], x, atol=1e-12)  # integer shifts are exact copies
    ring = np.ones((10, 13), bool)
    ring[2:-2, 2:-2] = False
    assert np.all(padded[:, ring] == T.FILL)  # grey around
    cropped = T.resample(x, T.compose(6, 9, [lambda h, w: T.crop(h, w, 3, 1, 2)]))
    np.testing.assert_allclose(cropped, x[:, 1:4, 2:8], atol=1e-12)
    np.testing.assert_allclose(T.resample(x, T.compose(6, 9, [lambda h, w: T.rotate(h, w, 0)])), x, atol=1e-12)
    turned = T.resample(np.ones((1, 9, 9, 3)), T.compose(9, 9, [lambda h, w: T.rotate(h, w, 45)]))
    assert turned[0, 4, 4, 0] == pytest.approx(1) and turned[0, 0, 0, 0] == pytest.approx(T.FILL)  # corners leave
    # Lucid's sizes at 128: pad 12 -> 152, jitter 8 -> 144, scale s -> int(144 s), jitter 4 -> int(144 s) - 4
    for seed in range(5):
        rng = np.random.default_rng(seed)
        a = T.draw(rng, 128, 128)
        assert a.out_h == a.out_w and a.out_h + 4 in {int(144 * s) for s in T.SCALES}
        assert (T.draw(rng, 128, 128, size=(224, 224)).out_h, 224) == (224, 224)
    assert T.SCALES[0] == pytest.approx(0.9) and T.SCALES[-1] == pytest.approx(1.1) and len(T.ANGLES) == 26


def test_the_whole_chain_backward_equals_central_differences():
    """p -> image -> transforms -> network input, with a linear 'network' L = sum(g * x)."""
    h, w = 6, 7
    rng = np.random.default_rng(8)
    affine = T.draw(rng, h, w)
    g = rng.standard_normal((2, affine.out_h, affine.out_w, 3))
    for kind in P.PARAMS:
        p = (rng.standard_normal((2, 2, 3, h, w // 2 + 1)) if kind == "fourier" else rng.standard_normal((2, h, w, 3)))

        def loss(p):
            img = P.Image(kind, p, h, w)
            img.p = p  # keep float64 for the differences
            return np.sum(g * P.to_network_input(T.resample(img.rgb(), affine)))

        image = P.Image(kind, p, h, w)
        image.p = p
        image.rgb()
        ours = image.backward(T.resample_backward(P.to_network_input_backward(g), affine, h, w))
        assert relative_error(ours, numerical_gradient(loss, p)) < EXACT, kind


# ---- the optimiser ----------------------------------------------------------------------------


def test_pre_relu_seed_is_the_backward_conv():
    from minivgg.layers.conv import conv2d_backward_input
    from minivgg.features.objectives import pre_relu_seed

    kernel = np.random.default_rng(9).standard_normal((3, 3, 5, 7)).astype(np.float32)  # C=5 != K=7
    dz = np.zeros((2, 6, 9, 7), np.float32)  # (N, H, W, K), H != W
    dz[0, :, :, 3] = dz[1, :, :, 6] = 1 / 54
    np.testing.assert_allclose(pre_relu_seed(kernel, [3, 6], 6, 9), conv2d_backward_input(dz, kernel, pad=1, method="im2col"),
                               atol=1e-7)


@pytest.mark.parametrize("objective", [
    O.Objective("channel", "block1_conv1", (5, 0)),  # pre-ReLU, the image is the layer below
    O.Objective("channel", "block2_conv2", (7, 100)),  # pre-ReLU, through model.gradients
    O.Objective("channel", "block1_pool", (2, 60)),  # after the ReLU and the pool
    O.Objective("dream", "block2_conv1"),
])
def test_objective_gradient_along_a_direction(random_model, objective):
    """Along the gradient's own direction d = g / |g|, the slope (L(x + e d) - L(x - e d)) / 2e must
    be |g|: a wrong g (pointing elsewhere) gives a smaller slope. The model is float32, so a random
    direction (whose slope is a sum of cancelling terms) would drown in rounding; along g the slope
    is large. e = 0.3 on inputs of size ~100: rounding ~1e-5, kinks crossed rare; measured
    agreement 1e-4 to 4e-4 of the slope, bar 2e-3."""
    from minivgg.features.objectives import gradient

    rng = np.random.default_rng(10)
    x = rng.uniform(-100, 100, (2, 36, 33, 3)).astype(np.float32)  # (N, H, W, 3), preprocessed scale
    dx, values = gradient(random_model, x, objective)
    d = dx / np.linalg.norm(dx)
    L = lambda x: gradient(random_model, x, objective)[1].sum()
    e = 0.3
    assert (L(x + e * d) - L(x - e * d)) / (2 * e) == pytest.approx(float(np.linalg.norm(dx.astype(np.float64))), rel=2e-3)
    _, a = O.evaluate(random_model, P.sigmoid(x / 100), objective)  # values are finite, one per image
    assert values.shape == (2,) and np.isfinite(values).all() and a.shape[0] == 2


def test_adam_is_kingma_and_ba():
    adam = O.Adam(lr=0.1)
    p = np.zeros(2)
    adam.step(p, np.array([2.0, -0.5]))
    np.testing.assert_allclose(p, [0.1, -0.1], rtol=1e-6)  # step 1: m^ / sqrt(v^) = sign(g)
    adam.step(p, np.array([1.0, -0.5]))
    m = 0.9 * 0.1 * np.array([2, -0.5]) + 0.1 * np.array([1, -0.5])
    v = 0.999 * 0.001 * np.array([4, 0.25]) + 0.001 * np.array([1, 0.25])
    step = 0.1 * (m / (1 - 0.81)) / (np.sqrt(v / (1 - 0.999 ** 2)) + 1e-8)
    np.testing.assert_allclose(p, [0.1, -0.1] + step, rtol=1e-6)


def _run(model, steps=32, **kw):
    objective = O.Objective("channel", "block2_conv1", (3, 17))
    return O.optimise(model, objective, 40, steps, seed=1, **kw)


def test_objective_rises_and_the_seed_reproduces(random_model):
    r = _run(random_model)
    # Measured on these weights, 32 steps at 40x40: channels 3, 17, 40, 99 of block2_conv1 rise
    # x10.6, x117, x7.5, x39 (pixel twin x18 to x185, no transforms x10 to x198); test x3.
    assert np.all(r.final > 3 * r.start), (r.start, r.final)
    assert r.curve.shape == (32, 2) and np.all(r.curve[-1] > r.curve[0])
    again = _run(random_model)
    assert again.rgb.tobytes() == r.rgb.tobytes()  # byte for byte
    other = O.optimise(random_model, O.Objective("channel", "block2_conv1", (3, 17)), 40, 32, seed=2)
    assert other.rgb.tobytes() != r.rgb.tobytes()


def test_a_transform_that_breaks_the_gradient_stalls(random_model, monkeypatch):
    """A transform whose output is rounded to 8 bits (as if saved and reloaded each step) has a zero
    derivative almost everywhere: the chain rule passes nothing back, Adam never moves, the objective
    stays where it started, while the same run with the real gradient rises x10 and x117 (above)."""
    good = _run(random_model)

    def rounded_backward(dout, affine, H, W):  # d round(255 y) / 255 / dy = 0 between the steps
        return np.zeros((dout.shape[0], H, W, 3), dout.dtype)

    monkeypatch.setattr(O.T, "resample_backward", rounded_backward)
    stalled = _run(random_model)
    assert stalled.rgb.tobytes() == O.start_image("fourier", 2, 40, 40, 1, (3, 17)).rgb().tobytes()
    np.testing.assert_array_equal(stalled.final, stalled.start)
    assert np.all(good.final > 3 * stalled.final)


def test_pixel_twin_and_no_transforms_also_rise(random_model):
    for kw in ({"param": "pixel"}, {"transforms": False}):
        r = _run(random_model, **kw)
        assert np.all(r.final > 3 * r.start), (kw, r.start, r.final)


def test_class_and_dream_objectives(random_model):
    model = VGG16(weights=None, include_top=True)
    r = O.optimise(model, O.Objective("class", "predictions", (7,)), 224, 2, seed=0)
    assert r.activation.shape == (1, 1000) and r.final[0] > r.start[0]  # the logit rises from the first steps
    photo = np.asarray(Image.open(REPO / "minivgg" / "data" / "grace_hopper.jpg").convert("RGB").resize((48, 40)))[:40, :40]
    d = O.optimise(random_model, O.Objective("dream", "block3_conv1"), 40, 4, photo=photo)
    assert d.rgb.shape == (1, 40, 40, 3) and d.final[0] > 1.05 * d.start[0]  # measured x1.16 in 4 steps
    assert np.abs(O.start_image("fourier", 1, 40, 40, 0, (), photo).rgb()[0] * 255 - np.clip(photo, 2.55, 252.45)).max() < 0.1


def test_top5_and_rank():
    a = np.zeros((2, 2, 3, 6))
    a[0, :, :, 4], a[0, :, :, 1], a[1, :, :, 2], a[1, :, :, 5] = 3, 2, 1, 9
    assert [k for k, _ in pages.top5(a)[0]] == [4, 1, 0, 2, 3]
    assert pages.rank(a, [1, 2]) == [2, 2]


# ---- the command ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(weights_notop, tmp_path_factory):
    """One small run shared by the tests below: 5 channels of block2_conv1, 48x48, 24 steps, 2 batches
    (0, 1, 2 then 9, 7)."""
    root = tmp_path_factory.mktemp("features")
    out = root / "feat"
    argv = ["--layer", "block2_conv1", "--channels", "0-2,9,7", "--size", "48", "--steps", "24", "--batch", "3",
            "--seed", "3", "--weights", str(weights_notop), "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    return out


def test_run_writes_images_grid_and_page(run_dir, weights_notop, capsys):
    files = sorted(f.name for f in run_dir.iterdir())
    assert files == sorted([f"block2_conv1_{c}.png" for c in (0, 1, 2, 9, 7)] + ["block2_conv1_grid.png", "index.html"])
    with Image.open(run_dir / "block2_conv1_9.png") as img:
        assert img.size == (48, 48) and img.mode == "RGB"
    with Image.open(run_dir / "block2_conv1_grid.png") as img:
        assert img.size == (5 * 48 + 4 * 2, 48)
    text = (run_dir / "index.html").read_text("utf-8")
    assert text.count('<svg class="curve"') == 5 and text.count('class="card"') == 5
    assert not re.search(r"(src|href)=\"(https?:)?//", text)  # nothing from outside


def test_each_image_excites_its_own_channel(run_dir, weights_notop):
    """Objective and specificity, measured again on the written PNGs (8-bit) with a fresh model."""
    model = VGG16(weights=str(weights_notop), include_top=False)
    channels = [0, 1, 2, 9, 7]
    rgb = np.stack([np.asarray(Image.open(run_dir / f"block2_conv1_{c}.png"), np.float32) / 255 for c in channels])
    _, a = O.evaluate(model, rgb, O.Objective("channel", "block2_conv1", tuple(channels)))
    means = a.mean(axis=(1, 2))[:, channels]  # (image, channel)
    # each channel is most active on its own image, among the images of the run. Measured on these
    # (random, Keras-seeded) weights with channels 0-15 in one run: 12 of 16 channels (3, 8 and 14
    # are excited most by channel 5's bright image); these 5 are among the 12.
    assert list(np.argmax(means, axis=0)) == list(range(5)), means.round(2)
    start = O.start_image("fourier", 5, 48, 48, 3, channels).rgb()
    _, a0 = O.evaluate(model, start, O.Objective("channel", "block2_conv1", tuple(channels)))
    rise = np.diag(means) / a0.mean(axis=(1, 2))[np.arange(5), channels]
    # Measured (after the ReLU, start noise -> final PNG): x40, x16, x55, x7.6, x25; test x3.
    assert np.all(rise > 3), rise


def test_same_seed_same_png_bytes(run_dir, weights_notop, tmp_path):
    argv = ["--layer", "block2_conv1", "--channels", "9,7", "--size", "48", "--steps", "24", "--batch", "3",
            "--seed", "3", "--weights", str(weights_notop), "--out", str(tmp_path), "--quiet"]
    assert cli.main(argv) == 0
    for c in (9, 7):  # batch (9, 7) here, and the second batch of the fixture's run
        assert (tmp_path / f"block2_conv1_{c}.png").read_bytes() == (run_dir / f"block2_conv1_{c}.png").read_bytes()


@pytest.mark.parametrize("args, message", [
    (["--layer", "block9_conv1"], "is not a conv or pool layer"),
    (["--layer", "fc1"], "is not a conv or pool layer"),
    (["--layer", "block1_conv1", "--channels", "60-64"], "channel 64 is out of range (0 to 63)"),
    (["--channels", "3,x"], "expected numbers and ranges"),
    (["--channels", "9-3"], "runs backwards"),
    (["--channels", "1,1"], "twice"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--size", "16"], "too small"),
    (["--size", "4096"], "too large"),
    (["--batch", "0"], "--batch must be at least 1"),
    (["--lr", "nan"], "--lr must be a positive number"),
    (["--layer", "predictions", "--size", "64"], "takes 224x224"),
    (["--layer", "predictions", "--dream"], "--dream needs a conv or pool layer"),
    (["--start", "/nonexistent.jpg"], "nonexistent"),
    (["--weights", "/nonexistent.h5"], "nonexistent"),
    (["--arch", "vgg16", "--layer", "block3_conv4"], "'block3_conv4' is not a layer of VGG16"),
])
def test_bad_input_is_one_line_and_touches_nothing(args, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(args + ["--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_vgg19_by_arch_or_by_its_file(vgg19_notop, weights_notop, tmp_path, capsys):
    """A layer only VGG19 has, from a VGG19 file (detected, or named by --arch); the same layer asked
    of a VGG16 file is refused in one line naming the network."""
    argv = ["--layer", "block3_conv4", "--channels", "5", "--size", "40", "--steps", "3", "--quiet"]
    for extra, out in ([], tmp_path / "detected"), (["--arch", "vgg19"], tmp_path / "named"):
        assert cli.main(argv + extra + ["--weights", str(vgg19_notop), "--out", str(out)]) == 0
        assert (out / "block3_conv4_5.png").is_file()
        assert "<h1>VGG19: what channels of block3_conv4 look for</h1>" in (out / "index.html").read_text("utf-8")
    assert (tmp_path / "detected" / "block3_conv4_5.png").read_bytes() == (tmp_path / "named" / "block3_conv4_5.png").read_bytes()
    capsys.readouterr()
    assert cli.main(argv + ["--weights", str(weights_notop), "--out", str(tmp_path / "v16")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "'block3_conv4' is not a layer of VGG16" in err, err
    assert cli.main(argv + ["--arch", "vgg16", "--weights", str(vgg19_notop), "--out", str(tmp_path / "x")]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_predictions_needs_the_top(weights_notop, tmp_path, capsys):
    assert cli.main(["--layer", "predictions", "--weights", str(weights_notop), "--out", str(tmp_path / "o")]) == 1
    assert "needs a weight file with the top" in capsys.readouterr().err


def test_ctrl_c_writes_what_was_finished(weights_notop, tmp_path, capsys, monkeypatch):
    calls = []
    real = O.Run.step

    def step(self):
        calls.append(1)
        if len(calls) == 6:  # in the second batch (3 steps each)
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(O.Run, "step", step)
    argv = ["--layer", "block1_conv2", "--channels", "0-3", "--size", "32", "--steps", "3", "--batch", "2",
            "--weights", str(weights_notop), "--out", str(tmp_path)]
    assert cli.main(argv) == 130
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1] == f"page: {(tmp_path / 'index.html').resolve()}"
    assert "interrupted" in captured.err
    assert sorted(f.name for f in tmp_path.iterdir()) == ["block1_conv2_0.png", "block1_conv2_1.png",
                                                          "block1_conv2_grid.png", "index.html"]
    assert "not done: 2-3" in (tmp_path / "index.html").read_text("utf-8")


def test_pages_link_to_each_other(weights_notop, photo, run_dir, tmp_path):
    root = run_dir.parent
    maps = root / "maps"
    assert visualize_cli.main([str(photo), "--size", "64", "--weights", str(weights_notop), "--out", str(maps),
                               "--layers", "block1_conv1", "--quiet"]) == 0
    feat, vis = (run_dir / "index.html").read_text("utf-8"), (maps / "index.html").read_text("utf-8")
    assert 'href="../maps/index.html"' in feat  # rewritten in the earlier page when the later one came
    assert 'href="../feat/index.html"' in vis
    (tmp_path / "alone").mkdir()
    assert report.related_pages(tmp_path / "alone") == []  # a folder with no minivgg siblings: no links


def test_script_in_a_subprocess(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "features.py"), "--layer", "nope"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.startswith("error: --layer 'nope'")


# ---- the benchmark ----------------------------------------------------------------------------


@pytest.fixture
def bench_script(monkeypatch):
    """scripts/features_benchmark.py's main(), run in this process; the thread variables it sets are restored."""
    import os
    import runpy

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "TF_CPP_MIN_LOG_LEVEL"):
        if var in os.environ:
            monkeypatch.setenv(var, os.environ[var])
        else:
            monkeypatch.delenv(var, raising=False)
    return runpy.run_path(str(REPO / "scripts" / "features_benchmark.py"))["main"]


SMALL = ["--layer", "block1_conv2", "--channels", "2", "--size", "32", "--repeats", "1"]


def test_benchmark_checks_then_times(tf, bench_script, capsys):
    assert bench_script(SMALL) == 0
    out = capsys.readouterr().out
    checks = [float(v) for v in re.findall(r"gradient of the spectrum ([0-9.e+-]+)", out)]
    assert len(checks) == 2 and max(checks) < 2e-3  # against TF eager and TF graph
    ours = float(re.search(r"minivgg\s+([0-9]+) ms", out).group(1))
    theirs = {side: float(re.search(rf"TensorFlow \S+ {side}\s+([0-9]+) ms", out).group(1)) for side in ("eager", "graph")}
    assert ours > 0 and min(theirs.values()) > 0 and "network forward + backward" in out
    ratios = re.search(r"minivgg / TensorFlow: eager ([0-9.]+)x, graph ([0-9.]+)x", out)
    assert ratios and all(float(r) > 0 for r in ratios.groups())


def test_benchmark_refuses_a_wrong_gradient(tf, bench_script, capsys, monkeypatch):
    real = P.fourier_image_backward
    monkeypatch.setattr(P, "fourier_image_backward", lambda dimg: 1.5 * real(dimg))  # a wrong scale
    assert bench_script(SMALL) == 1
    captured = capsys.readouterr()
    assert "disagree; nothing timed" in captured.err and "minivgg / TensorFlow" not in captured.out


def test_dream_from_the_bundled_photo(weights_notop, tmp_path, capsys):
    argv = ["--layer", "block1_conv2", "--dream", "--size", "32", "--steps", "2", "--weights", str(weights_notop),
            "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    assert sorted(f.name for f in tmp_path.iterdir()) == ["block1_conv2_dream.png", "index.html", "start.png"]
    text = (tmp_path / "index.html").read_text("utf-8")
    assert "deep dream on block1_conv2" in text and 'src="start.png"' in text
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"page: {(tmp_path / 'index.html').resolve()}"
