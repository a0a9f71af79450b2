"""How fast the neuron catalogue scans, against the network alone and against a Keras-style catalogue.

    python scripts/catalog_benchmark.py --weights vgg16_notop.h5              # 64 images, 224x224
    python scripts/catalog_benchmark.py --weights F --images 16 --memory 64,1000 --memory-size 64

Images: ``--images`` variations (crops, flips, colour shifts) of the bundled photo, JPEGs in a
temporary folder. Every measurement runs in its own process (``--child``), after a warm-up batch
that pays the JIT compile, and prints JSON; the parent checks before it reports:

1. throughput, all 13 conv layers, top 9, no projections: the scan (decoding threads, the forward
   pass, per-channel maxima, top-k) against ``model(x)`` on the same batches of preprocessed arrays,
   interleaved in one process, ``--repeats`` times each (medians). Twice: against the catalogue's own
   model (batch-invariant: each image's bits do not depend on its batch, which shards and resumes
   need) and against the default model (batches share Winograd GEMMs).
2. the whole catalogue (scan, patches, sprite sheets, pages; after a warm-up on the first batch, as the
   Keras side gets one) against the same catalogue written the way a Keras user would (a Keras model with the 13 conv outputs, ``predict`` in batches of 8, NumPy top-k
   per channel, each winner's patch pasted into one mosaic per layer with Pillow), each in its own
   process; the two catalogues are compared entry for entry first (values within 1e-4 of the layer's
   largest value; the same images and units except where two values are within rounding of each other).
3. peak memory (ru_maxrss) of scans of ``--memory`` image counts (at ``--memory-size`` pixels: 1000 images
   at 224x224 take ~2 minutes of network on 2 cores, so the default is 64x64).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

PHOTO = Path(__file__).resolve().parents[1] / "minivgg" / "data" / "grace_hopper.jpg"
BATCH, TOP = 8, 9


def make_images(folder, n, seed=0):
    """n JPEGs: random crops of the photo, some mirrored, colours scaled; sorted names."""
    rng = np.random.default_rng(seed)
    photo = np.asarray(Image.open(PHOTO).convert("RGB"), np.float32)  # (H, W, 3)
    H, W = photo.shape[:2]
    for i in range(n):
        s = int(rng.integers(min(H, W) // 2, min(H, W)))
        t, l = int(rng.integers(0, H - s + 1)), int(rng.integers(0, W - s + 1))
        crop = photo[t:t + s, l:l + s] * rng.uniform(0.7, 1.2, 3)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8)).save(folder / f"img{i:05d}.jpg", quality=90)
    return sorted(folder.iterdir())


def child(cmd, *args):
    """Run this script's --child CMD in a new process; its last stdout line is JSON."""
    out = subprocess.run([sys.executable, __file__, "--child", cmd, *map(str, args)], capture_output=True, text=True)
    # (argparse: the child's values follow --child as strings)
    if out.returncode:
        raise SystemExit(f"child {cmd} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- children -----------------------------------------------------------------------------------

def child_throughput(folder, weights, size, repeats):
    from minivgg.catalog import cli
    from minivgg.catalog.scan import State
    from minivgg.catalog.stream import scan
    from minivgg.network.table import shapes
    from minivgg.network.vgg import VGG16

    images = [str(p) for p in sorted(Path(folder).iterdir())]
    models = {"invariant": cli.load_model(weights, "vgg16"),
              "default": VGG16(weights=weights, include_top=False)}
    model = models["invariant"]
    layers = cli.select_layers("conv", "vgg16")
    channels = {r.name: s[3] for r, s, _ in shapes(model.layers, size, size) if r.name in layers}
    x = np.stack([cli.network_input(p, size) for p in images])  # (n, S, S, 3), decoded beforehand for model(x)
    batches = [x[i:i + BATCH] for i in range(0, len(x), BATCH)]
    for m in models.values():
        m(batches[0])  # warm-up: JIT compile, kernel transforms
    load = lambda p: cli.network_input(p, size)  # noqa: E731
    scan(model, State({}, images[:BATCH], range(BATCH), channels, TOP), load, BATCH)  # warm-up
    times = {"scan": [], "model_invariant": [], "model_default": []}
    for _ in range(repeats):  # interleaved: the machine's load hits all three alike
        for name, m in models.items():
            t = time.perf_counter()
            for b in batches:
                m(b)
            times[f"model_{name}"].append(time.perf_counter() - t)
        state = State({}, images, range(len(images)), channels, TOP)
        t = time.perf_counter()
        scan(model, state, load, BATCH)
        times["scan"].append(time.perf_counter() - t)
        assert state.finished and not state.failed
    return {k: statistics.median(v) for k, v in times.items()} | {"images": len(images), "all": times}


def child_minivgg_catalogue(folder, weights, size, out):
    """minivgg-catalog's whole run, after a warm-up as the Keras side has one: a catalogue of the first
    batch of images into another folder first (the JIT-compiled kernels loaded from Numba's cache). The
    timed run still loads the weights file itself, which the Keras side's time leaves out."""
    from minivgg.catalog import cli

    t0 = time.perf_counter()
    common = ["--weights", weights, "--size", str(size), "--top", str(TOP), "--batch", str(BATCH), "--quiet"]
    first = [str(p) for p in sorted(Path(folder).iterdir())[:BATCH]]
    assert cli.main([*first, *common, "--out", tempfile.mkdtemp()]) == 0  # warm-up
    t = time.perf_counter()
    rc = cli.main([folder, *common, "--out", out, "--json", f"{out}.json"])
    assert rc == 0
    return {"seconds": time.perf_counter() - t, "with_warmup_seconds": time.perf_counter() - t0, "json": f"{out}.json",
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child_keras_catalogue(folder, weights, size, out):
    """The catalogue as a Keras user would write it (see the module docstring); entries as JSON."""
    import keras

    t0 = time.perf_counter()
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3))
    base.load_weights(weights)
    names = [l.name for l in base.layers if "conv" in l.name]
    model = keras.Model(base.input, [base.get_layer(n).output for n in names])
    images = [str(p) for p in sorted(Path(folder).iterdir())]
    model.predict(np.zeros((1, size, size, 3), np.float32), verbose=0)  # warm-up, like ours
    t = time.perf_counter()
    best = {n: [] for n in names}  # layer -> per image (N, C) maxima and their flat positions
    raw = []
    for i in range(0, len(images), BATCH):
        arrs = [keras.utils.img_to_array(keras.utils.load_img(p, target_size=(size, size))) for p in images[i:i + BATCH]]
        raw += [a.astype(np.uint8) for a in arrs]
        outs = model.predict(keras.applications.vgg16.preprocess_input(np.stack(arrs)), batch_size=BATCH, verbose=0)
        for n, a in zip(names, outs):
            flat = a.reshape(a.shape[0], -1, a.shape[-1])  # (N, H'*W', C)
            at = flat.argmax(axis=1)
            best[n].append((np.take_along_axis(flat, at[:, None], 1)[:, 0], at, a.shape[2]))
    entries, rf = {}, {}
    size_, stride, pad = 1, 1, 0
    for l in base.layers[1:]:  # receptive fields, by hand, as a Keras user would
        k, s, p = (3, 1, 1) if "conv" in l.name else (2, 2, 0)
        size_, pad, stride = size_ + (k - 1) * stride, pad + p * stride, stride * s
        rf[l.name] = (size_, stride, pad)
    for n in names:
        v = np.concatenate([b[0] for b in best[n]])  # (images, C)
        at = np.concatenate([b[1] for b in best[n]])
        w = best[n][0][2]
        order = np.argsort(-v, axis=0, kind="stable")[:TOP]  # (TOP, C): ties -> the earlier image
        r, stride, pad = rf[n]
        tile = 64
        mosaic = Image.new("RGB", (TOP * tile, v.shape[1] * tile), (255, 255, 255))
        entries[n] = []
        for c in range(v.shape[1]):
            top = []
            for e, i in enumerate(order[:, c]):
                row, col = divmod(int(at[i, c]), w)
                t_, l_ = row * stride - pad, col * stride - pad
                patch = np.full((r, r, 3), 128, np.uint8)
                tt, ll, bb, rr = max(t_, 0), max(l_, 0), min(t_ + r, size), min(l_ + r, size)
                patch[tt - t_:bb - t_, ll - l_:rr - l_] = raw[i][tt:bb, ll:rr]
                mosaic.paste(Image.fromarray(patch).resize((tile, tile)), (e * tile, c * tile))
                top.append({"image": int(i), "value": float(v[i, c]), "row": row, "col": col})
            entries[n].append({"channel": c, "top": top})
        mosaic.save(f"{out}-{n}.jpg", quality=90)
    with open(f"{out}.json", "w") as f:
        json.dump({"images": images, "layers": entries}, f)
    return {"seconds": time.perf_counter() - t, "with_load_seconds": time.perf_counter() - t0, "json": f"{out}.json"}


