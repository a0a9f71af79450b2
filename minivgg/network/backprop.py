"""How VGG16 learns: the backward pass of the whole network, ``model.gradients(x, seeds)``.

Legend: N batch, H, W height and width, C channels, D features, U units.

The forward pass computes L from x through the layers; the backward pass walks the same rows in
reverse and applies the chain rule, one layer at a time. For one conv block, with a = x_in:

    forward:   z = conv(a, w) + b      y = relu(z)             (and a pool after the block's last conv)
    backward:  dz = dy * [z > 0]       dw = im2col(a)^T @ dz   db = sum of dz   da = conv(dz, w_t)

where dy = dL/dy comes from the layer above and da is handed to the layer below (w_t = the flipped,
C <-> K swapped kernel: ``conv.transpose_kernel``). Every layer's rule sits beside its forward twin:
``relu.relu_backward``, ``pool.max_pool2d_backward``, ``conv.conv2d_backward_input`` and
``conv.conv2d_backward_weights`` (for Winograd layers ``winograd_weights.conv3x3_winograd_weights``,
the same dw with a quarter of the multiplications), ``dense.dense_backward``, ``dense.softmax_backward``.

The rows of a fine-tuned head (``table.py``) have one-line rules (``_head_backward``,
``_dense_activation_backward``):

    global_avg_pool:  dx[n, i, j, c] = dy[n, c] / (H * W)                 every position had weight 1/(H*W)
    global_max_pool:  dx[n, i, j, c] = dy[n, c] * [x = max] / #maxima     TensorFlow's reduce_max rule: ties share
    dropout:          dx = dy                                             identity at inference
                      dx = dy * mask                                      training (the forward pass's mask)
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
layer below), and outputs are dropped as the backward pass passes them.

Reading order of this file: ``gradients``, the chain rule as one loop over the rows in reverse; the
seeds (``class_score``, ``channel_mean``); then the loop's steps as small functions in the order it
calls them. ``naive.py`` holds the same pass with no fusion and no caching, in float64, as the
reference the tests hold this one to. Two speed-ups that change no bit of the result (a ReLU's rule
done inside the kernel of the layer above; the backward Winograd kernels kept with the model) sit at
the bottom, under "Performance: skip on a first read".
"""
import numpy as np

from ..errors import MinivggError
from ..layers.conv import conv2d_backward_input, conv2d_backward_naive, conv2d_backward_weights, transpose_kernel
from ..layers.dense import dense_backward, softmax_backward
from ..layers.pool import max_pool2d_backward
from ..layers.relu import RELU_RULES, relu_backward
from ..layers.winograd_schedules import fast_kernel, small_tiles
from ..layers.winograd_weights import conv3x3_winograd_weights
from .table import shapes


