"""VGG (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
2014) as a table built from its configuration, and one loop that runs the table.

Legend: N batch, H, W height and width, C channels, D features, U units.

The paper's Table 1 describes each network by its sequence of 3x3 conv widths and 2x2 max-pools;
``CONFIGS`` holds two of its columns, as ``keras.applications`` builds them:

    "D" (VGG16): 2, 2, 3, 3, 3 convs in blocks 1..5    13 conv layers + 3 dense = 16
    "E" (VGG19): 2, 2, 4, 4, 4 convs in blocks 1..5    16 conv layers + 3 dense = 19

``layers(arch)`` turns a configuration into rows named exactly as Keras names them
(``block1_conv1`` ... ``block5_pool``, then the ImageNet top ``flatten``, ``fc1``, ``fc2``,
``predictions``). Convolutions are 3x3, stride 1, pad 1 ("same"), each followed by a ReLU; pools are
2x2, stride 2. Without the top, any H, W >= 32 work.

    (N, 224, 224, 3) -> block1 -> (N, 112, 112, 64) -> block2 -> (N, 56, 56, 128) -> block3
    -> (N, 28, 28, 256) -> block4 -> (N, 14, 14, 512) -> block5 -> (N, 7, 7, 512)
    -> flatten (N, 25088) -> fc1 (N, 4096) -> fc2 (N, 4096) -> predictions (N, 1000)

A fine-tuned network keeps the conv base and replaces the top by its own head, read from the saved
Keras config (``keras_files.py``): the row kinds below cover the heads people build.

    kind              Keras layer               computes                          (N, ...) -> (N, ...)
    conv              Conv2D 3x3 same + ReLU    conv.conv2d / winograd            (H, W, C) -> (H, W, K)
    pool              MaxPooling2D 2x2 /2       pool.max_pool2d                   (H, W, C) -> (H/2, W/2, C)
    flatten           Flatten                   a reshape, (H, W, C) order        (H, W, C) -> (D,)
    global_avg_pool   GlobalAveragePooling2D    pool.global_avg_pool              (H, W, C) -> (C,)
    global_max_pool   GlobalMaxPooling2D        pool.global_max_pool              (H, W, C) -> (C,)
    dense             Dense + activation        dense.dense (+ softmax, sigmoid)  (D,) -> (U,)
    dropout           Dropout                   nothing: identity at inference    same
"""
import copy
from typing import NamedTuple

import numpy as np

from . import conv as conv_methods
from .dense import ACTIVATIONS, dense, sigmoid, softmax
from .errors import MinivggError
from .jit import shared_gemms
from .keras_files import open_model_file, read_config, unique_paths
from .pool import global_avg_pool, global_max_pool, max_pool2d
from .weights import load_params
from .winograd import conv3x3_winograd, winograd_kernel


class Row(NamedTuple):
    name: str  # Keras' layer name
    kind: str  # "conv", "pool", "flatten", "global_avg_pool", "global_max_pool", "dense" or "dropout"
    out: int = 0  # output channels K of a conv, units U of a dense layer
    activation: str = ""  # conv: "relu"; dense: one of dense.ACTIVATIONS ("relu", "softmax", "sigmoid", "linear")


# The paper's configurations: conv widths K, "M" for a 2x2 max-pool that ends a block.
CONFIGS = {
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "E": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}
ARCHS = {"vgg16": "D", "vgg19": "E"}  # the names Keras and the scripts use -> configuration
TITLES = {"vgg16": "VGG16", "vgg19": "VGG19"}
TOP_SIZE = 224  # the ImageNet classifier was trained on 224x224 images: fc1 needs block5_pool = 7x7x512
MIN_SIZE = 32  # five 2x2 pools: 32 -> 1
IMAGENET_TOP = (  # keras.applications' top, the same for both configurations
    Row("flatten", "flatten"),
    Row("fc1", "dense", 4096, "relu"),
    Row("fc2", "dense", 4096, "relu"),
    Row("predictions", "dense", 1000, "softmax"),
)


def conv_base(arch):
    """The conv and pool rows of ``arch`` ("vgg16" or "vgg19"), named as Keras names them."""
    if arch not in ARCHS:
        raise MinivggError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    rows, block, conv = [], 1, 1
    for item in CONFIGS[ARCHS[arch]]:
        if item == "M":
            rows.append(Row(f"block{block}_pool", "pool"))
            block, conv = block + 1, 1
        else:
            rows.append(Row(f"block{block}_conv{conv}", "conv", item, "relu"))
            conv += 1
    return tuple(rows)


