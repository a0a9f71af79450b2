"""One feature-visualisation step, minivgg beside TensorFlow doing the same step.

    python scripts/features_benchmark.py                         # 16 channels of block4_conv3 at 128x128
    python scripts/features_benchmark.py --layer block3_conv1 --channels 8 --size 64 --repeats 3

One step (``minivgg.features.optimise.Run.step``) for N channels at once: the Fourier
parameterisation, colour decorrelation and sigmoid, one random draw of Lucid's transforms as a
bilinear resampling, preprocessing, the network up to the layer, the pre-ReLU channel-mean objective,
the whole way back, and Adam. TensorFlow does the same step the way a TensorFlow user writes it: the
same maths in tf ops (``tf.signal.irfft2d``, a matmul for the colours, ``tf.sigmoid``, the same
bilinear resampling with ``tf.gather``), Keras' VGG16 with the same weights up to the layer below and
``tf.nn.conv2d`` for the layer's pre-ReLU output, the objective, ``tf.GradientTape`` for the gradient
of the spectrum, and Keras' Adam (same lr, betas and epsilon). Twice, timed side by side: eagerly, op
by op, as tf-keras-vis' ActivationMaximization runs its steps ("eager"; each conv's gradient function
then also computes its kernel's gradient, which nobody asked for), and in one ``tf.function``, traced
into a graph that keeps only the ops the step needs ("graph", the faster baseline).

Before anything is timed, all sides take one step from the same spectrum with the same transform,
and their objectives and gradients are compared (the run stops if they disagree by more than
``TOL``). Then each side takes a warm-up pass over the same list of transform draws (JIT compile and
tf.function tracing, one trace per output size, left out), and the timed steps: per side, an untimed
step and then the draws, back to back, as an optimisation loop takes them; minivgg, TF eager, TF
graph, then again in reverse order: median seconds per step. Not one step of each side in turn:
measured here (an earlier version), a minivgg step right after one of TensorFlow's, or after 2 s idle,
took 2.1-2.3 s, the same steps back to back 1.6 s (as in the default run of ``scripts/features.py``
then: 422 s for 256 steps); TensorFlow's eager steps 3.0-3.2 s one at a time, 2.6 s back to back. Back to back is what a run of
many steps waits for. minivgg's step is also cut into
its parts (parameterisation, transforms, network forward + backward, the chain back, Adam).

Weights: ``--weights FILE`` (a Keras VGG16 file), else random He-normal ones (the time of a step does
not depend on the values). Threads: as scripts/benchmark.py, set before NumPy loads. minivgg's steps
run inside ``jit.passes()``, as ``optimise`` runs them (GEMMs shared among minivgg's threads,
freed memory kept); TensorFlow's run as TensorFlow runs them.
"""
import argparse
import os
import sys

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
TOL = 2e-3  # max|ours - tf| / max|tf| for the gradient of the spectrum: float32 through ~10 conv layers
#             and two FFTs; measured 1e-5 to 1e-4. A broken backward is off by O(1).


def parse_args(argv):
    p = argparse.ArgumentParser(description="Time one feature-visualisation step, minivgg beside TensorFlow.")
    p.add_argument("--layer", default="block4_conv3", help="a conv layer (default block4_conv3)")
    p.add_argument("--channels", type=int, default=16, help="channels optimised at once, 0..N-1 (default 16)")
    p.add_argument("--size", type=int, default=128, help="image size (default 128)")
    p.add_argument("--repeats", type=int, default=5, help="transform draws, each timed twice per side (default 5)")
    p.add_argument("--threads", type=int, default=None, help="threads for every library (default: all cores)")
    p.add_argument("--weights", help="a Keras VGG16 weight file (default: random He-normal weights)")
    args = p.parse_args(argv)
    for name, least in (("channels", 1), ("size", 32), ("repeats", 1), ("threads", 1)):
        if getattr(args, name) is not None and getattr(args, name) < least:
            p.error(f"--{name} must be at least {least}")
    return args


