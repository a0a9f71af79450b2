"""Shared fixtures: weight files that Keras itself writes, and the bundled photo.

The published VGG16 weight files cannot be downloaded here (no internet, and never in CI), so the
tests make their own in the same layout: Keras builds ``keras.applications.VGG16``, we fill it with
seeded He-normal kernels and non-zero biases (Keras' default zero biases would hide a dropped bias),
and Keras' legacy HDF5 writer saves it. ``published`` files then get the dataset names and root
attributes of the published files (``block1_conv1_W_1:0``, no ``backend``/``keras_version``).

Tests that need TensorFlow use the ``tf`` fixture: locally they skip without it, and ``.ci/run``
turns every skip into a failure.
"""
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's start-up chatter out of test logs

PHOTO = Path(__file__).resolve().parents[1] / "minivgg" / "data" / "grace_hopper.jpg"


def rand(rng, *shape):
    """Seeded standard-normal float32 data of the given shape."""
    return rng.standard_normal(shape).astype(np.float32)


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
    """Fill every conv/dense layer of a Keras model with He-normal kernels and non-zero biases."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
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


def write_keras_weights(path, include_top, seed=0, published=True):
    """Build Keras' VGG16, seed its weights, save with Keras' legacy HDF5 writer. Returns path."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    model = keras.applications.VGG16(weights=None, include_top=include_top)
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
