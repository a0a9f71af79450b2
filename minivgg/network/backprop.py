"""How VGG16 learns: the backward pass of the whole network, ``model.gradients(x, seeds)``.

Legend: N batch, H, W height and width, C channels, D features, U units.

The forward pass computes L from x through the layers; the backward pass walks the same rows in
reverse and applies the chain rule, one layer at a time. For one conv block, with a = x_in:

    forward:   z = conv(a, w) + b      y = relu(z)             (and a pool after the block's last conv)
    backward:  dz = dy * [z > 0]       dw = im2col(a)^T @ dz   db = sum of dz   da = conv(dz, w_t)

where dy = dL/dy comes from the layer above and da is handed to the layer below (w_t = the flipped,
C <-> K swapped kernel: ``conv.transpose_kernel``). Every layer's rule sits beside its forward twin:
``relu.relu_backward``, ``pool.max_pool2d_backward``, ``conv.conv2d_backward_input`` and
``conv.conv2d_backward_weights``, ``dense.dense_backward``, ``dense.softmax_backward``.

The rows of a fine-tuned head (``vgg.py``) have one-line rules, written out in the loop:

    global_avg_pool:  dx[n, i, j, c] = dy[n, c] / (H * W)                 every position had weight 1/(H*W)
    global_max_pool:  dx[n, i, j, c] = dy[n, c] * [x = max] / #maxima     TensorFlow's reduce_max rule: ties share
    dropout:          dx = dy                                             identity at inference
    dense, sigmoid:   dz = dy * s * (1 - s)                                s = sigmoid(z), the layer's output
    dense, linear:    dz = dy

Seeds. The loss is L = sum over the seeded layers of sum(dy * output): a seed ``{"predictions": dy}``
with dy one-hot at class k makes L the score of class k, and dL/dx its gradient w.r.t. the image.
``class_score`` and ``channel_mean`` build the two common seeds.

Same decisions as the forward pass. The activations come from ``model.forward``, the one loop that
``model.activations`` runs too: the same conv method per layer and the same kernels. So the ReLU
masks ([output > 0]) and the max-pool winners (the first maximum of each window, ``pool.py``) are
exactly those of ``model.activations(x)`` on the same x.

What is kept between the passes: each layer's output up to the highest seed, nothing else (a ReLU
mask is [output > 0], a pool's winners are found again from its input, which is the output of the
layer below). At 224x224 that is 15.0 M floats per image, 60 MB, for the 18 conv and pool layers
(the top adds 34 K floats), and outputs are dropped as the backward pass passes them. The
backward kernels of the Winograd layers (``winograd_kernel(transpose_kernel(w))``, 224 MB for
VGG16) are transformed on the first call and kept with the model, like the forward ones, unless the
model was made with ``keep_transformed=False`` (then each is made when its layer runs, and dropped).
"""
import numpy as np

from ..layers.conv import conv2d_backward_input, conv2d_backward_naive, conv2d_backward_weights, transpose_kernel
from ..layers.dense import dense_backward, softmax_backward
from ..errors import MinivggError
from ..layers.pool import max_pool2d_backward
from ..layers.relu import RELU_RULES, relu_backward
from ..layers.winograd import winograd_kernel
from .table import shapes


def class_score(model, x, classes):
    """The seed whose L is the score of ``classes`` (an int, or one per image) at the last layer:
    ``predictions``, or a fine-tuned head's last dense layer.

    Returns {last layer: dy}, dy (N, U) one-hot. With ``logits=True`` L is the pre-softmax score.
    """
    n = _batch(x)
    last = model.layers[-1]
    if last.kind != "dense":
        raise MinivggError(f"this model has no top: its last layer is {last.name}, not a layer of class scores")
    units = _output_shapes(model, x)[last.name][1]
    classes = np.broadcast_to(np.asarray(classes), (n,))
    if not np.issubdtype(classes.dtype, np.integer) or classes.min() < 0 or classes.max() >= units:
        raise MinivggError(f"class must be an integer from 0 to {units - 1}, got {classes.tolist()}")
    dy = np.zeros((n, units), dtype=np.float32)
    dy[np.arange(n), classes] = 1.0
    return {last.name: dy}


def channel_mean(model, x, layer, channels):
    """The seed whose L is the mean of one channel (an int, or one per image) of a conv or pool layer.

    Returns {layer: dy}, dy (N, H', W', C') = 1 / (H' * W') on the channel, 0 elsewhere.
    """
    shape = _output_shapes(model, x).get(layer)
    if shape is None or len(shape) != 4:
        raise MinivggError(f"{layer!r} is not a conv or pool layer of this model")
    n, h, w, c = shape
    channels = np.broadcast_to(np.asarray(channels), (n,))
    if not np.issubdtype(channels.dtype, np.integer) or channels.min() < 0 or channels.max() >= c:
        raise MinivggError(f"{layer} has channels 0 to {c - 1}, got {channels.tolist()}")
    dy = np.zeros(shape, dtype=np.float32)
    dy[np.arange(n), :, :, channels] = 1.0 / (h * w)  # (N,) images x (H', W') positions, one channel each
    return {layer: dy}


