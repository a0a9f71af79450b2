"""VGG16 (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", 2014, configuration D) as a table, and one loop that runs it.

Legend: N batch, H, W height and width, C channels, D features, U units.

Every row of ``LAYERS`` is one Keras layer, named exactly as ``keras.applications.VGG16`` names it.
Convolutions are 3x3, stride 1, pad 1 ("same"), each followed by a ReLU; pools are 2x2, stride 2.
The top (``flatten`` ... ``predictions``) is the ImageNet classifier; without it, any H, W >= 32 work.

    (N, 224, 224, 3) -> block1 -> (N, 112, 112, 64) -> block2 -> (N, 56, 56, 128) -> block3
    -> (N, 28, 28, 256) -> block4 -> (N, 14, 14, 512) -> block5 -> (N, 7, 7, 512)
    -> flatten (N, 25088) -> fc1 (N, 4096) -> fc2 (N, 4096) -> predictions (N, 1000)
"""
from typing import NamedTuple

import numpy as np

from . import conv as conv_methods
from .dense import dense, softmax
from .errors import MinivggError
from .pool import max_pool2d
from .winograd import conv3x3_winograd, winograd_kernel


class Row(NamedTuple):
    name: str  # Keras' layer name
    kind: str  # "conv", "pool", "flatten" or "dense"
    out: int = 0  # output channels K of a conv, units U of a dense layer
    activation: str = ""  # "relu" or "softmax"


LAYERS = (
    #   name            kind       out   activation
    Row("block1_conv1", "conv", 64, "relu"),
    Row("block1_conv2", "conv", 64, "relu"),
    Row("block1_pool", "pool"),
    Row("block2_conv1", "conv", 128, "relu"),
    Row("block2_conv2", "conv", 128, "relu"),
    Row("block2_pool", "pool"),
    Row("block3_conv1", "conv", 256, "relu"),
    Row("block3_conv2", "conv", 256, "relu"),
    Row("block3_conv3", "conv", 256, "relu"),
    Row("block3_pool", "pool"),
    Row("block4_conv1", "conv", 512, "relu"),
    Row("block4_conv2", "conv", 512, "relu"),
    Row("block4_conv3", "conv", 512, "relu"),
    Row("block4_pool", "pool"),
    Row("block5_conv1", "conv", 512, "relu"),
    Row("block5_conv2", "conv", 512, "relu"),
    Row("block5_conv3", "conv", 512, "relu"),
    Row("block5_pool", "pool"),
    # the top: the ImageNet classifier
    Row("flatten", "flatten"),
    Row("fc1", "dense", 4096, "relu"),
    Row("fc2", "dense", 4096, "relu"),
    Row("predictions", "dense", 1000, "softmax"),
)
TOP = ("flatten", "fc1", "fc2", "predictions")
NOTOP = LAYERS[: -len(TOP)]  # the conv stack alone, block1_conv1 ... block5_pool
TOP_SIZE = 224  # the classifier was trained on 224x224 images: fc1 needs block5_pool = 7x7x512
MIN_SIZE = 32  # five 2x2 pools: 32 -> 1


def shapes(rows, height, width, batch=None):
    """Walk the table without computing anything.

    Returns a list, one entry per row: (row, output shape, [kernel shape, bias shape] or []),
    where the output shape starts with ``batch`` (None, as Keras prints it, by default).
    """
    out, c, h, w, d = [], 3, height, width, 0
    for row in rows:
        params = []
        if row.kind == "conv":
            params = [(3, 3, c, row.out), (row.out,)]
            c = row.out
            shape = (batch, h, w, c)
        elif row.kind == "pool":
            h, w = h // 2, w // 2  # 2x2, stride 2, "valid": odd sizes floor
            shape = (batch, h, w, c)
        elif row.kind == "flatten":
            d = h * w * c
            shape = (batch, d)
        else:  # dense
            params = [(d, row.out), (row.out,)]
            d = row.out
            shape = (batch, d)
        out.append((row, shape, params))
    return out