def tensorflow_step(model, objective, size, lr, compiled=True):
    """The same step in TensorFlow, in a ``tf.function`` if ``compiled``, else eager; its own spectrum
    and Adam state. Returns (step(affine) -> objective values, gradient(p, affine), version)."""
    import keras
    import numpy as np
    import tensorflow as tf
    from minivgg.features import param as P
    from minivgg.features import transforms as T
    from minivgg.files.preprocess import IMAGENET_MEAN_BGR

    names = [row.name for row in model.layers]
    below = names[names.index(objective.layer) - 1]
    net = keras.applications.VGG16(weights=None, include_top=False, input_shape=(None, None, 3))
    for name, (w, b) in model.params.items():
        net.get_layer(name).set_weights([w, b])
    net = keras.Model(net.inputs, net.get_layer(below).output)  # up to the layer below the objective's
    kernel, bias = (tf.constant(a) for a in model.params[objective.layer])
    n, h, w = len(objective.targets), size, size
    scale = tf.constant(P.spectrum_scale(h, w), tf.float32)  # (h, F)
    colour = tf.constant(P.COLOUR.T)
    mean = tf.constant(IMAGENET_MEAN_BGR, tf.float32)
    pick = tf.constant(np.stack([np.arange(n), list(objective.targets)], 1))  # (N, 2): (image, its channel)
    spectrum = tf.Variable(np.zeros((2, n, 3, h, w // 2 + 1), np.float32))
    adam = keras.optimizers.Adam(learning_rate=lr, beta_1=0.9, beta_2=0.999, epsilon=1e-8)

    def resample(img, A, oh, ow):  # the bilinear resampling of transforms.resample, in tf ops
        i, j = tf.meshgrid(tf.range(oh, dtype=tf.float64), tf.range(ow, dtype=tf.float64), indexing="ij")
        sy, sx = A[0, 0] * i + A[0, 1] * j + A[0, 2], A[1, 0] * i + A[1, 1] * j + A[1, 2]  # (OH, OW)
        y0, x0 = tf.floor(sy), tf.floor(sx)
        fy, fx = sy - y0, sx - x0
        flat = tf.reshape(img, (n, h * w, 3))  # (N, H*W, 3)
        out = 0.0
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                yy, xx = y0 + dy, x0 + dx
                inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
                index = tf.cast(tf.clip_by_value(yy, 0, h - 1) * w + tf.clip_by_value(xx, 0, w - 1), tf.int32)
                v = tf.reshape(tf.gather(flat, tf.reshape(index, [-1]), axis=1), (n, oh, ow, 3))
                wgt = wy * wx
                zero = tf.zeros_like(wgt)
                w_in = tf.cast(tf.where(inside, wgt, zero), tf.float32)[None, :, :, None]
                w_fill = tf.cast(tf.where(inside, zero, wgt) * T.FILL, tf.float32)[None, :, :, None]
                out = out + w_in * v + w_fill
        return out

    def objective_values(A, oh, ow):
        z = tf.complex(scale * spectrum[0], scale * spectrum[1])  # (N, 3, h, F)
        img = tf.transpose(tf.signal.irfft2d(z, fft_length=[h, w]), (0, 2, 3, 1)) / 4  # (N, h, w, 3)
        rgb = tf.sigmoid(tf.reshape(tf.reshape(img, (-1, 3)) @ colour, (n, h, w, 3)))
        x = 255.0 * tf.reverse(resample(rgb, A, oh, ow), axis=[-1]) - mean  # preprocessing: BGR 0..255 - mean
        z = tf.nn.conv2d(net(x, training=False), kernel, strides=1, padding="SAME") + bias  # pre-ReLU
        return tf.reduce_mean(tf.gather_nd(tf.transpose(z, (0, 3, 1, 2)), pick), axis=(1, 2))  # (N,)

    graph = tf.function if compiled else (lambda f: f)

    @graph
    def gradient(A, oh, ow):
        with tf.GradientTape() as tape:
            values = objective_values(A, oh, ow)
            loss = tf.reduce_sum(values)
        return values, tape.gradient(loss, spectrum)

    @graph
    def step(A, oh, ow):
        values, g = gradient(A, oh, ow)
        adam.apply_gradients([(-g, spectrum)])  # ascent
        return values

    def run_step(affine):
        return step(tf.constant(affine.matrix), affine.out_h, affine.out_w).numpy()

    def grad_at(p, affine):
        spectrum.assign(p)
        values, g = gradient(tf.constant(affine.matrix), affine.out_h, affine.out_w)
        return values.numpy(), g.numpy()

    return run_step, grad_at, tf.__version__


def main(argv=None):
    args = parse_args(argv)
    threads = args.threads or len(os.sched_getaffinity(0))
    for var in THREAD_VARS:
        os.environ[var] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    import contextlib
    import time

    import minivgg  # noqa: F401  (first: NumPy loads with OpenBLAS's spin short, minivgg/jit.py)
    import numpy as np
    import tensorflow as tf

    from minivgg import VGG16
    from minivgg.errors import MinivggError
    from minivgg.features import objectives as obj
    from minivgg.jit import passes
    from minivgg.features import param as P
    from minivgg.features import transforms as T
    from minivgg.features.optimise import LEARNING_RATE, Run, start_image

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
    try:
        model = VGG16(weights=args.weights, include_top=False)
    except MinivggError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.layer not in model.plan:
        print(f"error: --layer {args.layer!r} is not a conv layer", file=sys.stderr)
        return 1
    objective = obj.Objective("channel", args.layer, tuple(range(args.channels)))
    n, s = args.channels, args.size
    sides = ("eager", "graph")  # TensorFlow's two ways: {side: (step, gradient, version)}
    tf_sides = {side: tensorflow_step(model, objective, s, LEARNING_RATE, compiled=side == "graph") for side in sides}
    tf_version = tf_sides["graph"][2]
    draws = [T.draw(np.random.default_rng([0, 1, t]), s, s) for t in range(args.repeats)]

    # Check first: one gradient from the same spectrum and transform, both sides.
    image = start_image("fourier", n, s, s, 0, objective.targets)
    p = image.p + np.random.default_rng(1).normal(0, 0.05, image.p.shape).astype(np.float32)  # not all grey
    image.p = p.copy()
    x = P.to_network_input(T.resample(image.rgb(), draws[0]))
    dx, ours_values = obj.gradient(model, x, objective)
    ours_grad = image.backward(T.resample_backward(P.to_network_input_backward(dx), draws[0], s, s))
    for side in sides:
        tf_values, tf_g = tf_sides[side][1](p, draws[0])
        err_v = float(np.abs(ours_values - tf_values).max() / np.abs(tf_values).max())
        err_g = float(np.abs(ours_grad - tf_g).max() / np.abs(tf_g).max())
        print(f"check against TF {side}: objective max|ours - tf| / max|tf| = {err_v:.2e}, gradient of the spectrum "
              f"{err_g:.2e} (bar {TOL:g})")
        if not (err_v <= TOL and err_g <= TOL):
            print(f"error: minivgg and TensorFlow ({side}) disagree; nothing timed", file=sys.stderr)
            return 1

    # Time: a warm-up pass over the draws (compile, trace), then steps back to back, one side at a
    # time, as an optimisation runs them (see the module docstring): each side's block starts with
    # one untimed step, then the draws; two rounds, the second in reverse order, so that a drift in
    # the machine's load falls on every side alike.
    run = Run(model, objective, start_image("fourier", n, s, s, 0, objective.targets))
    steps = {"ours": run.step, **{side: tf_sides[side][0] for side in sides}}
    for affine in draws:
        for f in steps.values():
            f(affine)
    times = {who: [] for who in steps}
    for order in (list(steps), list(steps)[::-1]):
        for who in order:
            with passes() if who == "ours" else contextlib.nullcontext():  # as optimise() holds them
                steps[who](draws[-1])  # the block's first step, untimed
                for affine in draws:
                    t0 = time.perf_counter()
                    steps[who](affine)
                    times[who].append(time.perf_counter() - t0)

    # minivgg's step in parts (same draws), to see where the time goes.
    parts = {k: [] for k in ("parameterisation", "transforms", "network forward", "network forward + backward",
                             "chain back + Adam")}
    below = [row.name for row in model.layers][[row.name for row in model.layers].index(args.layer) - 1]
    with passes():  # as optimise() holds them
        for affine in draws:
            t = [time.perf_counter()]
            rgb = run.image.rgb()
            t.append(time.perf_counter())
            x = P.to_network_input(T.resample(rgb, affine))
            t.append(time.perf_counter())
            for name, _ in model.forward(x):
                if name == below:
                    break
            t.append(time.perf_counter())
            dx, _ = obj.gradient(model, x, objective)
            t.append(time.perf_counter())
            drgb = T.resample_backward(P.to_network_input_backward(dx), affine, s, s)
            run.adam.step(run.image.p, run.image.backward(drgb))
            t.append(time.perf_counter())
            for key, a, b in zip(parts, t, t[1:]):
                parts[key].append(b - a)

    med = lambda v: float(np.median(v))
    sizes = sorted({a.out_h for a in draws})
    print(f"one step: {n} channels of {args.layer}, {s}x{s} images (network input {sizes[0]} to {sizes[-1]} px), "
          f"{threads} threads, median of {2 * args.repeats} (steps back to back)")
    ours = med(times["ours"])
    print(f"  minivgg                  {1000 * ours:8.0f} ms")
    for side in sides:
        print(f"  TensorFlow {tf_version} {side:<6}{1000 * med(times[side]):8.0f} ms")
    print("  minivgg / TensorFlow: " + ", ".join(f"{side} {ours / med(times[side]):.2f}x" for side in sides))
    print("minivgg's step in parts (ms, median):")
    for key, v in parts.items():
        print(f"  {key:<28}{1000 * med(v):8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
