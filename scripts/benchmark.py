"""Benchmark every conv method on every VGG16 layer, side by side with TensorFlow and PyTorch.

    python scripts/benchmark.py                       # all 13 conv layers at 224x224, batch 1
    python scripts/benchmark.py --quick               # fewer repeats (under 3 minutes on 2 cores)
    python scripts/benchmark.py --methods im2col,winograd --layers block4_conv1,forward
    python scripts/benchmark.py --json out.json --plot out.png

Legend: N batch, H, W height and width, C input channels, K output channels.

What it measures (the helpers, and the rules they follow, are in ``minivgg/benchmarks/harness.py``):

- conv: every conv layer shape (N, H, W, C) -> K, for every method of ``bench.CONV_METHODS``
  ("naive" on a smaller ``--naive-size``, as it takes seconds per layer at 224; "winograd" with its
  kernel transform, done once when a model loads, timed apart as ``load ms``), and TensorFlow and
  PyTorch when installed. Median ms, GFLOP/s = 2*N*H*W*C*K*9 / t, and the share of NumPy's own
  sgemm GFLOP/s (a 2048^3 float32 matmul) measured on this machine.
- memory-bound kernels: ``max_pool2d`` on every pool layer's input, and ``relu.bias_relu`` (the
  fused, in-place bias + ReLU that conv2d runs after its GEMM) on every conv layer's (N*H*W, K)
  output: GB/s (bytes read + written) against ``np.copyto`` moving as many bytes.
- forward: the whole network without its top, per method (``VGG16(weights=PATH,
  include_top=False, method=m)``, and "auto" when its per-layer plan differs from every single
  method), Keras' own VGG16 and a PyTorch twin, all with the same weights: VGG16's He-normal
  kernels with non-zero biases (``bench.weights()``), saved to a temporary Keras weight file.
  Beside each time, the floor for this design (``bench.floor_ms``: the conv stack's flops / 4, what
  Winograd F(4x4,3x3) multiplies, at the sgemm rate measured at the start) and time / floor; where
  the sgemm measured at the end of the run is faster, time / the floor at that rate too (the
  stricter figure, ``vs_floor_end`` in the JSON), printed after it.

Every output is first checked against a float64 reference (``bench.reference_conv``: the formula,
summed tap by tap in float64); a method that disagrees stops the run with one line naming the
method, the layer and the error, and is never timed. The first call (JIT compile or tracing) is
reported apart as ``1st call ms``. (The tests register a deliberately wrong method in
``bench.CONV_METHODS`` and see it refused.)

The frameworks, on the same data and weights:
- tensorflow: ``tf.nn.conv2d`` (NHWC, the kernel in Keras' HWIO layout as it is) + ``bias_add``
  + ``relu`` in one ``tf.function``, traced by the first call; forward:
  ``keras.applications.VGG16(weights=None, include_top=False)`` with minivgg's weights set into
  its layers, called through a ``tf.function``; gradients: ``tf.GradientTape`` on that model twice,
  "tensorflow" inside a ``tf.function`` (a graph: only the ops the input gradient needs) and
  "tensorflow-eager" run op by op, the way tf-keras-vis and Keras' Grad-CAM example run it (eagerly,
  each conv's gradient function also computes the kernel's gradient: about twice the work).
- pytorch: ``torch.nn.functional.conv2d`` (bias included) + ``relu`` in plain NCHW (the input and
  the kernels are converted once, outside the clock; ``--torch-channels-last`` for NHWC memory);
  forward: the same ops run over minivgg's VGG16 table; gradients: ``torch.autograd.grad`` through
  that table with its top (``F.linear``, flatten in Keras' (H, W, C) order, the class score before
  the softmax).

Threads: NumPy's BLAS, Numba, TensorFlow and PyTorch read their thread counts when first imported,
so the arguments are parsed and OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS set *before* anything imports
NumPy: that is why this script imports NumPy, minivgg and the frameworks inside its functions.

Noise: on a shared machine, with as many threads as cores, every parallel step waits for the core
that another process holds, a scheduler time slice (~8 ms on the 2-core machine this was written
on) each time: a multi-threaded kernel can come out 10x slower. NumPy's sgemm is measured at the
start and again at the end, with a warning if they differ by more than 20%; ``--threads 1`` gives
steadier (if lower) figures on a busy machine.
"""
import argparse
import contextlib
import importlib.util
import json
import os
import sys
import tempfile

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
FRAMEWORKS = ("tensorflow", "pytorch")
IMPORT_NAME = {"tensorflow": "tensorflow", "pytorch": "torch"}
DEFAULT_REPEATS, QUICK_REPEATS = 10, 3
DEFAULT_NAIVE_SIZE, QUICK_NAIVE_SIZE = 56, 32
WHOLE = ("forward", "gradients")  # the --layers names of whole-network rows
MIN_SIZE = 32  # VGG16's five pools halve the size: 32 -> 1 (minivgg.network.table.MIN_SIZE; not imported before --threads)


def parse_args(argv):
    p = argparse.ArgumentParser(description="Time every minivgg conv method on every VGG16 layer, "
                                "side by side with TensorFlow and PyTorch.")
    p.add_argument("--size", type=int, default=224, help="input height and width (default 224)")
    p.add_argument("--batch", type=int, default=1, help="batch size N (default 1)")
    p.add_argument("--threads", type=int, default=None, help="threads for every library (default: all cores)")
    p.add_argument("--repeats", type=int, default=None,
                   help=f"timed calls per measurement, after the first call and one warm-up "
                   f"(default {DEFAULT_REPEATS}, --quick {QUICK_REPEATS})")
    p.add_argument("--quick", action="store_true", help="fewer repeats, a smaller naive size: well under 3 minutes on 2 cores")
    p.add_argument("--naive-size", type=int, default=None,
                   help=f"size for the slow naive method (default {DEFAULT_NAIVE_SIZE}, --quick {QUICK_NAIVE_SIZE})")
    p.add_argument("--methods", help="comma-separated methods (default: all available); "
                   "minivgg's, 'auto' (forward only), 'tensorflow', 'pytorch'")
    p.add_argument("--layers", help="comma-separated conv/pool layer names, 'forward' and 'gradients' (default: all)")
    p.add_argument("--no-frameworks", action="store_true", help="leave TensorFlow and PyTorch out")
    p.add_argument("--torch-channels-last", action="store_true", help="PyTorch in channels_last memory format")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--plot", metavar="PATH.png", help="draw per-layer times per method (Pillow)")
    args = p.parse_args(argv)
    for name, least in (("size", MIN_SIZE), ("naive_size", MIN_SIZE), ("batch", 1), ("threads", 1), ("repeats", 1)):
        value = getattr(args, name)
        if value is not None and value < least:
            p.error(f"--{name.replace('_', '-')} must be at least {least}")
    args.repeats = args.repeats or (QUICK_REPEATS if args.quick else DEFAULT_REPEATS)
    args.naive_size = min(args.naive_size or (QUICK_NAIVE_SIZE if args.quick else DEFAULT_NAIVE_SIZE), args.size)
    return args


