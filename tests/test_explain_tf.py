"""Every explanation method against the same method computed with TensorFlow's GradientTape, on the
same Keras-written VGG16 weights.

The TensorFlow side is written here, method by method, from the papers and tf-keras-vis:
- saliency: max over colours of |dS/dx|; SmoothGrad: the same over the *same* noisy copies
  (``noisy_copies``, seeded), averaged; guided backprop and deconvnet: dS/dx with the ReLUs'
  gradient replaced (``tf.custom_gradient``);
- Integrated Gradients: the same midpoint path points from the same black baseline (written out
  here), the gradients averaged and times (x - b); its completeness gap from TensorFlow's scores;
- Grad-CAM as tf-keras-vis' ``Gradcam`` computes it: weights = mean over (h, w) of dS/dA, cam =
  ReLU(sum_k w_k A_k), raw (its ``normalize_cam=False, expand_cam=False``); LayerCAM likewise
  (ReLU(sum_k ReLU(G_k) A_k)); guided Grad-CAM with ``tf.image.resize`` (bilinear) and a min-max scale.
The gradients come from ``tf_pinned.tf_gradients``: VGG16 rebuilt from TensorFlow ops, each ReLU a
``tf.custom_gradient`` (plain, guided or deconvnet rule) whose mask is minivgg's, each max-pool a
gather of minivgg's choice (why: tests/tf_pinned.py; one flipped ReLU decision moves a map by 1e-3
to 1e-2). Its forward pass is checked against Keras' VGG16 in test_gradients_tf.py.

Bar: ||ours - tf|| / ||tf|| <= 1e-4 per raw map. The maps are the input or layer gradients that
test_gradients_tf.py holds to 1e-4 (measured there: 1.4e-5 at worst), put through operations that do
not amplify a relative error: |.|, a max over 3 colours, a mean over copies, products with the layer's
output (itself within 1e-6), a ReLU (which can only shrink a difference) and a min-max scale of a
CAM whose range is O(1) of its values. A wrong method (a missing |.|, the wrong noise draws or path
points, a mean over the wrong axis, a rule not applied) is off by 1e-2 or more.

Beside the pinned comparison, saliency and Grad-CAM are also computed by Keras' own VGG16 and
GradientTape, unpinned (tf-keras-vis' way: a model with the conv layer's output and the target's),
and their cosine with ours is recorded (pytest prints it at the end) and held above 0.99.

Cheap on purpose: one notop case at 64x96 (batch 2, a channel target), one with the top at 224 (a
class target); SmoothGrad with 3 samples, IG with 4 steps.
"""
import numpy as np
import pytest

from conftest import GRADIENT_AGREEMENT, KERAS_COSINE
from minivgg import VGG16, explain, load_image, preprocess_input
from minivgg.explain.gradient_maps import noisy_copies
from minivgg.explain.targets import resolve
from minivgg.files.preprocess import IMAGENET_MEAN_BGR
from tf_pinned import keras_input_gradient, tf_gradients

pytestmark = pytest.mark.tensorflow

BAR = 1e-4
SAMPLES, STEPS = 3, 4


def norm_err(ours, theirs):
    assert ours.shape == theirs.shape, f"shape ours {ours.shape} != tf {theirs.shape}"
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.linalg.norm(ours - theirs) / max(np.linalg.norm(theirs), 1e-30))


def check(case, method, ours, theirs):
    err = norm_err(ours, theirs)
    GRADIENT_AGREEMENT[(case, f"explain: {method}")] = err
    assert err <= BAR, f"{case}, {method}: ||ours - tf|| / ||tf|| = {err:.2e} > {BAR}"
    assert np.abs(theirs).max() > 0, f"{case}, {method}: the reference map is all 0: nothing compared"


