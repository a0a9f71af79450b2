"""The network's naive twins: the forward and the backward pass written with the layers' naive kernels.

Legend: N batch, H, W height and width, C channels, D features, U units.

Every fast kernel in ``minivgg/layers/`` has a naive twin beside it (loops straight from the formula);
these two functions are the same for the whole network. They walk the same table (``model.layers``)
with the same weights (``model.params``), with none of the fast path's machinery: no Winograd, no
fusion, no caching, no early exit. They compute in float64, so that a comparison with the fast float32
pass (``model.forward``, ``model.gradients``) measures the fast pass's rounding alone.

    forward:   a_0 = x;  a_l = layer_l(a_{l-1})                        every row's output, in order
    backward:  g = dL/d(top output) = the seed;  then for each row, top to bottom:
               conv:     dz = g * [z > 0]    dw = im2col(a)^T dz    db = sum dz    g = conv(dz, flipped w)
               pool:     g goes to the first maximum of each window, 0 elsewhere
               dense:    dz = activation'(g)  dw = a^T dz   db = sum dz   g = dz w^T
               flatten:  g reshaped back;  global pools, dropout: their one-line rules (``backprop.py``)

Slow: a conv is one ``tensordot`` per output pixel, a dense backward three nested Python loops. Use
small inputs (32x32 to 64x64 without the top) and heads of a few units; the tests do.
"""
import numpy as np

from ..layers.conv import conv2d_backward_naive, conv2d_naive
from ..layers.dense import dense_backward_naive, dense_naive, softmax_backward_naive, softmax_naive
from ..layers.pool import max_pool2d_backward_naive, max_pool2d_naive
from ..layers.relu import relu_backward_naive


def forward_naive(model, x, logits=False):
    """The forward pass with the naive kernels: a list of (layer name, output), float64, in layer order.

    x: (N, H, W, 3) preprocessed, as for ``model.forward``; ``logits``: the last layer's scores are
    taken before its softmax or sigmoid. Outputs: (N, H', W', C') for conv and pool rows, (N, D) after.
    """
    a, outs = np.asarray(x, np.float64), []
    for row in model.layers:
        if row.kind == "conv":
            w, b = _float64(model.params[row.name])  # (3, 3, C, K), (K,)
            a = conv2d_naive(a, w, b, stride=1, pad=1, relu=row.activation == "relu")  # -> (N, H, W, K)
        elif row.kind == "dense":
            w, b = _float64(model.params[row.name])  # (D, U), (U,)
            a = dense_naive(a, w, b, relu=row.activation == "relu")  # (N, D) -> (N, U)
            if logits and row.name == model.layers[-1].name:
                pass  # the scores before the softmax or sigmoid
            elif row.activation == "softmax":
                a = softmax_naive(a)
            elif row.activation == "sigmoid":
                a = 1 / (1 + np.exp(-a))
        elif row.kind == "pool":
            a = max_pool2d_naive(a, size=2, stride=2)  # (N, H, W, C) -> (N, H/2, W/2, C)
        elif row.kind == "flatten":
            a = a.reshape(a.shape[0], -1)  # (N, H, W, C) -> (N, H*W*C)
        elif row.kind == "global_avg_pool":
            a = a.mean(axis=(1, 2))  # (N, H, W, C) -> (N, C)
        elif row.kind == "global_max_pool":
            a = a.max(axis=(1, 2))  # (N, H, W, C) -> (N, C)
        # dropout: the identity at inference
        outs.append((row.name, a))
    return outs


def gradients_naive(model, x, seeds, relu="plain", logits=False, weights=False, outputs=None):
    """The backward pass, the chain rule one row at a time; the contract of ``backprop.gradients``.

    seeds: {layer name: dy}, dy shaped like that layer's output (arrays only); relu: one of
    ``relu.RELU_RULES``; weights: also "<layer>/kernel" and "<layer>/bias".
    outputs: None (run ``forward_naive``), or {layer name: output} of every layer up to the highest
    seed, to differentiate through those (the fast pass's, say: then both backward passes take the
    same ReLU and pool decisions; a float32 and a float64 forward pass can disagree where a
    pre-activation is within rounding of 0, or two values of a pool window within rounding of a tie).
    Returns a dict, float64: "input" (N, H, W, 3), then every layer at or below the highest seed ->
    dL/d(its output), in layer order, then the weight gradients.
    """
    names = [row.name for row in model.layers]
    top = max(names.index(name) for name in seeds)
    if outputs is None:
        outputs = dict(forward_naive(model, x, logits)[: top + 1])
    outs = [np.asarray(outputs[name], np.float64) for name in names[: top + 1]]
    grads, wgrads, g = {}, {}, 0.0
    for i in range(top, -1, -1):
        row, out = model.layers[i], outs[i]
        a = outs[i - 1] if i > 0 else np.asarray(x, np.float64)  # this row's input
        g = g + np.asarray(seeds.get(row.name, 0.0), np.float64)  # L's own term at this row (0 if not seeded)
        grads[row.name] = g
        if row.kind in ("conv", "dense"):
            w, _ = _float64(model.params[row.name])
            if row.activation == "relu":
                g = relu_backward_naive(out, g, relu)  # dz = g * [z > 0]
            elif logits and i == len(names) - 1:
                pass  # the scores were taken before the softmax or sigmoid
            elif row.activation == "softmax":
                g = softmax_backward_naive(out, g)  # the full Jacobian, J^T g
            elif row.activation == "sigmoid":
                g = g * out * (1 - out)  # s' = s (1 - s)
            if row.kind == "conv":  # da = conv(dz, flipped w), dw = im2col(a)^T dz, db = sum of dz
                g, dw, db = conv2d_backward_naive(a, w, g, stride=1, pad=1)  # (N, H, W, C), (3, 3, C, K), (K,)
            else:  # da = dz w^T, dw = a^T dz, db = sum of dz
                g, dw, db = dense_backward_naive(a, w, g)  # (N, D), (D, U), (U,)
            wgrads[row.name] = dw, db
        elif row.kind == "pool":
            g = max_pool2d_backward_naive(a, g, size=2, stride=2)  # to each window's first maximum
        elif row.kind == "flatten":
            g = g.reshape(a.shape)  # (N, D) -> (N, H, W, C)
        elif row.kind == "global_avg_pool":
            g = np.broadcast_to(g[:, None, None, :] / (a.shape[1] * a.shape[2]), a.shape)  # (N, C) -> (N, H, W, C)
        elif row.kind == "global_max_pool":
            winners = a == out[:, None, None, :]  # (N, H, W, C): the maxima, ties share
            g = winners * (g / winners.sum(axis=(1, 2)))[:, None, None, :]
        # dropout: the identity at inference
    result = {"input": g}
    result.update((name, grads[name]) for name in names[: top + 1])  # in layer order, as the fast pass
    for name in names[: top + 1] if weights else ():
        if name in wgrads:
            result[f"{name}/kernel"], result[f"{name}/bias"] = wgrads[name]
    return result


def _float64(params):
    """A layer's (kernel, bias) in float64."""
    return tuple(np.asarray(p, np.float64) for p in params)
