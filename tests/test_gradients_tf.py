"""minivgg's backward pass against TensorFlow's GradientTape, on the same Keras-written weight files.

The reference (``tf_pinned.py``) is VGG16 rebuilt from TensorFlow ops on minivgg's weights, with the
ReLU masks and max-pool choices pinned to minivgg's forward pass on the same input (why: see there).
Its forward outputs are first checked against Keras' own VGG16 (1e-4 of max|output|, the forward
bar of test_reference.py), so the rebuild is VGG16; then every gradient is compared:

    ||ours - tf|| / ||tf|| <= 1e-4   per tensor: the input, every layer output, every kernel and bias.

Both sides sum the same products in float32 in different orders: a layer's gradient differs by a few
ulps (~1e-7 relative), and that grows mildly through the 16 layers below the top (measured: at most
~1e-5, with Winograd's transforms costing the most). A wrong rule (a missing flip, a mask from the
wrong layer, a pool gradient sent to the wrong element, a dropped softmax term) costs 1e-2 or more.

Beside each case, the cosine between our input gradient and Keras' own, unpinned GradientTape is
reported (not bounded tightly: a single flipped ReLU decision moves it, which is the point of pinning).
pytest prints both tables at the end of the run.
"""
import numpy as np
import pytest

from conftest import GRADIENT_AGREEMENT, KERAS_COSINE
from minivgg import VGG16, load_image, preprocess_input
from minivgg.network.backprop import channel_mean, class_score
from tf_pinned import keras_input_gradient, tf_gradients

BAR = 1e-4
FORWARD_BAR = 1e-4
COSINE_FLOOR = 0.99  # measured >= 0.9999; a wrong backward pass gives ~0 to 0.9


def norm_err(ours, theirs):
    assert ours.shape == theirs.shape, f"shape ours {ours.shape} != tf {theirs.shape}"
    return float(np.linalg.norm(ours.astype(np.float64) - theirs) / max(np.linalg.norm(theirs.astype(np.float64)), 1e-30))


def compare(case, ours, theirs):
    assert set(ours) == set(theirs), f"tensors differ: {sorted(set(ours) ^ set(theirs))}"
    errors = {}
    for name, g in ours.items():
        errors[name] = norm_err(g, theirs[name])
        GRADIENT_AGREEMENT[(case, name)] = errors[name]
    worst = sorted(errors.items(), key=lambda kv: -kv[1])[:5]
    assert max(errors.values()) <= BAR, f"{case}: worst ||ours - tf|| / ||tf||: {worst}"


def cosine(a, b):
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def keras_vgg(weights, include_top, shape):
    import keras

    return keras.applications.VGG16(weights=str(weights), include_top=include_top, input_shape=shape)


def check_rebuild_is_keras(tf, keras_model, outs, x):
    """The pinned rebuild's forward outputs against Keras' VGG16, layer by layer (forward bar)."""
    import keras

    layers = [layer for layer in keras_model.layers if not isinstance(layer, keras.layers.InputLayer)]
    layers = [layer for layer in layers if layer.name in outs]
    probe = keras.Model(keras_model.inputs, [layer.output for layer in layers])
    for layer, theirs in zip(layers, probe.predict_on_batch(x)):
        err = np.abs(outs[layer.name] - theirs).max() / np.abs(theirs).max()
        assert err <= FORWARD_BAR, f"the pinned rebuild differs from Keras at {layer.name}: {err:.2e}"


@pytest.fixture(scope="module")
def top_model(tf, weights_top):
    return VGG16(weights=weights_top), keras_vgg(weights_top, True, (224, 224, 3))


@pytest.fixture(scope="module")
def photo_224(photo):
    return preprocess_input(load_image(photo))[None]  # (1, 224, 224, 3)


def test_class_probability_with_top(tf, top_model, photo_224):
    # These random weights saturate the softmax on the photo (top class at 1 - 6e-8), which would
    # make the probability's gradient vanish; a tenth of the input keeps it at 0.65.
    model, keras_model = top_model
    x = 0.1 * photo_224
    p = model(x)
    assert 0.2 < p.max() < 0.9
    second = int(np.argsort(p[0])[-2])  # not the top class: its gradient has both signs of evidence
    seeds = class_score(model, x, second)
    ours = model.gradients(x, seeds, weights=True)
    theirs, outs = tf_gradients(tf, model, x, seeds, weights=True)
    check_rebuild_is_keras(tf, keras_model, outs, x)
    compare("probability, top, 224", ours, theirs)
    keras_g = keras_input_gradient(tf, keras_model, x, "predictions", seeds["predictions"])
    KERAS_COSINE["probability, top, 224"] = c = cosine(ours["input"], keras_g)
    assert c > COSINE_FLOOR


def test_class_logit_with_top(tf, top_model, photo_224):
    model, keras_model = top_model
    x = photo_224
    seeds = class_score(model, x, int(np.argmax(model(x)[0])))
    ours = model.gradients(x, seeds, logits=True, weights=True)
    theirs, outs = tf_gradients(tf, model, x, seeds, logits=True, weights=True)
    compare("logit, top, 224", ours, theirs)
    keras_g = keras_input_gradient(tf, keras_model, x, "predictions", seeds["predictions"], logits=True)
    KERAS_COSINE["logit, top, 224"] = c = cosine(ours["input"], keras_g)
    assert c > COSINE_FLOOR
    assert keras_model.get_layer("predictions").activation.__name__ == "softmax"  # restored


