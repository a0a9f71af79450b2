"""Time the seed's way (Keras + matplotlib) against minivgg-visualize, side by side.

    python scripts/compare_seed.py photo.jpg --weights vgg16_weights_tf_dim_ordering_tf_kernels.h5
    python scripts/compare_seed.py --many 32 --weights vgg16_weights_tf_dim_ordering_tf_kernels.h5

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
time and peak resident memory (each child's own ``ru_maxrss`` from ``os.wait4``), and the ratios,
and the load average before and after (the machine may be shared).

``--many N``: the seed's batch. N copies of the image (the bundled photo by default), each
transformed differently (flips, rotations, crops, colour shifts: ``COPIES``), written to a
temporary folder; the seed's way runs them through Keras in one ``predict`` and writes a folder
per image (``0/`` ... ``31/``, 89 figures each), as the study did; minivgg gets the folder
(``visualize.py FOLDER``: a folder per image and a summary page). Rounds: minivgg warm, then the
seed (``--repeat``, default 1 here: the seed's way takes about half a minute per image).
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
PHOTO = HERE.parent / "minivgg" / "data" / "grace_hopper.jpg"


def _crop(left, top, right, bottom):
    """A crop by fractions of the width and height."""
    return lambda im: im.crop((round(left * im.width), round(top * im.height),
                               round(right * im.width), round(bottom * im.height)))


def _hue(degrees):
    """Turn every colour's hue by ``degrees`` (through HSV, 256 steps of hue as Pillow stores it)."""
    def shift(im):
        from PIL import Image

        h, s, v = im.convert("HSV").split()
        h = h.point(lambda x: (x + round(degrees * 256 / 360)) % 256)
        return Image.merge("HSV", (h, s, v)).convert("RGB")
    return shift


def _copies():
    """The transforms of ``--many``: (name, function PIL RGB image -> PIL RGB image), 32 of them."""
    from PIL import Image, ImageEnhance, ImageFilter, ImageOps

    T = Image.Transpose
    return [
        ("original", lambda im: im), ("mirror", ImageOps.mirror), ("flip", ImageOps.flip),
        ("rot90", lambda im: im.transpose(T.ROTATE_90)), ("rot180", lambda im: im.transpose(T.ROTATE_180)),
        ("rot270", lambda im: im.transpose(T.ROTATE_270)),
        ("crop80", _crop(.1, .1, .9, .9)), ("crop60", _crop(.2, .2, .8, .8)), ("face", _crop(.2, 0, .8, .5)),
        ("top", _crop(0, 0, 1, .6)), ("bottom", _crop(0, .4, 1, 1)), ("left", _crop(0, 0, .6, 1)),
        ("right", _crop(.4, 0, 1, 1)), ("wide", _crop(0, .3, 1, .7)),
        ("bgr", lambda im: Image.merge("RGB", im.split()[::-1])), ("grey", lambda im: im.convert("L").convert("RGB")),
        ("dark", lambda im: ImageEnhance.Brightness(im).enhance(.5)),
        ("bright", lambda im: ImageEnhance.Brightness(im).enhance(1.5)),
        ("flat", lambda im: ImageEnhance.Contrast(im).enhance(.5)),
        ("contrast", lambda im: ImageEnhance.Contrast(im).enhance(1.8)),
        ("pale", lambda im: ImageEnhance.Color(im).enhance(.3)),
        ("vivid", lambda im: ImageEnhance.Color(im).enhance(2)),
        ("hue60", _hue(60)), ("hue180", _hue(180)), ("invert", ImageOps.invert),
        ("posterize", lambda im: ImageOps.posterize(im, 3)),
        ("blur", lambda im: im.filter(ImageFilter.GaussianBlur(3))), ("sharpen", lambda im: im.filter(ImageFilter.SHARPEN)),
        ("equalize", ImageOps.equalize), ("mirror_crop", lambda im: _crop(.15, .15, .85, .85)(ImageOps.mirror(im))),
        ("warm", lambda im: im.convert("RGB", (1.15, 0, 0, 0, 0, 1, 0, 0, 0, 0, .85, 0))),
        ("sepia", lambda im: im.convert("RGB", (.393, .769, .189, 0, .349, .686, .168, 0, .272, .534, .131, 0))),
    ]


