"""VGG (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
2014) as a table built from its configuration: architecture as data. ``vgg.py`` runs the table in one
loop; this file only describes it (names, kinds, shapes, parameters).

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
Keras config (``files/keras_model.py``): the row kinds below cover the heads people build.

    kind              Keras layer               computes                          (N, ...) -> (N, ...)
    conv              Conv2D 3x3 same + ReLU    conv.conv2d / winograd            (H, W, C) -> (H, W, K)
    pool              MaxPooling2D 2x2 /2       pool.max_pool2d                   (H, W, C) -> (H/2, W/2, C)
    flatten           Flatten                   a reshape, (H, W, C) order        (H, W, C) -> (D,)
    global_avg_pool   GlobalAveragePooling2D    pool.global_avg_pool              (H, W, C) -> (C,)
    global_max_pool   GlobalMaxPooling2D        pool.global_max_pool              (H, W, C) -> (C,)
    dense             Dense + activation        dense.dense (+ softmax, sigmoid)  (D,) -> (U,)
    dropout           Dropout                   nothing: identity at inference    same

``plan()``, which conv method (Winograd, direct, im2col) computes each layer, is a question of speed alone:
it sits at the bottom, under "Performance: skip on a first read".
"""
from typing import NamedTuple

import numpy as np

from ..errors import MinivggError
from ..layers import conv as conv_methods
from ..layers.microkernel import packable


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


class LayerTable(str):
    """The table as text (print it), which a notebook shows as an HTML table (``_repr_html_``)."""

    def __new__(cls, text, cells):
        self = super().__new__(cls, text)
        self.cells = cells  # [header, row, ..., total]: one list of strings per line
        return self

    def _repr_html_(self):
        esc = lambda v: str(v).replace("&", "&amp;").replace("<", "&lt;")  # noqa: E731
        head, *body = self.cells
        th = "".join(f"<th>{esc(h)}</th>" for h in head)
        trs = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for row in body)
        return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def table(rows, height, width, plan=None):
    """The rows as text: layer, output shape, parameters and multiply-adds per image (and conv method).

    Returns a ``LayerTable``: a str, shown as an HTML table in a notebook."""
    n = max(14, 2 + max(len(row.name) for row in rows))  # the name column: 14 wide, wider for long head names
    lines = [f"{'layer':<{n}}{'output shape':<22}{'params':>13}{'mult-adds':>17}" + ("  method" if plan else "")]
    cells = [["layer", "output shape", "params", "mult-adds"] + (["method"] if plan else [])]
    total_p = total_m = 0
    for row, shape, params in shapes(rows, height, width):
        p = sum(int(np.prod(s)) for s in params)
        m = int(np.prod(params[0])) * (shape[1] * shape[2] if row.kind == "conv" else 1) if params else 0
        total_p, total_m = total_p + p, total_m + m
        method = plan.get(row.name, "") if plan else None
        lines.append(f"{row.name:<{n}}{str(shape):<22}{p:>13,}{m:>17,}" + (f"  {method}" if method else ""))
        cells.append([row.name, str(shape), f"{p:,}", f"{m:,}"] + ([method] if plan else []))
    lines.append(f"{'total':<{n + 22}}{total_p:>13,}{total_m:>17,}")
    cells.append(["total", "", f"{total_p:,}", f"{total_m:,}"] + ([""] if plan else []))
    return LayerTable("\n".join(lines), cells)


def summary(include_top=True, height=TOP_SIZE, width=TOP_SIZE, plan=None, arch="vgg16"):
    """The table of ``arch`` as text, as Keras' ``model.summary()`` would print it.

    ``plan`` (layer name -> conv method, see ``plan()``) adds a column that says how each conv layer
    is computed.
    """
    rows = layers(arch, include_top)
    check_size(height, width, TITLES[arch], input_size(rows))
    return table(rows, height, width, plan)


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


# ---- Performance: skip on a first read
#
# Every conv method computes the same convolution (up to float32 rounding); which one runs where is a
# question of speed alone, decided here once per model.


def plan(method="auto", rows=None):
    """How each conv layer is computed: conv layer name -> one of ``conv.METHODS``.

    ``method`` names one method for every layer, or ``"auto"`` for the default per-layer choice:
    Winograd where it was measured faster, the direct kernel for the first layer. Winograd replaces
    each 3x3 window sum by 36 matrix products over the C input channels, plus transforms in and out;
    with C = 3 (the first layer) those products are 3-term sums and the transforms cost more than they
    save. So the rule is Winograd when C >= 64, that is every layer but block1_conv1 (the per-layer
    timings behind it are in docs/performance.md), and there the direct convolution on the GEMM
    micro-kernel (``microkernel.conv2d_direct_blocked``, K a multiple of 16; im2col otherwise).
    ``rows``: a table (VGG16's by default).

    Measured on block1_conv1 at 224, 2 threads, side by side (docs/performance.md, "The first layer on
    the micro-kernel"): the blocked direct kernel 1.45-1.7 ms against im2col's 2.4-3.9 at batch 1,
    19-24 against 27-29 ms at batch 8. The direct kernel's loop form (``conv.conv2d_direct``'s, kept for
    other K) was as fast as im2col there, not faster, so the plan kept im2col until the micro-kernel.
    """
    if method != "auto" and method not in conv_methods.METHODS:
        raise MinivggError(f"unknown conv method {method!r}; choose 'auto' or one of {conv_methods.METHODS}")
    rows = conv_base("vgg16") if rows is None else rows
    chosen = {}
    for row, _, params in shapes([r for r in rows if r.kind in ("conv", "pool")], TOP_SIZE, TOP_SIZE):
        if row.kind == "conv":
            _, _, c, k = params[0]  # the (3, 3, C, K) kernel's shape
            first = "direct" if packable(k) else "im2col"
            chosen[row.name] = method if method != "auto" else ("winograd" if c >= 64 else first)
    return chosen