def child_memory(folder, weights, size):
    from minivgg.catalog import cli

    out = tempfile.mkdtemp()
    rc = cli.main([folder, "--weights", weights, "--size", str(size), "--batch", str(BATCH), "--out", out, "--quiet"])
    assert rc == 0
    return {"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# ---- the parent ---------------------------------------------------------------------------------

def compare(ours, theirs):
    """Entries equal: values within 1e-4 relative; images and units the same except near-ties."""
    a, b = json.loads(Path(ours).read_text()), json.loads(Path(theirs).read_text())
    assert [Path(p).name for p in a["images"]] == [Path(p).name for p in b["images"]]
    checked = near = 0
    for layer, chans in b["layers"].items():
        # relative to the layer's largest value: a small maximum carries the rounding of sums as large as
        # the layer's big ones (TensorFlow's oneDNN and our GEMMs add in other orders)
        scale = max(abs(ch["top"][0]["value"]) for ch in chans)
        for mine, keras_ch in zip(a["layers"][layer], chans):
            vals = [t["value"] for t in mine["top"]]
            for k, (m, t) in enumerate(zip(mine["top"], keras_ch["top"])):
                assert abs(m["value"] - t["value"]) <= 1e-4 * scale, (layer, mine["channel"], k, m, t)
                if (m["image"], m["row"], m["col"]) != (t["image"], t["row"], t["col"]):
                    # allowed only where another entry of ours has a value within rounding of this one
                    close = [v for j, v in enumerate(vals) if j != k and abs(v - m["value"]) <= 2e-4 * scale]
                    assert close or m["image"] == t["image"], (layer, mine["channel"], k, m, t)
                    near += 1
                checked += 1
    return checked, near


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", help="a Keras VGG16 weight file without the top (e.g. vgg16_notop.h5)")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--memory", default="64,1000", help="image counts for the peak-memory scans")
    p.add_argument("--memory-size", type=int, default=64)
    p.add_argument("--skip", default="", help="comma-separated parts to skip: throughput,keras,memory")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        cmd, rest = args.child[0], args.child[1:]
        fn = {"throughput": child_throughput, "minivgg": child_minivgg_catalogue, "keras": child_keras_catalogue,
              "memory": child_memory}[cmd]
        rest = [int(r) if r.isdigit() else r for r in rest]
        print(json.dumps(fn(*rest)))
        return 0
    if not args.weights:
        p.error("--weights FILE is needed (a Keras VGG16 weight file without the top)")
    skip = set(args.skip.split(","))
    weights = str(Path(args.weights).resolve())
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (the machine is shared: "
          "timings vary by 20-30%)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "imgs"
        folder.mkdir()
        make_images(folder, args.images)
        if "throughput" not in skip:
            r = child("throughput", folder, weights, args.size, args.repeats)
            n = r["images"]
            print(f"throughput, {n} images {args.size}x{args.size}, 13 conv layers, top {TOP}, batches of {BATCH} "
                  f"(medians of {args.repeats}):")
            for name in ("model_invariant", "model_default", "scan"):
                print(f"  {name:<16} {r[name]:7.2f} s  {n / r[name]:6.2f} images/s")
            print(f"  scan / model(x), the same (batch-invariant) model: {r['model_invariant'] / r['scan']:.2f}x the "
                  f"throughput; / the default model: {r['model_default'] / r['scan']:.2f}x")
        if "keras" not in skip:
            ours = child("minivgg", folder, weights, args.size, Path(tmp) / "ours")
            theirs = child("keras", folder, weights, args.size, Path(tmp) / "keras")
            checked, near = compare(ours["json"], theirs["json"])
            print(f"catalogue of {args.images} images: {checked} entries agree ({near} swapped within rounding)")
            print(f"  minivgg-catalog (scan, patches, sheets, pages; after a warm-up, its weights loaded inside): "
                  f"{ours['seconds']:.1f} s ({ours['with_warmup_seconds']:.1f} s with the warm-up)")
            print(f"  Keras-style (predict, NumPy top-k, Pillow mosaics; after load and warm-up): {theirs['seconds']:.1f} s "
                  f"({theirs['with_load_seconds']:.1f} s with load and warm-up)")
            print(f"  ratio minivgg / Keras: {ours['seconds'] / theirs['seconds']:.2f} (our warm-up is a whole catalogue "
                  "of one batch, pages included, so the times with it do not compare)")
        if "memory" not in skip:
            counts = [int(c) for c in args.memory.split(",")]
            peaks = []
            for c in counts:
                mfolder = Path(tmp) / f"mem{c}"
                mfolder.mkdir()
                make_images(mfolder, c, seed=c)
                peaks.append(child("memory", mfolder, weights, args.memory_size)["peak_mb"])
                print(f"peak memory, scan of {c} images at {args.memory_size}x{args.memory_size}: {peaks[-1]:.0f} MB")
            print(f"  ratio {counts[-1]} / {counts[0]} images: {peaks[-1] / peaks[0]:.2f}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