def set_threads(threads):
    """Set every library's thread count through the environment; must run before NumPy is imported."""
    threads = threads or len(os.sched_getaffinity(0))
    late = "numpy" in sys.modules  # only when main() is called from Python (the tests)
    for var in THREAD_VARS:
        os.environ[var] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter
    return threads, late


# ---------------------------------------------------------------- the frameworks


def tensorflow_methods(threads):
    """TensorFlow: (conv Method, forward Method, version)."""
    import keras
    import tensorflow as tf
    from minivgg.benchmarks.harness import Method

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)  # one op at a time, like minivgg
    except RuntimeError:  # TensorFlow already started in this process (main() called from a test)
        pass

    @tf.function
    def conv(x, w, b):  # x (N, H, W, C), w (3, 3, C, K) HWIO as Keras stores it, b (K,)
        return tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, w, strides=1, padding="SAME"), b))  # (N, H, W, K)

    def load_model(params):
        model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(None, None, 3))
        for name, (w, b) in params.items():
            model.get_layer(name).set_weights([w, b])
        return tf.function(lambda x: model(x, training=False))

    def fetch(y):
        return y.numpy()

    # The backward ops GradientTape runs for a conv layer, called directly.
    @tf.function
    def conv_dx(dy, w):  # dy (N, H, W, K), w (3, 3, C, K) -> dx (N, H, W, C)
        shape = tf.concat([tf.shape(dy)[:3], tf.shape(w)[2:3]], 0)
        return tf.raw_ops.Conv2DBackpropInput(input_sizes=shape, filter=w, out_backprop=dy, strides=[1, 1, 1, 1],
                                              padding="SAME")

    @tf.function
    def conv_dw(x, dy, w):  # x (N, H, W, C), dy (N, H, W, K) -> dw (3, 3, C, K)
        return tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(w), out_backprop=dy,
                                               strides=[1, 1, 1, 1], padding="SAME")

    def load_gradient(params, layer, compiled=True):
        """d(sum(dy * output of ``layer``))/dx through Keras' VGG16 (with its top if params has it;
        predictions as logits). ``compiled``: the tape inside a ``tf.function`` (traced into a graph,
        which drops what the input gradient does not need); else run eagerly, op by op, as
        tf-keras-vis and Keras' own Grad-CAM example run it (then each conv's gradient function also
        computes the kernel's gradient, which nobody asked for)."""
        top = "predictions" in params
        model = keras.applications.VGG16(weights=None, include_top=top, input_shape=None if top else (None, None, 3))
        for name, (w, b) in params.items():
            model.get_layer(name).set_weights([w, b])
        if top:
            model.get_layer("predictions").activation = keras.activations.linear  # the class score, pre-softmax
        model = keras.Model(model.inputs, model.get_layer(layer).output)  # up to the seeded layer

        def gradient(x, dy):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(dy * model(x, training=False))
            return tape.gradient(loss, x)

        return tf.function(gradient) if compiled else gradient

    return dict(
        conv=Method(run=lambda x, p: conv(x, *p), load=lambda wb: [tf.constant(a) for a in wb], feed=tf.constant,
                    fetch=fetch),
        forward=Method(run=lambda x, f: f(x), load=load_model, feed=tf.constant, fetch=fetch),
        dx=Method(run=conv_dx, load=tf.constant, feed=tf.constant, fetch=fetch),
        dW=Method(run=lambda xdy, w: conv_dw(*xdy, w), load=tf.constant,
                  feed=lambda xdy: tuple(tf.constant(a) for a in xdy), fetch=fetch),
        gradients=lambda layer: Method(run=lambda xdy, f: f(*xdy), load=lambda params: load_gradient(params, layer),
                                       feed=lambda xdy: tuple(tf.constant(a) for a in xdy), fetch=fetch),
        gradients_eager=lambda layer: Method(run=lambda xdy, f: f(*xdy),
                                             load=lambda params: load_gradient(params, layer, compiled=False),
                                             feed=lambda xdy: tuple(tf.constant(a) for a in xdy), fetch=fetch),
        version=tf.__version__,
    )