def _batch(x):
    return 1 if np.ndim(x) == 3 else np.shape(x)[0]


def _output_shapes(model, x):
    """Layer name -> output shape (N, ...) for this input, from the table (nothing computed)."""
    h, w = np.shape(x)[-3:-1]
    return {row.name: shape for row, shape, _ in shapes(model.layers, h, w, _batch(x))}


def _check_seed(name, dy, shape):
    dy = np.asarray(dy)
    if not np.issubdtype(dy.dtype, np.number) or dy.shape != tuple(shape):
        raise MinivggError(f"the seed for {name} must be a numeric array of shape {tuple(shape)}, got "
                           f"{dy.dtype} {dy.shape}")
    if not np.isfinite(dy).all():
        raise MinivggError(f"the seed for {name} holds NaN or infinite values")
    return np.ascontiguousarray(dy, dtype=np.float32)


def _dx_method(model, row, kernel):
    """How the backward conv of a layer is computed: the layer's forward method, except that the
    ``auto`` plan picks again for the backward conv, whose input has K channels (Winograd if K >= 64)."""
    if model.method == "auto":
        return "winograd" if kernel.shape[3] >= 64 else "im2col"
    return model.plan[row.name]


def _fuse_relu_below(rows, i, keep, fixed):
    """Whether row i's backward kernel also applies the ReLU rule of the conv row below it (its input
    is that ReLU's output): when nothing needs dL/d(that row's output) itself (not kept, not seeded).
    One pass over memory fewer; bit for bit the same as ``relu_backward`` after it."""
    below = rows[i - 1] if i > 0 else None
    return (below is not None and below.kind == "conv" and below.activation == "relu"
            and below.name not in keep and below.name not in fixed)