def gradients(model, x, seeds, relu="plain", logits=False, weights=False, layers=None, outputs=False, input=True,
              dropout=None, start=None, plain_weight_sums=False):
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
    - dropout: training mode: the masks object ``model.forward`` takes; the backward rule is then
      dx = dy * mask, with the mask the forward pass drew
    - start: x is the input of this layer (cached outputs of the rows below, ``model.forward``); the
      pass runs from there
    - plain_weight_sums: every conv's dw by im2col, a plain sum, even where the forward pass runs
      Winograd (whose dw is exact to a few 1e-6 of max|dw|, not of each element: Adam asks for this,
      see ``train/optimizers.py``)
    Returns:
    - grads: dict, "input" -> (N, H, W, 3) float32, then layer name -> dL/d(its output), in layer
      order, then the weight gradients; with ``outputs=True``, (grads, {seeded layer: its output})
    Raises MinivggError for an unknown layer, a seed of the wrong shape or with NaN, an unknown rule.
    """
    x, rows, keep, seeds = _check_request(model, x, seeds, relu, layers, start)
    first = 0 if start is None else [row.name for row in rows].index(start)  # the row the pass starts at
    wanted = {row.name for row in rows} if weights is True else set(weights or ())  # weight gradients wanted
    # Training (a set of layers, no dL/dx): the pass ends at the lowest trainable row's weight gradient,
    # and no output below that row's input is kept.
    last = min(i for i, row in enumerate(rows) if row.name in wanted) if wanted and weights is not True and not input else None
    if last is not None and last < first:
        raise MinivggError(f"no weight gradient below {start}: the pass starts there")
    outs, seeds, seeded = _forward_keep(model, x, rows, seeds, logits, dropout, start, first,
                                        first if last is None else last)  # outs[i]: row i's output
    fused = _relus_fused(rows, keep, seeds)  # Performance: ReLU rules a kernel above applies (bottom of file)
    stop = None if input or weights else _lowest(rows, keep)  # Grad-CAM: no need to go below this row

    # Backward: the rows in reverse; g = dL/d(this row's output), handed down as dL/d(its input).
    grads, wgrads, g = {}, {}, None
    for i in reversed(range(first, len(rows))):
        row, out = rows[i], outs[i]
        a_in = outs[i - 1] if i > first else x  # this row's input
        if row.name in seeds:  # L has the term sum(dy * out): dL/d(out) gains dy
            g = seeds[row.name] if g is None else g + seeds[row.name]
        if row.name in keep:
            grads[row.name] = g
        if i == stop:
            break  # every gradient asked for is here, and dL/dx is not wanted
        relu_below = relu if i - 1 in fused else None  # this row's kernel also applies the ReLU rule below
        if row.kind == "conv":
            if row.activation == "relu" and i not in fused:  # (if fused, the row above already did)
                g = relu_backward(out, g, relu)  # dz = dy * [z > 0]
            if row.name in wanted:
                wgrads[row.name] = _conv_weight_grads(model, row, a_in, g, plain_weight_sums)  # dw, db = sum dz
            if i == last:
                break  # training: the lowest trainable row needs no dL/d(its input)
            g = _conv_input_grad(model, row, g, a_in, relu_below)  # da = conv(dz, flipped w)
        elif row.kind == "pool":
            g = max_pool2d_backward(a_in, g, size=2, stride=2, relu_rule=relu_below)  # to each window's first max
        elif row.kind == "dense":
            scores = logits and i == len(model.layers) - 1  # taken before its softmax or sigmoid
            g = _dense_activation_backward(row, out, g, relu, scores)  # dz
            g, dw, db = dense_backward(a_in, model.params[row.name][0], g, need_weights=row.name in wanted)  # da = dz w^T
            if row.name in wanted:
                wgrads[row.name] = (dw, db)
        else:
            g = _head_backward(row, a_in, out, g, dropout)  # flatten, global pools, dropout
        outs[i] = None  # no longer needed: free it as we go down
        if i == last:
            break  # training: nothing below the lowest trainable row
    return _collect(rows, g if input else None, grads, wgrads, seeded if outputs else None)


# ---- Seeds: the two common ones


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


# ---- The steps of ``gradients``, in the order it calls them


def _check_request(model, x, seeds, relu, layers, start=None):
    """Validate a request; returns x (N, H, W, 3) float32, the rows up to the highest seed, the names
    whose gradients to keep, and the seeds (arrays checked against their layer's shape; functions
    are called on the activation in ``_forward_keep``; with ``start``, x is that row's input and
    every seed is checked there)."""
    if relu not in RELU_RULES:
        raise MinivggError(f"unknown ReLU rule {relu!r}; choose one of {', '.join(RELU_RULES)}")
    x = model._check_input(x) if start is None else np.ascontiguousarray(x, np.float32)  # (N, H, W, 3), or start's input
    names = [row.name for row in model.layers]
    if start is not None and start not in names:
        raise MinivggError(f"this model has no layer {start!r} to start from")
    if not isinstance(seeds, dict) or not seeds:
        raise MinivggError("seeds must be a non-empty dict {layer name: dL/d(its output)}")
    unknown = [name for name in seeds if name not in names]
    if unknown:
        raise MinivggError(f"this model has no layer {unknown[0]!r} to seed (layers: {names[0]} ... {names[-1]})")
    top = max(names.index(name) for name in seeds)  # the forward pass stops here
    below = names[: top + 1]
    keep = set(below) if layers is None else set(layers)
    if not keep <= set(below):
        bad = sorted(keep - set(below))[0]
        raise MinivggError(f"no gradient for {bad!r}: it is not a layer at or below the highest seed ({names[top]})")
    shapes = _output_shapes(model, x) if start is None else {}  # from a cached input: checked on the outputs
    seeds = {name: dy if callable(dy) or start is not None else _check_seed(name, dy, shapes[name])
             for name, dy in seeds.items()}
    return x, model.layers[: top + 1], keep, seeds


def _forward_keep(model, x, rows, seeds, logits, dropout=None, start=None, first=0, lowest=0):
    """The forward pass (the model's own loop) up to the last row, every output kept from row
    ``lowest``'s input on (the rows below ``first`` are not run: x is row ``first``'s input).

    Returns the outputs (a list, one per row, None where not kept), the seeds with every function
    replaced by the array it returns for its layer's output, and {seeded layer: its output}."""
    outs = [None] * first
    for name, a in model.forward(x, logits=logits, dropout=dropout, start=start):
        outs.append(a if len(outs) >= lowest - 1 else None)
        if len(outs) == len(rows):
            break
    index = {row.name: i for i, row in enumerate(rows)}
    seeded = {name: outs[index[name]] for name in seeds}
    shapes = {name: a.shape for name, a in seeded.items()}
    seeds = {name: _check_seed(name, dy(seeded[name]) if callable(dy) else dy, shapes[name])
             for name, dy in seeds.items()}
    return outs, seeds, seeded


