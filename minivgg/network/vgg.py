"""The VGG model: a table of rows (``table.py``), its weights, and the one loop that runs them.

Legend: N batch, H, W height and width, C channels, D features, U units.

The forward pass is the table walked top to bottom, each row's layer applied to the last output:

    a_0 = x;   a_l = layer_l(a_{l-1})     conv: relu(conv(a, w) + b);  pool: 2x2 max;  flatten;  dense ...

``VGG16(weights="imagenet")`` reads the published Keras file (``files/``), keeps its rows and weights,
and ``forward(x)`` walks the rows, yielding ``(layer name, activation)``: every tool (the pages, the
attribution maps, feature visualisation, the tests) uses that one loop. The backward pass
(``backprop.py``) walks the same rows in reverse; ``model.gradients`` calls it. ``naive.py`` holds
both passes written with the layers' naive kernels, the reference the tests hold these to.

    (N, 224, 224, 3) -> block1 -> (N, 112, 112, 64) -> block2 -> (N, 56, 56, 128) -> block3
    -> (N, 28, 28, 256) -> block4 -> (N, 14, 14, 512) -> block5 -> (N, 7, 7, 512)
    -> flatten (N, 25088) -> fc1 (N, 4096) -> fc2 (N, 4096) -> predictions (N, 1000)

Reading order of this file: the class and its constructor, ``forward`` (the loop), the methods that
run it (``__call__`` and ``output``, ``activations``, ``gradients``, ``summary``), then input checking and
``with_params``; how each conv layer is computed (im2col or Winograd, ``self.plan``) and the Winograd
kernels kept between calls sit at the bottom, under "Performance: skip on a first read".
"""
import copy

import numpy as np

from ..errors import MinivggError
from ..files import keras_write
from ..files.download import find_weights
from ..files.keras_model import load
from ..jit import passes
from ..layers import conv as conv_methods
from ..layers.dense import dense, sigmoid, softmax
from ..layers.pool import global_avg_pool, global_max_pool, max_pool2d
from ..layers.winograd_schedules import conv3x3_winograd, fast_kernel, small_tiles
from . import backprop
from .receptive_field import receptive_field
from .table import TITLES, TOP_SIZE, check_size, conv_base, input_size, layers, plan, random_params, shapes, table


DEPTH_FIRST_FLOATS = 1 << 19  # an image's map larger than this (2 MB) goes through ``output`` image by image


