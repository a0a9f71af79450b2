"""A new head on a VGG's conv base: the model that fine-tuning trains.

Legend: N batch, H, W height and width, C channels, D features, U units.

    conv base (kept)  ->  flatten (N, H'*W'*C) or global_average_pooling2d (N, C)
                      ->  dense (N, hidden[0]) relu -> dropout -> ... -> dense_k (N, classes) softmax

Layers are named as Keras names them in a fresh session (``flatten``, ``dense``, ``dropout``,
``dense_1``, ``dropout_1``, ..., ``global_average_pooling2d``), so a model saved here reads like one
built with ``keras.layers``. The new weights are Keras' defaults: Glorot-uniform kernels, drawn from
U(-limit, limit) with limit = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010, eq. 16), and zero
biases.

A flatten head fixes the input size (fc's D = H'*W'*C); a global-average-pooling head takes any
size >= 32.
"""
import copy

import numpy as np

from ..errors import MinivggError
from ..network.table import MIN_SIZE, TOP_SIZE, Row, conv_base, plan, shapes
from .step import set_weights

HEADS = {"flatten": ("flatten", "flatten"), "gap": ("global_average_pooling2d", "global_avg_pool")}


def glorot_uniform(rng, fan_in, fan_out):
    """A (fan_in, fan_out) float32 kernel, U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out))."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)


def head_rows(classes, head="flatten", hidden=(256,), dropout=0.5):
    """The head's rows, Keras-named. ``dropout`` 0 leaves the dropout layers out."""
    if head not in HEADS:
        raise MinivggError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    name, kind = HEADS[head]
    rows, units = [Row(name, kind)], tuple(int(u) for u in hidden) + (int(classes),)
    for i, u in enumerate(units):
        last = i == len(units) - 1
        rows.append(Row("dense" if i == 0 else f"dense_{i}", "dense", u, "softmax" if last else "relu"))
        if not last and dropout:
            rows.append(Row("dropout" if i == 0 else f"dropout_{i}", "dropout"))
    return rows


def with_head(model, classes, head="flatten", hidden=(256,), dropout=0.5, seed=0, size=None):
    """A model with the conv base of ``model`` (its weights shared, not copied) and a new head.

    - classes: the number of classes, or their names (kept as ``model.classes``)
    - head: "flatten" (fixes the input size: ``size`` (H, W), default the model's own or 224x224)
      or "gap" (global average pooling: any size)
    - hidden: the units of the hidden dense layers (ReLU), each followed by dropout at rate ``dropout``
    - seed: the Glorot-uniform draws
    Returns a new ``VGG``; ``model`` is unchanged.
    """
    names = list(classes) if not isinstance(classes, (int, np.integer)) else [str(i) for i in range(classes)]
    if len(names) < 2:
        raise MinivggError(f"a classifier needs at least two classes, got {len(names)}")
    if not 0 <= dropout < 1:
        raise MinivggError(f"dropout must be in [0, 1), got {dropout}")
    if any(int(u) < 1 for u in hidden):
        raise MinivggError(f"hidden layers need at least one unit, got {tuple(hidden)}")
    base = conv_base(model.arch)
    if head == "flatten":
        size = tuple(size or model.input_size or (TOP_SIZE, TOP_SIZE))
        if min(size) < MIN_SIZE:
            raise MinivggError(f"{model.title} needs images of at least {MIN_SIZE}x{MIN_SIZE}, not {size[0]}x{size[1]}")
    else:
        size = None
    rows = tuple(base) + tuple(head_rows(len(names), head, hidden, dropout))
    rng = np.random.default_rng(seed)
    new = copy.copy(model)
    new.layers, new.top, new.include_top, new.input_size = rows, rows[len(base):], True, size
    new.params = {row.name: model.params[row.name] for row in base if row.kind == "conv"}
    for row, _, p in shapes(rows, *(size or (TOP_SIZE, TOP_SIZE))):
        if row.kind == "dense":  # Keras' defaults: Glorot-uniform kernel, zero bias
            new.params[row.name] = (glorot_uniform(rng, *p[0]), np.zeros(p[1], np.float32))
    new.plan = plan(model.method, rows)
    new._winograd, new._made = dict(model._winograd), dict(model._made)
    new.classes = names
    new.dropout = {row.name: float(dropout) for row in rows if row.kind == "dropout"}
    return new


def lsuv(model, x):
    """Rescale random conv kernels layer by layer so each conv layer's output has unit variance on
    ``x`` (N, H, W, 3) (LSUV: Mishkin & Matas 2016, "All you need is a good init", Algorithm 1, without
    its orthonormal start). In place; returns the model.

    Random He-normal kernels keep the scale only on average: on real images the outputs of the 13
    layers drift by orders of magnitude, and a head on top sees features of huge, uneven scale. With
    zero biases, a conv + ReLU is positively homogeneous (relu(c z) = c relu(z) for c > 0), so dividing
    a kernel by its layer's output std sets that std to 1 exactly, the layers above unchanged in kind.
    """
    for row in model.layers:
        if row.kind != "conv":
            continue
        for name, a in model.forward(x, keep={row.name}):
            if name == row.name:
                break
        std = float(a.std())
        if std > 0:
            kernel, bias = model.params[row.name]
            set_weights(model, {row.name: (kernel / np.float32(std), bias / np.float32(std))})
    return model