@pytest.fixture(scope="module")
def batch_96x144(photo):
    img = load_image(photo, target_size=(96, 144))  # H != W; 96/16 = 6: block5 is 6x9, odd from block4 on
    rng = np.random.default_rng(0)
    return preprocess_input(np.stack([img, rng.uniform(0, 255, img.shape).astype(np.float32)]))  # (2, 96, 144, 3)


@pytest.mark.parametrize("method", ["auto", "im2col"])
def test_channel_mean_batch_without_top(tf, weights_notop, batch_96x144, method):
    x = batch_96x144
    model = VGG16(weights=weights_notop, method=method)
    seeds = channel_mean(model, x, "block4_conv3", [17, 300])  # one channel per image
    ours = model.gradients(x, seeds, weights=True)
    theirs, outs = tf_gradients(tf, model, x, seeds, weights=True)
    keras_model = keras_vgg(weights_notop, False, x.shape[1:])
    check_rebuild_is_keras(tf, keras_model, outs, x)
    compare(f"channel mean, notop, batch 2, 96x144, {method}", ours, theirs)
    keras_g = keras_input_gradient(tf, keras_model, x, "block4_conv3", seeds["block4_conv3"])
    KERAS_COSINE[f"channel mean, notop, batch 2, 96x144, {method}"] = c = cosine(ours["input"], keras_g)
    assert c > COSINE_FLOOR


@pytest.mark.parametrize("rule", ["guided", "deconvnet"])
def test_guided_and_deconvnet_rules(tf, weights_notop, batch_96x144, rule):
    x = batch_96x144
    model = VGG16(weights=weights_notop)
    seeds = {**channel_mean(model, x, "block5_conv3", [3, 400]), **channel_mean(model, x, "block2_pool", 7)}
    ours = model.gradients(x, seeds, relu=rule)
    theirs, _ = tf_gradients(tf, model, x, seeds, relu=rule)
    compare(f"{rule}, two seeds, notop, batch 2, 96x144", ours, theirs)
    plain = model.gradients(x, seeds)["input"]
    assert norm_err(ours["input"], plain) > 0.1  # the rule really changed the pass



# ---------------------------------------------------------------- VGG19 and fine-tuned heads


def test_vgg19_without_top_weights_and_input(tf, vgg19_notop, batch_96x144):
    from minivgg import VGG19

    x = batch_96x144
    model = VGG19(weights=vgg19_notop)
    seeds = channel_mean(model, x, "block5_conv4", [5, 200])
    ours = model.gradients(x, seeds, weights=True)
    theirs, _ = tf_gradients(tf, model, x, seeds, weights=True)
    assert {"block3_conv4", "block5_conv4/kernel"} <= set(ours)
    compare("VGG19 channel mean, notop, batch 2, 96x144", ours, theirs)


def test_vgg19_with_top_logit(tf, vgg19_top, photo_224):
    from minivgg import VGG19

    model = VGG19(weights=vgg19_top)
    seeds = class_score(model, photo_224, 7)
    ours = model.gradients(photo_224, seeds, logits=True)
    theirs, _ = tf_gradients(tf, model, photo_224, seeds, logits=True)
    compare("VGG19 logit, top, 224", ours, theirs)


@pytest.mark.parametrize("head, rule, logits", [
    ("flatten", "plain", False),  # softmax probability through dropout, a relu dense layer and flatten
    ("gap", "plain", False),  # the global average pool of a nested base
    # Global max pool, linear dense, sigmoid. Deconvnet has no ReLU mask, so the global max pool's ties
    # (a channel of block5_pool that is 0 everywhere) really send gradient down: they share it, as in TF.
    # (Taking the last layer's logit instead is the same step for a sigmoid as for VGG19's softmax, above.)
    ("gmp", "deconvnet", False),
])
def test_finetuned_heads(tf, finetuned, photo, head, rule, logits):
    from minivgg import VGG

    paths, _ = finetuned[head]
    model = VGG(weights=paths[0] if isinstance(paths, tuple) else paths)
    size = model.input_size or (72, 56)
    img = load_image(photo, target_size=size)
    # These random heads saturate their softmax on the photo (a gradient ~0 would compare nothing):
    # the photo is scaled down until the top class stays under 0.99.
    x0 = preprocess_input(np.stack([img, img[:, ::-1]]))  # (2, H, W, 3)
    for scale in (1.0, 0.1, 0.03, 0.01, 0.003, 0.001):
        x = np.float32(scale) * x0
        p = model(x)
        if logits or p.max() < 0.99:
            break
    assert logits or p.max() < 0.99, "the softmax is saturated: its gradient would vanish"
    seeds = class_score(model, x, [1, int(np.argmax(p[1]))])
    ours = model.gradients(x, seeds, relu=rule, logits=logits, weights=True)
    theirs, outs = tf_gradients(tf, model, x, seeds, relu=rule, logits=logits, weights=True)
    for name, a in model.activations(x).items():  # the rebuild is this network (the head included)
        if not (logits and name == model.layers[-1].name):
            assert np.abs(outs[name] - a).max() <= FORWARD_BAR * np.abs(a).max(), name
    compare(f"fine-tuned {head} head, {rule}{', logit' if logits else ''}, batch 2", ours, theirs)
