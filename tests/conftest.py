"""Shared fixtures: weight files that Keras itself writes, and the bundled photo.

The published VGG16 weight files cannot be downloaded here (no internet, and never in CI), so the
tests make their own in the same layout: Keras builds ``keras.applications.VGG16``, we fill it with
seeded He-normal kernels and non-zero biases (Keras' default zero biases would hide a dropped bias),
and Keras' legacy HDF5 writer saves it. ``published`` files then get the dataset names and root
attributes of the published files (``block1_conv1_W_1:0``, no ``backend``/``keras_version``).

Tests that need TensorFlow use the ``tf`` fixture: locally they skip without it, and ``.ci/run``
turns every skip into a failure.
"""
import contextlib
import os
from pathlib import Path

import minivgg  # noqa: F401  (first: NumPy loads with OpenBLAS's spin short, minivgg/jit.py)
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's start-up chatter out of test logs

PHOTO = Path(__file__).resolve().parents[1] / "minivgg" / "data" / "grace_hopper.jpg"


def rand(rng, *shape):
    """Seeded standard-normal float32 data of the given shape."""
    return rng.standard_normal(shape).astype(np.float32)


@contextlib.contextmanager
def one_thread():
    """Numba at one thread inside (as ``--threads 1`` or NUMBA_NUM_THREADS=1 make it), then as before."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def rel_err(ours, theirs):
    """max|ours - theirs| / max|theirs|: the error measure of every comparison in these tests."""
    assert ours.shape == theirs.shape, f"shape ours {ours.shape} != theirs {theirs.shape}"
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-30))


def assert_close(ours, theirs, rtol):
    err = rel_err(ours, theirs)
    assert err <= rtol, f"max|ours - theirs| / max|theirs| = {err:.3g} > {rtol}"


@pytest.fixture(scope="session")
def tf():
    """TensorFlow, or a skip (which CI turns into a failure)."""
    return pytest.importorskip("tensorflow", reason="needs TensorFlow: pip install -e .[reference]")


@pytest.fixture(scope="session")
def photo():
    return PHOTO


def seeded_weights(model, seed):
    """Fill every conv/dense layer of a Keras model (nested models too) with He-normal kernels and
    non-zero biases."""
    rng = np.random.default_rng(seed) if isinstance(seed, int) else seed
    for layer in model.layers:
        if hasattr(layer, "layers"):  # a model nested in this one
            seeded_weights(layer, rng)
            continue
        if not layer.weights:
            continue
        kernel, bias = (w.numpy() for w in layer.weights)
        fan_in = int(np.prod(kernel.shape[:-1]))
        kernel = rng.standard_normal(kernel.shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        bias = rng.uniform(-0.5, 0.5, bias.shape).astype(np.float32)
        layer.set_weights([kernel, bias])


def to_published_layout(path):
    """Rename datasets and attributes in place to match the published Keras files."""
    import h5py

    with h5py.File(path, "r+") as f:
        for key in ("backend", "keras_version"):
            if key in f.attrs:
                del f.attrs[key]
        if "top_level_model_weights" in f:
            del f["top_level_model_weights"]
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
        f.attrs["layer_names"] = np.array([n.encode() for n in names])  # fixed-length bytes, as published
        for name in names:
            group = f[name]
            old = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
            if not old:
                continue
            new = [f"{name}_W_1:0", f"{name}_b_1:0"]  # kernel, bias
            data = [group[o][()] for o in old]
            for o in old:
                del group[o]
            for key in list(group.keys()):  # the emptied "block1_conv1/" subgroup
                del group[key]
            for n, d in zip(new, data):
                group.create_dataset(n, data=d)
            group.attrs["weight_names"] = np.array([n.encode() for n in new])


def keras_app(arch):
    """keras.applications.VGG16 or VGG19."""
    import keras

    return {"vgg16": keras.applications.VGG16, "vgg19": keras.applications.VGG19}[arch]


def write_keras_weights(path, include_top, seed=0, published=True, arch="vgg16"):
    """Build Keras' VGG16 (or VGG19), seed its weights, save with Keras' legacy HDF5 writer. Returns path."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    model = keras_app(arch)(weights=None, include_top=include_top)
    seeded_weights(model, seed)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    if published:
        to_published_layout(path)
    return Path(path)


@pytest.fixture(scope="session")
def weights_notop(tf, tmp_path_factory):
    """A published-layout weight file without the top (like ..._notop.h5)."""
    return write_keras_weights(tmp_path_factory.mktemp("w") / "vgg16_notop.h5", include_top=False, seed=1)


@pytest.fixture(scope="session")
def weights_top(tf, tmp_path_factory):
    """A published-layout weight file with the top (like ..._kernels.h5); ~530 MB on disk."""
    return write_keras_weights(tmp_path_factory.mktemp("w") / "vgg16_top.h5", include_top=True, seed=2)


@pytest.fixture(scope="session")
def weights_notop_keras_names(tf, tmp_path_factory):
    """Keras 3's own legacy layout and names (block1_conv1/kernel), without the top."""
    path = tmp_path_factory.mktemp("w") / "vgg16_notop_keras.h5"
    return write_keras_weights(path, include_top=False, seed=3, published=False)


@pytest.fixture(scope="session")
def vgg19_notop(tf, tmp_path_factory):
    """VGG19's published layout without the top (like vgg19_..._notop.h5), 80 MB."""
    return write_keras_weights(tmp_path_factory.mktemp("w") / "vgg19_notop.h5", False, seed=11, arch="vgg19")