def summary(include_top=True, height=TOP_SIZE, width=TOP_SIZE, plan=None):
    """The table as text: layer, output shape, parameters and multiply-adds per image.

    ``plan`` (layer name -> conv method, see ``plan()``) adds a column that says how each conv layer
    is computed.
    """
    if include_top and (height, width) != (TOP_SIZE, TOP_SIZE):
        raise MinivggError(f"with its top, VGG16 takes {TOP_SIZE}x{TOP_SIZE} images, not {height}x{width}")
    if min(height, width) < MIN_SIZE:
        raise MinivggError(f"VGG16 needs images of at least {MIN_SIZE}x{MIN_SIZE}, not {height}x{width}")
    rows = LAYERS if include_top else NOTOP
    lines = [f"{'layer':<14}{'output shape':<22}{'params':>13}{'mult-adds':>17}" + ("  method" if plan else "")]
    total_p = total_m = 0
    for row, shape, params in shapes(rows, height, width):
        p = sum(int(np.prod(s)) for s in params)
        m = int(np.prod(params[0])) * (shape[1] * shape[2] if row.kind == "conv" else 1) if params else 0
        total_p, total_m = total_p + p, total_m + m
        extra = f"  {plan[row.name]}" if plan and row.name in plan else ""
        lines.append(f"{row.name:<14}{str(shape):<22}{p:>13,}{m:>17,}{extra}")
    lines.append(f"{'total':<36}{total_p:>13,}{total_m:>17,}")
    return "\n".join(lines)


def plan(method="auto", rows=LAYERS):
    """How each conv layer is computed: conv layer name -> one of ``conv.METHODS``.

    ``method`` names one method for every layer, or ``"auto"`` for the default per-layer choice.
    """
    if method != "auto" and method not in conv_methods.METHODS:
        raise MinivggError(f"unknown conv method {method!r}; choose 'auto' or one of {conv_methods.METHODS}")
    # "auto": Winograd where it was measured faster, im2col elsewhere. Per-layer medians (ms),
    # both methods interleaved in one process, 224x224 input, on the 2-core Xeon we develop on:
    #   layer          map       C    K   batch 1: im2col winograd   batch 8: im2col winograd
    #   block1_conv1   224x224     3   64             2.75     3.96             42.9     47.2
    #   block1_conv2   224x224    64   64            38.60    13.81            315.7    103.9
    #   block2_conv2   112x112   128  128            19.35     7.26            191.0     66.3
    #   block3_conv2    56x56    256  256            12.56     5.31            129.5     46.1
    #   block4_conv2    28x28    512  512            11.49     6.06             99.1     39.9
    #   block5_conv2    14x14    512  512             3.38     3.37             22.5     13.3
    # With C = 3, the 36 GEMMs have 3-term sums and the transforms cost more than they save.
    # On 14x14 maps (16 tiles per image) the two tie at batch 1 and Winograd wins from batch 8.
    # Rule: Winograd when C >= 64, that is every layer but block1_conv1.
    chosen = {}
    for row, _, params in shapes(rows, TOP_SIZE, TOP_SIZE):
        if row.kind == "conv":
            c = params[0][2]  # C of the (3, 3, C, K) kernel
            chosen[row.name] = method if method != "auto" else ("winograd" if c >= 64 else "im2col")
    return chosen


