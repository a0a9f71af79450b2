"""A TensorFlow reference for minivgg's backward pass, with its discontinuities pinned.

Why pinned. ReLU ([z > 0]) and max-pool (which element of a window wins) are discontinuous
decisions. Where a pre-activation lies within float32 rounding of 0, or a window holds a near-tie,
two correct float32 forward passes (minivgg's Winograd or im2col, TensorFlow's oneDNN) can decide
differently, and one flipped decision deep in the network moves the whole input gradient (measured:
one flip at block3_conv3 moved it by 6.5e-3, norm-wise, against Keras' own GradientTape). That is
not an error of either side, but it hides real ones below 1e-2.

So this module rebuilds the network from TensorFlow ops (``tf.nn.conv2d``, ``tf.matmul``, ...) on
minivgg's own weights, and takes the decisions from minivgg's forward pass on the same input:
- each ReLU is a multiplication by minivgg's mask [output > 0], a ``tf.custom_gradient`` whose
  gradient is the chosen rule (plain: dy * mask; guided: dy * mask * [dy > 0]; deconvnet: dy * [dy > 0]);
- each max-pool is a gather of the element minivgg's pool chose (``pool.max_pool2d_argmax_naive``),
  so its gradient goes to that element.
Everything else (the convolutions, their sums, the dense layers, softmax and sigmoid, a fine-tuned
head's global pools (``tf.reduce_mean``, ``tf.reduce_max``, whose gradient shares ties) and dropout
(identity at inference), every gradient) is TensorFlow's own, through ``tf.GradientTape``. Against this reference an exact backward pass agrees
to float32 rounding. The tests check the rebuild's forward outputs against Keras' VGG16 first.

    g, outs = tf_gradients(tf, model, x, seeds, relu="plain", logits=False, weights=False)

has the contract of ``model.gradients(x, seeds, relu=..., logits=..., weights=..., outputs=True)``
(callable seeds included), except that ``outs`` holds every layer's output, not only the seeded ones.
"""
import numpy as np

from minivgg.jit import shared_gemms
from minivgg.layers.pool import max_pool2d_argmax_naive

RULES = ("plain", "guided", "deconvnet")


def pinned_relu(tf, mask, rule):
    """z -> z * mask, with the backward rule ``rule``; mask: minivgg's [output > 0] as float32."""
    mask = tf.constant(mask)

    @tf.custom_gradient
    def relu(z):
        def grad(dy):
            if rule == "plain":
                return dy * mask
            if rule == "guided":
                return dy * mask * tf.cast(dy > 0, dy.dtype)
            return dy * tf.cast(dy > 0, dy.dtype)  # deconvnet

        return z * mask, grad

    return relu


def pool_gather_index(a, size=2, stride=2):
    """Flat indices into a (N, H, W, C) array of the elements minivgg's pool chose: (N, H', W', C)."""
    N, H, W, C = a.shape
    idx = max_pool2d_argmax_naive(a, size, stride).astype(np.int64)  # (N, H', W', C): di * size + dj
    _, OH, OW, _ = idx.shape
    n, i, j, c = np.meshgrid(np.arange(N), np.arange(OH), np.arange(OW), np.arange(C), indexing="ij")
    h, w = stride * i + idx // size, stride * j + idx % size
    return ((n * H + h) * W + w) * C + c


