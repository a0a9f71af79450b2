"""What is maximised, and its gradient w.r.t. the network's input.

Legend: N batch (image i has target i), H, W the network input's size, H', W' a layer's size,
C the channels of the layer below, K the conv layer's channels, U classes.

- "channel": the mean of one channel of a layer over its H' x W' positions. For a conv layer it is
  the channel's **pre-ReLU** mean, mean(z[..., k]) with z = conv(a, w) + b and a the layer below's
  output, as Lucid's channel objectives read InceptionV1's ``*_pre_relu`` tensors: after the ReLU, a
  channel that is negative everywhere on the starting image (a dead start: common on grey noise in
  deep layers) has a zero gradient and never moves; before it, the gradient is never zero. Since z
  is affine in a, its gradient is a fixed seed for the layer below (``pre_relu_seed``), and the
  value is sum(a * seed) + b[k]. For a pool layer: the mean of its (post-ReLU) output
  (``backprop.channel_mean``). The page and tests report the channel's activation after the ReLU
  (what the layer outputs) on the start and final images.
- "class": the pre-softmax score (logit) of a class at ``predictions`` (needs the top, 224x224):
  after the softmax, raising one class can be done by lowering the others (Lucid does the same).
- "dream": deep dream (Mordvintsev, Olah & Tyka 2015), mean(a^2) over the whole layer's output,
  dL/da = 2 a / (H' W' K), from a photo.

``gradient(model, x, objective)`` returns (dL/dx, each image's objective) for L = the sum over the
batch; each image's objective depends on its own image only. The forward pass stops at the seeded
layer (the layer below, for a conv channel).
"""
from typing import NamedTuple

import numpy as np

from ..errors import MinivggError
from ..network.backprop import channel_mean, class_score
from ..network.table import shapes

OBJECTIVES = ("channel", "class", "dream")


class Objective(NamedTuple):
    kind: str  # one of OBJECTIVES
    layer: str  # the layer it reads ("predictions" for "class")
    targets: tuple = ()  # the channel or class of each image ("channel", "class"); () for "dream"

    def values(self, a):
        """The reported value of each image, from the layer's output a: (N,) float64 (after the ReLU)."""
        n = np.arange(a.shape[0])
        if self.kind == "channel":
            return a[n, :, :, list(self.targets)].mean(axis=(1, 2), dtype=np.float64)  # (N, H', W') -> (N,)
        if self.kind == "class":
            return a[n, list(self.targets)].astype(np.float64)  # (N,) logits
        return np.mean(np.square(a, dtype=np.float64), axis=tuple(range(1, a.ndim)))  # (N,)


def pre_relu_seed(kernel, channels, h, w):
    """d mean(z[..., k_i]) / da for every image i: a fixed seed for the layer below a 3x3 "same" conv.

    Inputs:
    - kernel: (3, 3, C, K); channels: (N,) one k per image; h, w: the layer's (= the input's) size
    Returns:
    - seed: (N, h, w, C) float32; seed[i, p, q] = sum over taps (dp, dq) that see (p, q) from inside
      the output, of kernel[dp, dq, :, k_i] / (h * w)

    z[o] = b + sum over dp, dq of a[o + dp - 1, o' + dq - 1] . kernel[dp, dq] (zero padding), so
    dz[o]/da[p] = kernel[p - o + 1] where 0 <= o < h; the mean over o sums the taps whose output
    o = p - dp + 1 is inside. The row and column conditions are separate:
        rows[dp, p] = [0 <= p - dp + 1 < h],  cols[dq, q] = [0 <= q - dq + 1 < w]
        seed[i, p, q, c] = sum over dp, dq of rows[dp, p] cols[dq, q] kernel[dp, dq, c, k_i] / (h w)
    (== ``conv.conv2d_backward_input`` of dz = 1 / (h w) on channel k_i; the tests hold them equal).
    """
    taps = np.arange(3)[:, None]  # (3, 1)
    rows = ((np.arange(h)[None] - taps + 1 >= 0) & (np.arange(h)[None] - taps + 1 < h)).astype(np.float32)  # (3, h)
    cols = ((np.arange(w)[None] - taps + 1 >= 0) & (np.arange(w)[None] - taps + 1 < w)).astype(np.float32)  # (3, w)
    k = kernel[:, :, :, list(channels)]  # (3, 3, C, N)
    seed = np.einsum("ap,bq,abcn->npqc", rows, cols, k)  # (3, h) (3, w) (3, 3, C, N) -> (N, h, w, C)
    return np.ascontiguousarray(seed / (h * w), dtype=np.float32)


def _below(model, layer):
    """The name of the row under ``layer`` (None for the first: its input is the image)."""
    names = [row.name for row in model.layers]
    i = names.index(layer)
    return names[i - 1] if i > 0 else None


def gradient(model, x, objective):
    """(dL/dx (N, H, W, 3) float32, objective per image (N,) float64) for the batch x (preprocessed)."""
    o = objective
    rows = {row.name: row for row in model.layers}
    if o.layer not in rows:
        raise MinivggError(f"this model has no layer {o.layer!r}")
    if o.kind == "channel" and rows[o.layer].kind == "conv":
        kernel, bias = model.params[o.layer]
        n, h, w = x.shape[0], x.shape[1], x.shape[2]
        below = _below(model, o.layer)
        if below is not None:
            h, w = {row.name: s for row, s, _ in shapes(model.layers, h, w, n)}[below][1:3]
        seed = pre_relu_seed(kernel, o.targets, h, w)  # (N, h, w, C)
        if below is None:  # block1_conv1: z is affine in the image itself
            a, dx = x, seed
        else:
            grads, outs = model.gradients(x, {below: seed}, layers=[], outputs=True)
            a, dx = outs[below], grads["input"]
        values = np.einsum("nhwc,nhwc->n", a.astype(np.float64), seed) + bias[list(o.targets)]  # (N,)
        return dx, values
    if o.kind == "channel":
        seeds = channel_mean(model, x, o.layer, list(o.targets))
    elif o.kind == "class":
        seeds = class_score(model, x, list(o.targets))
    else:
        seeds = {o.layer: lambda a: 2 * a / a[0].size}  # d mean(a^2) / da, per image
    grads, outs = model.gradients(x, seeds, logits=True, layers=[], outputs=True)
    return grads["input"], o.values(outs[o.layer])