def gradients(model, x, seeds, relu="plain", logits=False, weights=False, layers=None, outputs=False, input=True,
              dropout=None, start=None):
    """dL/dx and dL/d(every layer's output) for L = sum over seeds of sum(dy * that layer's output).

    Inputs:
    - x: (H, W, 3) or (N, H, W, 3), preprocessed, as for ``model.forward``
    - seeds: {layer name: dy}, dy shaped like that layer's output (N, ...), or a function of that
      output returning dy; several seeds add up. The forward pass runs up to the highest seed.
    - relu: "plain" (the true gradient), "guided" or "deconvnet" (``relu.RELU_RULES``), for every ReLU
    - logits: take the last layer (``predictions``) before its softmax or sigmoid (its output and
      seed are then the class scores)
    - weights: also return "<layer>/kernel" and "<layer>/bias" (shaped as ``model.params``); True for
      every weighted layer, or a set of layer names (training, ``train/step.py``): with ``input=False``
      the pass then keeps no output below the lowest of them and stops at its weight gradient
    - layers: keep only these layers' gradients (default: every layer at or below the highest seed)
    - outputs: also return the forward outputs of the seeded layers
    - input: False when dL/dx is not wanted: the backward pass then stops at the lowest layer in
      ``layers`` (Grad-CAM needs dL/dA at one conv layer only, not the way down to the image)
    - dropout: masks for a forward pass in training mode (``model.forward``); the backward rule is
      then dx = dy * mask
    - start: x is the input of this layer (cached base outputs, ``model.forward``); the pass runs from
      there, and seeds must then be functions of their layer's output or match its shape
    Returns:
    - grads: dict, "input" -> (N, H, W, 3) float32, then layer name -> dL/d(its output), in layer
      order, then the weight gradients; with ``outputs=True``, (grads, {seeded layer: its output})
    Raises MinivggError for an unknown layer, a seed of the wrong shape or with NaN, an unknown rule.
    """
    if relu not in RELU_RULES:
        raise MinivggError(f"unknown ReLU rule {relu!r}; choose one of {', '.join(RELU_RULES)}")
    x = model._check_input(x) if start is None else np.ascontiguousarray(x, np.float32)  # (N, H, W, 3), or start's input
    names = [row.name for row in model.layers]
    if not isinstance(seeds, dict) or not seeds:
        raise MinivggError("seeds must be a non-empty dict {layer name: dL/d(its output)}")
    unknown = [name for name in seeds if name not in names]
    if unknown:
        raise MinivggError(f"this model has no layer {unknown[0]!r} to seed (layers: {names[0]} ... {names[-1]})")
    top = max(names.index(name) for name in seeds)  # the forward pass stops here
    rows = model.layers[: top + 1]
    keep = set(names[: top + 1]) if layers is None else set(layers)
    if not keep <= set(names[: top + 1]):
        bad = sorted(keep - set(names[: top + 1]))[0]
        raise MinivggError(f"no gradient for {bad!r}: it is not a layer at or below the highest seed ({names[top]})")
    first = 0 if start is None else names.index(start)  # the row the pass starts at
    shapes = _output_shapes(model, x) if start is None else {}  # from a cached input: checked on the outputs
    fixed = {name: _check_seed(name, dy, shapes[name]) for name, dy in seeds.items() if not callable(dy) and shapes}
    wanted = set(names) if weights is True else set(weights or ())  # the layers whose weight gradients are wanted
    # Training (a set of layers, no dL/dx): nothing below the lowest trainable layer is kept or run backward.
    lowest = min(names.index(n) for n in wanted) if wanted and not input and weights is not True else first
    if lowest < first:
        raise MinivggError(f"no weight gradient for layers below {start}: the pass starts there")

    # Forward: the model's own loop, every output kept (from the input of the lowest trainable layer on).
    outs = [None] * first
    for i, (name, a) in enumerate(model.forward(x, logits=logits, dropout=dropout, start=start), start=first):
        outs.append(a if i >= lowest - 1 else None)
        if i == top:
            break
    seeded = {name: outs[names.index(name)] for name in seeds}
    for name, f in seeds.items():
        if callable(f) or not shapes:
            fixed[name] = _check_seed(name, f(seeded[name]) if callable(f) else f, seeded[name].shape)

    # Backward: the rows in reverse; g = dL/d(this row's output).
    grads, wgrads, g = {}, {}, None
    for i in range(top, lowest - 1, -1):
        row, out = rows[i], outs[i]
        a_in = outs[i - 1] if i > first else x  # this row's input
        if row.name in fixed:
            g = fixed[row.name] if g is None else g + fixed[row.name]
        if g is None:  # nothing seeded at or above this row yet
            continue
        if row.name in keep:
            grads[row.name] = g
            if not input and not weights and keep <= grads.keys():
                break  # every gradient asked for is here, and dL/dx is not wanted
        if row.kind == "conv":
            kernel, _ = model.params[row.name]
            # dL/dz, z the pre-activation, unless the conv or pool row above already applied this rule
            fused_above = (i < top and rows[i + 1].kind in ("conv", "pool")
                           and _fuse_relu_below(rows, i + 1, keep, fixed))
            if row.activation == "relu" and not fused_above:
                g = relu_backward(out, g, relu)
            if row.name in wanted:
                if model.plan[row.name] == "naive":
                    _, dw, db = conv2d_backward_naive(a_in, kernel, g, stride=1, pad=1)
                else:
                    dw, db = conv2d_backward_weights(a_in, g, 3, 3, stride=1, pad=1)
                wgrads[row.name] = (dw.astype(np.float32), db.astype(np.float32))
                if i == lowest and not input:
                    break  # training: the lowest trainable layer needs no dL/d(its input)
            method = _dx_method(model, row, kernel)
            U_t = model._winograd_dx.get(row.name)
            if method == "winograd" and U_t is None:
                U_t = winograd_kernel(transpose_kernel(kernel))  # (36, K, C)
                if model.keep_transformed:  # kept for the next call, as the forward kernels are
                    model._winograd_dx[row.name] = U_t
            relu_below = (a_in, relu) if _fuse_relu_below(rows, i, keep, fixed) else None
            g = conv2d_backward_input(g, kernel, pad=1, method=method, U_t=U_t, relu_below=relu_below)  # (N, H, W, C)
            del U_t
        elif row.kind == "pool":
            fuse = _fuse_relu_below(rows, i, keep, fixed)
            g = max_pool2d_backward(a_in, g, size=2, stride=2, relu_rule=relu if fuse else None)
        elif row.kind == "flatten":
            g = g.reshape(a_in.shape)  # (N, D) -> (N, H, W, C): flatten's inverse
        elif row.kind == "global_avg_pool":
            N, H, W, C = a_in.shape
            g = np.ascontiguousarray(np.broadcast_to(g[:, None, None, :] / np.float32(H * W), a_in.shape))  # (N, C) -> (N, H, W, C)
        elif row.kind == "global_max_pool":
            winners = a_in == out[:, None, None, :]  # (N, H, W, C): where each channel reached its max
            share = g / winners.sum(axis=(1, 2))  # (N, C): dy split evenly over tied maxima, as TensorFlow does
            g = (winners * share[:, None, None, :]).astype(np.float32)  # (N, H, W, C)
        elif row.kind == "dropout":
            mask = None if dropout is None else dropout.mask(row.name, g.shape)  # the one the forward pass drew
            if mask is not None:
                g = g * mask  # training mode: y = x * mask, so dx = dy * mask
            # else identity at inference: dL/d(input) = dL/d(output)
        else:  # dense
            kernel, _ = model.params[row.name]
            if logits and i == len(names) - 1:
                pass  # the last layer's scores were taken before its softmax or sigmoid
            elif row.activation == "softmax":
                g = softmax_backward(out, g)
            elif row.activation == "sigmoid":
                g = g * out * (1 - out)  # s' = s (1 - s), s the layer's output
            elif row.activation == "relu":
                g = relu_backward(out, g, relu)
            g, dw, db = dense_backward(a_in, kernel, g, need_weights=row.name in wanted)
            if row.name in wanted:
                wgrads[row.name] = (dw, db)
        outs[i] = None  # no longer needed: free it as we go down
    result = {"input": g} if input else {}
    result.update((name, grads[name]) for name in names[: top + 1] if name in grads)
    for name in names:
        if name in wgrads:
            result[f"{name}/kernel"], result[f"{name}/bias"] = wgrads[name]
    return (result, seeded) if outputs else result
