"""minivgg against TensorFlow's Keras VGG16 on the same weight file, layer by layer.

Both networks load the same Keras-written file (seeded He-normal kernels, non-zero biases) and see
the same preprocessed input; every layer's output is compared.

Tolerance: worst max|ours - tf| / max|tf| <= 1e-4 per layer. Both sides compute in float32 but sum
in different orders (oneDNN's direct convolution, our GEMM or Winograd transforms), so each layer
differs by rounding, and small differences carry through the 13 conv layers. Measured (pytest prints
the table at the end of each run): 1e-6..3e-6 per layer for im2col, 3e-6..8e-6 for Winograd
F(4x4,3x3), whose transforms multiply by up to 8 before dividing, which costs a few bits. 1e-4 sits above all of that and far below any real mistake: a dropped bias, a
transposed kernel or a shifted window each give errors of order 1.
"""
import numpy as np
import pytest

from conftest import AGREEMENT
from minivgg import VGG, VGG16, VGG19, decode_predictions, load_image, preprocess_input
from minivgg.layers.conv import METHODS
from minivgg.files.imagenet import load_class_index

BAR = 1e-4
CLASS_OF = {wnid: int(i) for i, (wnid, _) in load_class_index().items()}
FAST_METHODS = [m for m in METHODS if m != "naive"] + ["auto"]


def keras_activations(tf, weights, include_top, x):
    """Every layer's output of Keras' VGG16 loading ``weights``: name -> array."""
    import keras

    model = keras.applications.VGG16(weights=str(weights), include_top=include_top, input_shape=x.shape[1:])
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    return {layer.name: out for layer, out in zip(layers, probe.predict_on_batch(x))}


def compare(case, ours, theirs):
    assert list(ours) == list(theirs), "layer names or order differ from Keras'"
    errors = {}
    for name, a in ours.items():
        b = np.asarray(theirs[name])
        assert a.shape == b.shape, f"{name}: ours {a.shape}, tf {b.shape}"
        errors[name] = float(np.abs(a - b).max() / np.abs(b).max())
        AGREEMENT[(case, name)] = errors[name]
    table = "\n".join(f"{name:<14} {err:.2e}" for name, err in errors.items())
    assert max(errors.values()) <= BAR, f"{case}: max|ours - tf| / max|tf| per layer:\n{table}"


def photo_input(photo, size=(224, 224)):
    return preprocess_input(load_image(photo, target_size=size))[None]  # (1, H, W, 3)


@pytest.fixture(scope="module")
def tf_photo_224(tf, weights_notop, photo):
    x = photo_input(photo)
    return x, keras_activations(tf, weights_notop, False, x)


@pytest.mark.parametrize("method", FAST_METHODS)
def test_real_photo_224(tf_photo_224, weights_notop, method):
    x, theirs = tf_photo_224
    compare(f"photo 224x224, {method}", VGG16(weights=weights_notop, method=method).activations(x), theirs)


@pytest.mark.parametrize("method", FAST_METHODS)
def test_non_square_photo(tf, weights_notop, photo, method):
    x = photo_input(photo, size=(176, 272))  # H != W, and 176/16 = 11: odd sizes from block4 on
    ours = VGG16(weights=weights_notop, method=method).activations(x)
    assert ours["block5_pool"].shape == (1, 5, 8, 512)
    compare(f"photo 176x272, {method}", ours, keras_activations(tf, weights_notop, False, x))


@pytest.mark.parametrize("method", FAST_METHODS)
def test_batch_of_images(tf, weights_notop, photo, method):
    img = load_image(photo, target_size=(112, 144))
    rng = np.random.default_rng(0)
    batch = np.stack([img, img[::-1, ::-1], rng.uniform(0, 255, img.shape).astype(np.float32)])  # (3, H, W, 3)
    x = preprocess_input(batch)
    ours = VGG16(weights=weights_notop, method=method).activations(x)
    compare(f"batch of 3 at 112x144, {method}", ours, keras_activations(tf, weights_notop, False, x))


def test_naive_method_small_image(tf, weights_notop, photo):
    x = photo_input(photo, size=(40, 36))  # the naive twin is slow: a small odd-sized image
    ours = VGG16(weights=weights_notop, method="naive").activations(x)
    compare("photo 40x36, naive", ours, keras_activations(tf, weights_notop, False, x))