@pytest.fixture(scope="session")
def vgg19_top(tf, tmp_path_factory):
    """VGG19's published layout with the top, ~575 MB: the one big VGG19 file of the suite."""
    return write_keras_weights(tmp_path_factory.mktemp("w") / "vgg19_top.h5", True, seed=12, arch="vgg19")


@pytest.fixture(scope="session")
def keras3_files(tf, tmp_path_factory):
    """VGG16 and VGG19 without the top, seeded, saved by Keras 3 in its own formats.

    Returns {arch: {"weights.h5": path (save_weights), "keras": path (model.save), "params": the Keras
    model's own arrays, layer name -> [kernel, bias]}}.
    """
    folder, out = tmp_path_factory.mktemp("k3"), {}
    for seed, arch in enumerate(("vgg16", "vgg19"), start=21):
        model = keras_app(arch)(weights=None, include_top=False)
        seeded_weights(model, seed)
        model.save_weights(folder / f"{arch}.weights.h5")
        model.save(folder / f"{arch}.keras")
        params = {layer.name: [w.numpy() for w in layer.weights] for layer in model.layers if layer.weights}
        out[arch] = {"weights.h5": folder / f"{arch}.weights.h5", "keras": folder / f"{arch}.keras", "params": params}
    return out


@pytest.fixture(scope="session")
def finetuned(tf, tmp_path_factory):
    """Fine-tuned VGG16s as people build them: the conv base under a new head, saved by ``model.save``.

    - "flatten": input 64x80; Flatten -> Dense(16, relu) -> Dropout(0.5) -> Dense(5, softmax);
      a functional model, saved as finetuned.h5 (legacy, with model_config) and finetuned.keras
    - "gap": Sequential([the VGG16 base as one nested model, GlobalAveragePooling2D, Dense(5, softmax)]),
      saved as gap.keras
    - "gmp": GlobalMaxPooling2D -> Dense(8) (linear) -> Dense(3, sigmoid), saved as gmp.h5
    Returns {name: (path(s), the Keras model)}; every kernel and bias seeded (non-zero biases).
    """
    import keras

    folder, out = tmp_path_factory.mktemp("ft"), {}
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(64, 80, 3))
    x = keras.layers.Flatten(name="flatten")(base.output)
    x = keras.layers.Dense(16, activation="relu", name="fc_new")(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    model = keras.Model(base.input, keras.layers.Dense(5, activation="softmax", name="classes")(x))
    seeded_weights(model, 31)
    model.save(folder / "finetuned.h5")
    model.save(folder / "finetuned.keras")
    out["flatten"] = ((folder / "finetuned.h5", folder / "finetuned.keras"), model)

    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(None, None, 3))
    model = keras.Sequential([keras.Input((None, None, 3)), base, keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(5, activation="softmax")])
    seeded_weights(model, 32)
    model.save(folder / "gap.keras")
    out["gap"] = (folder / "gap.keras", model)

    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(None, None, 3))
    x = keras.layers.GlobalMaxPooling2D()(base.output)
    x = keras.layers.Dense(8)(x)
    model = keras.Model(base.input, keras.layers.Dense(3, activation="sigmoid")(x))
    seeded_weights(model, 33)
    model.save(folder / "gmp.h5")
    out["gmp"] = (folder / "gmp.h5", model)
    return out


# Agreement with TensorFlow, collected by tests/test_reference.py and printed at the end of the run:
# (case, layer) -> max|ours - tf| / max|tf|
AGREEMENT = {}
# The same for the backward pass (tests/test_gradients_tf.py): (case, tensor) -> ||ours - tf|| / ||tf||
# against the pinned reference, and case -> cosine of our input gradient with Keras' unpinned one.
GRADIENT_AGREEMENT = {}
KERAS_COSINE = {}


def pytest_terminal_summary(terminalreporter):
    if AGREEMENT:
        _forward_table(terminalreporter)
    if GRADIENT_AGREEMENT:
        _gradient_table(terminalreporter)


def _gradient_table(tr):
    worst = {}
    for (case, name), err in GRADIENT_AGREEMENT.items():
        key = name.split("/")[0] if "/" not in name else name.split("/")[0] + " w,b"
        if err >= worst.get(key, (-1.0, ""))[0]:
            worst[key] = (err, case)
    tr.section("gradients vs TensorFlow (pinned masks): worst ||ours - tf|| / ||tf|| per tensor (bar: 1e-4)")
    for name, (err, case) in worst.items():
        tr.write_line(f"{name:<18} {err:9.2e}   ({case})")
    tr.write_line(f"{len(GRADIENT_AGREEMENT)} gradients compared in {len({c for c, _ in GRADIENT_AGREEMENT})} cases")
    for case, cos in KERAS_COSINE.items():
        tr.write_line(f"cosine with Keras' own (unpinned) input gradient: {cos:.7f}   ({case})")


def _forward_table(terminalreporter):
    worst = {}
    for (case, layer), err in AGREEMENT.items():
        if err >= worst.get(layer, (-1.0, ""))[0]:
            worst[layer] = (err, case)
    tr = terminalreporter
    tr.section("agreement with TensorFlow: worst max|ours - tf| / max|tf| per layer (bar: 1e-4)")
    for layer, (err, case) in worst.items():
        tr.write_line(f"{layer:<14} {err:9.2e}   ({case})")
    tr.write_line(f"{len(AGREEMENT)} layer outputs compared in {len({c for c, _ in AGREEMENT})} cases")


# In CI every test must really run: .ci/run sets MINIVGG_FAIL_ON_SKIP=1, and a skip (no TensorFlow,
# no chromium) is then reported as a failure instead.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("MINIVGG_FAIL_ON_SKIP") == "1":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, and MINIVGG_FAIL_ON_SKIP=1 forbids skips: {reason}"