def _lowest(rows, keep):
    """The index of the lowest row whose gradient is kept (the top row when none is)."""
    return min((i for i, row in enumerate(rows) if row.name in keep), default=len(rows) - 1)


def _conv_weight_grads(model, row, a_in, dz, plain=False):
    """dw = im2col(a)^T @ dz (KH, KW, C, K), db = dz summed over (N, H', W') (K,), both float32. A layer
    the forward pass runs by Winograd gets dw by Winograd too (``winograd_weights.py``): the same sum
    with a quarter of the multiplications; ``plain``: by im2col all the same."""
    method = "im2col" if plain and model.plan[row.name] == "winograd" else model.plan[row.name]
    if method == "naive":  # a model of naive convs takes its gradients from the twin too
        _, dw, db = conv2d_backward_naive(a_in, model.params[row.name][0], dz, stride=1, pad=1)
    elif method == "winograd":
        dw, db = conv3x3_winograd_weights(a_in, dz)
    else:
        dw, db = conv2d_backward_weights(a_in, dz, 3, 3, stride=1, pad=1)
    return dw.astype(np.float32), db.astype(np.float32)


def _conv_input_grad(model, row, dz, a_in, relu_below=None):
    """da = conv(dz, w_t) (N, H, W, C), w_t the flipped, C <-> K swapped kernel; with ``relu_below``
    (a rule), the ReLU rule of the conv below applied too, its output being a_in (``_relus_fused``)."""
    kernel = model.params[row.name][0]  # (3, 3, C, K)
    method = _dx_method(model, row, kernel)
    U_t = None
    if method == "winograd":  # (36, K, C), or F(2x2)'s (16, K, C) where dz (N, H, W, K) -> da (N, H, W, C) has few tiles
        U_t = _kernel_dx(model, row, kernel, small_tiles(*dz.shape, kernel.shape[2]))
    fuse = (a_in, relu_below) if relu_below is not None else None
    return conv2d_backward_input(dz, kernel, pad=1, method=method, U_t=U_t, relu_below=fuse)  # (N, H, W, C)


def _dense_activation_backward(row, out, dy, relu, scores=False):
    """dz = dL/d(the dense layer's pre-activation), from dy = dL/d(its output) and its output;
    ``scores``: its output was taken before its softmax or sigmoid (``logits=True``)."""
    if row.activation == "relu":
        return relu_backward(out, dy, relu)  # applied in the forward pass with or without logits
    if scores:
        return dy
    if row.activation == "softmax":
        return softmax_backward(out, dy)  # p * (dy - <dy, p>)
    if row.activation == "sigmoid":
        return dy * out * (1 - out)  # s' = s (1 - s), s the layer's output
    return dy  # linear


