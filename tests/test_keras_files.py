"""Every file Keras writes for a VGG, read without Keras: Keras 3's formats, VGG19, fine-tuned heads
from the saved config, and every way such a file can be wrong (one line each)."""
import json
import zipfile

import h5py
import numpy as np
import pytest

from minivgg import VGG, VGG16, VGG19, MinivggError
from test_weights import assert_same_params


def keras_params(model):
    """A Keras model's arrays, nested models included: layer name -> [kernel, bias]."""
    out = {}
    for layer in model.layers:
        if hasattr(layer, "layers"):
            out.update(keras_params(layer))
        elif layer.weights:
            out[layer.name] = [w.numpy() for w in layer.weights]
    return out


def rewrite_archive(src, dest, config=None, weights=None):
    """Copy a .keras archive, replacing config.json (a function of the parsed config) or the weights."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:  # ZIP_STORED, as Keras writes
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "config.json" and config is not None:
                data = json.dumps(config(json.loads(data))).encode()
            if info.filename == "model.weights.h5" and weights is not None:
                data = weights(data)
            zout.writestr(info.filename, data)
    return dest


def head_layer(cfg, name):
    """The layer called ``name`` in a functional model's config."""
    return next(layer for layer in cfg["config"]["layers"] if layer["config"]["name"] == name)


def one_line_error(match, **kwargs):
    with pytest.raises(MinivggError, match=match) as e:
        VGG(**kwargs)
    assert "\n" not in str(e.value)
    return str(e.value)


# ---------------------------------------------------------------- Keras 3 formats, VGG16 and VGG19


@pytest.mark.parametrize("fmt", ["weights.h5", "keras"])
@pytest.mark.parametrize("arch, cls", [("vgg16", VGG16), ("vgg19", VGG19)])
def test_keras3_formats_load_name_for_name(keras3_files, arch, cls, fmt):
    files = keras3_files[arch]
    model = VGG(weights=files[fmt])  # the architecture from the file
    assert model.arch == arch and model.include_top is False and model.input_size is None
    assert_same_params(model, files["params"])
    assert_same_params(cls(weights=files[fmt]), files["params"])  # and the class that insists on it


def strip_names(data):
    """model.weights.h5 bytes without the ``name`` attributes Keras 3.10+ writes (as earlier Keras 3 did)."""
    import io

    buf = io.BytesIO(data)
    with h5py.File(buf, "r+") as f:
        groups = [f]
        f.visititems(lambda path, obj: groups.append(obj) if isinstance(obj, h5py.Group) else None)
        for group in groups:
            if "name" in group.attrs:
                del group.attrs["name"]
    return buf.getvalue()


def test_keras3_files_without_layer_names_read_by_path(keras3_files, finetuned, tmp_path):
    # A .weights.h5 alone: the paths of a keras.applications model (layers/conv2d_15 = block5_conv4).
    path = tmp_path / "old.weights.h5"
    path.write_bytes(strip_names(keras3_files["vgg19"]["weights.h5"].read_bytes()))
    with h5py.File(path) as f:
        assert "name" not in f["layers/conv2d_15/vars"].attrs
    assert_same_params(VGG19(weights=path), keras3_files["vgg19"]["params"])
    # A .keras archive of a nested model: the paths follow from its config (layers/functional/layers/...).
    src, keras_model = finetuned["gap"]
    old = rewrite_archive(src, tmp_path / "old.keras", weights=strip_names)
    assert_same_params(VGG(weights=old), keras_params(keras_model))


def test_a_file_of_the_other_architecture_is_named(vgg19_notop, keras3_files):
    with pytest.raises(MinivggError, match=r"holds a VGG19, not a VGG16: use minivgg\.VGG19") as e:
        VGG16(weights=vgg19_notop)
    assert str(vgg19_notop) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(MinivggError, match=r"holds a VGG16, not a VGG19: use minivgg\.VGG16"):
        VGG19(weights=keras3_files["vgg16"]["keras"])
    model = VGG(weights=vgg19_notop)
    assert model.arch == "vgg19" and len(model.plan) == 16 and model.layers[-1].name == "block5_pool"


# ---------------------------------------------------------------- fine-tuned heads from the saved config


def table(model):
    return [(row.name, row.kind, row.out, row.activation) for row in model.top]