class VGG:
    """A VGG network on NumPy and Numba: its table (``layers``), weights (``params``) and forward loop.

    - ``weights``: a Keras file (weights or a saved model, see ``keras_files.py``), ``"imagenet"``
      for the published file (found locally or downloaded, see ``download.py``), or None for random
      He-normal weights.
    - ``include_top``: True or False; None means whatever the file holds. The top is the ImageNet
      classifier, or the head a fine-tuned model's saved config describes.
    - ``method``: how conv layers are computed, one of ``conv.METHODS`` for all of them, or
      ``"auto"`` for the default per-layer choice. ``model.plan`` shows the choice.
    - ``keep_transformed``: keep every Winograd layer's transformed kernel (36, C, K), packed, from load on
      (True, the default: 4x the memory of its conv kernels), or transform each kernel as its layer
      runs and drop it after (False: the same work for one pass, a little more for each later pass).
      ``minivgg-visualize`` uses False.
    - ``batch_invariant``: each image of a batch gives, bit for bit, the activations it gives alone
      (``conv3x3_winograd(per_image=True)``; False, the default, lets a batch share its Winograd
      GEMMs, which is faster). ``minivgg-visualize`` uses True: its many-image runs write the bytes
      one-image runs write.

    ``VGG(weights=FILE)`` takes the architecture from the file; ``VGG16`` and ``VGG19`` insist on theirs.
    A saved model's dropout rates come with its head: ``model.dropout`` = {layer name: rate}.
    """

    ARCH = None  # "vgg16" or "vgg19" in the subclasses; None: learn it from the file

    def __init__(self, weights="imagenet", include_top=None, method="auto", keep_transformed=True, batch_invariant=False):
        self.arch = self.ARCH or "vgg16"
        if weights is None:
            self.layers = layers(self.arch, include_top is not False)
            self.input_size = input_size(self.layers)
            self.params = random_params(self.layers)
            self.dropout = {}  # VGG's own tables have no dropout rows
        else:
            if isinstance(weights, str) and weights == "imagenet":
                weights = find_weights(include_top, arch=self.arch)
            self.arch, self.layers, self.input_size, self.params, self.dropout = load(weights, self.ARCH, include_top)
        # self.dropout: {dropout layer name: rate}, from the saved config (or train.with_head): the rate
        # training uses (train/step.py) and model.save writes; inference ignores it
        self.weights_path = weights
        self.title = TITLES[self.arch]
        self.top = self.layers[len(conv_base(self.arch)):]  # the rows after the conv base: top or head
        self.include_top = bool(self.top)
        # self.input_size: the (H, W) a flatten head needs, None when any size >= MIN_SIZE works
        self.method = method
        self.plan = plan(method, self.layers)  # conv layer name -> "winograd", "direct", ... (table.py)
        self.keep_transformed = keep_transformed
        self.batch_invariant = batch_invariant
        self._keep_winograd_kernels()  # Performance, at the bottom

    def forward(self, x, logits=False, dropout=None, start=None, keep=None):
        """The forward pass, one layer at a time: yields (layer name, activation).

        x: (H, W, 3) or (N, H, W, 3), already preprocessed (``preprocess_input``).
        Activations are float32, (N, H', W', C') for conv and pool layers, (N, D) after flatten
        or a global pool.
        ``logits=True``: the last layer (``predictions``, or a fine-tuned head's last dense layer)
        yields its scores before its softmax or sigmoid.
        ``dropout``: training mode (``train/step.py``): an object whose ``mask(layer, shape)`` gives each
        dropout layer's mask (N, D), 0 or 1 / (1 - rate) per unit (None: no dropout there); the layer
        multiplies its input by it. Without it, dropout is the identity, as at inference.
        ``start``: a layer name; x is then that layer's input (the output of the row below it, e.g.
        block5_pool's output, cached) and the rows below are skipped.
        ``keep``: None (default: every activation), or the names of the layers whose activations the
        caller uses. A conv layer not in it and followed by a pool (block1_conv2, ...) is then computed
        together with its pool where it runs by Winograd (``_fused``): the pool's output comes out of
        the conv's output transform, bit for bit the same, and the conv's full map is never made, so
        the conv row yields None. ``output`` and ``activations(layers=...)`` pass what they return.
        Threads: the whole-pass methods (``model(x)``, ``activations``, ``gradients``) run inside
        ``jit.passes()``; a generator cannot hold it between yields, so a loop of your own over
        ``forward`` runs BLAS and memory as it finds them, unless you wrap it in ``with jit.passes():``.
        """
        last = self.layers[-1].name
        rows = self.layers
        if start is None:
            x = self._check_input(x)  # (N, H, W, 3)
        else:  # the input of row ``start``: (N, H', W', C') or (N, D)
            rows = rows[[row.name for row in rows].index(start):]
            x = np.ascontiguousarray(x, dtype=np.float32)
        pooled = None  # a pool row's output, made by the conv row below it (keep)
        for i, row in enumerate(rows):
            if self._fused(row, rows[i + 1:i + 2], keep):
                pooled = self._conv(row, x, pool=True)  # pool(relu(conv(x, w) + b)): (N, H, W, C) -> (N, H/2, W/2, K)
                yield row.name, None  # its full map was never made
                continue
            if pooled is not None:  # this pool row: its output came with the conv
                x, pooled = pooled, None
            elif row.kind == "conv":
                x = self._conv(row, x)  # relu(conv(x, w) + b): (N, H, W, C) -> (N, H, W, K)
            elif row.kind == "pool":
                x = max_pool2d(x, size=2, stride=2)  # (N, H, W, C) -> (N, H/2, W/2, C)
            elif row.kind == "flatten":
                x = x.reshape(x.shape[0], -1)  # (N, H, W, C) -> (N, H*W*C), in (H, W, C) order
            elif row.kind == "global_avg_pool":
                x = global_avg_pool(x)  # (N, H, W, C) -> (N, C)
            elif row.kind == "global_max_pool":
                x = global_max_pool(x)  # (N, H, W, C) -> (N, C)
            elif row.kind == "dense":
                kernel, bias = self.params[row.name]
                x = dense(x, kernel, bias, relu=row.activation == "relu")  # (N, D) @ (D, U) + b -> (N, U)
                if logits and row.name == last:
                    pass  # the scores before the softmax or sigmoid
                elif row.activation == "softmax":
                    x = softmax(x)
                elif row.activation == "sigmoid":
                    x = sigmoid(x)
            elif row.kind == "dropout" and dropout is not None:
                mask = dropout.mask(row.name, x.shape)  # (N, D), or None
                x = x if mask is None else x * mask  # training mode; at inference the row yields its input
            yield row.name, x

    def __call__(self, x):
        """The last layer's output: (N, classes) scores with a top or head, else block5_pool."""
        return self.output(x)

    def output(self, x, layer=None):
        """The output of ``layer`` (default: the last) for x (N, H, W, 3): ``forward`` run up to it.

        Depth-first where the maps are large: a batch goes through the first rows image by image
        (``_depth_first``), the rest of the way together. The results are those of one batched pass up
        to float32 rounding (the same bits with ``batch_invariant``).
        """
        names = [row.name for row in self.layers]
        stop = names[-1] if layer is None else layer
        if stop not in names:
            raise MinivggError(f"this model has no layer {stop}")
        x = self._check_input(x)  # (N, H, W, 3)
        split = min(self._depth_first(*x.shape[1:3]), names.index(stop)) if len(x) > 1 else -1
        with passes():  # BLAS and memory settings, once for the pass (jit.py)
            if split >= 0:  # rows 0 .. split image by image: (N, H', W', C') after them
                x = np.concatenate([self._run(x[n:n + 1], names[split]) for n in range(len(x))])
                if names[split] == stop:
                    return x
            return self._run(x, stop, start=names[split + 1] if split >= 0 else None)

    def activations(self, x, layers=None):
        """A dict, in layer order: layer name -> activation (see ``forward``).

        ``layers``: keep only these names (the pass still runs up to the last one asked for).
        """
        wanted = None if layers is None else set(layers)
        unknown = (wanted or set()) - {row.name for row in self.layers}
        if unknown:
            raise MinivggError(f"this model has no layer(s) {', '.join(sorted(unknown))}")
        out = {}
        with passes():  # BLAS and memory settings, once for the pass (jit.py)
            for name, a in self.forward(x, keep=wanted):
                if wanted is None or name in wanted:
                    out[name] = a
                    if wanted is not None and len(out) == len(wanted):
                        break
        return out

    def gradients(self, x, seeds, relu="plain", logits=False, weights=False, layers=None, outputs=False, input=True):
        """The backward pass: dL/dx and dL/d(each layer's output), see ``backprop.gradients``.

        ``model.gradients(x, {"predictions": dy})``; the forward part is ``self.forward``, so the ReLU
        masks and pool choices are exactly those of ``self.activations(x)``.
        """
        with passes():  # BLAS and memory settings, once for both passes (jit.py)
            return backprop.gradients(self, x, seeds, relu=relu, logits=logits, weights=weights, layers=layers,
                             outputs=outputs, input=input)

    def save(self, path):
        """Write this model as Keras does, by extension: ``.keras`` (Keras 3's archive) or ``.h5`` (the
        legacy full-model file); ``keras.models.load_model`` and ``VGG(weights=path)`` read it back."""
        return keras_write.save(self, path)

    def summary(self, height=None, width=None):
        """The layer table of this model (at its input size, else 224x224, unless told), with each
        conv layer's method."""
        h, w = self.input_size or (TOP_SIZE, TOP_SIZE)
        h, w = height or h, width or w
        check_size(h, w, self.title, self.input_size)
        return table(self.layers, h, w, self.plan)

    def _check_input(self, x):
        """x as (N, H, W, 3) float32, C-contiguous; a MinivggError for anything else or a size the table refuses."""
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
        new._winograd, new._made = dict(self._winograd), dict(self._made)
        for name, (kernel, bias) in params.items():
            new.params[name] = (np.ascontiguousarray(kernel, np.float32), np.ascontiguousarray(bias, np.float32))
            new._forget(name)
            if name in new._winograd:
                new._winograd[name] = fast_kernel(new.params[name][0])  # (36, K/16, C, 16) panels
        return new

    # ---- Performance: skip on a first read
    #
    # A conv layer is computed by the method ``self.plan`` names for it (``table.plan``: Winograd where
    # it was measured faster, the direct kernel for the first layer); all give the same convolution up
    # to float32 rounding.
    # Winograd first transforms the kernel, U = G g G^T (36, C, K), and packs it into the panels the
    # GEMM micro-kernel reads (``microkernel.pack``); that is done once per layer at load and kept
    # (``keep_transformed``), rather than on every call.

    def _run(self, x, stop, start=None):
        """``forward`` from ``start`` (x its input; None: the images) up to row ``stop``; its output."""
        for name, a in self.forward(x, start=start, keep={stop}):
            if name == stop:
                return a

    def _depth_first(self, height, width):
        """The index of the last row ``output`` runs image by image: the last one whose output holds more
        than ``DEPTH_FIRST_FLOATS`` floats an image, or the pool right after it; -1 when none does
        (small images).

        Why: at 224x224 block1's maps are 12.8 MB an image, 103 MB for a batch of 8, far more than the
        cache (32 MB of L3 here), so a batched pass sends every layer's input and output out to memory
        and back, while one image's maps stay in the cache from one layer to the next. Past block3 the
        maps are small and a batch makes the GEMMs larger (U, 36 MB for a 512 -> 512 layer, read once a
        block of tiles rather than once an image). Measured at 224, batch 8, side by side: depth-first
        through block3 0.85-0.93x the time of the batched pass (docs/performance.md). The pool after the
        last large map goes with it: it pools each image on its own, and taken image by image the conv
        before it computes it (``_fused``) instead of handing its full map on to a batched pool (0.95-0.98x
        the pass at batch 8, 0.96x at batch 4).
        """
        big = [i for i, (_, shape, _) in enumerate(shapes(self.layers, height, width, batch=1))
               if int(np.prod(shape)) > DEPTH_FIRST_FLOATS]
        if not big:
            return -1
        last = big[-1]
        return last + 1 if last + 1 < len(self.layers) and self.layers[last + 1].kind == "pool" else last

    def _keep_winograd_kernels(self):
        """Transform every Winograd layer's kernel now and keep it, unless told not to (then ``_conv``
        transforms each kernel as its layer runs). Others are made on first use (``_made_kernel``)."""
        winograd = [name for name, m in self.plan.items() if m == "winograd"] if self.keep_transformed else []
        self._winograd = {name: fast_kernel(self.params[name][0]) for name in winograd}  # (36, K/16, C, 16) panels each
        self._made = {}  # (layer, kind) -> a kernel transformed on first use, kept if keep_transformed

    def _made_kernel(self, name, kind, make):
        """Layer ``name``'s transformed kernel of ``kind``, made by ``make()`` on first use and kept
        (unless ``keep_transformed`` is False): "dx", the backward pass's flipped kernel (backprop.py);
        "small" and "small dx", F(2x2, 3x3)'s two, for calls with few tiles (``small_tiles``)."""
        U = self._made.get((name, kind))
        if U is None:
            U = make()
            if self.keep_transformed:
                self._made[(name, kind)] = U
        return U

    def _forget(self, name):
        """Layer ``name``'s weights changed: drop the kernels ``_made_kernel`` made from the old ones."""
        self._made = {key: U for key, U in self._made.items() if key[0] != name}

    def _fused(self, row, after, keep):
        """Whether ``forward`` computes conv row ``row`` together with the pool row after it (``after``:
        that row, or nothing): a Winograd layer whose own output no one keeps. Its output transform
        then writes the pool's output straight (``conv3x3_winograd(pool=True)``), so the conv's full
        map (12.8 MB for block1_conv2 at 224) is neither written nor read back by the pool. Measured in
        docs/performance.md ("Pools fused into the output transform")."""
        return (keep is not None and row.kind == "conv" and row.name not in keep and self.plan[row.name] == "winograd"
                and len(after) == 1 and after[0].kind == "pool")

    def _conv(self, row, x, pool=False):
        """relu(conv(x, w) + b) for conv row ``row`` by its planned method: x (N, H, W, C) -> (N, H, W, K);
        with ``pool`` (Winograd only, ``_fused``), its 2x2 max-pool at once: (N, H/2, W/2, K)."""
        kernel, bias = self.params[row.name]
        relu = row.activation == "relu"
        if self.plan[row.name] == "winograd":
            N, H, W, C = x.shape
            if small_tiles(1 if self.batch_invariant else N, H, W, C, kernel.shape[3]):  # F(2x2)'s tiles are faster
                U = self._made_kernel(row.name, "small", lambda: fast_kernel(kernel, small=True))  # (16, K/16, C, 16)
            else:  # the kernel transformed at load, or now and dropped after
                U = self._winograd[row.name] if row.name in self._winograd else fast_kernel(kernel)  # (36, K/16, C, 16)
            return conv3x3_winograd(x, U, bias, relu=relu, per_image=self.batch_invariant, pool=pool)
        return conv_methods.conv2d(x, kernel, bias, stride=1, pad=1, relu=relu, method=self.plan[row.name])

    def receptive_field(self, layer):
        """The input square one unit of ``layer`` sees: size, stride, padding, box(i, j) (``receptive_field.py``)."""
        return receptive_field(self.layers, layer)


class VGG16(VGG):
    """VGG16 (configuration D). A VGG19 file is refused with a pointer to ``VGG19`` (or ``VGG``)."""

    ARCH = "vgg16"


class VGG19(VGG):
    """VGG19 (configuration E): four convs in blocks 3, 4 and 5. A VGG16 file is refused likewise."""

    ARCH = "vgg19"