def cosine(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---------------------------------------------------------------- the TensorFlow side


def tf_seed(target):
    """S as a seed for tf_gradients, written from the definition: a function of the layer's output."""
    if target.is_class:
        return {target.layer: lambda a: np.eye(a.shape[1], dtype=np.float32)[target.ids]}  # one-hot (N, U)

    def mean_of_channel(a):  # (N, h, w, C): 1 / (h * w) on each image's channel
        dy = np.zeros_like(a)
        dy[np.arange(len(a)), :, :, target.ids] = 1.0 / (a.shape[1] * a.shape[2])
        return dy

    return {target.layer: mean_of_channel}


def tf_grads(tf, model, x, target, relu="plain"):
    """(grads, outs) of S by GradientTape through the pinned rebuild (logits: pre-softmax)."""
    return tf_gradients(tf, model, x, tf_seed(target), relu=relu, logits=True)


class TFMethods:
    """Each method by TensorFlow, for images x (N, H, W, 3) and a resolved target."""

    def __init__(self, tf, model, x, target):
        self.tf, self.model, self.x, self.t = tf, model, x, target
        self.cache = {}  # one TensorFlow pass per rule: the CAMs share one, guided Grad-CAM reuses two

    def grads(self, relu="plain"):
        if relu not in self.cache:
            self.cache[relu] = tf_grads(self.tf, self.model, self.x, self.t, relu)
        return self.cache[relu]

    def saliency(self):
        g, _ = self.grads()
        return self.tf.reduce_max(self.tf.abs(g["input"]), axis=-1).numpy()

    def smoothgrad(self):
        tf = self.tf
        total = tf.zeros(self.x.shape, tf.float64)
        for n, copies in noisy_copies(self.x, samples=SAMPLES, noise=0.2, seed=0):  # the same draws
            g, _ = tf_grads(tf, self.model, copies, self.t.take(n))
            total += tf.math.unsorted_segment_sum(tf.abs(tf.cast(g["input"], tf.float64)), n, len(self.x))
        return tf.reduce_max(total / SAMPLES, axis=-1).numpy()

    def integrated_gradients(self):
        """Attributions (N, H, W, 3), and (sum of attributions, S(x) - S(b)) per image."""
        tf, x = self.tf, self.x
        b = np.broadcast_to(-np.array(IMAGENET_MEAN_BGR, np.float32), x.shape)  # black, preprocessed: 0 - mean
        N = len(x)
        a = ((np.arange(STEPS) + 0.5) / STEPS).astype(np.float32)  # the midpoint rule's a_k
        points = (b[None] + a[:, None, None, None, None] * (x - b)[None]).reshape(STEPS * N, *x.shape[1:])  # (STEPS*N, H, W, 3)
        g, _ = tf_grads(tf, self.model, points, self.t.take(np.tile(np.arange(N), STEPS)))  # point k*N + n: image n
        total = tf.reduce_sum(tf.reshape(tf.cast(g["input"], tf.float64), (STEPS, *x.shape)), axis=0)  # (N, H, W, 3)
        attributions = tf.constant((x - b).astype(np.float64)) * (total / STEPS)
        _, out_x = self.grads()
        _, out_b = tf_grads(tf, self.model, np.ascontiguousarray(b), self.t)
        score = lambda outs: np.sum((tf_seed(self.t)[self.t.layer](outs[self.t.layer]) * outs[self.t.layer])
                                    .reshape(len(x), -1), axis=1)  # (N,)
        sums = tf.reduce_sum(attributions, axis=(1, 2, 3)).numpy()
        return attributions.numpy().astype(np.float32), sums, score(out_x).astype(np.float64) - score(out_b)

    def guided_backprop(self):
        return self.grads("guided")[0]["input"]

    def deconvnet(self):
        return self.grads("deconvnet")[0]["input"]

    def _AG(self, layer):
        g, outs = self.grads()
        return self.tf.constant(outs[layer]), self.tf.constant(g[layer])

    def grad_cam(self, layer):  # tf-keras-vis' Gradcam, raw
        tf = self.tf
        A, G = self._AG(layer)
        weights = tf.reduce_mean(G, axis=(1, 2), keepdims=True)  # (N, 1, 1, K)
        return tf.nn.relu(tf.reduce_sum(A * weights, axis=-1)).numpy()  # (N, h, w)

    def layer_cam(self, layer):
        tf = self.tf
        A, G = self._AG(layer)
        return tf.nn.relu(tf.reduce_sum(tf.nn.relu(G) * A, axis=-1)).numpy()

    def guided_grad_cam(self, layer):
        tf = self.tf
        cam = tf.image.resize(self.grad_cam(layer)[..., None], self.x.shape[1:3], method="bilinear")[..., 0]
        lo = tf.reduce_min(cam, axis=(1, 2), keepdims=True)
        hi = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        cam = (cam - lo) / (hi - lo)
        return (tf.constant(self.guided_backprop()) * cam[..., None]).numpy()


def compare_all(tf, model, x, target, case, layer, cam_layers):
    ref = TFMethods(tf, model, x, resolve(model, x, target))
    check(case, "saliency", explain.saliency(model, x, target), ref.saliency())
    check(case, "smoothgrad", explain.smoothgrad(model, x, target, samples=SAMPLES), ref.smoothgrad())
    attributions, gap = explain.integrated_gradients(model, x, target, steps=STEPS)
    theirs, sums, delta = ref.integrated_gradients()
    check(case, "integrated_gradients", attributions, theirs)
    # The gap: the sum of attributions to 1e-4 of the sum of their sizes (positive and negative
    # attributions cancel in the sum, so it cannot be held to better than its terms), S(x) - S(b) to
    # 1e-5 (two forward passes, float32); then the gap follows from its definition.
    ours_sums = attributions.reshape(len(x), -1).sum(axis=1, dtype=np.float64)
    scale = np.abs(theirs).reshape(len(x), -1).sum(axis=1)
    assert np.all(np.abs(ours_sums - sums) <= BAR * scale), (ours_sums, sums)
    np.testing.assert_allclose(gap, (sums - delta) / delta, rtol=0, atol=float(np.max(2 * BAR * scale / np.abs(delta))))
    check(case, "guided_backprop", explain.guided_backprop(model, x, target), ref.guided_backprop())
    check(case, "deconvnet", explain.deconvnet(model, x, target), ref.deconvnet())
    for cam_layer in cam_layers:
        check(f"{case}, {cam_layer}", "grad_cam", explain.grad_cam(model, x, target, layer=cam_layer),
              ref.grad_cam(cam_layer))
        check(f"{case}, {cam_layer}", "layer_cam", explain.layer_cam(model, x, target, layer=cam_layer),
              ref.layer_cam(cam_layer))
    check(case, "guided_grad_cam", explain.guided_grad_cam(model, x, target, layer=layer), ref.guided_grad_cam(layer))


# ---------------------------------------------------------------- the cases


@pytest.fixture(scope="module")
def notop_case(tf, weights_notop, photo):
    """Two lopsided images (64x96: block5_conv3 is 4x6), the photo and noise, without the top, and a
    channel of block5_pool that is active on both (a dead one has no gradient to compare)."""
    model = VGG16(weights=weights_notop)
    img = load_image(photo, target_size=(64, 96))
    rng = np.random.default_rng(0)
    x = np.ascontiguousarray(preprocess_input(np.stack([img, rng.uniform(0, 255, img.shape).astype(np.float32)])))
    a = model.activations(x, ["block5_pool"])["block5_pool"].mean(axis=(1, 2))  # (2, 512)
    channel = int(np.argmax(a.min(axis=0)))  # active on both images
    return model, x, ("block5_pool", channel)


def test_every_method_agrees_with_tensorflow_notop_channel_target(tf, notop_case):
    model, x, target = notop_case
    compare_all(tf, model, x, target, "explain, notop, batch 2, 64x96, channel of block5_pool", "block5_conv3",
                ["block5_conv3", "block3_conv2"])


def test_unpinned_keras_saliency_and_grad_cam_are_close(tf, notop_case, weights_notop):
    """Keras' own VGG16 and GradientTape, tf-keras-vis' way (no pinned masks): cosine with ours."""
    import keras

    model, x, (layer, channel) = notop_case
    net = keras.applications.VGG16(weights=str(weights_notop), include_top=False, input_shape=x.shape[1:])
    dy = resolve(model, x, (layer, channel)).seeds(model, x)[layer]
    g = keras_input_gradient(tf, net, x, layer, dy)
    KERAS_COSINE["explain saliency, notop 64x96"] = c = cosine(explain.saliency(model, x, (layer, channel)),
                                                              np.abs(g).max(axis=3))
    assert c > 0.99
    probe = keras.Model(net.inputs, [net.get_layer("block5_conv3").output, net.get_layer(layer).output])
    x_tf = tf.constant(x)
    with tf.GradientTape() as tape:
        A, out = probe(x_tf)
        score = tf.reduce_sum(out * tf.constant(dy))
    G = tape.gradient(score, A)
    cam = tf.nn.relu(tf.reduce_sum(A * tf.reduce_mean(G, axis=(1, 2), keepdims=True), axis=-1)).numpy()
    KERAS_COSINE["explain grad_cam, notop 64x96"] = c = cosine(explain.grad_cam(model, x, (layer, channel)), cam)
    assert c > 0.99


@pytest.fixture(scope="module")
def top_case(tf, weights_top, photo):
    model = VGG16(weights=weights_top)
    x = preprocess_input(load_image(photo))[None]  # (1, 224, 224, 3)
    return model, np.ascontiguousarray(x), int(np.argmax(model(x)[0]))


def test_every_method_agrees_with_tensorflow_top_class_target(tf, top_case):
    model, x, k = top_case
    compare_all(tf, model, x, k, "explain, top, 224, top class", "block5_conv3", ["block5_conv3"])
