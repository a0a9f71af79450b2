"""Every explanation method for one image, minivgg beside TensorFlow doing the same computation.

    python scripts/explain_benchmark.py --weights vgg16_weights_tf_dim_ordering_tf_kernels.h5 --default-run
    python scripts/explain_benchmark.py --samples 10 --steps 10 --repeats 1     # quicker, random weights

One image at 224x224 with the top (the bundled photo, or ``--image``), its best class's logit as the
target; SmoothGrad with ``--samples`` (50) noisy copies, Integrated Gradients with ``--steps`` (50)
path points, both ``--batch`` (8) copies per pass on both sides. TensorFlow does each method the way a
TensorFlow user writes it: Keras' VGG16 with the same weights and the predictions layer made linear,
``tf.GradientTape`` for each gradient, the guided and deconvnet rules as ``tf.custom_gradient`` ReLUs
put in place of the layers' activations (tf-keras-vis' way), Grad-CAM and LayerCAM from a model that
also outputs the conv layer, ``tf.image.resize`` for guided Grad-CAM; the same noise draws and path
points as minivgg. Both ways TensorFlow runs a tape, timed side by side: eagerly, op by op, as
tf-keras-vis and Keras' own Grad-CAM example run it ("TF eager"; each conv's gradient function then
also computes its kernel's gradient, which nobody asked for), and each gradient inside a
``tf.function``, traced into a graph that keeps only the ops the map needs ("TF graph"). The graph is
the faster and the fairer baseline for kernels; eager is what a tf-keras-vis user waits for.

Before anything is timed, every method's map from minivgg is compared with both of TensorFlow's (the
run stops if any disagrees by more than ``TOL``); that first call is also each side's warm-up (Numba's
compile, TensorFlow's tracing) and is left out. Then ``--repeats`` calls per method, interleaved
minivgg, TF eager, TF graph, minivgg, ...: median seconds, and minivgg's time over each of
TensorFlow's. ``--default-run`` also times the whole default ``scripts/explain.py`` run (a new
process: start-up, weights, every method, the sanity check, the page) on the same image and weight
file.

Weights: ``--weights FILE`` (a Keras VGG16 file with the top), else random He-normal ones (the time
does not depend on the values). ``--no-top --size S``: without the top, at S x S, the target the mean
of one channel of block5_conv3 (for quick checks). Threads: as scripts/benchmark.py, set before NumPy loads.
"""
import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
# ||ours - tf|| / ||tf|| per map. TensorFlow here is Keras' own VGG16, not pinned to minivgg's ReLU
# masks and pool choices (tests/test_explain_tf.py holds the pinned comparison to 1e-4): one ReLU
# decision taken the other way, within float32 rounding of 0, moves a map by up to ~1e-2 (measured
# 6.5e-3 for an input gradient). A wrong method (wrong rule, noise, path or weights) is off by O(1).
TOL = 3e-2
METHOD_NAMES = ("saliency", "smoothgrad", "integrated_gradients", "guided_backprop", "deconvnet", "grad_cam",
                "layer_cam", "guided_grad_cam")
OURS = {}  # name -> f(model, x, target): minivgg's side, filled by main() (a test may replace one)


def parse_args(argv):
    p = argparse.ArgumentParser(description="Time every explanation method, minivgg beside TensorFlow.")
    p.add_argument("--weights", help="a Keras VGG16 weight file with the top (default: random He-normal weights)")
    p.add_argument("--image", help="the image (default: the bundled photo)")
    p.add_argument("--samples", type=int, default=50, help="SmoothGrad's noisy copies (default 50)")
    p.add_argument("--steps", type=int, default=50, help="Integrated Gradients' steps (default 50)")
    p.add_argument("--batch", type=int, default=8, help="copies per pass, both sides (default 8)")
    p.add_argument("--layer", default="block5_conv3", help="the CAMs' conv layer (default block5_conv3)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per method and side (default 3)")
    p.add_argument("--methods", nargs="+", choices=METHOD_NAMES, metavar="NAME", help="only these methods")
    p.add_argument("--threads", type=int, default=None, help="threads for every library (default: all cores)")
    p.add_argument("--no-top", action="store_true", help="without the top: a channel of block5_conv3 as the target")
    p.add_argument("--size", type=int, default=224, help="with --no-top: the image's size (default 224)")
    p.add_argument("--default-run", action="store_true", help="also time the whole default explain.py run (needs --weights)")
    args = p.parse_args(argv)
    for name, least in (("samples", 1), ("steps", 1), ("batch", 1), ("repeats", 1), ("threads", 1), ("size", 32)):
        if getattr(args, name) is not None and getattr(args, name) < least:
            p.error(f"--{name} must be at least {least}")
    if args.size != 224 and not args.no_top:
        p.error("--size other than 224 needs --no-top")
    if args.default_run and not args.weights:
        p.error("--default-run needs --weights (the command runs on a weight file)")
    return args


