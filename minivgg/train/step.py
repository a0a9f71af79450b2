"""One learning step: forward in training mode, the loss, backward for the trainable layers, the update.

Legend: N batch, H, W height and width, U classes.

    x (N, H, W, 3) --forward, dropout on--> z (N, U) logits --cross_entropy--> L, dL/dz
    dL/dz --backward (``network/backprop.py``), trainable layers only--> dL/dw, dL/db
    optimizer.update: w <- rule(w, dL/dw)            (``optimizers.py``)

Freezing is what makes fine-tuning cheap. The backward pass walks the rows from the top down to the
lowest trainable layer and stops there: the frozen layers below it run forward only, and their
outputs are not kept (only the input of the lowest trainable layer is). A head-only step costs one
forward pass and a backward pass through the head alone; a block5 step adds block5's backward.

Dropout (Srivastava et al. 2014) is active here, as Keras' ``Dropout`` is in ``train_on_batch``: each
unit is kept with probability 1 - rate and scaled by 1 / (1 - rate), so the expected output is the
input, and inference (no mask) needs no rescaling. The masks are drawn from ``seed``: the same seed,
the same step.
"""
import numpy as np

from ..errors import MinivggError
from ..files.keras_model import DEFAULT_RATE  # a dropout layer whose model names no rate: Keras' usual one
from ..jit import passes
from ..layers.winograd_schedules import fast_kernel
from ..network import backprop
from .loss import cross_entropy


def weighted(model):
    """The names of the layers with weights, in model order."""
    return [row.name for row in model.layers if row.name in model.params]


def trainable_from(model, start):
    """The weighted layers from ``start`` up: "head" (the layers after the conv base), or a layer name
    such as "block5_conv1" (that layer and every weighted layer above it)."""
    names = [row.name for row in model.layers]
    if start == "head":
        head = [row.name for row in model.top if row.name in model.params]
        if not head:
            raise MinivggError("this model has no head to train (no dense layer after the conv base)")
        return head
    if start not in names:
        raise MinivggError(f"this model has no layer {start!r} (train from 'head' or a layer such as block5_conv1)")
    return [n for n in weighted(model) if names.index(n) >= names.index(start)]


class DropoutMasks:
    """Dropout in training mode: ``mask(layer, shape)`` draws a layer's mask on first use and gives the
    same one again (the backward pass needs the mask the forward pass used).

    A mask is (N, D) float32: 0, or 1 / (1 - rate) with probability 1 - rate (Keras' ``Dropout``).
    The rates are the model's ``dropout`` ({layer name: rate}: from its saved config, or set by
    ``with_head``); ``DEFAULT_RATE`` for a layer it does not name.
    """

    def __init__(self, model, seed):
        self.rates = getattr(model, "dropout", {})
        self.rng = np.random.default_rng(seed)
        self.masks = {}

    def mask(self, name, shape):
        if name not in self.masks:
            rate = self.rates.get(name, DEFAULT_RATE)
            keep = self.rng.random(shape, dtype=np.float32) >= rate if rate else None  # (N, D)
            self.masks[name] = None if keep is None else keep.astype(np.float32) / np.float32(1 - rate)
        return self.masks[name]


def _own(model, names):
    """Make the trainable layers' arrays the model's own and writable (they may be read-only
    mappings of a weight file, or shared with the model they came from): copied once."""
    owned = model.__dict__.setdefault("_owned", set())
    for name in names:
        if name not in owned:
            model.params = dict(model.params)
            model.params[name] = tuple(np.array(a, dtype=np.float32, copy=True) for a in model.params[name])
            owned.add(name)


def _refresh(model, names):
    """The conv kernels of ``names`` changed: their Winograd transforms are made again (or dropped)."""
    for name in names:
        if name in model._winograd:
            model._winograd[name] = fast_kernel(model.params[name][0])  # (36, K/16, C, 16) panels
        model._forget(name)  # and the others, made from the old kernel on first use


def set_weights(model, weights):
    """Put {layer: (kernel, bias)} into ``model`` in place (copies it owns; the transforms follow)."""
    model.params = dict(model.params)
    for name, (kernel, bias) in weights.items():
        model.params[name] = (np.array(kernel, np.float32), np.array(bias, np.float32))
        model.__dict__.setdefault("_owned", set()).add(name)
    _refresh(model, weights)


def step(model, x, y, optimizer, trainable=None, seed=0, start=None, return_logits=False):
    """One training step on one batch; the weights of ``trainable`` change in place.

    Inputs:
    - x: (N, H, W, 3) preprocessed images; y: (N,) integer labels
    - optimizer: an ``optimizers.SGD`` or ``Adam`` (it keeps its moments between steps)
    - trainable: the layers to train: None for the head, else a list of weighted layer names
    - seed: the dropout masks
    - start: x is the input of this layer instead of images (the frozen base's outputs, cached by
      ``loop.py``): the rows below are not run at all
    Returns the loss on the batch (float), computed before the update; with ``return_logits``,
    (loss, the logits (N, U) of this training-mode pass).
    """
    names = trainable_from(model, "head") if trainable is None else list(trainable)
    bad = [n for n in names if n not in model.params]
    if bad:
        raise MinivggError(f"{bad[0]!r} is not a layer with weights in this model")
    last = model.layers[-1]
    if last.kind != "dense" or last.activation != "softmax":
        raise MinivggError("training needs a model whose last layer is a softmax dense layer (see train.with_head)")
    x = model._check_input(x) if start is None else np.asarray(x, np.float32)  # (N, H, W, 3), or start's input
    y = np.asarray(y)
    result = {}

    def seed_logits(z):  # z (N, U), the scores before the softmax: dL/dz for the backward pass
        result["loss"], dz = cross_entropy(z, y)
        result["logits"] = z
        return dz

    with passes():  # BLAS and memory settings, once for the step (jit.py)
        if start is None:  # the frozen conv rows below the lowest trainable one: one inference pass, kept nowhere
            rows = [row.name for row in model.layers]
            base = sum(1 for row in model.layers if row.kind in ("conv", "pool"))  # the conv base comes first
            frozen = min(min(rows.index(n) for n in names), base) - 1  # the last frozen row of the conv base
            if frozen >= 0:  # model.output runs large maps image by image (depth-first: vgg.py)
                x, start = model.output(x, rows[frozen]), rows[frozen + 1]  # x: the input of row ``start``
        grads = backprop.gradients(model, x, {last.name: seed_logits}, logits=True, weights=set(names), layers=[],
                                   input=False, dropout=DropoutMasks(model, seed), start=start,
                                   plain_weight_sums=optimizer.PLAIN_SUMS)
        _own(model, names)
        variables, g = {}, {}
        for name in names:
            kernel, bias = model.params[name]
            variables[f"{name}/kernel"], variables[f"{name}/bias"] = kernel, bias
            g[f"{name}/kernel"], g[f"{name}/bias"] = grads[f"{name}/kernel"], grads[f"{name}/bias"]
        optimizer.update(variables, g)
        _refresh(model, names)  # the update's temporaries and the new transforms in kept memory too
    return (result["loss"], result["logits"]) if return_logits else result["loss"]


def predict_logits(model, x, batch=32, start=None):
    """The logits (N, U) of ``x`` (images, or ``start``'s inputs) in inference mode, ``batch`` at a time."""
    out = []
    with passes():  # BLAS and memory settings, once for all the batches (jit.py)
        for i in range(0, len(x), batch):
            for name, a in model.forward(x[i:i + batch], logits=True, start=start):
                pass
            out.append(a)
    return np.concatenate(out) if out else np.zeros((0, model.layers[-1].out), np.float32)
