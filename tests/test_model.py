"""The model's own contract, without TensorFlow: inputs it refuses, the plan, the table, the CLI."""
import numpy as np
import pytest

import minivgg
from minivgg import MinivggError, VGG16
from minivgg.__main__ import main
from minivgg.network.table import layers, plan

LAYERS, NOTOP = layers("vgg16"), layers("vgg16", include_top=False)


@pytest.fixture(scope="module")
def notop():
    return VGG16(weights=None, include_top=False)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((64, 48, 4), r"shape \(H, W, 3\) or \(N, H, W, 3\)"),  # RGBA, not preprocessed
        ((2, 3, 64, 64), r"shape \(H, W, 3\)"),  # NCHW
        ((31, 64, 3), "at least 32x32"),
        ((64,), r"shape \(H, W, 3\)"),
    ],
)
def test_bad_inputs_are_refused(notop, shape, message):
    with pytest.raises(MinivggError, match=message):
        notop(np.zeros(shape, np.float32))


def test_non_numeric_input_is_refused(notop):
    with pytest.raises(MinivggError, match="numeric"):
        notop(np.full((32, 32, 3), "a"))


def test_top_needs_224(tmp_path):
    model = VGG16(weights=None, include_top=True)
    with pytest.raises(MinivggError, match="224x224"):
        model(np.zeros((160, 224, 3), np.float32))
    out = model(np.zeros((224, 224, 3), np.float32))
    assert out.shape == (1, 1000) and abs(out.sum() - 1) < 1e-5


def test_single_image_and_batch_agree(notop):
    x = np.random.default_rng(0).uniform(-120, 150, (2, 40, 56, 3)).astype(np.float32)
    batch = notop(x)
    assert batch.shape == (2, 1, 1, 512)  # 40 -> 20 -> 10 -> 5 -> 2 -> 1; 56 -> ... -> 1
    np.testing.assert_allclose(notop(x[1]), batch[1:], rtol=1e-5, atol=1e-5 * np.abs(batch).max())


def test_transformed_kernels_kept_or_made_per_pass_give_the_same_maps(notop):
    lean = VGG16(weights=None, include_top=False, keep_transformed=False)  # same seed: the same weights
    assert len(notop._winograd) == 12 and lean._winograd == {}  # every conv layer but block1_conv1
    x = np.random.default_rng(1).uniform(-120, 150, (2, 36, 44, 3)).astype(np.float32)
    for (name, a), (_, b) in zip(notop.forward(x), lean.forward(x)):
        np.testing.assert_array_equal(a, b, err_msg=name)  # the same transform, the same sums: bit for bit
    assert lean._winograd == {}  # nothing kept after the pass either


def test_output_runs_large_maps_depth_first_with_the_batched_result(monkeypatch):
    # model.output (and model(x)) takes the first rows image by image where an image's map is large.
    # The threshold lowered so a small input splits: at 40x36 block4's maps are 5*4*512 = 10240 floats an
    # image, block5's 2*2*512 = 2048, so the last row over 8191 is block4_conv3, and its pool goes with it.
    import minivgg.network.vgg as vgg_module

    monkeypatch.setattr(vgg_module, "DEPTH_FIRST_FLOATS", 4 * 4 * 512 - 1)  # 40x36: up to block4_conv3 (5x4x512)
    model = VGG16(weights=None, include_top=False, batch_invariant=True)  # each image's bits as alone
    names = [row.name for row in NOTOP]
    assert names[model._depth_first(40, 36)] == "block4_pool"
    assert names[model._depth_first(36, 36)] == "block4_pool"  # 4x4x512: the last large map as well
    runs = []
    run = model._run
    monkeypatch.setattr(model, "_run", lambda x, stop, start=None: runs.append((len(x), stop, start)) or run(x, stop, start))
    x = np.random.default_rng(2).uniform(-120, 150, (3, 40, 36, 3)).astype(np.float32)
    acts = model.activations(x)
    np.testing.assert_array_equal(model(x), acts["block5_pool"])
    assert runs == [(1, "block4_pool", None)] * 3 + [(3, "block5_pool", "block5_conv1")]
    runs.clear()
    np.testing.assert_array_equal(model.output(x, "block2_conv1"), acts["block2_conv1"])  # below the split: all alone
    assert runs == [(1, "block2_conv1", None)] * 3
    runs.clear()
    np.testing.assert_array_equal(model.output(x[:1], "block3_pool"), acts["block3_pool"][:1])  # one image: one pass
    assert runs == [(1, "block3_pool", None)]
    with pytest.raises(MinivggError, match="no layer"):
        model.output(x, "fc1")


def test_activations_in_layer_order_and_subset(notop):
    x = np.zeros((1, 32, 32, 3), np.float32)
    acts = notop.activations(x)
    assert list(acts) == [row.name for row in NOTOP]
    assert acts["block3_pool"].shape == (1, 4, 4, 256)
    assert list(notop.activations(x, layers=["block2_pool", "block1_conv1"])) == ["block1_conv1", "block2_pool"]
    with pytest.raises(MinivggError, match="no layer"):
        notop.activations(x, layers=["fc1"])  # this model has no top