def layers(arch="vgg16", include_top=True):
    """The table of ``arch``: its conv base, and the ImageNet top if ``include_top``."""
    return conv_base(arch) + (IMAGENET_TOP if include_top else ())


def detect_arch(names):
    """Which architecture a set of layer names belongs to: the one whose conv base they contain
    (VGG19's contains VGG16's, so the largest match wins); None if neither."""
    names = set(names)
    found = [arch for arch in ARCHS if {row.name for row in conv_base(arch) if row.kind == "conv"} <= names]
    return max(found, key=lambda a: len(conv_base(a)), default=None)


def shapes(rows, height, width, batch=None):
    """Walk the table without computing anything.

    Returns a list, one entry per row: (row, output shape, [kernel shape, bias shape] or []),
    where the output shape starts with ``batch`` (None, as Keras prints it, by default).
    """
    out, (h, w, c), d = [], (height, width, 3), 0
    shape = (batch, h, w, c)
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
        elif row.kind in ("global_avg_pool", "global_max_pool"):
            d = c  # one number per channel
            shape = (batch, d)
        elif row.kind == "dense":
            params = [(d, row.out), (row.out,)]
            d = row.out
            shape = (batch, d)
        elif row.kind != "dropout":  # dropout keeps the shape
            raise ValueError(f"unknown row kind {row.kind!r}")
        out.append((row, shape, params))
    return out


def input_size(rows, top_size=TOP_SIZE):
    """The (H, W) a table needs: ``top_size`` square if a flatten feeds a dense layer, else None (any size)."""
    return (top_size, top_size) if any(row.kind == "flatten" for row in rows) else None


def check_size(height, width, title="VGG16", size=None):
    """Raise MinivggError unless a table of input size ``size`` ((H, W) or None) takes ``height`` x ``width``."""
    if size is not None and (height, width) != tuple(size):
        raise MinivggError(f"with its top, {title} takes {size[0]}x{size[1]} images, not {height}x{width}")
    if min(height, width) < MIN_SIZE:
        raise MinivggError(f"{title} needs images of at least {MIN_SIZE}x{MIN_SIZE}, not {height}x{width}")


def table(rows, height, width, plan=None):
    """The rows as text: layer, output shape, parameters and multiply-adds per image (and conv method)."""
    n = max(14, 2 + max(len(row.name) for row in rows))  # the name column: 14 wide, wider for long head names
    lines = [f"{'layer':<{n}}{'output shape':<22}{'params':>13}{'mult-adds':>17}" + ("  method" if plan else "")]
    total_p = total_m = 0
    for row, shape, params in shapes(rows, height, width):
        p = sum(int(np.prod(s)) for s in params)
        m = int(np.prod(params[0])) * (shape[1] * shape[2] if row.kind == "conv" else 1) if params else 0
        total_p, total_m = total_p + p, total_m + m
        extra = f"  {plan[row.name]}" if plan and row.name in plan else ""
        lines.append(f"{row.name:<{n}}{str(shape):<22}{p:>13,}{m:>17,}{extra}")
    lines.append(f"{'total':<{n + 22}}{total_p:>13,}{total_m:>17,}")
    return "\n".join(lines)


def summary(include_top=True, height=TOP_SIZE, width=TOP_SIZE, plan=None, arch="vgg16"):
    """The table of ``arch`` as text, as Keras' ``model.summary()`` would print it.

    ``plan`` (layer name -> conv method, see ``plan()``) adds a column that says how each conv layer
    is computed.
    """
    rows = layers(arch, include_top)
    check_size(height, width, TITLES[arch], input_size(rows))
    return table(rows, height, width, plan)