def make_copies(image, n, folder):
    """``n`` transformed copies of ``image`` in ``folder``, ``00_original.jpg`` ... (cycling through
    the transforms, numbered, when n > 32). Returns their paths, in order."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    copies, paths = _copies(), []
    with Image.open(image) as im:
        rgb = im.convert("RGB")
    for k in range(n):
        name, f = copies[k % len(copies)]
        path = folder / f"{k:02d}_{name}.jpg"
        f(rgb).save(path, "JPEG", quality=95)
        paths.append(path)
    return paths


def seed_way(images, weights, out, many=False):
    """The seed's method, run in this process: Keras + one matplotlib figure per 64 channels.

    images: the image files; one ``predict`` over all of them. ``many``: a folder per image in
    ``out`` (``0/``, ``1/``, ... as the study named them), else the one image's files in ``out``.
    """
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

    imgs = [keras.utils.load_img(image, target_size=(224, 224)) for image in images]
    x = preprocess_input(np.stack([keras.utils.img_to_array(img) for img in imgs]))  # (N, 224, 224, 3)
    activations = activation_model.predict(x, verbose=0)  # one (N, H, W, C) array per layer

    for n, img in enumerate(imgs):
        folder = os.path.join(out, str(n)) if many else out
        os.makedirs(folder, exist_ok=True)
        img.save(os.path.join(folder, "original.jpg"))
        for i, (layer, a) in enumerate(zip(layers, activations)):  # a: (N, H, W, C)
            for start in range(0, a.shape[-1], 64):
                fig = plt.figure(figsize=(8, 8))
                for k in range(64):
                    ax = fig.add_subplot(8, 8, k + 1)
                    ax.imshow(a[n, :, :, start + k], cmap="viridis")
                    ax.axis("off")
                plt.savefig(os.path.join(folder, f"{i}.{layer.name}_{start}-{start + 64}.jpg"))
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


def jpgs(folder):
    return {f for f in os.listdir(folder) if f.endswith(".jpg")}


def same_files(seed_out, ours_out, many):
    """Stop unless both ways wrote the same 89 grids and original.jpg (in each image's folder)."""
    if not many:
        a, b = jpgs(seed_out), jpgs(ours_out)
        if a != b or len(a) != 89 + 1:  # 89 grids + original.jpg
            sys.exit(f"error: the two ways wrote different files ({len(a)} and {len(b)}): {sorted(a ^ b)[:6]}")
        return
    seed = sorted(d for d in os.listdir(seed_out) if (seed_out / d).is_dir())
    ours = sorted(d for d in os.listdir(ours_out) if (ours_out / d).is_dir())
    if len(seed) != many or len(ours) != many or not (ours_out / "index.html").is_file():
        sys.exit(f"error: {many} images, but the seed's way wrote {len(seed)} folders, minivgg {len(ours)}")
    want = jpgs(seed_out / seed[0])
    for out, folders in ((seed_out, seed), (ours_out, ours)):
        for d in folders:
            if jpgs(out / d) != want or len(want) != 89 + 1:
                sys.exit(f"error: the two ways wrote different files in {d}/: {sorted(jpgs(out / d) ^ want)[:6]}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image", nargs="?", default=str(PHOTO), help="default: the bundled photo")
    p.add_argument("--weights", required=True, help="a VGG16 weight file that Keras loads")
    p.add_argument("--many", type=positive_int, metavar="N", help="the seed's batch: N transformed copies of the image")
    p.add_argument("--repeat", type=positive_int,
                   help="timed rounds of (seed, minivgg), >= 1; default 3 (1 with --many)")
    p.add_argument("--seed-run", metavar="OUT", help=argparse.SUPPRESS)  # internal: run the seed's way
    args = p.parse_args(argv)
    if args.seed_run:
        many = Path(args.image).is_dir()
        images = sorted(Path(args.image).iterdir()) if many else [args.image]
        seed_way(images, args.weights, args.seed_run, many)
        return 0
    repeat = args.repeat or (1 if args.many else 3)

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg")
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        seed_out, ours_out, cache = (Path(tmp) / d for d in ("seed", "minivgg", "numba-cache"))
        seed_out.mkdir()
        image = args.image
        if args.many:
            image = str(Path(tmp) / "images")
            make_copies(args.image, args.many, Path(image))
        seed = [sys.executable, __file__, image, "--weights", args.weights, "--seed-run", str(seed_out)]
        ours = [sys.executable, str(HERE / "visualize.py"), image, "--weights", args.weights,
                "--out", str(ours_out), "--quiet"]
        cold = measure(ours, dict(env, NUMBA_CACHE_DIR=str(cache)))  # every kernel compiled
        measure(ours, env)  # fills (or refreshes) the usual cache
        runs = {"seed": [], "minivgg": []}
        for i in range(repeat):
            for way in (("minivgg", "seed") if args.many else ("seed", "minivgg")):
                runs[way].append(measure(seed if way == "seed" else ours, env))
            if i == 0:  # the same job, or the times mean nothing: compare once both have run
                same_files(seed_out, ours_out, args.many)
    load.append(os.getloadavg()[0])

    n = args.many or 1
    med = {k: (statistics.median(t for t, _ in v), statistics.median(m for _, m in v)) for k, v in runs.items()}
    what = f"{n} images ({Path(args.image).name} and transformed copies)" if args.many else Path(args.image).name
    print(f"{what}, {Path(args.weights).name}, 89 grids each; medians of {repeat} runs; "
          f"load average {load[0]:.1f} before, {load[1]:.1f} after")
    print(f"{'':<26}{'time':>9}{'per image':>11}{'peak RSS':>12}")
    for label, (t, m) in (("seed (Keras + matplotlib)", med["seed"]), ("minivgg, warm", med["minivgg"]),
                          ("minivgg, cold (JIT)", cold)):
        print(f"{label:<26}{t:>8.1f}s{t / n:>10.2f}s{m:>9.0f} MB")
    print(f"{'seed / minivgg warm':<26}{med['seed'][0] / med['minivgg'][0]:>8.1f}x{'':>11}"
          f"{med['seed'][1] / med['minivgg'][1]:>11.2f}x")
    print("every run (s, MB): " + "; ".join(f"{k} " + ", ".join(f"{t:.1f}/{m:.0f}" for t, m in v)
                                            for k, v in runs.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
