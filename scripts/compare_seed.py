"""Time the seed's way (Keras + matplotlib) against minivgg-visualize, side by side.

    python scripts/compare_seed.py photo.jpg --weights vgg16_weights_tf_dim_ordering_tf_kernels.h5

Both run as separate processes on the same image and weight file (any file Keras' VGG16 loads,
e.g. one written by tests/conftest.py's ``write_keras_weights``), and both write their 89 grids:

- seed: Keras VGG16 from the weight file, a Keras Model whose outputs are every conv and pool
  layer, one ``predict``, then per layer and per 64 channels one matplotlib figure (8x8 inches,
  8x8 subplots, ``imshow`` with viridis, axes off) saved with ``plt.savefig`` as JPEG and closed,
  as the seed study (FeaturesSingleImage.md) made its grids;
- minivgg: ``scripts/visualize.py`` (== ``minivgg-visualize``) with the same image and weights.

It runs minivgg once cold (an empty NUMBA_CACHE_DIR, so every kernel is compiled) and once to warm
the cache, then ``--repeat`` (>= 1) rounds of (seed, minivgg warm); after the first round it checks
that both wrote the same 89 grids and original.jpg, and stops if not. It prints medians of wall
time and peak resident memory (each child's own ``ru_maxrss`` from ``os.wait4``), and the ratios.
Needs the ``reference`` extra.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def seed_way(image, weights, out):
    """The seed's method, run in this process: Keras + one matplotlib figure per 64 channels."""
    import h5py
    import keras
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from keras.applications.vgg16 import VGG16, preprocess_input

    with h5py.File(weights, "r") as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
    model = VGG16(weights=weights, include_top="fc1" in names)
    layers = [layer for layer in model.layers if "conv" in layer.name or "pool" in layer.name]
    activation_model = keras.Model(inputs=model.input, outputs=[layer.output for layer in layers])

    img = keras.utils.load_img(image, target_size=(224, 224))
    img.save(os.path.join(out, "original.jpg"))
    x = preprocess_input(np.expand_dims(keras.utils.img_to_array(img), axis=0))
    activations = activation_model.predict(x, verbose=0)

    for i, (layer, a) in enumerate(zip(layers, activations)):  # a: (1, H, W, C)
        for start in range(0, a.shape[-1], 64):
            fig = plt.figure(figsize=(8, 8))
            for k in range(64):
                ax = fig.add_subplot(8, 8, k + 1)
                ax.imshow(a[0, :, :, start + k], cmap="viridis")
                ax.axis("off")
            plt.savefig(os.path.join(out, f"{i}.{layer.name}_{start}-{start + 64}.jpg"))
            plt.close(fig)


def measure(cmd, env=None):
    """Run cmd; returns (seconds, peak RSS in MB) of that child alone. Exits if it fails."""
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a chatty child cannot block on it
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage; ru_maxrss is in KiB on Linux
        seconds = time.perf_counter() - t0
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0:
            log.seek(0)
            sys.exit(f"error: {Path(cmd[1]).name} failed (exit {code}):\n{log.read().decode(errors='replace')[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def positive_int(text):
    """argparse type: an integer >= 1."""
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image")
    p.add_argument("--weights", required=True, help="a VGG16 weight file that Keras loads")
    p.add_argument("--repeat", type=positive_int, default=3, help="timed rounds of (seed, minivgg), >= 1; default 3")
    p.add_argument("--seed-run", metavar="OUT", help=argparse.SUPPRESS)  # internal: run the seed's way
    args = p.parse_args(argv)
    if args.seed_run:
        seed_way(args.image, args.weights, args.seed_run)
        return 0

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg")
    with tempfile.TemporaryDirectory() as tmp:
        seed_out, ours_out, cache = (Path(tmp) / d for d in ("seed", "minivgg", "numba-cache"))
        seed_out.mkdir()
        seed = [sys.executable, __file__, args.image, "--weights", args.weights, "--seed-run", str(seed_out)]
        ours = [sys.executable, str(HERE / "visualize.py"), args.image, "--weights", args.weights,
                "--out", str(ours_out), "--quiet"]
        cold = measure(ours, dict(env, NUMBA_CACHE_DIR=str(cache)))  # every kernel compiled
        measure(ours, env)  # fills (or refreshes) the usual cache
        runs = {"seed": [], "minivgg": []}
        for i in range(args.repeat):
            runs["seed"].append(measure(seed, env))
            runs["minivgg"].append(measure(ours, env))
            if i == 0:  # the same job, or the times mean nothing: compare once both have run
                a = {f for f in os.listdir(seed_out) if f.endswith(".jpg")}
                b = {f for f in os.listdir(ours_out) if f.endswith(".jpg")}
                if a != b or len(a) != 89 + 1:  # 89 grids + original.jpg
                    sys.exit(f"error: the two ways wrote different files ({len(a)} and {len(b)}): "
                             f"{sorted(a ^ b)[:6]}")

    med = {k: (statistics.median(t for t, _ in v), statistics.median(m for _, m in v)) for k, v in runs.items()}
    print(f"{Path(args.image).name}, {Path(args.weights).name}, 89 grids each; medians of {args.repeat} runs")
    print(f"{'':<26}{'time':>9}{'peak RSS':>12}")
    print(f"{'seed (Keras + matplotlib)':<26}{med['seed'][0]:>8.1f}s{med['seed'][1]:>9.0f} MB")
    print(f"{'minivgg, warm':<26}{med['minivgg'][0]:>8.1f}s{med['minivgg'][1]:>9.0f} MB")
    print(f"{'minivgg, cold (JIT)':<26}{cold[0]:>8.1f}s{cold[1]:>9.0f} MB")
    print(f"{'seed / minivgg warm':<26}{med['seed'][0] / med['minivgg'][0]:>8.1f}x"
          f"{med['seed'][1] / med['minivgg'][1]:>11.2f}x")
    print("every run (s, MB): " + "; ".join(f"{k} " + ", ".join(f"{t:.1f}/{m:.0f}" for t, m in v)
                                            for k, v in runs.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