def _head_backward(row, a_in, out, dy, dropout=None):
    """The one-line rules of the rows without weights after the conv base (see the top of the file)."""
    if row.kind == "flatten":
        return dy.reshape(a_in.shape)  # (N, D) -> (N, H, W, C): flatten's inverse
    if row.kind == "global_avg_pool":
        N, H, W, C = a_in.shape
        return np.ascontiguousarray(np.broadcast_to(dy[:, None, None, :] / np.float32(H * W), a_in.shape))  # (N, C) -> (N, H, W, C)
    if row.kind == "global_max_pool":
        winners = a_in == out[:, None, None, :]  # (N, H, W, C): where each channel reached its max
        share = dy / winners.sum(axis=(1, 2))  # (N, C): dy split evenly over tied maxima, as TensorFlow does
        return (winners * share[:, None, None, :]).astype(np.float32)  # (N, H, W, C)
    if row.kind == "dropout":
        mask = None if dropout is None else dropout.mask(row.name, dy.shape)  # the one the forward pass drew
        return dy if mask is None else dy * mask  # training: y = x * mask; at inference dL/d(input) = dL/d(output)
    raise ValueError(f"unknown row kind {row.kind!r}")


def _collect(rows, dx, grads, wgrads, seeded):
    """The result: "input" (unless dx is None), the layers' gradients in layer order, the weights'."""
    result = {} if dx is None else {"input": dx}
    result.update((row.name, grads[row.name]) for row in rows if row.name in grads)
    for row in rows:
        if row.name in wgrads:
            result[f"{row.name}/kernel"], result[f"{row.name}/bias"] = wgrads[row.name]
    return result if seeded is None else (result, seeded)


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


# ---- Performance: skip on a first read
#
# Two things make the loop above faster without changing a bit of its result: fusing a ReLU's rule
# into the kernel of the layer above it, and keeping the backward Winograd kernels with the model.


def _relus_fused(rows, keep, seeds):
    """The conv rows whose ReLU rule the backward kernel of the row above applies, in its own pass over
    memory (``conv2d_backward_input(relu_below=...)``, ``max_pool2d_backward(relu_rule=...)``).

    Row i's ReLU can go into the kernel of row i + 1 (a conv or a pool, whose input is that ReLU's
    output) when nothing needs dL/d(row i's output) itself: it is not kept and not seeded. One pass over
    memory fewer; bit for bit the same as ``relu_backward`` after the kernel.
    """
    return {i for i in range(len(rows) - 1)
            if rows[i].kind == "conv" and rows[i].activation == "relu" and rows[i + 1].kind in ("conv", "pool")
            and rows[i].name not in keep and rows[i].name not in seeds}


def _dx_method(model, row, kernel):
    """How the backward conv of a layer is computed: the layer's forward method, except that the
    ``auto`` plan picks again for the backward conv, whose input has K channels (Winograd if K >= 64;
    for the first layer's dx, 64 -> 3, Winograd and im2col's col2im form measured the same in a pass,
    1.43 and 1.47 ms)."""
    if model.method == "auto":
        return "winograd" if kernel.shape[3] >= 64 else "im2col"
    return model.plan[row.name]


def _kernel_dx(model, row, kernel, small=False):
    """The Winograd transform of the backward kernel, U_t = winograd_kernel(transpose_kernel(w)),
    (36, K, C), or with ``small`` F(2x2, 3x3)'s, winograd2_kernel(...) (16, K, C), as panels where C
    allows (``winograd_schedules.fast_kernel``): made on first use and kept with the model
    (``VGG._made_kernel``), as the forward ones are, unless the model was made with
    ``keep_transformed=False``."""
    if small:
        return model._made_kernel(row.name, "small dx", lambda: fast_kernel(transpose_kernel(kernel), small=True))
    return model._made_kernel(row.name, "dx", lambda: fast_kernel(transpose_kernel(kernel)))