def test_plan():
    auto = plan("auto")
    assert auto["block1_conv1"] == "direct" and set(list(auto.values())[1:]) == {"winograd"}
    assert set(plan("naive").values()) == {"naive"} and len(plan("naive")) == 13
    with pytest.raises(MinivggError, match="unknown conv method"):
        plan("fft")
    with pytest.raises(MinivggError, match="unknown conv method"):
        VGG16(weights=None, include_top=False, method="fft")


def test_methods_agree_on_the_whole_network(notop):
    # Random He-normal weights, an odd non-square size: every method, the same network.
    x = np.random.default_rng(1).uniform(-120, 150, (1, 35, 44, 3)).astype(np.float32)
    ref = VGG16(weights=None, include_top=False, method="naive").activations(x)
    for method in ("im2col", "winograd", "direct", "auto"):
        model = VGG16(weights=None, include_top=False, method=method)
        for name, a in model.activations(x).items():
            err = np.abs(a - ref[name]).max() / max(np.abs(ref[name]).max(), 1e-30)
            assert err <= 1e-4, f"{method} {name}: {err:.2e}"  # the bar of the TensorFlow tests


def test_passes_that_keep_one_layer_fuse_the_pools_and_agree_bit_for_bit(notop):
    """``model(x)``, ``output(x, layer)`` and ``activations(layers=...)`` keep only some activations, so
    their passes compute each Winograd conv before a pool together with its pool (``forward(keep=...)``):
    the same bits as the full pass, every activation asked for still there. An odd size (ragged tiles,
    pools dropping a row or column) and a batch; a model with the conv by im2col fuses nothing."""
    x = np.random.default_rng(2).uniform(-120, 150, (2, 70, 45, 3)).astype(np.float32)
    full = notop.activations(x)
    np.testing.assert_array_equal(notop(x), full["block5_pool"])
    for layer in ("block1_conv2", "block2_pool", "block3_conv3", "block4_pool", "block5_conv3"):
        np.testing.assert_array_equal(notop.output(x, layer), full[layer])
    some = notop.activations(x, layers=["block4_conv3", "block2_pool"])
    assert list(some) == ["block2_pool", "block4_conv3"]
    for name, a in some.items():
        np.testing.assert_array_equal(a, full[name])
    skipped = [name for name, a in notop.forward(x, keep={"block5_pool"}) if a is None]
    assert skipped == ["block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3"]
    assert [name for name, a in notop.forward(x, keep={"block5_pool", "block3_conv3"}) if a is None] == [
        "block1_conv2", "block2_conv2", "block4_conv3", "block5_conv3"]
    assert all(a is not None for _, a in notop.forward(x))  # keep=None: every activation
    im2col = VGG16(weights=None, include_top=False, method="im2col")
    assert all(a is not None for _, a in im2col.forward(x, keep={"block5_pool"}))


def test_summary_refuses_impossible_tables():
    with pytest.raises(MinivggError, match="224x224"):
        minivgg.summary(include_top=True, height=160, width=160)
    with pytest.raises(MinivggError, match="at least 32"):
        minivgg.summary(include_top=False, height=16, width=64)
    text = minivgg.summary(include_top=False, height=160, width=288)
    assert "(None, 5, 9, 512)" in text.splitlines()[-2]  # block5_pool


def test_cli_prints_the_table_and_plan(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[1:-1]] == [row.name for row in LAYERS]
    assert out[1].split()[-1] == "direct" and out[2].split()[-1] == "winograd"
    assert out[-1].split()[1] == "138,357,544"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--size", "100"], "224x224"),
        (["--no-top", "--size", "16"], "at least 32"),
        (["--weights", "/nonexistent.h5"], "does not exist"),
    ],
)
def test_cli_errors_are_one_line(capsys, argv, message):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_vgg19_table_from_configuration_e():
    from minivgg.network.table import CONFIGS, conv_base

    rows = conv_base("vgg19")
    assert [r.name for r in rows if r.kind == "conv"][-4:] == ["block5_conv1", "block5_conv2", "block5_conv3",
                                                               "block5_conv4"]
    assert sum(r.kind == "conv" for r in rows) == 16 and sum(r.kind == "pool" for r in rows) == 5
    assert len(CONFIGS["E"]) == len(CONFIGS["D"]) + 3
    # Keras' model.summary() totals for VGG19: 143,667,240 with the top, 20,024,384 without.
    assert minivgg.summary(include_top=True, arch="vgg19").splitlines()[-1].split()[1] == "143,667,240"
    assert minivgg.summary(include_top=False, arch="vgg19").splitlines()[-1].split()[1] == "20,024,384"
    model = minivgg.VGG19(weights=None, include_top=False)
    assert model.arch == "vgg19" and len(model.plan) == 16
    acts = model.activations(np.zeros((1, 32, 40, 3), np.float32))
    assert list(acts) == [r.name for r in rows] and acts["block5_pool"].shape == (1, 1, 1, 512)