def test_flatten_head_from_legacy_h5_and_keras_archive(finetuned):
    (h5, archive), keras_model = finetuned["flatten"]
    head = [("flatten", "flatten", 0, ""), ("fc_new", "dense", 16, "relu"), ("dropout", "dropout", 0, ""),
            ("classes", "dense", 5, "softmax")]
    for path in (h5, archive):
        model = VGG16(weights=path)
        assert table(model) == head and model.input_size == (64, 80)
        assert_same_params(model, keras_params(keras_model))
        assert model(np.zeros((2, 64, 80, 3), np.float32)).shape == (2, 5)
        with pytest.raises(MinivggError, match="takes 64x80 images"):
            model(np.zeros((80, 64, 3), np.float32))
        assert model.dropout == {"dropout": 0.5}  # the fixture's Dropout(0.5), from the config
        notop = VGG16(weights=path, include_top=False)  # the conv base alone: any size again
        assert notop.top == () and notop.input_size is None and "fc_new" not in notop.params
        assert notop.dropout == {}
    assert "fc_new" in VGG16(weights=h5).summary() and "(None, 5)" in VGG16(weights=h5).summary()


def test_pooled_heads(finetuned, tmp_path):
    gap, keras_model = finetuned["gap"]
    keras_model.save(tmp_path / "gap.h5")  # the legacy layout of a nested model: one group, "vgg16", for 13 layers
    with h5py.File(tmp_path / "gap.h5") as f:
        assert list(f["model_weights"].attrs["layer_names"])[0] in ("vgg16", b"vgg16")
    for path in (gap, tmp_path / "gap.h5"):
        model = VGG(weights=path)  # a Sequential holding the VGG16 base as one nested model
        assert table(model) == [("global_average_pooling2d", "global_avg_pool", 0, ""),
                                ("dense", "dense", 5, "softmax")]
        assert model.input_size is None  # a global pool takes any size
        assert_same_params(model, keras_params(keras_model))
    assert model(np.zeros((1, 40, 56, 3), np.float32)).shape == (1, 5)
    gmp, _ = finetuned["gmp"]
    assert [r[1:] for r in table(VGG(weights=gmp))] == [("global_max_pool", 0, ""), ("dense", 8, "linear"),
                                                        ("dense", 3, "sigmoid")]


def test_finetuned_weights_without_their_config_are_refused_with_the_fix(finetuned, tmp_path):
    _, keras_model = finetuned["flatten"]
    path = tmp_path / "finetuned.weights.h5"
    keras_model.save_weights(path)
    one_line_error(r"layers VGG16 does not have \(fc_new, classes\).*fine-tuned VGG16 saved without its config "
                   r"\(model\.save\('x\.keras'\) keeps it\)", weights=path)


# ---------------------------------------------------------------- bad files, one line each


def test_a_zip_that_is_not_a_keras_archive(tmp_path):
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "holiday photos")
    one_line_error(r"is a zip file but not a Keras archive \(\.keras\): it has no config\.json or model\.weights\.h5",
                   weights=path)


def test_a_truncated_archive(finetuned, tmp_path):
    (_, archive), _ = finetuned["flatten"]
    data = archive.read_bytes()
    for fraction in (0.5, 0.9999):
        path = tmp_path / "cut.keras"
        path.write_bytes(data[: int(len(data) * fraction)])
        one_line_error("truncated", weights=path)