def tf_gradients(tf, model, x, seeds, relu="plain", logits=False, weights=False):
    """The gradients of L = sum over seeds of sum(dy * output), by TensorFlow, decisions pinned.

    Returns (grads, outs) as numpy: grads has "input", every layer at or below the highest seed and,
    with ``weights``, "<layer>/kernel" and "<layer>/bias"; outs has every such layer's output.
    """
    assert relu in RULES
    x = np.asarray(x, np.float32)
    x = x[None] if x.ndim == 3 else x
    names = [row.name for row in model.layers]
    last = names[-1]  # logits=True: this layer's scores are taken before its softmax or sigmoid
    top = max(names.index(name) for name in seeds)
    rows = model.layers[: top + 1]
    with shared_gemms():  # as model.gradients runs its forward pass: the same sums, so the same decisions
        ours = dict(model.forward(x, logits=logits))  # minivgg's decisions: masks and pool choices

    params = {name: tuple(tf.constant(p) for p in model.params[name]) for name in model.params}
    watched = [v for row in rows if row.name in params for v in params[row.name]]
    x_tf = tf.constant(x)
    outs = {}
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x_tf)
        tape.watch(watched)
        a, prev = x_tf, x
        for row in rows:
            if row.kind == "conv":
                kernel, bias = params[row.name]
                a = tf.nn.conv2d(a, kernel, strides=1, padding="SAME") + bias
                if row.activation == "relu":
                    a = pinned_relu(tf, (ours[row.name] > 0).astype(np.float32), relu)(a)
            elif row.kind == "pool":
                flat = pool_gather_index(prev)
                a = tf.reshape(tf.gather(tf.reshape(a, [-1]), flat.reshape(-1)), flat.shape)
            elif row.kind == "flatten":
                a = tf.reshape(a, [a.shape[0], -1])  # (N, H, W, C) -> (N, H*W*C), NHWC order as Keras
            elif row.kind == "dense":
                kernel, bias = params[row.name]
                a = tf.matmul(a, kernel) + bias
                if row.activation == "relu":
                    a = pinned_relu(tf, (ours[row.name] > 0).astype(np.float32), relu)(a)
                elif logits and row.name == last:
                    pass
                elif row.activation == "softmax":
                    a = tf.nn.softmax(a)
                elif row.activation == "sigmoid":
                    a = tf.nn.sigmoid(a)
            elif row.kind == "global_avg_pool":
                a = tf.reduce_mean(a, axis=[1, 2])  # (N, H, W, C) -> (N, C)
            elif row.kind == "global_max_pool":
                a = tf.reduce_max(a, axis=[1, 2])  # (N, H, W, C) -> (N, C)
            elif row.kind == "dropout":
                a = tf.identity(a)
            else:
                raise NotImplementedError(f"tf_pinned has no rebuild of a {row.kind!r} row yet")
            outs[row.name] = a
            prev = ours[row.name]
        loss = 0.0
        for name, dy in seeds.items():
            dy = dy(outs[name].numpy()) if callable(dy) else dy
            loss = loss + tf.reduce_sum(tf.constant(np.asarray(dy, np.float32)) * outs[name])
    targets = {"input": x_tf, **{row.name: outs[row.name] for row in rows}}
    if weights:
        for row in rows:
            if row.name in params:
                targets[f"{row.name}/kernel"], targets[f"{row.name}/bias"] = params[row.name]
    grads = dict(zip(targets, tape.gradient(loss, list(targets.values()))))
    del tape
    return {k: v.numpy() for k, v in grads.items()}, {k: v.numpy() for k, v in outs.items()}


def keras_input_gradient(tf, keras_model, x, layer, dy, logits=False):
    """dL/dx by Keras' own model and GradientTape, unpinned: L = sum(dy * output of ``layer``).

    ``logits=True`` for ``predictions``: its softmax is set aside for the call, as Grad-CAM users do
    (``layer.activation = keras.activations.linear``), then restored.
    """
    import keras

    target = keras_model.get_layer(layer)
    saved = target.activation if logits else None
    try:
        if logits:
            target.activation = keras.activations.linear
        probe = keras.Model(keras_model.inputs, target.output)
        x_tf = tf.constant(np.asarray(x, np.float32))
        with tf.GradientTape() as tape:
            tape.watch(x_tf)
            loss = tf.reduce_sum(tf.constant(np.asarray(dy, np.float32)) * probe(x_tf))
        return tape.gradient(loss, x_tf).numpy()
    finally:
        if logits:
            target.activation = saved