def pytorch_methods(threads, args):
    """PyTorch (CPU): (conv Method, forward Method, version)."""
    import torch
    import torch.nn.functional as F
    from minivgg.benchmarks.harness import Method
    from minivgg.network.table import layers

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    fmt = torch.channels_last if args.torch_channels_last else torch.contiguous_format
    # (No torch.no_grad needed: tensors made from NumPy arrays do not ask for gradients.)

    def load_conv(wb):
        w, b = wb
        w = torch.from_numpy(w.transpose(3, 2, 0, 1).copy())  # (KH, KW, C, K) -> (K, C, KH, KW)
        return w.contiguous(memory_format=fmt), torch.from_numpy(b)

    def feed(x):
        x = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())  # (N, H, W, C) -> (N, C, H, W)
        return x.contiguous(memory_format=fmt)

    def fetch(y):
        return y.permute(0, 2, 3, 1).numpy()  # (N, K, H, W) -> (N, H, W, K)

    def conv(x, p):
        return F.relu(F.conv2d(x, p[0], p[1], padding=1))  # (N, C, H, W) -> (N, K, H, W)

    def forward(x, p, stop=None, top=False):
        """VGG16 up to row ``stop`` (default: block5_pool), with its top if ``top``, the last layer's
        scores before the softmax. Conv and pool outputs NCHW; flatten takes Keras' (H, W, C) order."""
        for row in layers("vgg16", include_top=top):
            if row.kind == "conv":
                x = conv(x, p[row.name])
            elif row.kind == "pool":
                x = F.max_pool2d(x, 2)
            elif row.kind == "flatten":
                x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # (N, C, H, W) -> (N, H*W*C), Keras' order
            else:  # dense: fc1, fc2 with ReLU; predictions as logits
                x = F.linear(x, *p[row.name])
                x = F.relu(x) if row.activation == "relu" else x
            if row.name == stop:
                break
        return x

    def load_dense(wb):
        w, b = wb
        return torch.from_numpy(w.T.copy()), torch.from_numpy(b)  # (D, U) -> (U, D), as F.linear takes it

    def load_all(params):
        return {name: load_conv(p) if p[0].ndim == 4 else load_dense(p) for name, p in params.items()}

    def gradient(xdy, p, layer):
        """d(sum(dy * output of ``layer``))/dx by autograd (the top's scores taken before the softmax)."""
        x, dy = xdy  # x (N, 3, H, W) asking for its gradient; dy as minivgg lays out that layer's output
        out = forward(x, p, stop=layer, top="predictions" in p)
        out = out.permute(0, 2, 3, 1) if out.ndim == 4 else out  # (N, K, H, W) -> (N, H, W, K), like dy
        return torch.autograd.grad((dy * out).sum(), x)[0]  # (N, 3, H, W)

    def feed_gradient(xdy):
        x, dy = xdy
        return feed(x).requires_grad_(True), torch.from_numpy(dy)

    return dict(  # (the per-layer backward rows are TensorFlow's only)
        conv=Method(run=conv, load=load_conv, feed=feed, fetch=fetch),
        forward=Method(run=forward, load=load_all, feed=feed, fetch=fetch),
        gradients=lambda layer: Method(run=lambda xdy, p: gradient(xdy, p, layer), load=load_all, feed=feed_gradient,
                                       fetch=fetch),
        version=torch.__version__,
    )


# ---------------------------------------------------------------- choosing what to run


def choose(args):
    """The methods and layers to run. Returns (minivgg methods {name: Method}, frameworks [names],
    want_auto, layer names, notes)."""
    from minivgg.benchmarks import harness as bench
    from minivgg.errors import MinivggError

    names = list(bench.CONV_METHODS) + ["auto"] + list(FRAMEWORKS)
    explicit = [] if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.methods is not None and not explicit:
        raise MinivggError(f"--methods is empty; choose from {', '.join(names)}")
    unknown = [m for m in explicit if m not in names]
    if unknown:
        raise MinivggError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    dropped = [m for m in explicit if m in FRAMEWORKS] if args.no_frameworks else []
    if dropped:
        raise MinivggError(f"--methods asks for {', '.join(dropped)} and --no-frameworks leaves it out: drop one")
    wanted = [m for m in explicit or names if not (args.no_frameworks and m in FRAMEWORKS)]
    notes, methods, frameworks = [], {}, []
    for name in wanted:
        if name == "auto":
            continue
        if name in FRAMEWORKS:
            if importlib.util.find_spec(IMPORT_NAME[name]) is not None:
                frameworks.append(name)
            elif name in explicit:
                raise MinivggError(f"{name} is not installed")
            else:
                notes.append(f"{name}: not installed, left out")
            continue
        methods[name] = bench.CONV_METHODS[name]()
    want_auto = "auto" in wanted

    all_layers = [s.name for s in bench.layer_shapes(args.size, args.batch)] + list(WHOLE)
    layers = all_layers if args.layers is None else [s.strip() for s in args.layers.split(",") if s.strip()]
    if not layers:
        raise MinivggError(f"--layers is empty; choose from {', '.join(all_layers)}")
    unknown = [name for name in layers if name not in all_layers]
    if unknown:
        raise MinivggError(f"unknown layer(s) {', '.join(unknown)}; choose from {', '.join(all_layers)}")
    if "auto" in explicit and not set(WHOLE) & set(layers):  # auto is a per-layer plan: it only runs whole passes
        raise MinivggError("method 'auto' runs on the whole forward pass only: add 'forward' to --layers")
    return methods, frameworks, want_auto, layers, notes


# ---------------------------------------------------------------- measuring


class Table:
    """Result rows (dicts, as they go into the JSON), printed as they are measured.

    ``columns``: (heading, width, row -> text); the first three are left-aligned, the rest right.
    """

    def __init__(self):
        self.results = []

    def section(self, title, columns, notes=()):
        """A title, lines of ``notes`` under it, then the column headings."""
        self.columns = columns
        print(f"\n{title}")
        for note in notes:
            print(note)
        self._print([heading for heading, _, _ in columns])

    def add(self, row):
        self.results.append(row)
        self._print([text(row) for _, _, text in self.columns])

    def _print(self, cells):
        print("".join(f"{c:<{w}}" if i < 3 else f"{c:>{w}}" for i, (c, (_, w, _)) in enumerate(zip(cells, self.columns))),
              flush=True)


def number(key, spec, scale=1):
    """A column: row[key] * scale formatted with ``spec``, or "-" where there is none."""
    return lambda row: "-" if row.get(key) is None else format(row[key] * scale, spec)


LEFT = [("layer", 14, lambda r: r["layer"]), ("input N,H,W,C", 21, lambda r: ",".join(map(str, r["shape"][:4]))),
        ("method", 12, lambda r: r["method"])]
CONV_COLUMNS = LEFT[:1] + [("N,H,W,C->K", 21, lambda r: "{},{},{},{}->{}".format(*r["shape"]))] + LEFT[2:] + [
    ("median ms", 11, number("median_ms", ".2f")), ("GFLOP/s", 9, number("gflops", ".1f")),
    ("% sgemm", 9, number("sgemm_share", ".0f", 100)), ("vs im2col", 10, number("vs_im2col", ".2f")),
    ("1st call ms", 13, number("first_ms", ".1f")), ("load ms", 9, number("load_ms", ".2f"))]
MEMORY_COLUMNS = LEFT[:1] + [("input shape", 21, lambda r: ",".join(map(str, r["shape"]))),
                              ("kernel", 12, lambda r: r["kind"])] + [
    ("median ms", 11, number("median_ms", ".3f")), ("GB/s", 9, number("gbps", ".1f")),
    ("copy GB/s", 11, number("copy_gbps", ".1f")), ("% copy", 8, number("copy_share", ".0f", 100)),
    ("1st call ms", 13, number("first_ms", ".1f"))]