def plan(method="auto", rows=None):
    """How each conv layer is computed: conv layer name -> one of ``conv.METHODS``.

    ``method`` names one method for every layer, or ``"auto"`` for the default per-layer choice.
    ``rows``: a table (VGG16's by default).
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
    rows = conv_base("vgg16") if rows is None else rows
    chosen = {}
    for row, _, params in shapes([r for r in rows if r.kind in ("conv", "pool")], TOP_SIZE, TOP_SIZE):
        if row.kind == "conv":
            c = params[0][2]  # C of the (3, 3, C, K) kernel
            chosen[row.name] = method if method != "auto" else ("winograd" if c >= 64 else "im2col")
    return chosen


def random_params(rows, seed=0):
    """Random weights for study and benchmarks: He-normal kernels (std sqrt(2 / fan_in), He et al.
    2015, suited to ReLU networks: activations keep their scale through the conv layers) and zero biases."""
    rng = np.random.default_rng(seed)
    size = input_size(rows) or (TOP_SIZE, TOP_SIZE)
    params = {}
    for row, _, (kshape, bshape) in ((r, s, p) for r, s, p in shapes(rows, *size) if p):
        fan_in = int(np.prod(kshape[:-1]))
        kernel = (rng.standard_normal(kshape, dtype=np.float32) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        params[row.name] = (kernel, np.zeros(bshape, np.float32))
    return params


# ---------------------------------------------------------------- tables from files

KERAS_CLASSES = {  # row kind -> the Keras layer class it computes
    "conv": "Conv2D",
    "pool": "MaxPooling2D",
    "flatten": "Flatten",
    "global_avg_pool": "GlobalAveragePooling2D",
    "global_max_pool": "GlobalMaxPooling2D",
    "dense": "Dense",
    "dropout": "Dropout",
}
KINDS = {cls: kind for kind, cls in KERAS_CLASSES.items()}
FLATTENERS = ("flatten", "global_avg_pool", "global_max_pool")  # (N, H, W, C) -> (N, D): a dense layer may follow


def row_from_keras(layer, path):
    """One layer of a saved config (``keras_files.KerasLayer``) as a row of the table.

    Raises MinivggError naming the layer if minivgg cannot compute it exactly as Keras does.
    """
    c, name, cls = layer.config, layer.name, layer.cls

    def refuse(why):
        raise MinivggError(f"{path}: layer {name!r} ({cls}) {why}: minivgg cannot compute it")

    if cls not in KINDS:
        refuse("is not a layer minivgg knows")
    kind = KINDS[cls]
    if c.get("data_format") not in (None, "channels_last"):
        refuse(f"has data_format {c.get('data_format')!r}")
    if kind == "conv":
        settings = (c.get("kernel_size"), c.get("strides", [1, 1]), c.get("padding"), c.get("activation"),
                    c.get("dilation_rate", [1, 1]), c.get("groups", 1), c.get("use_bias", True))
        if settings != ([3, 3], [1, 1], "same", "relu", [1, 1], 1, True) or not isinstance(c.get("filters"), int):
            refuse("is not a 3x3, stride 1, 'same' convolution with a bias and a ReLU")
        return Row(name, "conv", c["filters"], "relu")
    if kind == "pool":
        if c.get("pool_size") != [2, 2] or c.get("strides") not in (None, [2, 2]) or c.get("padding") != "valid":
            refuse("is not a 2x2, stride 2, 'valid' max-pool")
    if kind in ("global_avg_pool", "global_max_pool") and c.get("keepdims"):
        refuse("keeps the H and W axes (keepdims=True)")
    if kind == "dense":
        act = c.get("activation") or "linear"
        if isinstance(act, dict) and act.get("class_name") == "function":  # {"config": "relu", ...} in some saves
            act = act.get("config")
        if act not in ACTIVATIONS:
            refuse(f"has activation {act!r}, not one of {', '.join(ACTIVATIONS)}")
        if not c.get("use_bias", True) or not isinstance(c.get("units"), int):
            refuse("has no bias")
        return Row(name, "dense", c["units"], act)
    return Row(name, kind)


def rows_from_config(saved, path):
    """A saved model (``keras_files.SavedModel``) as (arch, rows, input size or None).

    The conv base must be VGG16's or VGG19's, layer for layer; the head after it may be any chain of
    flatten or a global pool, dense layers and dropout.
    """
    rows = []
    for layer in saved.layers:  # refuses the first layer minivgg cannot compute, or that branches
        rows.append(row_from_keras(layer, path))
        if layer.inbound and layer.inbound != (layer.after,):
            raise MinivggError(f"{path}: layer {layer.name!r} ({layer.cls}) takes its input from "
                               f"{', '.join(layer.inbound)}, not from {layer.after!r} alone: minivgg runs a plain "
                               "chain of layers")
    for arch in sorted(ARCHS, key=lambda a: -len(conv_base(a))):  # VGG19 first: it starts as VGG16 does
        base = conv_base(arch)
        if tuple(rows[: len(base)]) == base:
            break
    else:
        base = conv_base("vgg16")
        i = next((i for i, (r, b) in enumerate(zip(rows, base)) if r != b), len(rows))
        what = f"layer {saved.layers[i].name!r} ({saved.layers[i].cls})" if i < len(rows) else "its last layer"
        raise MinivggError(f"{path}: its saved model is not a VGG16 or VGG19 (at {what}): minivgg computes those only")
    flat = False
    for row, layer in zip(rows[len(base):], saved.layers[len(base):]):
        if row.kind in ("conv", "pool") or (row.kind == "dense" and not flat) or (row.kind in FLATTENERS and flat):
            raise MinivggError(f"{path}: layer {row.name!r} ({layer.cls}) after the VGG base is not one minivgg can "
                               "place: a head is flatten or a global pool, then dense and dropout layers")
        flat = flat or row.kind in FLATTENERS
    size = None
    if any(row.kind == "flatten" for row in rows):  # flatten fixes the input size: the saved one
        shape = saved.input_shape or ()
        if len(shape) != 3 or not all(isinstance(s, int) and s >= MIN_SIZE for s in shape[:2]):
            raise MinivggError(f"{path}: its head flattens, but its saved input shape {shape} gives no image size")
        size = tuple(shape[:2])
    return arch, tuple(rows), size


def load(path, arch=None, include_top=None):
    """Read a Keras file (see ``keras_files.py``) into a table and its weights.

    - ``arch``: "vgg16" or "vgg19" to insist on one (a file of the other is refused, saying which
      it is), None to take it from the file
    - ``include_top``: True (the file must have a top or head), False (the conv base alone), None
      (whatever the file holds)
    Returns (arch, rows, input size (H, W) or None, params).
    """
    with open_model_file(path) as f:
        if f.config:  # a saved model: its own layers, head included
            saved = read_config(f.config, path)
            found, rows, size = rows_from_config(saved, path)
            if not f.named:  # a Keras 3 file from before layer names: its paths follow from the config
                f.rename({layer.path: layer.name for layer in saved.layers})
        else:  # weights alone: a VGG base, and maybe the ImageNet top
            if not f.named:  # paths of a keras.applications model: an input layer, then the table's
                big = "vgg19" if "layers/conv2d_15" in f.layers else "vgg16"
                table_rows = layers(big, include_top=True)
                paths = unique_paths(["InputLayer"] + [KERAS_CLASSES[r.kind] for r in table_rows])[1:]
                f.rename({p: r.name for p, r in zip(paths, table_rows)})
            found = detect_arch(f.layers) or arch or "vgg16"
            rows, size = layers(found, include_top=True), (TOP_SIZE, TOP_SIZE)
        if arch is not None and found != arch:
            raise MinivggError(f"{path} holds a {TITLES[found]}, not a {TITLES[arch]}: use minivgg.{TITLES[found]} "
                               "(or minivgg.VGG, which takes the architecture from the file)")
        base = conv_base(found)
        head = [row.name for row in rows[len(base):] if row.kind == "dense"]  # the head's weighted layers
        has_top = len(rows) > len(base) if f.config else any(name in f.layers for name in head)
        if include_top is None:
            include_top = has_top
        if include_top and not has_top:
            raise MinivggError(f"{path} holds no top ({', '.join(head)}): use include_top=False or the full file")
        rows = rows if include_top else base
        size = size if include_top else None
        expected = {row.name: p for row, _, p in shapes(rows, *(size or (TOP_SIZE, TOP_SIZE))) if p}
        hint = "" if f.config or not detect_arch(f.layers) else (
            f", or of a fine-tuned {TITLES[found]} saved without its config (model.save('x.keras') keeps it)")
        params = load_params(f, expected, TITLES[found], ignore=() if include_top else head, hint=hint)
    return found, rows, size, params


class VGG:
    """A VGG network on NumPy and Numba: its table (``layers``), weights (``params``) and forward loop.

    - ``weights``: a Keras file (weights or a saved model, see ``keras_files.py``), ``"imagenet"``
      for the published file (found locally or downloaded, see ``download.py``), or None for random
      He-normal weights.
    - ``include_top``: True or False; None means whatever the file holds. The top is the ImageNet
      classifier, or the head a fine-tuned model's saved config describes.
    - ``method``: how conv layers are computed, one of ``conv.METHODS`` for all of them, or
      ``"auto"`` for the default per-layer choice. ``model.plan`` shows the choice.
    - ``keep_transformed``: keep every Winograd layer's transformed kernel (36, C, K) from load on
      (True, the default: ~235 MB for VGG16, 4x its conv kernels), or transform each kernel as its
      layer runs and drop it after (False: the same work for one pass, ~5 ms a layer more per later
      pass). ``minivgg-visualize`` uses False.
    - ``batch_invariant``: each image of a batch gives, bit for bit, the activations it gives alone
      (``conv3x3_winograd(per_image=True)``; False, the default, lets a batch share its Winograd
      GEMMs, which is faster). ``minivgg-visualize`` uses True: its many-image runs write the bytes
      one-image runs write.

    ``VGG(weights=FILE)`` takes the architecture from the file; ``VGG16`` and ``VGG19`` insist on theirs.
    """

    ARCH = None  # "vgg16" or "vgg19" in the subclasses; None: learn it from the file

    def __init__(self, weights="imagenet", include_top=None, method="auto", keep_transformed=True, batch_invariant=False):
        self.arch = self.ARCH or "vgg16"
        if weights is None:
            self.layers = layers(self.arch, include_top is not False)
            self.input_size = input_size(self.layers)
            self.params = random_params(self.layers)
        else:
            if isinstance(weights, str) and weights == "imagenet":
                from .download import find_weights

                weights = find_weights(include_top, arch=self.arch)
            self.arch, self.layers, self.input_size, self.params = load(weights, self.ARCH, include_top)
        self.weights_path = weights
        self.title = TITLES[self.arch]
        self.top = self.layers[len(conv_base(self.arch)):]  # the rows after the conv base: top or head
        self.include_top = bool(self.top)
        # self.input_size: the (H, W) a flatten head needs, None when any size >= MIN_SIZE works
        self.method = method
        self.keep_transformed = keep_transformed
        self.batch_invariant = batch_invariant
        self.plan = plan(method, self.layers)
        # Winograd layers: the kernel transform U = G g G^T, done once here rather than on every call,
        # unless told not to keep them (then ``forward`` transforms each kernel as its layer runs).
        winograd = [name for name, m in self.plan.items() if m == "winograd"] if keep_transformed else []
        self._winograd = {name: winograd_kernel(self.params[name][0]) for name in winograd}  # (36, C, K) each
        self._winograd_dx = {}  # the same for the backward pass's flipped kernels, made on first use if kept (backprop.py)

    def with_params(self, params):
        """A copy of this model with some layers' weights replaced: params = {layer name: (kernel, bias)}.

        Shapes must match ``self.params``. The other layers share their arrays (and their Winograd
        transforms) with this model, so a copy costs only the layers replaced. The sanity checks
        (``explain/sanity.py``) use it to redraw layers from the top down.
        """
        for name, (kernel, bias) in params.items():
            if name not in self.params:
                raise MinivggError(f"this model has no weights named {name!r}")
            want = tuple(a.shape for a in self.params[name])
            if (np.shape(kernel), np.shape(bias)) != want:
                raise MinivggError(f"{name} takes weights of shapes {want}, got {(np.shape(kernel), np.shape(bias))}")
        new = copy.copy(self)
        new.params = dict(self.params)
        new._winograd, new._winograd_dx = dict(self._winograd), dict(self._winograd_dx)
        for name, (kernel, bias) in params.items():
            new.params[name] = (np.ascontiguousarray(kernel, np.float32), np.ascontiguousarray(bias, np.float32))
            new._winograd_dx.pop(name, None)
            if name in new._winograd:
                new._winograd[name] = winograd_kernel(new.params[name][0])  # (36, C, K)
        return new

    def _check_input(self, x):
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[None]  # (H, W, 3) -> (1, H, W, 3)
        if x.ndim != 4 or x.shape[3] != 3:
            raise MinivggError(f"{self.title} takes images of shape (H, W, 3) or (N, H, W, 3), got {x.shape}")
        if not np.issubdtype(x.dtype, np.number):
            raise MinivggError(f"{self.title} takes numeric images, got dtype {x.dtype}")
        N, H, W, _ = x.shape
        check_size(H, W, self.title, self.input_size)
        return np.ascontiguousarray(x, dtype=np.float32)

    def forward(self, x, logits=False):
        """The forward pass, one layer at a time: yields (layer name, activation).

        x: (H, W, 3) or (N, H, W, 3), already preprocessed (``preprocess_input``).
        Activations are float32, (N, H', W', C') for conv and pool layers, (N, D) after flatten
        or a global pool.
        ``logits=True``: the last layer (``predictions``, or a fine-tuned head's last dense layer)
        yields its scores before its softmax or sigmoid.
        Threads: the whole-pass methods (``model(x)``, ``activations``, ``gradients``) run inside
        ``jit.shared_gemms()``; a generator cannot hold it between yields, so a loop of your own over
        ``forward`` runs BLAS as it finds it, unless you wrap it in ``with jit.shared_gemms():``.
        """
        last = self.layers[-1].name
        x = self._check_input(x)  # (N, H, W, 3)
        for row in self.layers:
            if row.kind == "conv":
                kernel, bias = self.params[row.name]
                if self.plan[row.name] == "winograd":  # the kernel transformed at load, or now and dropped after
                    U = self._winograd[row.name] if row.name in self._winograd else winograd_kernel(kernel)
                    x = conv3x3_winograd(x, U, bias, relu=row.activation == "relu", per_image=self.batch_invariant)
                    del U  # not kept: freed before the next layer transforms its own
                else:
                    x = conv_methods.conv2d(
                        x, kernel, bias, stride=1, pad=1, relu=row.activation == "relu", method=self.plan[row.name]
                    )
            elif row.kind == "pool":
                x = max_pool2d(x, size=2, stride=2)
            elif row.kind == "flatten":
                x = x.reshape(x.shape[0], -1)  # (N, H, W, C) -> (N, H*W*C), in (H, W, C) order
            elif row.kind == "global_avg_pool":
                x = global_avg_pool(x)  # (N, H, W, C) -> (N, C)
            elif row.kind == "global_max_pool":
                x = global_max_pool(x)  # (N, H, W, C) -> (N, C)
            elif row.kind == "dense":
                kernel, bias = self.params[row.name]
                x = dense(x, kernel, bias, relu=row.activation == "relu")
                if logits and row.name == last:
                    pass  # the scores before the softmax or sigmoid
                elif row.activation == "softmax":
                    x = softmax(x)
                elif row.activation == "sigmoid":
                    x = sigmoid(x)
            # "dropout": nothing to do at inference; the row yields its input
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
        with shared_gemms():  # one BLAS switch for the pass (jit.py)
            for name, a in self.forward(x):
                if wanted is None or name in wanted:
                    out[name] = a
                    if wanted is not None and len(out) == len(wanted):
                        break
        return out

    def __call__(self, x):
        """The last layer's output: (N, classes) scores with a top or head, else block5_pool."""
        with shared_gemms():  # one BLAS switch for the pass (jit.py)
            for _, a in self.forward(x):
                pass
        return a

    def gradients(self, x, seeds, relu="plain", logits=False, weights=False, layers=None, outputs=False, input=True):
        """The backward pass: dL/dx and dL/d(each layer's output), see ``backprop.gradients``.

        ``model.gradients(x, {"predictions": dy})``; the forward part is ``self.forward``, so the ReLU
        masks and pool choices are exactly those of ``self.activations(x)``.
        """
        from .backprop import gradients

        with shared_gemms():  # one BLAS switch for both passes (jit.py)
            return gradients(self, x, seeds, relu=relu, logits=logits, weights=weights, layers=layers,
                             outputs=outputs, input=input)

    def summary(self, height=None, width=None):
        """The layer table of this model (at its input size, else 224x224, unless told), with each
        conv layer's method."""
        h, w = self.input_size or (TOP_SIZE, TOP_SIZE)
        h, w = height or h, width or w
        check_size(h, w, self.title, self.input_size)
        return table(self.layers, h, w, self.plan)


class VGG16(VGG):
    """VGG16 (configuration D). A VGG19 file is refused with a pointer to ``VGG19`` (or ``VGG``)."""

    ARCH = "vgg16"


class VGG19(VGG):
    """VGG19 (configuration E): four convs in blocks 3, 4 and 5. A VGG16 file is refused likewise."""

    ARCH = "vgg19"