@pytest.mark.parametrize("method", ["im2col", "auto"])
def test_full_model_with_top(tf, weights_top, photo, method):
    img = load_image(photo)
    x = preprocess_input(np.stack([img, img[:, ::-1]]))  # (2, 224, 224, 3): the photo and its mirror
    theirs = keras_activations(tf, weights_top, True, x)
    model = VGG16(weights=weights_top, method=method)
    ours = model.activations(x)
    compare(f"with top, batch 2, {method}", ours, theirs)
    # model(x) runs block1-3 depth-first, image by image (VGG.output): Winograd's GEMMs are cut differently
    # from the batched pass of activations(), so the two agree to float32 rounding, not bit for bit.
    p = ours["predictions"]
    np.testing.assert_allclose(model(x), p, rtol=0, atol=1e-5 * np.abs(p).max())
    # Top-5 classes: the same, except that classes whose TF scores lie within the tolerance of each
    # other may trade places (a random top gives near-uniform scores, where such ties happen).
    tf_p = np.asarray(theirs["predictions"])
    tol = BAR * tf_p.max()
    for ours_row, tf_row, decoded in zip(ours["predictions"], tf_p, decode_predictions(ours["predictions"], top=5)):
        ours_top = np.array([CLASS_OF[wnid] for wnid, _, _ in decoded])  # our top-5, as class indices
        tf_scores_at_rank = np.sort(tf_row)[::-1][:5]
        assert np.all(np.abs(tf_row[ours_top] - tf_scores_at_rank) <= tol), (ours_top, np.argsort(-tf_row)[:5])


def test_parameter_count_equals_keras(tf):
    import minivgg
    from conftest import keras_app

    for arch in ("vgg16", "vgg19"):
        for top in (True, False):
            total = minivgg.summary(include_top=top, arch=arch).splitlines()[-1].split()[1]
            assert int(total.replace(",", "")) == keras_app(arch)(weights=None, include_top=top).count_params()


# ---------------------------------------------------------------- VGG19, Keras 3 formats, fine-tuned heads


def keras_chain_activations(model, x):
    """Every layer's output of a Keras model that is a chain of layers, nested models inlined: each
    Keras layer called on the previous one's output, as Keras' own model would (inference mode)."""
    import keras

    out, a = {}, x
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if hasattr(layer, "layers"):  # a model nested in this one: its layers, in order
            inner = keras_chain_activations(layer, a)
            out.update(inner)
            a = list(inner.values())[-1]
        else:
            a = np.asarray(layer(a, training=False))
            out[layer.name] = a
    return out


def keras_last_logits(model, x_last):
    """The last layer's scores before its softmax or sigmoid: the Keras layer run with a linear
    activation on its own input (random weights saturate a softmax, which would hide a wrong last layer)."""
    import keras

    layer = model.layers[-1]
    saved, layer.activation = layer.activation, keras.activations.linear
    try:
        return np.asarray(layer(x_last))
    finally:
        layer.activation = saved


def compare_with_logits(case, model, x, keras_model):
    """``compare`` for every layer, and the last layer's logits as one more row."""
    theirs = keras_chain_activations(keras_model, x)
    ours = model.activations(x)
    names = list(theirs)
    last, below = names[-1], theirs[names[-2]]
    our_logits = list(model.forward(x, logits=True))[-1][1]
    compare(case, {**ours, f"{last} (logits)": our_logits},
            {**theirs, f"{last} (logits)": keras_last_logits(keras_model, below)})
    return ours


def test_vgg19_without_top(tf, vgg19_notop, photo):
    from conftest import keras_app

    x = photo_input(photo, size=(120, 88))  # H != W, odd from block4 on (15x11 -> 7x5 -> 3x2)
    model = VGG19(weights=vgg19_notop)
    ours = model.activations(x)
    assert len(ours) == 21 and ours["block5_pool"].shape == (1, 3, 2, 512)
    theirs = keras_chain_activations(keras_app("vgg19")(weights=str(vgg19_notop), include_top=False), x)
    compare("VGG19 notop 120x88, auto", ours, theirs)


def test_vgg19_with_top(tf, vgg19_top, photo):
    from conftest import keras_app

    x = photo_input(photo)  # (1, 224, 224, 3)
    model = VGG19(weights=vgg19_top)
    assert model.include_top and model.params["fc1"][0].shape == (25088, 4096)
    compare_with_logits("VGG19 with top, 224", model, x, keras_app("vgg19")(weights=str(vgg19_top), include_top=True))


@pytest.mark.parametrize("fmt", ["weights.h5", "keras"])
@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_keras3_formats(tf, keras3_files, photo, arch, fmt):
    import keras

    from conftest import keras_app

    path = keras3_files[arch][fmt]
    if fmt == "keras":
        keras_model = keras.saving.load_model(path)
    else:
        keras_model = keras_app(arch)(weights=None, include_top=False)
        keras_model.load_weights(path)
    x = photo_input(photo, size=(48, 72))
    compare(f"{arch} {fmt} 48x72", VGG(weights=path).activations(x), keras_chain_activations(keras_model, x))


@pytest.mark.parametrize("head", ["flatten", "gap", "gmp"])
def test_finetuned_heads(tf, finetuned, photo, head):
    paths, keras_model = finetuned[head]
    size = (64, 80) if head == "flatten" else (72, 56)
    img = load_image(photo, target_size=size)
    x = preprocess_input(np.stack([img, img[::-1]]))  # (2, H, W, 3): the photo and its upside-down twin
    for path in paths if isinstance(paths, tuple) else (paths,):
        model = VGG(weights=path)
        ours = compare_with_logits(f"fine-tuned {head} head, {path.suffix}", model, x, keras_model)
        np.testing.assert_array_equal(model(x), ours[model.layers[-1].name])
    assert ours[model.layers[-1].name].shape == (2, model.layers[-1].out)