FORWARD_COLUMNS = LEFT + CONV_COLUMNS[3:-1] + [("floor ms", 10, number("floor_ms", ".1f")),
                                              ("x floor", 9, number("vs_floor", ".2f"))]
BACKWARD_COLUMNS = CONV_COLUMNS[:1] + [("N,H,W,C->K", 21, lambda r: "{},{},{},{}->{}".format(*r["shape"])),
                                       ("method", 12, lambda r: f"{r['method']} {r['kind']}")] + CONV_COLUMNS[3:6] + [
    ("error", 10, number("rel_error", ".1e")), ("1st call ms", 13, number("first_ms", ".1f"))]
SIDE_COLUMNS = LEFT[:2] + [("method", 18, lambda r: r["method"]), ("median ms", 11, number("median_ms", ".2f")),
                            ("ratio", 8, number("ratio", ".2f"))]
PROFILE_COLUMNS = LEFT[:2] + [("method", 19, lambda r: r["method"]), ("median ms", 11, number("median_ms", ".2f")),
                               ("% of pass", 11, number("pass_share", ".1f", 100)), ("floor ms", 10, number("floor_ms", ".2f")),
                               ("x floor", 9, number("vs_floor", ".2f"))]
GRADIENT_COLUMNS = LEFT[:2] + [("method", 18, lambda r: r["method"])] + [("median ms", 11, number("median_ms", ".1f")), ("||err||", 10, number("rel_error", ".1e")),
                           ("1st call ms", 13, number("first_ms", ".1f"))]


def measure(method, name, layer, weights, x, ref, repeats, load_repeats=0, tol=None, calls=None):
    """Load, check, then time one method. Returns a result row: median_ms, first_ms, times_ms,
    rel_error (of the check), load_ms (None without a load step). ``calls``: a dict that receives
    {name: the timed call}, for ``side_by_side``."""
    import time

    from minivgg.benchmarks import harness as bench

    params, load_ms = weights, None
    if method.load is not None:
        t = time.perf_counter()
        params = method.load(weights)
        load_ms = (time.perf_counter() - t) * 1e3  # the first load; it may include a JIT compile
        if load_repeats:  # so, unless --quick, the median of a few more
            load_ms = bench.median_seconds(lambda: method.load(weights), load_repeats, warmup=False) * 1e3
    xin = method.feed(x) if method.feed else x
    fetch = method.fetch or (lambda y: y)
    err = []
    tol = bench.TOL if tol is None else tol
    t = bench.time_checked(lambda: method.run(xin, params),
                           lambda out: err.append(bench.check(name, layer, fetch(out), ref, tol)), repeats)
    if calls is not None:
        calls[name] = lambda: method.run(xin, params)
    return dict(median_ms=t.median_ms, first_ms=t.first_ms, load_ms=load_ms, rel_error=err[0], times_ms=t.times_ms)


def side_by_side(table, layer, size, shape, calls, args):
    """The whole passes of ``calls`` ({method: warm call}) again, in ``args.repeats`` interleaved rounds
    (``harness.interleaved``): each method's median, and its ratio to TensorFlow's from the same rounds.
    Rows of kind "side_by_side". PyTorch is left out of the rounds: its OpenMP workers spin for a while
    after each call, and slowed whatever ran next (measured: minivgg's forward pass 42.8 ms with PyTorch
    in the rounds, 37.8 without, TensorFlow's 66-70 either way)."""
    import statistics

    from minivgg.benchmarks import harness as bench

    calls = {name: call for name, call in calls.items() if name != "pytorch"}
    if len(calls) < 2:
        return
    times = bench.interleaved(calls, args.repeats)
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = "tensorflow" if "tensorflow" in medians else None
    table.section(f"{layer}, side by side: the same calls again in {args.repeats} interleaved rounds (one call of each "
                  f"method a round, the order turned each round; PyTorch left out); ratio = median / {base or 'none'}'s median",
                  SIDE_COLUMNS)
    for name, ms in medians.items():
        table.add(dict(layer=layer, kind="side_by_side", size=size, shape=shape, method=name, median_ms=ms,
                       times_ms=times[name], ratio=ms / medians[base] if base else None))


def at_size(methods, size, args):
    """The methods measured at ``size`` (naive at --naive-size, the others at --size), im2col first
    as the others are compared with it."""
    here = {m: v for m, v in methods.items() if size == (args.naive_size if m == "naive" else args.size)}
    return dict(sorted(here.items(), key=lambda kv: kv[0] != "im2col"))


def run_conv(table, layers, methods, args, weights, sgemm):
    from minivgg import jit
    from minivgg.benchmarks import harness as bench

    table.section(f"conv layers: median of {args.repeats} calls after the first (JIT compile, shown apart) "
                  f"and one warm-up; NumPy sgemm = {sgemm:.1f} GFLOP/s; minivgg's methods run as a pass runs "
                  f"them, inside jit.passes() (GEMMs shared among its threads)", CONV_COLUMNS)
    for size in sorted({args.size, args.naive_size} if "naive" in methods else {args.size}, reverse=True):
        here = at_size(methods, size, args)
        for i, s in enumerate(bench.layer_shapes(size, args.batch)):
            if not s.K or s.name not in layers:
                continue
            x = bench.data((s.N, s.H, s.W, s.C), seed=i)  # (N, H, W, C)
            w, b = weights[s.name]
            ref = bench.reference_conv(x, w, b)  # (N, H, W, K) float64
            base = None
            for name, method in here.items():
                with jit.passes() if name not in FRAMEWORKS else contextlib.nullcontext():  # ours as a pass runs them
                    row = measure(method, name, s.name, (w, b), x, ref, args.repeats, load_repeats=0 if args.quick else 3)
                gflops = bench.conv_flops(s) / row["median_ms"] / 1e6
                base = row["median_ms"] if name == "im2col" else base
                table.add(dict(layer=s.name, kind="conv", size=size, shape=list(s[1:]), method=name, **row, gflops=gflops,
                               sgemm_share=gflops / sgemm, vs_im2col=base and base / row["median_ms"]))