def _random_params(include_top, seed=0):
    """Random weights for study and benchmarks: He-normal kernels (std sqrt(2 / fan_in), He et al.
    2015, suited to ReLU networks: activations keep their scale through the 13 layers) and zero biases."""
    rng = np.random.default_rng(seed)
    rows = LAYERS if include_top else NOTOP
    params = {}
    for row, _, (kshape, bshape) in ((r, s, p) for r, s, p in shapes(rows, TOP_SIZE, TOP_SIZE) if p):
        fan_in = int(np.prod(kshape[:-1]))
        kernel = (rng.standard_normal(kshape, dtype=np.float32) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        params[row.name] = (kernel, np.zeros(bshape, np.float32))
    return params


class VGG16:
    """VGG16 on NumPy and Numba.

    - ``weights``: a path to a Keras HDF5 weight file, ``"imagenet"`` for the published file (found
      locally or downloaded, see ``download.py``), or None for random He-normal weights.
    - ``include_top``: True or False; None means whatever the weight file holds.
    - ``method``: how conv layers are computed, one of ``conv.METHODS`` for all of them, or
      ``"auto"`` for the default per-layer choice. ``model.plan`` shows the choice.
    - ``keep_transformed``: keep every Winograd layer's transformed kernel (36, C, K) from load on
      (True, the default: ~235 MB for VGG16, 4x its conv kernels), or transform each kernel as its
      layer runs and drop it after (False: the same work for one pass, ~5 ms a layer more per later
      pass). ``minivgg-visualize`` uses False.
    """

    def __init__(self, weights="imagenet", include_top=None, method="auto", keep_transformed=True):
        from .weights import load_vgg16_weights

        expected = {row.name: p for row, _, p in shapes(LAYERS, TOP_SIZE, TOP_SIZE) if p}
        if weights is None:
            self.include_top = True if include_top is None else bool(include_top)
            self.params = _random_params(self.include_top)
        else:
            if isinstance(weights, str) and weights == "imagenet":
                from .download import find_weights

                weights = find_weights(include_top)
            self.params, self.include_top = load_vgg16_weights(weights, expected, include_top)
        self.weights_path = weights
        self.layers = LAYERS if self.include_top else NOTOP
        self.method = method
        self.keep_transformed = keep_transformed
        self.plan = plan(method, self.layers)
        # Winograd layers: the kernel transform U = G g G^T, done once here rather than on every call,
        # unless told not to keep them (then ``forward`` transforms each kernel as its layer runs).
        winograd = [name for name, m in self.plan.items() if m == "winograd"] if keep_transformed else []
        self._winograd = {name: winograd_kernel(self.params[name][0]) for name in winograd}  # (36, C, K) each
        self._winograd_dx = {}  # the same for the backward pass's flipped kernels, made on first use if kept (backprop.py)

    def _check_input(self, x):
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[None]  # (H, W, 3) -> (1, H, W, 3)
        if x.ndim != 4 or x.shape[3] != 3:
            raise MinivggError(f"VGG16 takes images of shape (H, W, 3) or (N, H, W, 3), got {x.shape}")
        if not np.issubdtype(x.dtype, np.number):
            raise MinivggError(f"VGG16 takes numeric images, got dtype {x.dtype}")
        N, H, W, _ = x.shape
        if self.include_top and (H, W) != (TOP_SIZE, TOP_SIZE):
            raise MinivggError(f"with its top, VGG16 takes {TOP_SIZE}x{TOP_SIZE} images, got {H}x{W}")
        if H < MIN_SIZE or W < MIN_SIZE:
            raise MinivggError(f"VGG16 needs images of at least {MIN_SIZE}x{MIN_SIZE}, got {H}x{W}")
        return np.ascontiguousarray(x, dtype=np.float32)

    def forward(self, x, logits=False):
        """The forward pass, one layer at a time: yields (layer name, activation).

        x: (H, W, 3) or (N, H, W, 3), already preprocessed (``preprocess_input``).
        Activations are float32, (N, H', W', C') for conv and pool layers, (N, D) after flatten.
        ``logits=True``: ``predictions`` yields the class scores before the softmax.
        """
        x = self._check_input(x)  # (N, H, W, 3)
        for row in self.layers:
            if row.kind == "conv":
                kernel, bias = self.params[row.name]
                if self.plan[row.name] == "winograd":  # the kernel transformed at load, or now and dropped after
                    U = self._winograd[row.name] if row.name in self._winograd else winograd_kernel(kernel)
                    x = conv3x3_winograd(x, U, bias, relu=row.activation == "relu")
                    del U  # not kept: freed before the next layer transforms its own
                else:
                    x = conv_methods.conv2d(
                        x, kernel, bias, stride=1, pad=1, relu=row.activation == "relu", method=self.plan[row.name]
                    )
            elif row.kind == "pool":
                x = max_pool2d(x, size=2, stride=2)
            elif row.kind == "flatten":
                x = x.reshape(x.shape[0], -1)  # (N, 7, 7, 512) -> (N, 25088), in (H, W, C) order
            else:
                kernel, bias = self.params[row.name]
                x = dense(x, kernel, bias, relu=row.activation == "relu")
                if row.activation == "softmax" and not logits:
                    x = softmax(x)
            yield row.name, x

    def activations(self, x, layers=None):
        """A dict, in layer order: layer name -> activation (see ``forward``).

        ``layers``: keep only these names (the pass still runs up to the last one asked for).
        """
        wanted = None if layers is None else set(layers)
        unknown = (wanted or set()) - {row.name for row in self.layers}
        if unknown:
            raise MinivggError(f"this model has no layer(s) {', '.join(sorted(unknown))}")
        out = {}
        for name, a in self.forward(x):
            if wanted is None or name in wanted:
                out[name] = a
                if wanted is not None and len(out) == len(wanted):
                    break
        return out

    def __call__(self, x):
        """The last layer's output: (N, 1000) class probabilities with the top, else block5_pool."""
        for _, a in self.forward(x):
            pass
        return a

    def gradients(self, x, seeds, relu="plain", logits=False, weights=False, layers=None, outputs=False):
        """The backward pass: dL/dx and dL/d(each layer's output), see ``backprop.gradients``.

        ``model.gradients(x, {"predictions": dy})``; the forward part is ``self.forward``, so the ReLU
        masks and pool choices are exactly those of ``self.activations(x)``.
        """
        from .backprop import gradients

        return gradients(self, x, seeds, relu=relu, logits=logits, weights=weights, layers=layers, outputs=outputs)

    def summary(self, height=None, width=None):
        """The layer table of this model (at 224x224 unless told), with each conv layer's method."""
        return summary(self.include_top, height or TOP_SIZE, width or TOP_SIZE, self.plan)