def tensorflow_methods(model, x, seed, layer, target_layer, samples, steps, batch, compiled=True):
    """TensorFlow's side: {name: f() -> map (N, ...) as numpy}, for the images x and the seed
    {target_layer: dy} that makes S; each gradient in a ``tf.function`` if ``compiled``, else eager."""
    import keras
    import numpy as np
    import tensorflow as tf
    from minivgg.explain.gradient_maps import black, noisy_copies, path_points

    net = keras.applications.VGG16(weights=None, include_top=model.include_top, input_shape=x.shape[1:])
    for name, (w, b) in model.params.items():
        net.get_layer(name).set_weights([w, b])
    if model.include_top:
        net.get_layer("predictions").activation = keras.activations.linear  # S is the logit
    probe = keras.Model(net.inputs, [net.get_layer(layer).output, net.get_layer(target_layer).output])
    relus = [lay for lay in net.layers if getattr(lay, "activation", None) is keras.activations.relu]
    graph = (lambda f: tf.function(f, reduce_retracing=True)) if compiled else (lambda f: f)

    @tf.custom_gradient
    def guided_relu(z):
        return tf.nn.relu(z), lambda dy: dy * tf.cast(z > 0, dy.dtype) * tf.cast(dy > 0, dy.dtype)

    @tf.custom_gradient
    def deconv_relu(z):
        return tf.nn.relu(z), lambda dy: dy * tf.cast(dy > 0, dy.dtype)

    def make_input_grad():
        @graph
        def input_grad(images, dy):
            with tf.GradientTape() as tape:
                tape.watch(images)
                _, out = probe(images, training=False)
                s = tf.reduce_sum(out * dy)
            return tape.gradient(s, images)
        return input_grad

    grads = {rule: make_input_grad() for rule in ("plain", "guided", "deconvnet")}

    def input_grad(images, dy, rule="plain"):
        """Traced with the rule's ReLU in every layer (each rule its own tf.function), then restored."""
        for lay in relus:
            lay.activation = {"plain": keras.activations.relu, "guided": guided_relu, "deconvnet": deconv_relu}[rule]
        try:
            return grads[rule](tf.constant(images), tf.constant(dy))
        finally:
            for lay in relus:
                lay.activation = keras.activations.relu

    @graph
    def cam_grads(images, dy):
        with tf.GradientTape() as tape:
            A, out = probe(images, training=False)
            s = tf.reduce_sum(out * dy)
        return A, tape.gradient(s, A)

    @graph
    def scores(images, dy):
        _, out = probe(images, training=False)
        return tf.reduce_sum(tf.reshape(out * dy, (len(dy), -1)), axis=1)

    dy = seed

    def saliency():
        return tf.reduce_max(tf.abs(input_grad(x, dy)), axis=-1).numpy()

    def smoothgrad():
        total = tf.zeros(x.shape)
        for n, copies in noisy_copies(x, samples, 0.2, 0, batch):  # minivgg's draws, in its order
            g = input_grad(copies, dy[n])
            total += tf.math.unsorted_segment_sum(tf.abs(g), n, len(x))
        return tf.reduce_max(total / samples, axis=-1).numpy()

    def integrated_gradients():
        b, alphas = black(x), path_points(steps)
        total = tf.zeros(x.shape)
        for s in range(0, steps * len(x), batch):
            j = np.arange(s, min(s + batch, steps * len(x)))
            n, a = j % len(x), alphas[j // len(x)].astype(np.float32)[:, None, None, None]
            g = input_grad(b[n] + a * (x[n] - b[n]), dy[n])
            total += tf.math.unsorted_segment_sum(g, n, len(x))
        attributions = tf.constant(x - b) * (total / steps)
        delta = scores(tf.constant(x), tf.constant(dy)) - scores(tf.constant(b), tf.constant(dy))  # for the gap
        gap = (tf.reduce_sum(attributions, axis=(1, 2, 3)) - delta) / delta
        return attributions.numpy(), gap.numpy()

    def cam(kind):
        A, G = cam_grads(tf.constant(x), tf.constant(dy))
        if kind == "grad_cam":
            return tf.nn.relu(tf.reduce_sum(A * tf.reduce_mean(G, axis=(1, 2), keepdims=True), axis=-1))
        return tf.nn.relu(tf.reduce_sum(tf.nn.relu(G) * A, axis=-1))

    def guided_grad_cam():
        c = tf.image.resize(cam("grad_cam")[..., None], x.shape[1:3], method="bilinear")[..., 0]
        lo, hi = tf.reduce_min(c, axis=(1, 2), keepdims=True), tf.reduce_max(c, axis=(1, 2), keepdims=True)
        return (input_grad(x, dy, "guided") * ((c - lo) / (hi - lo))[..., None]).numpy()

    return {
        "saliency": saliency,
        "smoothgrad": smoothgrad,
        "integrated_gradients": lambda: integrated_gradients()[0],
        "guided_backprop": lambda: input_grad(x, dy, "guided").numpy(),
        "deconvnet": lambda: input_grad(x, dy, "deconvnet").numpy(),
        "grad_cam": lambda: cam("grad_cam").numpy(),
        "layer_cam": lambda: cam("layer_cam").numpy(),
        "guided_grad_cam": guided_grad_cam,
    }, tf.__version__


def main(argv=None):
    args = parse_args(argv)
    threads = args.threads or len(os.sched_getaffinity(0))
    for var in THREAD_VARS:
        os.environ[var] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    import time

    import minivgg  # noqa: F401  (first: NumPy loads with OpenBLAS's spin short, minivgg/jit.py)
    import numpy as np
    import tensorflow as tf

    from minivgg import VGG16, explain, load_image, preprocess_input
    from minivgg.errors import MinivggError
    from minivgg.explain.targets import resolve

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
    photo = args.image or str(Path(__file__).resolve().parents[1] / "minivgg" / "data" / "grace_hopper.jpg")
    try:
        model = VGG16(weights=args.weights, include_top=not args.no_top)
        x = np.ascontiguousarray(preprocess_input(load_image(photo, target_size=(args.size, args.size)))[None])
    except MinivggError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.no_top:  # the mean of block5_conv3's most active channel
        a = model.activations(x, ["block5_conv3"])["block5_conv3"]
        target = ("block5_conv3", int(np.argmax(a[0].mean(axis=(0, 1)))))
    else:
        target = int(np.argmax(model(x)[0]))
    t = resolve(model, x, target)
    seed = t.seeds(model, x)[t.layer]
    L, B = args.layer, args.batch
    for name, f in {
        "saliency": lambda m, x, t: explain.saliency(m, x, t, batch=B),
        "smoothgrad": lambda m, x, t: explain.smoothgrad(m, x, t, samples=args.samples, batch=B),
        "integrated_gradients": lambda m, x, t: explain.integrated_gradients(m, x, t, steps=args.steps, batch=B)[0],
        "guided_backprop": lambda m, x, t: explain.guided_backprop(m, x, t, batch=B),
        "deconvnet": lambda m, x, t: explain.deconvnet(m, x, t, batch=B),
        "grad_cam": lambda m, x, t: explain.grad_cam(m, x, t, layer=L, batch=B),
        "layer_cam": lambda m, x, t: explain.layer_cam(m, x, t, layer=L, batch=B),
        "guided_grad_cam": lambda m, x, t: explain.guided_grad_cam(m, x, t, layer=L, batch=B),
    }.items():
        OURS.setdefault(name, f)
    theirs = {mode: tensorflow_methods(model, x, seed, L, t.layer, args.samples, args.steps, B,
                                       compiled=mode == "graph")[0] for mode in ("graph", "eager")}
    names = list(args.methods or METHOD_NAMES)

    # Check first (and warm up: Numba compiles, TensorFlow traces): every map, all three sides.
    errors = {}
    for name in names:
        a = np.asarray(OURS[name](model, x, target), np.float64)
        for mode in ("graph", "eager"):
            b = np.asarray(theirs[mode][name](), np.float64)
            err = float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)) if a.shape == b.shape else np.inf
            errors[name] = max(errors.get(name, 0.0), err)  # the worse of the two
        print(f"check {name:<22} ||ours - tf|| / ||tf|| = {errors[name]:.2e}", flush=True)
    bad = [n for n, e in errors.items() if not e <= TOL]
    if bad:
        print(f"error: minivgg and TensorFlow disagree on {', '.join(bad)} (bar {TOL:g}); nothing timed", file=sys.stderr)
        return 1

    # Time: interleaved, medians; each method's row printed as soon as it is measured.
    med = lambda v: float(np.median(v))
    what = f"class {target} logit, top" if not args.no_top else f"mean of {target[0]} channel {target[1]}, no top"
    print(f"one image {args.size}x{args.size}, {what}; SmoothGrad {args.samples} samples, IG {args.steps} steps, "
          f"batch {B}; {threads} threads; load average {os.getloadavg()[0]:.1f}; median of {args.repeats}")
    print(f"| method | minivgg | TF {tf.__version__} eager | ratio | TF graph | ratio | agreement |")
    print("|---|---:|---:|---:|---:|---:|---:|", flush=True)
    for name in names:
        times = {"ours": [], "eager": [], "graph": []}
        for _ in range(args.repeats):  # interleaved: minivgg, TF eager, TF graph, minivgg, ...
            for side in times:
                t0 = time.perf_counter()
                OURS[name](model, x, target) if side == "ours" else theirs[side][name]()
                times[side].append(time.perf_counter() - t0)
        o, e, g = (med(times[side]) for side in ("ours", "eager", "graph"))
        print(f"| {name} | {1000 * o:.0f} ms | {1000 * e:.0f} ms | {o / e:.2f}x | {1000 * g:.0f} ms | {o / g:.2f}x "
              f"| {errors[name]:.1e} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")

    if args.default_run:
        script = Path(__file__).resolve().parent / "explain.py"
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, str(script), photo, "--weights", args.weights, "--out",
                                   str(Path(tmp) / "out"), "--quiet"], capture_output=True, text=True)
            seconds = time.perf_counter() - t0
        if done.returncode != 0:
            print(f"error: the default explain.py run failed: {done.stderr.strip()}", file=sys.stderr)
            return 1
        print(f"the whole default explain.py run (top class, every method, sanity check, page): {seconds:.1f} s "
              f"(load average {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