def run_memory(table, layers, args):
    """Max-pool on every pool layer's input, and the fused bias + ReLU on every conv layer's GEMM
    output (what conv2d runs after its matmul), against a copy."""
    import numpy as np
    from minivgg.benchmarks import harness as bench
    from minivgg.layers.pool import max_pool2d
    from minivgg.layers.relu import bias_relu

    table.section("memory-bound kernels: max_pool2d on each pool layer's input, bias_relu (in place) on each "
                  "conv layer's (N*H*W, K) GEMM output; GB/s = (bytes read + written) / median time, "
                  "against np.copyto moving as many bytes", MEMORY_COLUMNS)
    for i, s in enumerate(bench.layer_shapes(args.size, args.batch)):
        if s.name not in layers:
            continue
        if s.K:  # a conv layer: bias_relu(y, b, relu=True) on its GEMM output, as conv2d calls it
            x = bench.data((s.N * s.H * s.W, s.K), seed=100 + i)  # (N*H*W, K): the GEMM's output
            b = bench.data((s.K,), seed=300 + i)  # (K,)
            ref = np.maximum(x + b, 0)  # (N*H*W, K): the same float32 add, so exact
            # In place: ``feed`` copies x once, outside the clock, and the first call (the checked
            # one) turns the copy into relu(x + b); the warm-up and timed calls then run on their
            # own output. That is the same work: every element is read, added to, compared and
            # written whatever its value.
            kernel, method = "bias_relu", bench.Method(run=lambda y, _: bias_relu(y, b, relu=True), feed=np.copy)
        else:
            x = bench.data((s.N, s.H, s.W, s.C), seed=100 + i)  # (N, H, W, C)
            ref = bench.reference_pool(x)  # (N, H/2, W/2, C)
            kernel, method = "max_pool2d", bench.Method(run=lambda x, _: max_pool2d(x))
        row = measure(method, kernel, s.name, None, x, ref, args.repeats, tol=0.0)  # exact
        nbytes = x.nbytes + ref.size * 4  # read the input, write the float32 output (bias_relu: y itself)
        gbps = nbytes / row["median_ms"] / 1e6
        copy = bench.copy_gbps(nbytes // 2, args.repeats)  # reads nbytes / 2, writes nbytes / 2
        table.add(dict(layer=s.name, kind=kernel, size=args.size, shape=list(x.shape), method="minivgg", **row,
                       gbps=gbps, copy_gbps=copy, copy_share=gbps / copy))


def run_forward(table, methods, frameworks, want_auto, args, weights, sgemm, tmp):
    from minivgg.benchmarks import harness as bench
    from minivgg.layers.conv import METHODS
    from minivgg.network.vgg import VGG16

    path = bench.save_weights(weights, os.path.join(tmp, "weights.h5"))

    def minivgg_forward(method):  # loads the benchmark's weights, the same for every method
        return bench.Method(run=lambda x, model: model(x),
                            load=lambda _: VGG16(weights=path, include_top=False, method=method))

    todo = {m: minivgg_forward(m) for m in methods if m in METHODS}
    if want_auto:  # the default per-layer plan, unless it is one method everywhere, already in todo
        auto = VGG16(weights=path, include_top=False, method="auto")
        same = [m for m in todo if set(auto.plan.values()) == {m}]
        if same:
            print(f"note: forward 'auto' is {same[0]} on every layer: see the {same[0]} row")
        else:
            todo["auto"] = bench.Method(run=lambda x, model: model(x), load=lambda _: auto)
    todo.update(frameworks)

    sizes = [size for size in sorted({args.size, args.naive_size}, reverse=True) if at_size(todo, size, args)]
    floors = {size: bench.floor_ms(size, args.batch, sgemm) for size in sizes}  # ms
    table.section("whole forward pass without the top (13 conv + 5 pool layers); GFLOP/s counts the convs; "
                  "floor: Winograd's multiplications at NumPy's sgemm rate, x floor = time / floor", FORWARD_COLUMNS,
                  [f"floor at {size}x{size}, batch {args.batch}: {bench.forward_flops(size, args.batch) / 1e9:.3g} GFLOP / "
                   f"{bench.WINOGRAD_SAVING} (Winograd F(4x4,3x3)) at sgemm {sgemm:.1f} GFLOP/s = {floor:.2f} ms"
                   for size, floor in floors.items()])
    base, calls = None, {}
    for size in sizes:
        floor = floors[size]
        x = bench.data((args.batch, size, size, 3), seed=200)  # (N, H, W, 3)
        ref = bench.reference_forward(weights, x) if at_size(todo, size, args) else None  # (N, H/32, W/32, 512)
        for name, method in at_size(todo, size, args).items():
            row = measure(method, name, "the forward pass", weights, x, ref, args.repeats,
                          calls=calls if size == args.size else None)
            gflops = bench.forward_flops(size, args.batch) / row["median_ms"] / 1e6
            base = row["median_ms"] if name == "im2col" and size == args.size else base
            table.add(dict(layer="forward", kind="forward", size=size, shape=list(x.shape), method=name, **row,
                           gflops=gflops, sgemm_share=gflops / sgemm,
                           vs_im2col=base / row["median_ms"] if base and size == args.size else None,
                           floor_ms=floor, vs_floor=row["median_ms"] / floor))
    side_by_side(table, "forward", args.size, [args.batch, args.size, args.size, 3], calls, args)
    if want_auto:
        run_profile(table, VGG16(weights=path, include_top=False, method="auto"), args, sgemm)


def run_profile(table, model, args, sgemm):
    """Where the ``auto`` forward pass spends its time: each layer timed inside a whole pass (a loop over
    ``model.forward`` in ``jit.passes()``, the clock read at each yield), medians over ``args.repeats``
    passes after a warm-up. A batch goes as ``model(x)`` takes it: image by image through the layers
    with large maps (``VGG._depth_first``), each such layer's time summed over the images, then
    together; and a conv whose pool ``model(x)`` computes with it (``forward(keep=...)``, the conv's own
    map unused) is timed so, its row "+pool" with the pool's time in it, the pool's row "max-pool
    (fused)" near 0. A conv layer's floor: its Winograd multiplications (a quarter of the direct sum's)
    at NumPy's sgemm rate, as the forward table's."""
    import time

    import numpy as np

    from minivgg import jit
    from minivgg.benchmarks import harness as bench
    from minivgg.layers.winograd_schedules import small_tiles

    x = bench.data((args.batch, args.size, args.size, 3), seed=200)  # (N, H, W, 3)
    names = [row.name for row in model.layers]
    split = model._depth_first(args.size, args.size) if args.batch > 1 else -1  # as model(x) splits a batch

    fused = set()  # conv rows computed with their pool (they yield None)

    def timed(a, start=None, stop=None):  # runs forward from ``start`` to ``stop``: ({layer: ms}, last output)
        spent, t = {}, time.perf_counter()
        for name, a in model.forward(a, start=start, keep={stop or names[-1]}):  # keep: as model(x) runs it
            now = time.perf_counter()
            spent[name], t = (now - t) * 1e3, now
            if a is None:
                fused.add(name)
            if name == stop:
                break
        return spent, a

    times = {}
    for i in range(args.repeats + 1):  # the first pass is the warm-up
        with jit.passes():
            spent, outs = {}, []
            if split >= 0:  # rows 0 .. split image by image, their times summed over the images
                for n in range(args.batch):
                    part, a = timed(x[n:n + 1], stop=names[split])
                    outs.append(a)
                    spent = {name: spent.get(name, 0) + ms for name, ms in part.items()}
            if split < len(names) - 1:  # the rest of the way with the whole batch
                part, _ = timed(np.concatenate(outs) if outs else x, start=names[split + 1] if outs else None)
                spent.update(part)
        if i:
            for name, ms in spent.items():
                times.setdefault(name, []).append(ms)
    total = sum(float(np.median(v)) for v in times.values())
    table.section(f"the auto forward pass at {args.size}x{args.size}, batch {args.batch}, layer by layer (medians "
                  f"inside whole passes; floor: the layer's Winograd multiplications at sgemm {sgemm:.1f} GFLOP/s)",
                  PROFILE_COLUMNS)
    for i, s in enumerate(bench.layer_shapes(args.size, args.batch)):  # i: the row's index (no top, as the model)
        ms = float(np.median(times[s.name]))
        floor = bench.conv_flops(s) / bench.WINOGRAD_SAVING / (sgemm * 1e9) * 1e3 if s.K else None
        method = model.plan.get(s.name, "max-pool")
        if method == "winograd" and small_tiles(1 if i <= split else s.N, s.H, s.W, s.C, s.K):
            method = "winograd 2x2"  # F(2x2, 3x3)'s tiles, as VGG._conv chooses for this call
        if s.name in fused:
            method += " +pool"  # the pool below computed in its output transform
        elif i and names[i - 1] in fused:
            method += " (fused)"  # this pool: made by the conv above
        table.add(dict(layer=s.name, kind="profile", size=args.size, shape=[s.N, s.H, s.W, s.C],
                       method=method, median_ms=ms, times_ms=times[s.name], pass_share=ms / total,
                       floor_ms=floor, vs_floor=ms / floor if floor else None))


def run_conv_backward(table, layers, methods, fw, args, weights, sgemm):
    """Per conv layer, the backward pass's two convolutions: dx (dL/d(input), the conv of dy with the
    flipped kernel) per method, and dW (im2col(x)^T @ dy), beside TensorFlow's Conv2DBackpropInput and
    Conv2DBackpropFilter (what its GradientTape runs). Checked against ``bench.reference_conv_backward``."""
    from minivgg.benchmarks import harness as bench

    todo = {kind: {m: make() for m, make in ours.items() if m in methods}
            for kind, ours in (("dx", bench.DX_METHODS), ("dW", bench.DW_METHODS))}
    for kind in todo:
        todo[kind].update({name: f[kind] for name, f in fw.items() if kind in f})
    if not any(todo.values()):
        return
    table.section(f"conv layers, backward: dx = conv(dy, flipped kernel) and dW = im2col(x)^T @ dy; median of "
                  f"{args.repeats}; GFLOP/s = 2*N*H*W*C*K*9 / time, as forward", BACKWARD_COLUMNS)
    for i, s in enumerate(bench.layer_shapes(args.size, args.batch)):
        if not s.K or s.name not in layers:
            continue
        x = bench.data((s.N, s.H, s.W, s.C), seed=i)  # (N, H, W, C): the layer's input
        dy = bench.data((s.N, s.H, s.W, s.K), seed=50 + i)  # (N, H, W, K): dL/d(its output, before the ReLU)
        w = weights[s.name][0]
        ref_dx, ref_dw = bench.reference_conv_backward(x, w, dy)
        for kind, feed, ref in (("dx", dy, ref_dx), ("dW", (x, dy), ref_dw)):
            for name, method in todo[kind].items():
                row = measure(method, f"{name} {kind}", s.name, w, feed, ref, args.repeats)
                gflops = bench.conv_flops(s) / row["median_ms"] / 1e6
                table.add(dict(layer=s.name, kind=kind, size=args.size, shape=list(s[1:]), method=name, **row,
                               gflops=gflops, sgemm_share=gflops / sgemm))


def run_gradients(table, methods, fw, want_auto, args, tmp):
    """The whole network's input gradient for one class score (forward + backward): ``model.gradients``
    per method against TensorFlow's GradientTape on Keras' VGG16 and PyTorch's autograd, with the same
    weights. At 224x224 with the top (the score before the softmax); at other sizes without it (the
    mean of one block5_conv3 channel, its most active one). Checked against ``bench.reference_gradient``
    (float64)."""
    from minivgg.benchmarks import harness as bench
    from minivgg.network.backprop import channel_mean, class_score
    from minivgg.layers.conv import METHODS
    from minivgg.network.table import TOP_SIZE
    from minivgg.network.vgg import VGG16

    top = args.size == TOP_SIZE
    weights = bench.weights(include_top=top)
    path = bench.save_weights(weights, os.path.join(tmp, "weights_top.h5" if top else "weights.h5"))
    x = bench.data((args.batch, args.size, args.size, 3), seed=400)  # (N, H, W, 3)
    probe = VGG16(weights=path, method="im2col")
    if top:
        seeds, what = class_score(probe, x, 7), "the class-7 score, top"
    else:  # the most active channel: a dead one would have no gradient at all
        c = int(probe.activations(x, ["block5_conv3"])["block5_conv3"].mean(axis=(0, 1, 2)).argmax())
        seeds, what = channel_mean(probe, x, "block5_conv3", c), f"the mean of block5_conv3 channel {c}, no top"
    (seed_layer, dy), = seeds.items()

    def ours(method):
        return bench.Method(run=lambda xdy, model: model.gradients(xdy[0], {seed_layer: xdy[1]}, logits=True, layers=[])[
            "input"], load=lambda _: VGG16(weights=path, method=method))

    # Left out: the naive twins (minutes here) and "direct", a kernel for small C that on the deep layers
    # does a GEMM's work without its blocking (its whole passes would take seconds; "auto" runs it where it wins).
    fast = [m for m in METHODS if m in methods and m not in ("naive", "direct")]
    todo = {m: ours(m) for m in fast + (["auto"] if want_auto else [])}
    todo.update({name: f["gradients"](seed_layer) for name, f in fw.items() if "gradients" in f})
    todo.update({f"{name}-eager": f["gradients_eager"](seed_layer) for name, f in fw.items() if "gradients_eager" in f})
    if not todo:
        return
    ref = bench.reference_gradient(weights, x, seed_layer, dy)  # (N, H, W, 3) float64
    table.section(f"whole network, input gradient of {what} (forward + backward, model.gradients vs "
                  f"TensorFlow's GradientTape, PyTorch's autograd); checked against a float64 pass", GRADIENT_COLUMNS)
    base, calls = {}, {}  # base: "tensorflow" (tf.function) and "tensorflow-eager" medians, the ratios' denominators
    for name, method in todo.items():
        err = []
        params = method.load(weights)
        xin = method.feed((x, dy)) if method.feed else (x, dy)
        fetch = method.fetch or (lambda y: y)
        t = bench.time_checked(lambda: method.run(xin, params),
                               lambda out: err.append(bench.check_gradient(name, fetch(out), ref)), args.repeats)
        if name != "tensorflow-eager":  # eager TensorFlow is a baseline of its own, not a rival: left out
            calls[name] = lambda method=method, xin=xin, params=params: method.run(xin, params)
        if name in ("tensorflow", "tensorflow-eager"):
            base[name] = t.median_ms
        table.add(dict(layer="gradients", kind="gradients", size=args.size, shape=list(x.shape), method=name,
                       median_ms=t.median_ms, first_ms=t.first_ms, times_ms=t.times_ms, rel_error=err[0]))
    rows = [r for r in table.results if r["kind"] == "gradients"]
    for name, ms in base.items():
        key = "vs_" + name.replace("-", "_")  # vs_tensorflow, vs_tensorflow_eager
        for row in rows:
            row[key] = row["median_ms"] / ms
        what = "in a tf.function" if name == "tensorflow" else "eager, as tf-keras-vis runs it"
        print(f"time / TensorFlow's ({what}): " + ", ".join(f"{r['method']} {r[key]:.2f}" for r in rows))
    side_by_side(table, "gradients", args.size, list(x.shape), calls, args)


# ---------------------------------------------------------------- the plot

COLORS = {"im2col": (31, 119, 180), "winograd": (44, 160, 44), "direct": (148, 103, 189), "auto": (23, 190, 207),
          "naive": (127, 127, 127),
          "tensorflow": (255, 127, 14), "pytorch": (214, 39, 40)}
EXTRA_COLORS = [(188, 143, 143), (140, 86, 75), (227, 119, 194), (188, 189, 34)]


def plot(results, path, title, subtitle, size):
    """Grouped horizontal bars: one group per conv layer (and one for the forward pass), one bar per
    method, at ``size`` only (a method measured at another size, like naive, is named in a footnote)."""
    from PIL import Image, ImageDraw, ImageFont

    rows = [r for r in results if r["kind"] in ("conv", "forward") and r["size"] == size]
    left_out = sorted({r["method"] for r in results if r["kind"] in ("conv", "forward")} - {r["method"] for r in rows})
    order = list(COLORS) + list(dict.fromkeys(r["method"] for r in rows))  # methods: the legend's and each group's
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    rows.sort(key=lambda r: (layers.index(r["layer"]), order.index(r["method"])))
    methods = sorted({r["method"] for r in rows}, key=order.index)
    colors = {m: COLORS.get(m) or EXTRA_COLORS[i % len(EXTRA_COLORS)] for i, m in enumerate(methods)}
    panels = [(f"{kind} layers" if kind == "conv" else "whole forward pass", [r for r in rows if r["kind"] == kind])
              for kind in ("conv", "forward")]
    panels = [(name, rs) for name, rs in panels if rs]

    font, small, bold = (ImageFont.load_default(size=pt) for pt in (15, 13, 19))
    W, x0, pad, bar_h, gap = 1200, 190, 24, 17, 12  # x0: where the bars start
    bar_w = W - x0 - 200  # room on the right for "123.4 ms  56 GFLOP/s"
    body = {name: sum(gap + bar_h * len(g) for g in _groups(rs)) for name, rs in panels}
    img = Image.new("RGB", (W, 105 + sum(30 + body[name] + 40 for name, _ in panels) + 20), "white")
    d = ImageDraw.Draw(img)
    d.text((pad, 14), title, fill="black", font=bold)
    d.text((pad, 42), subtitle, fill=(80, 80, 80), font=small)
    x = pad  # the legend
    for m in methods:
        d.rectangle([x, 70, x + 14, 84], fill=colors[m])
        d.text((x + 20, 77), m, fill="black", font=font, anchor="lm")
        x += 44 + int(d.textlength(m, font=font))
    y = 105
    for name, rs in panels:
        d.text((pad, y), f"{name}: median ms per call (shorter is better)", fill="black", font=font)
        y += 30
        top = max(r["median_ms"] for r in rs)
        step = _nice_step(top)
        scale = bar_w / (step * -(-top // step))  # px per ms; the axis ends on a grid line
        for i in range(int(-(-top // step)) + 1):  # grid lines and their labels
            gx = x0 + round(i * step * scale)
            d.line([gx, y, gx, y + body[name]], fill=(222, 222, 222))
            d.text((gx, y + body[name] + 4), f"{i * step:g}", fill=(90, 90, 90), font=small, anchor="mt")
        d.text((x0 + bar_w + 30, y + body[name] + 4), "ms", fill=(90, 90, 90), font=small, anchor="lt")
        d.line([x0, y, x0, y + body[name]], fill="black")
        for group in _groups(rs):
            y += gap
            mid, s = y + bar_h * len(group) / 2, group[0]["shape"]
            if group[0]["kind"] == "conv":
                d.text((pad, mid), group[0]["layer"], fill="black", font=font, anchor="lb")
                d.text((pad, mid + 2), f"{s[1]}x{s[2]}, {s[3]}->{s[4]}", fill=(90, 90, 90), font=small, anchor="lt")
            else:
                d.text((pad, mid), f"forward {s[1]}x{s[2]}", fill="black", font=font, anchor="lm")
            for r in group:
                end = x0 + max(1, round(r["median_ms"] * scale))
                d.rectangle([x0, y + 1, end, y + bar_h - 2], fill=colors[r["method"]])
                d.text((end + 6, y + bar_h / 2), f"{_short(r['median_ms'])} ms  {_short(r['gflops'])} GFLOP/s",
                       fill="black", font=small, anchor="lm")
                y += bar_h
        y += 40
    if left_out:
        d.text((pad, y), f"not drawn: {', '.join(left_out)} (measured at another size, see the table)",
               fill=(90, 90, 90), font=small)
    img.save(path, format="PNG")


def _short(v):
    """3 significant digits, without an exponent: 0.392, 36.1, 518, 2655."""
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


def _groups(rows):
    """Rows grouped by layer, in order of first appearance."""
    return [[r for r in rows if r["layer"] == layer] for layer in dict.fromkeys(r["layer"] for r in rows)]


def _nice_step(top):
    """A grid step of 1, 2 or 5 times a power of ten giving 4 to 10 lines up to ``top``."""
    import math

    p = 10 ** math.floor(math.log10(top / 4))
    return next(m * p for m in (1, 2, 5, 10) if top / (m * p) <= 10)


# ---------------------------------------------------------------- main


def main(argv=None):
    args = parse_args(argv)
    threads, late = set_threads(args.threads)  # before anything imports NumPy
    from minivgg.errors import MinivggError

    try:
        return run(args, threads, late)
    except MinivggError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def run(args, threads, late):
    from minivgg.benchmarks import harness as bench  # first: minivgg.jit picks Numba's threading layer before it starts
    from minivgg.errors import MinivggError
    import numba

    for path in (args.json, args.plot):  # fail now rather than after the run
        if path:
            bench.check_writable(path)

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # this starts Numba's thread pool
    methods, frameworks, want_auto, layers, notes = choose(args)
    machine = bench.machine_info(threads)
    fw = {name: tensorflow_methods(threads) if name == "tensorflow" else pytorch_methods(threads, args)
          for name in frameworks}  # name -> {"conv": Method, "forward": ..., (TensorFlow:) "dx", "dW",
    #                                          "gradients": seeded layer -> Method}
    for name in frameworks:
        machine["versions"][name] = fw[name]["version"]
    conv_fw, forward_fw = ({name: f[kind] for name, f in fw.items() if kind in f} for kind in ("conv", "forward"))
    weights = bench.weights()
    sgemm = bench.sgemm_gflops(repeats=args.repeats)
    machine["sgemm_gflops"] = sgemm

    v = machine["versions"]
    print(f"machine: {machine['cpu']}, {machine['cores']} cores; " + ", ".join(f"{k} {v[k]}" for k in v)
          + f"; OpenBLAS kernels {machine['blas_core']}")
    if bench.blas_note(machine):
        notes.append(bench.blas_note(machine))
    print(f"threads: {threads} for everyone: {'='.join(THREAD_VARS)}={threads}"
          + (f", TensorFlow intra-op {threads} inter-op 1" if "tensorflow" in frameworks else "")
          + (f", torch.set_num_threads({threads}) inter-op 1" if "pytorch" in frameworks else ""))
    if late:
        notes.append("NumPy was imported before --threads (main() called from Python): BLAS keeps its thread count")
    print(f"size {args.size}x{args.size}, batch {args.batch}, {args.repeats} repeats; "
          f"naive at {args.naive_size}x{args.naive_size}; NumPy sgemm 2048^3 = {sgemm:.1f} GFLOP/s"
          + ("; PyTorch channels_last" if args.torch_channels_last else "; PyTorch NCHW"))
    for note in notes:
        print(f"note: {note}")

    table = Table()
    conv_layers = [s.name for s in bench.layer_shapes(args.size, args.batch) if s.K and s.name in layers]
    if conv_layers and (methods or conv_fw):
        run_conv(table, conv_layers, {**methods, **conv_fw}, args, weights, sgemm)
        run_conv_backward(table, conv_layers, methods, fw, args, weights, sgemm)
    if [n for n in layers if n not in WHOLE]:
        run_memory(table, layers, args)
    with tempfile.TemporaryDirectory() as tmp:
        if "forward" in layers:
            run_forward(table, methods, forward_fw, want_auto, args, weights, sgemm, tmp)
        if "gradients" in layers:
            run_gradients(table, methods, fw, want_auto, args, tmp)

    # The same sgemm again: if the machine got busier or quieter meanwhile, the two differ.
    machine["sgemm_gflops_end"] = end = bench.sgemm_gflops(repeats=args.repeats)
    print(f"\nNumPy sgemm at the end: {end:.1f} GFLOP/s (at the start: {sgemm:.1f})")
    if end > sgemm:  # the floor at the faster of the two rates: the stricter one, the machine at its best
        strict = bench.floor_ms(args.size, args.batch, end)
        for row in (r for r in table.results if r["kind"] == "forward" and r["size"] == args.size):
            row["vs_floor_end"] = row["median_ms"] / strict
            print(f"x floor at the end's rate, forward {row['method']}: {row['vs_floor_end']:.2f} (floor {strict:.1f} ms)")
    if abs(end - sgemm) > 0.2 * max(end, sgemm):
        print("warning: the ceiling moved by more than 20% during the run: the machine is busy, "
              "the figures above are noisy (try again, or --threads 1)")
    settings = {k: getattr(args, k) for k in ("size", "batch", "repeats", "naive_size", "quick", "torch_channels_last")}
    try:
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"machine": machine, "settings": settings, "results": table.results}, f, indent=1)
            print(f"\nwrote {args.json}")
        if args.plot:
            plot(table.results, args.plot, f"minivgg conv benchmark: {args.size}x{args.size}, batch {args.batch}",
                 f"{machine['cpu']}, {threads} threads; median of {args.repeats} after warm-up; "
                 f"NumPy sgemm ceiling {sgemm:.0f} GFLOP/s; GFLOP/s = 2*N*H*W*C*K*9 / time, whatever the method", args.size)
            print(f"wrote {args.plot}")
    except OSError as e:
        raise MinivggError(f"cannot write {e.filename}: {e.strerror}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
