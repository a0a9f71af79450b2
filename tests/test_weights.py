"""Loading weight files: every layout Keras writes, and every way a file can be wrong."""
import shutil

import h5py
import numpy as np
import pytest

import minivgg
from minivgg import MinivggError, VGG16
from minivgg.files.weights import read_weight_file


def keras_params(tf, path, include_top):
    """What Keras itself loads from ``path``: layer name -> [kernel, bias]."""
    import keras

    model = keras.applications.VGG16(weights=str(path), include_top=include_top)
    return {layer.name: [w.numpy() for w in layer.weights] for layer in model.layers if layer.weights}


def assert_same_params(model, want):
    assert set(model.params) == set(want)
    for name, (kernel, bias) in model.params.items():
        np.testing.assert_array_equal(kernel, want[name][0], err_msg=name)
        np.testing.assert_array_equal(bias, want[name][1], err_msg=name)


def test_published_layout_loads_name_for_name(tf, weights_notop):
    with h5py.File(weights_notop) as f:  # the fixture really has the published names and attributes
        assert list(f["block1_conv1"].attrs["weight_names"]) == [b"block1_conv1_W_1:0", b"block1_conv1_b_1:0"]
        assert "keras_version" not in f.attrs
    model = VGG16(weights=weights_notop)
    assert model.include_top is False
    assert_same_params(model, keras_params(tf, weights_notop, include_top=False))
    assert not np.all(model.params["block3_conv2"][1] == 0)  # the biases are really non-zero


def test_keras3_names_load(tf, weights_notop_keras_names):
    with h5py.File(weights_notop_keras_names) as f:
        assert list(f["block1_conv1"].attrs["weight_names"]) == ["block1_conv1/kernel", "block1_conv1/bias"]
    model = VGG16(weights=weights_notop_keras_names)
    assert_same_params(model, keras_params(tf, weights_notop_keras_names, include_top=False))


def test_top_detected_and_loaded(tf, weights_top):
    model = VGG16(weights=weights_top)
    assert model.include_top is True
    assert model.params["fc1"][0].shape == (25088, 4096)
    assert_same_params(model, keras_params(tf, weights_top, include_top=True))
    notop = VGG16(weights=weights_top, include_top=False)  # the top can be left out
    assert "fc1" not in notop.params and notop.layers[-1].name == "block5_pool"


def test_keras2_names_and_chunked_layer_names(tf, weights_notop, tmp_path):
    # Keras 2 names its datasets "block1_conv1/kernel:0"; a long layer_names attribute is split
    # into layer_names0, layer_names1, ... (HDF5 limits an attribute to 64 KiB).
    path = tmp_path / "keras2.h5"
    shutil.copy(weights_notop, path)
    with h5py.File(path, "r+") as f:
        names = list(f.attrs["layer_names"])
        del f.attrs["layer_names"]
        f.attrs["layer_names0"], f.attrs["layer_names1"] = names[:7], names[7:]
        for name in (n.decode() for n in names):
            g = f[name]
            old = [n.decode() for n in g.attrs["weight_names"]]
            if old:
                new = [f"{name}/kernel:0", f"{name}/bias:0"]
                for o, n in zip(old, new):
                    g.move(o, n)
                g.attrs["weight_names"] = [n.encode() for n in new]
    assert_same_params(VGG16(weights=path), keras_params(tf, weights_notop, include_top=False))


def test_full_model_file_from_model_save(tf, tmp_path):
    import keras

    from conftest import seeded_weights

    model = keras.applications.VGG16(weights=None, include_top=False)
    seeded_weights(model, seed=5)
    path = tmp_path / "model.h5"
    model.save(path)  # weights under /model_weights
    want = {layer.name: [w.numpy() for w in layer.weights] for layer in model.layers if layer.weights}
    assert_same_params(VGG16(weights=path), want)


def test_another_network_is_refused(tf, tmp_path):
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    path = tmp_path / "small.h5"
    small = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="dense_a")])
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, small)
    with pytest.raises(MinivggError, match="another network"):
        VGG16(weights=path)


def test_missing_top_and_wrong_shapes(tf, weights_notop, tmp_path):
    with pytest.raises(MinivggError, match="no top"):
        VGG16(weights=weights_notop, include_top=True)
    path = tmp_path / "wrong_shape.h5"
    shutil.copy(weights_notop, path)
    with h5py.File(path, "r+") as f:
        del f["block2_conv1/block2_conv1_b_1:0"]
        f["block2_conv1"].create_dataset("block2_conv1_b_1:0", data=np.zeros(64, np.float32))
    with pytest.raises(MinivggError, match="block2_conv1 has weights of shapes"):
        VGG16(weights=path)


def test_incomplete_file_is_refused(tf, weights_notop, tmp_path):
    path = tmp_path / "incomplete.h5"
    shutil.copy(weights_notop, path)
    with h5py.File(path, "r+") as f:
        f["block5_conv3"].attrs["weight_names"] = np.array([], dtype=np.float64)  # as a weightless layer
    with pytest.raises(MinivggError, match="no weights for layer block5_conv3"):
        VGG16(weights=path)


@pytest.mark.parametrize("fraction", [0.5, 0.999])  # cut in the middle, or in the last array's bytes
def test_truncated_file_is_refused(tf, weights_notop, tmp_path, fraction):
    path = tmp_path / "truncated.h5"
    data = weights_notop.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])  # an interrupted download
    with pytest.raises(MinivggError, match="truncated") as e:
        VGG16(weights=path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"<!DOCTYPE html>\n<html><body>Sign in</body></html>", "HTML page"),
        (b"\x00\x01 not a weight file at all", "not an HDF5 weight file"),
    ],
)
def test_non_hdf5_files_are_refused(tmp_path, content, message):
    path = tmp_path / "vgg16.h5"
    path.write_bytes(content)
    with pytest.raises(MinivggError, match=message) as e:
        VGG16(weights=path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(MinivggError, match="does not exist"):
        VGG16(weights=tmp_path / "nope.h5")
    with pytest.raises(MinivggError, match="directory"):
        VGG16(weights=tmp_path)


def test_hdf5_that_is_not_a_keras_weight_file(tmp_path):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(3))
    with pytest.raises(MinivggError, match="not a Keras weight file"):
        read_weight_file(path)


def test_summary_totals_equal_keras():
    # Keras' model.summary() totals for VGG16: 138,357,544 with the top, 14,714,688 without.
    assert minivgg.summary(include_top=True).splitlines()[-1].split()[1] == "138,357,544"
    assert minivgg.summary(include_top=False).splitlines()[-1].split()[1] == "14,714,688"