def test_a_config_naming_a_resnet(tf, finetuned, tmp_path):
    import keras

    resnet = keras.saving.serialize_keras_object(keras.applications.ResNet50(weights=None, include_top=False))
    (_, archive), _ = finetuned["flatten"]
    path = rewrite_archive(archive, tmp_path / "resnet.keras", config=lambda cfg: resnet)
    one_line_error(r"layer 'conv1_pad' \(ZeroPadding2D\) is not a layer minivgg knows: minivgg cannot compute it",
                   weights=path)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda cfg: head_layer(cfg, "classes")["config"].update(activation="tanh"),
         r"layer 'classes' \(Dense\) has activation 'tanh', not one of linear, relu, softmax, sigmoid"),
        (lambda cfg: head_layer(cfg, "dropout").update(class_name="BatchNormalization"),
         r"layer 'dropout' \(BatchNormalization\) is not a layer minivgg knows"),
        (lambda cfg: head_layer(cfg, "block3_conv2")["config"].update(kernel_size=[5, 5]),
         r"layer 'block3_conv2' \(Conv2D\) is not a 3x3, stride 1, 'same' convolution"),
        (lambda cfg: head_layer(cfg, "block4_conv3").update(class_name="Dropout"),
         r"not a VGG16 or VGG19 \(at layer 'block4_conv3' \(Dropout\)\)"),
        (lambda cfg: head_layer(cfg, "classes")["inbound_nodes"][0]["args"][0]["config"].update(
            keras_history=["flatten", 0, 0]),
         r"layer 'classes' \(Dense\) takes its input from flatten, not from 'dropout' alone"),
        (lambda cfg: head_layer(cfg, "dropout")["config"].update(rate=1.0),
         r"layer 'dropout' \(Dropout\) has rate 1.0, not a number in \[0, 1\)"),
        (lambda cfg: head_layer(cfg, "dropout")["config"].update(rate="0.3"),
         r"layer 'dropout' \(Dropout\) has rate '0.3', not a number in \[0, 1\)"),
    ],
    ids=["tanh", "unknown-layer", "5x5-conv", "not-vgg", "branch", "rate-1", "rate-text"],
)
def test_config_layers_minivgg_cannot_compute(finetuned, tmp_path, change, message):
    (_, archive), _ = finetuned["flatten"]

    def edit(cfg):
        change(cfg)
        return cfg

    one_line_error(message, weights=rewrite_archive(archive, tmp_path / "edited.keras", config=edit))


def test_dropout_rate_from_the_config_and_keras_default_without_one(finetuned, tmp_path):
    from minivgg.files.keras_model import DEFAULT_RATE

    (_, archive), _ = finetuned["flatten"]

    def rate(value):
        def edit(cfg):
            c = head_layer(cfg, "dropout")["config"]
            c.pop("rate")
            if value is not None:
                c["rate"] = value
            return cfg
        return edit

    path = rewrite_archive(archive, tmp_path / "r.keras", config=rate(0.2))
    assert VGG(weights=path).dropout == {"dropout": 0.2}  # the file's rate, not the fixture's 0.5
    path = rewrite_archive(archive, tmp_path / "none.keras", config=rate(None))
    assert VGG(weights=path).dropout == {"dropout": DEFAULT_RATE} and DEFAULT_RATE == 0.5  # Keras' usual rate


def test_names_from_a_file_stay_names(finetuned, tmp_path, monkeypatch):
    # A layer name that looks like a path or code is only ever a label: nothing is opened or run.
    (_, archive), _ = finetuned["flatten"]
    evil = "../../evil/__import__('os').system('touch pwned')"

    def rename(cfg):
        head_layer(cfg, "dropout")["config"]["name"] = evil
        head_layer(cfg, "classes")["inbound_nodes"][0]["args"][0]["config"]["keras_history"][0] = evil
        return cfg

    path = rewrite_archive(archive, tmp_path / "evil.keras", config=rename)
    monkeypatch.chdir(tmp_path)
    model = VGG(weights=path)
    assert model.top[2].name == evil and sorted(p.name for p in tmp_path.iterdir()) == ["evil.keras"]


def test_damaged_inner_weights_and_oversized_config(finetuned, tmp_path):
    (_, archive), _ = finetuned["flatten"]
    path = rewrite_archive(archive, tmp_path / "bad-weights.keras", weights=lambda data: b"\x89HDF\r\n" + b"\0" * 64)
    one_line_error("damaged or truncated HDF5", weights=path)
    path = tmp_path / "not-json.keras"
    with zipfile.ZipFile(archive) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, b"{not json" if info.filename == "config.json" else zin.read(info.filename))
    one_line_error("saved config is not valid JSON", weights=path)


def test_an_archive_rezipped_with_compression_still_loads(keras3_files, tmp_path):
    src = keras3_files["vgg16"]["keras"]
    path = tmp_path / "deflated.keras"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    with zipfile.ZipFile(path) as z:
        assert z.getinfo("model.weights.h5").compress_type == zipfile.ZIP_DEFLATED
    assert_same_params(VGG16(weights=path), keras3_files["vgg16"]["params"])
