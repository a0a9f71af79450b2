"""How much a training step costs: minivgg's ``train.step`` against Keras' ``train_on_batch``.

    python scripts/train_benchmark.py                      # 224x224, batch 16: steps, memory, epochs
    python scripts/train_benchmark.py --size 64 --batch 4 --repeats 2     # a quick look

Three measurements (the issue's "Speed and memory"):

1. **Steps.** One step of SGD with momentum on VGG16 + a flatten head (256 hidden units, 5 classes),
   block5 + head trainable, ours and Keras' (``train_on_batch``: TensorFlow's graph, its usual way),
   in the same process, on the same start (a Keras model saved and read by minivgg). Checked first:
   the first step's loss agrees within 1e-4 and every trainable tensor's change within 1e-3 (the
   agreement test's bars) before anything is timed. Then the first call of each (JIT compile,
   TensorFlow's tracing) is left out, one warm-up, and the median of 2 x ``--repeats``: a block of
   ``--repeats`` steps per side, the sides in turn and then in reverse order, ours inside
   ``jit.passes()`` as ``loop.fit`` runs an epoch's steps (freed memory kept between them). Ours is
   also timed head-only and with every layer trainable: what freezing does to the cost.
2. **Memory.** The peak resident memory of one step over the memory held before it, each side in a
   fresh process (Linux: ``/proc/self/clear_refs`` resets the peak, ``VmHWM`` reads it).
3. **Epochs on cached base outputs.** ``loop.fit`` head-only without augmentation on ``--images``
   images: the first epoch computes the frozen base's output of every image, later ones run the head
   alone. The ratio first epoch / median later epoch.

The machine is shared and noisy (20-30% between runs): compare ratios measured in one run.
"""
import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CLASSES = 5
HIDDEN = 256


def keras_start(path, size):
    """A Keras VGG16 (random, seeded) with a flatten head, saved: the common start of both sides."""
    import keras

    keras.utils.set_random_seed(0)
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3))
    x = keras.layers.Dense(HIDDEN, activation="relu", name="dense")(keras.layers.Flatten(name="flatten")(base.output))
    model = keras.Model(base.input, keras.layers.Dense(CLASSES, activation="softmax", name="dense_1")(x))
    # He-normal kernels and small non-zero biases, as the tests' Keras files (tests/conftest.py): Keras'
    # Glorot kernels and zero biases shrink the activations layer by layer and leave many ReLU inputs
    # and max-pool windows within rounding of a tie, where any two float32 passes route gradients apart
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if layer.weights:
            kernel, bias = (w.numpy() for w in layer.weights)
            fan_in = int(np.prod(kernel.shape[:-1]))
            layer.set_weights([rng.standard_normal(kernel.shape, dtype=np.float32) * np.float32(np.sqrt(2 / fan_in)),
                               rng.uniform(-0.5, 0.5, bias.shape).astype(np.float32)])
    model.save(path)
    return path


def batch(size, n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, size, size, 3)) * 50).astype(np.float32), rng.integers(0, CLASSES, n)


def keras_model(path, trainable, lr=0.01):
    import keras

    model = keras.models.load_model(path)
    for layer in model.layers:
        layer.trainable = layer.name in trainable
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr, momentum=0.9),
                  loss="sparse_categorical_crossentropy")
    return model


def ours(path, start="block5_conv1", lr=0.01):
    from minivgg import VGG
    from minivgg.train import SGD, trainable_from

    model = VGG(weights=path)
    return model, trainable_from(model, start), SGD(learning_rate=lr, momentum=0.9)


def check(path, x, y):
    """The first step from the same start on both sides: loss within 1e-4, changes within 1e-3."""
    from minivgg.train import step

    model, names, opt = ours(path)
    before = {n: [np.array(a) for a in model.params[n]] for n in names}
    theirs = keras_model(path, names)
    loss_t = float(theirs.train_on_batch(x, y))
    loss_o = step(model, x, y, opt, names)
    if abs(loss_o - loss_t) > 1e-4 * max(1, abs(loss_t)):
        raise SystemExit(f"check failed: loss ours {loss_o} != Keras {loss_t}")
    after = {layer.name: [w.numpy() for w in layer.weights] for layer in theirs.layers if layer.weights}
    worst = 0.0
    for n in names:
        for b, a, k in zip(before[n], model.params[n], after[n]):
            d_o, d_k = a - b, k - b
            worst = max(worst, float(np.linalg.norm(d_o - d_k) / max(np.linalg.norm(d_k), 1e-30)))
    if worst > 1e-3:
        raise SystemExit(f"check failed: a weight change is {worst:.2e} off Keras'")
    return loss_o, worst


