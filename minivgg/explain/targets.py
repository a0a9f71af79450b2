"""What an explanation explains: a *target*, and the seed that makes it the loss of the backward pass.

Legend: N batch, H, W height and width, C channels.

A target is either
- a class index k (an int, or one int per image): S = the pre-softmax score of class k at the
  model's last layer (``predictions``, or a fine-tuned head's), as Simonyan et al., Grad-CAM and
  tf-keras-vis use it (the softmax would mix in every other class), or
- a pair (layer, channel) (channel an int, or one per image): S = the mean of that channel of a conv
  or pool layer's output over its H' x W' positions (``backprop.channel_mean``).

``resolve`` turns either into a ``Target`` (the layer, one id per image), which can be cut to any
subset of the images (``Target.take``) when copies of the images are sent through in chunks.
"""
from typing import NamedTuple

import numpy as np

from ..errors import MinivggError
from ..network.backprop import channel_mean, class_score

BATCH = 8  # images per backward pass when a method sends many copies (SmoothGrad, IG): bounds memory


class Target(NamedTuple):
    layer: str  # the model's last layer for a class, else the layer whose channel mean is S
    ids: np.ndarray  # (N,) class or channel per image
    is_class: bool

    def take(self, index):
        """The target of the images ``index`` (an index array into the N images)."""
        return Target(self.layer, self.ids[index], self.is_class)

    def seeds(self, model, x):
        """The seed {layer: dS/d(layer output)} for images x (n, H, W, 3) with this target's ids (n,)."""
        if self.is_class:
            return class_score(model, x, self.ids)
        return channel_mean(model, x, self.layer, self.ids)


def resolve(model, x, target):
    """A class index, per-image class indices or (layer, channel) -> Target with one id per image.

    Raises MinivggError with one line for a class out of range, a model without its top asked for a
    class, an unknown layer or a channel out of range.
    """
    n = 1 if np.ndim(x) == 3 else np.shape(x)[0]
    if isinstance(target, tuple) and len(target) == 2 and isinstance(target[0], str):
        layer, ids = target
        ids = _ids(ids, n, "channel")
        channel_mean(model, x, layer, ids)  # validates the layer and the channel range
        return Target(layer, ids, False)
    if not model.include_top:
        raise MinivggError("a class target needs the network's top (fc1, fc2, predictions): these weights have none")
    ids = _ids(target, n, "class")
    (layer,) = class_score(model, x, ids)  # validates the range; {last layer: dy}
    return Target(layer, ids, True)


def _ids(ids, n, what):
    a = np.asarray(ids)
    if a.ndim > 1 or (a.ndim == 1 and a.shape[0] != n) or not np.issubdtype(a.dtype, np.integer):
        raise MinivggError(f"a {what} target is an int or one int per image ({n}), got {ids!r}")
    return np.broadcast_to(a, (n,)).astype(np.int64)


def score(model, x, target):
    """S(x) per image: (N,) float32, by a forward pass up to the target's layer (logits for classes)."""
    dy = target.seeds(model, x)[target.layer]
    for name, a in model.forward(x, logits=True, keep={target.layer}):
        if name == target.layer:
            return np.sum((dy * a).reshape(len(dy), -1), axis=1)  # (N, ...) -> (N, D) -> (N,)
    raise MinivggError(f"this model has no layer {target.layer!r}")


def chunks(n, batch=BATCH):
    """[0:batch], [batch:2*batch], ... as index arrays covering range(n)."""
    if not isinstance(batch, (int, np.integer)) or batch < 1:
        raise MinivggError(f"batch must be a positive int, got {batch!r}")
    return [np.arange(s, min(s + batch, n)) for s in range(0, n, batch)]