def steps(path, x, y, repeats):
    """Median seconds of one step per side. Before every call the trainable weights are put back
    (untimed): the same step is timed each time, and many steps on one batch cannot drive the
    weights to overflow (NaN arithmetic would time something else)."""
    from minivgg.jit import passes
    from minivgg.train import step
    from minivgg.train.step import set_weights

    runs = {}
    for label, start in (("head", "dense"), ("block5", "block5_conv1"), ("full", "block1_conv1")):
        model, names, opt = ours(path, start)
        snapshot = {n: tuple(np.array(a) for a in model.params[n]) for n in names}
        runs[label] = (lambda m=model, n=names, o=opt: step(m, x, y, o, n),
                       lambda m=model, w=snapshot: set_weights(m, w))
    theirs = keras_model(path, ours(path)[1])
    start_weights = theirs.get_weights()
    runs["keras block5"] = (lambda: theirs.train_on_batch(x, y), lambda: theirs.set_weights(start_weights))
    first, times = {}, {k: [] for k in runs}
    for k, (fn, reset) in runs.items():  # first call (compile, tracing) and one warm-up, untimed
        t = time.perf_counter()
        fn()
        first[k] = time.perf_counter() - t
        reset()
        fn()
    # Blocks of ``repeats`` steps per side, every side once in each order, so a slow spell of the machine
    # hits every side alike. Ours inside jit.passes(), as ``loop.fit`` holds it over an epoch's steps.
    for order in (list(runs), list(runs)[::-1]):
        for k in order:
            fn, reset = runs[k]
            with passes() if k != "keras block5" else contextlib.nullcontext():
                for _ in range(repeats):
                    reset()
                    t = time.perf_counter()
                    fn()
                    times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}, first


def memory_child(side, path, size, n):
    """Run in a fresh process: one warm-up step, reset the peak, one step; print the peak over the start (MB)."""
    x, y = batch(size, n)
    if side == "keras":
        names = [f"block5_conv{i}" for i in (1, 2, 3)] + ["dense", "dense_1"]
        model = keras_model(path, names)
        run = lambda: model.train_on_batch(x, y)
    else:
        from minivgg.train import step

        model, names, opt = ours(path)
        run = lambda: step(model, x, y, opt, names)
    run()

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key)) / 1024  # kB -> MB

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = status("VmRSS:")
    run()
    print(json.dumps({"before_mb": before, "peak_mb": status("VmHWM:")}))


def memory(path, size, n):
    out = {}
    for side in ("ours", "keras"):
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        res = subprocess.run([sys.executable, __file__, "--memory-child", side, "--start", str(path),
                              "--size", str(size), "--batch", str(n)], capture_output=True, text=True, env=env)
        if res.returncode:
            raise SystemExit(f"memory run of {side} failed: {res.stderr.strip().splitlines()[-1:]}")
        out[side] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def epochs(size, images, n_epochs=4):
    """loop.fit head-only, no augmentation: seconds per epoch (the first computes the base's outputs)."""
    from minivgg import VGG
    from minivgg.train import SGD, trainable_from, with_head
    from minivgg.train.loop import fit

    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (images, size, size, 3)).astype(np.uint8)
    y = np.arange(images) % CLASSES
    model = with_head(VGG(weights=None, include_top=False), CLASSES, size=(size, size))
    settings = dict(epochs=n_epochs, batch=16, patience=n_epochs, size=size, augment=False, seed=0, quiet=True)
    run = {}
    with tempfile.TemporaryDirectory() as out:
        fit(model, (x, y), (x[:16], y[:16]), SGD(0.01, momentum=0.9), trainable_from(model, "head"), settings, out, run)
    return [e["seconds"] for e in run["history"]]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--images", type=int, default=64, help="images for the epochs measurement")
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--memory-child", choices=["ours", "keras"], help=argparse.SUPPRESS)
    p.add_argument("--start", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child, args.start, args.size, args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        path = keras_start(Path(tmp) / "start.keras", args.size)
        x, y = batch(args.size, args.batch)
        loss, worst = check(path, x, y)
        print(f"check: first step loss {loss:.5f} as Keras', weight changes within {worst:.1e} of Keras'")
        med, first = steps(path, x, y, args.repeats)
        print(f"\none step, {args.size}x{args.size}, batch {args.batch}, SGD momentum 0.9 (median of {2 * args.repeats}, "
              "after the first call and a warm-up)")
        for k, s in med.items():
            print(f"  {k:<14} {s:8.2f} s   (first call {first[k]:.1f} s)")
        ratio = med["block5"] / med["keras block5"]
        print(f"  ours / Keras, block5 + head: {ratio:.2f}x  (the issue's bar: <= 0.6)")
        mem = memory(path, args.size, args.batch)
        print("\npeak memory of one step (fresh process each; resident MB over the memory held before the step)")
        for side, m in mem.items():
            print(f"  {side:<6} +{m['peak_mb'] - m['before_mb']:8.0f} MB   (peak {m['peak_mb']:.0f} MB, before {m['before_mb']:.0f} MB)")
    secs = epochs(args.size, args.images)
    later = statistics.median(secs[1:])
    print(f"\nhead-only epochs on {args.images} images, no augmentation: first {secs[0]:.2f} s (the base's outputs "
          f"computed), later {later:.3f} s (median): {secs[0] / later:.0f}x  (the issue's bar: >= 20x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size": args.size, "batch": args.batch, "steps_s": med, "first_call_s": first,
                       "ratio_block5": ratio, "memory_mb": mem, "epochs_s": secs}, f, indent=1)


if __name__ == "__main__":
    main()
