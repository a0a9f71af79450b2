"""``minivgg-explain IMAGE``: why VGG16 chose its class, by eight attribution maps, with sanity checks.

    minivgg-explain photo.jpg                          # the top class -> activations/explain_photo/index.html
    minivgg-explain photo.jpg --top 3 --json why.json  # a row per class of the top 3, and the figures as JSON
    minivgg-explain photo.jpg --class 281 --methods saliency grad_cam --layer block4_conv3
    minivgg-explain photo.jpg --channel block5_conv3:17 --size 160   # a channel's mean (conv layers only)
    minivgg-explain photo.jpg --arch vgg19 --layer block5_conv4      # VGG19 (a --weights file says which itself)

Writes to ``--out`` (default ``activations/explain_<image name>/``, a sibling of visualize.py's
``activations/<image name>/``, so their pages link to each other): ``original.png`` (the image as the
network sees it), per target and method ``<target>_<method>.png`` (the map over the dimmed photo,
``overlay.py``) and ``<target>_<method>.npy`` (the raw map, as the method returns it for one image),
and ``index.html`` (``page.py``). ``<target>`` is ``class281`` or ``block5_conv3-17``. ``--json FILE``
also writes, per target and method, the time it took, its sanity correlations and IG's gap.

The run is built in a temporary folder beside ``--out`` and swapped in at the end, so a run that fails
(bad input, Ctrl-C, a full disk) leaves an earlier run's output as it was. Files in ``--out`` that are
not ours are carried over into the new folder.

Weights: a class target needs the top: ``--weights FILE``, else the published full file (found or
downloaded, 553 MB); a channel target needs only the conv layers (a published file already here, else
the notop one, 59 MB). Errors (a bad image, a class outside the head's range, a ``--layer`` that is not
a conv layer, a class asked of a weight file without the top, ...) print ``error: <why>`` and exit 1.

Cost. Every method is one or more backward passes at the image's size: saliency, guided backprop,
deconvnet, Grad-CAM and LayerCAM one each, guided Grad-CAM two, SmoothGrad ``--samples`` and IG
``--steps`` (50 each by default). The sanity check repeats every method once per randomisation step
(6 with the top, ``by="block"``), with SmoothGrad and IG at SANITY_SAMPLES copies (the maps compared
with each other are then all made with that number).
"""
import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import MinivggError, run_command
from ..files.atomic import replacing
from ..files.imagenet import load_class_index, top_classes
from ..files.preprocess import load_image, preprocess_input
from ..network.table import ARCHS, MIN_SIZE, TOP_SIZE
from ..visualize import report
from ..visualize.cli import MODELS, conv_weights
from . import METHODS
from . import page as pages
from .cam import DEFAULT_LAYER
from .gradient_maps import integrated_gradients, smoothgrad
from .overlay import overlay, save, save_npy
from .sanity import cascading_randomization, insensitive
from .targets import resolve

SANITY_SAMPLES = 8  # SmoothGrad's samples and IG's steps in the sanity check: one batch of 8 per map
MAX_SIZE = 1024  # --size for a channel target; memory grows with 8 copies x SIZE x SIZE (SmoothGrad, IG)
OURS = re.compile(r"(class\d+|block\d_(conv\d|pool)-\d+)_\w+\.(png|npy)|original\.png|index\.html")  # files we own
CAM_METHODS = ("grad_cam", "layer_cam", "guided_grad_cam")


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="minivgg-explain",
        description="Why VGG16 chose its class: attribution maps by several methods, sanity-checked, and a page.",
        epilog="The last line printed is the page's path. Errors: 'error: <why>' on stderr, exit status 1.",
    )
    p.add_argument("image", help="an image file (JPEG, PNG, ...)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--class", dest="cls", type=int, metavar="N", help="explain class N (0..999 for ImageNet)")
    which.add_argument("--top", type=int, metavar="K", help="explain each of the K best classes, a row each (default 1)")
    which.add_argument("--channel", metavar="LAYER:K", help="explain the mean of channel K of a conv or pool layer")
    p.add_argument("--methods", nargs="+", choices=tuple(METHODS), metavar="NAME",
                   help=f"which methods (default all: {' '.join(METHODS)})")
    p.add_argument("--layer", default=DEFAULT_LAYER,
                   help=f"the conv layer of Grad-CAM, LayerCAM and guided Grad-CAM (default {DEFAULT_LAYER})")
    p.add_argument("--samples", type=int, default=50, help="SmoothGrad's noisy copies (default 50)")
    p.add_argument("--steps", type=int, default=50, help="Integrated Gradients' steps (default 50)")
    p.add_argument("--size", type=int, help=f"with --channel: resize the image to SIZE x SIZE (default {TOP_SIZE})")
    p.add_argument("--out", help="output folder (default: activations/explain_<image name>/)")
    p.add_argument("--json", metavar="FILE", help="also write the figures (times, sanity, IG's gap) as JSON")
    p.add_argument("--no-sanity", action="store_true", help="skip the sanity check (the run is several times faster)")
    p.add_argument("--arch", choices=tuple(ARCHS), help="the network (default: the one the --weights file holds, else vgg16)")
    p.add_argument("--weights", help="a Keras VGG16 or VGG19 file (default: the published one of --arch, found or "
                                     "downloaded)")
    p.add_argument("--quiet", action="store_true", help="print only the page's path")
    return p.parse_args(argv)


def check_args(args):
    """What can be refused before any file is read."""
    if args.top is not None and args.top < 1:
        raise MinivggError(f"--top must be at least 1, got {args.top}")
    if args.cls is not None and args.cls < 0:
        raise MinivggError(f"--class must be 0 or more, got {args.cls}")
    for name in ("samples", "steps"):
        if getattr(args, name) < 1:
            raise MinivggError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.size is not None:
        if args.channel is None:
            raise MinivggError("--size goes with --channel: a class target takes the size its top was trained on")
        if not MIN_SIZE <= args.size <= MAX_SIZE:
            raise MinivggError(f"--size must be from {MIN_SIZE} to {MAX_SIZE}, got {args.size}")
    if args.channel is not None:
        m = re.fullmatch(r"(\w+):(\d+)", args.channel)
        if not m:
            raise MinivggError(f"--channel {args.channel!r}: expected LAYER:K, e.g. block5_conv3:17")
        return m.group(1), int(m.group(2))
    return None


def load_model(args, channel):
    """The network: with its top for a class target (refused if the file has none), the conv layers
    alone for a channel. ``--arch`` picks the network; without it, the file's (VGG16 when none is given)."""
    cls = MODELS[args.arch]
    if channel is not None:
        return cls(weights=args.weights or conv_weights(args.arch or "vgg16"), include_top=False)
    if args.weights is None:
        return cls(weights="imagenet", include_top=True)
    model = cls(weights=args.weights)
    if not model.include_top:
        raise MinivggError(f"--weights {args.weights} has no top (fc1, fc2, predictions), so no class scores to "
                           "explain: use the full file, or --channel LAYER:K")
    return model


def check_layers(model, args, channel, methods):
    """--layer must be a conv layer of the model, at or below a channel target's layer."""
    names = [row.name for row in model.layers]
    convs = [row.name for row in model.layers if row.kind == "conv"]
    if any(m in CAM_METHODS for m in methods) and args.layer not in convs:
        raise MinivggError(f"--layer {args.layer!r} is not a conv layer of {model.title} ({convs[0]} ... {convs[-1]})")
    if channel is not None:
        layer, k = channel
        rows = {row.name: row for row in model.layers}
        if layer not in rows or rows[layer].kind not in ("conv", "pool"):
            raise MinivggError(f"--channel {layer}:{k}: {layer!r} is not a conv or pool layer of {model.title}")
        if any(m in CAM_METHODS for m in methods) and names.index(args.layer) > names.index(layer):
            raise MinivggError(f"--layer {args.layer} lies above the target's layer {layer}: the target does not depend on it")


def class_name(model, k):
    """'tabby' for ImageNet's 1000 classes, 'class 3' for another head's."""
    if model.layers[-1].out == 1000:
        return load_class_index()[str(k)][1].replace("_", " ")
    return f"class {k}"


def targets_of(model, x, args, channel):
    """[(file prefix, label, target for explain)] and the top-5 predictions (None without a top)."""
    if channel is not None:
        layer, k = channel
        resolve(model, x, (layer, k))  # a channel out of range: one line
        return [(f"{layer}-{k}", f"{layer}, channel {k} (its mean)", (layer, k))], None
    scores = model(x)  # (1, U)
    units = scores.shape[1]
    predictions = top_classes(scores, top=5)[0]
    if args.cls is not None:
        if args.cls >= units:
            raise MinivggError(f"--class {args.cls} is outside this network's classes: 0 to {units - 1}")
        classes = [args.cls]
    else:
        if (args.top or 1) > units:
            raise MinivggError(f"--top {args.top}: this network has only {units} classes")
        classes = [int(k) for k in np.argsort(-scores[0], kind="stable")[: args.top or 1]]
    p = scores[0]
    return [(f"class{k}", f"class {k}: {class_name(model, k)}, {100 * float(p[k]):.1f}%", k) for k in classes], predictions


def method_functions(args, samples, steps):
    """{name: f(model, x, target) -> maps}: the API's functions with this run's options."""
    fs = {}
    for name in args.methods or METHODS:
        f = METHODS[name]
        if name == "smoothgrad":
            fs[name] = lambda m, x, t: smoothgrad(m, x, t, samples=samples)
        elif name == "integrated_gradients":
            fs[name] = lambda m, x, t: integrated_gradients(m, x, t, steps=steps)[0]
        elif name in CAM_METHODS:
            fs[name] = lambda m, x, t, f=f: f(m, x, t, layer=args.layer)
        else:
            fs[name] = f
    return fs


def swap_in(tmp, out):
    """Make the finished folder ``tmp`` the output ``out``: the old ``out`` (if any) is moved aside,
    ``tmp`` renamed to ``out``, files of the old one that are not ours carried over, the rest deleted."""
    if not out.exists():
        os.replace(tmp, out)
        return
    if not out.is_dir():
        raise MinivggError(f"--out {out} is a file, not a folder")
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.replace(out, old / out.name)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old / out.name, out)  # put the earlier output back
        raise
    for f in os.listdir(old / out.name):
        if not OURS.fullmatch(f):
            os.replace(old / out.name / f, out / f)
    shutil.rmtree(old, ignore_errors=True)


def run(args):
    """Do the job; returns the page's path. Raises MinivggError or OSError."""
    say = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    t0 = time.perf_counter()
    channel = check_args(args)
    methods = list(args.methods or METHODS)
    size = (args.size or TOP_SIZE) if channel is not None else TOP_SIZE
    # (H, W, 3) RGB 0..255; a bad image is refused before the weights are read
    photo = load_image(args.image, target_size=(size, size), min_source_size=MIN_SIZE)
    model = load_model(args, channel)
    if channel is None and model.input_size not in (None, photo.shape[:2]):  # a fine-tuned head's own size
        photo = load_image(args.image, target_size=model.input_size, min_source_size=MIN_SIZE)
    check_layers(model, args, channel, methods)
    x = preprocess_input(photo.copy()[None])  # (1, H, W, 3) BGR, means removed
    x = np.ascontiguousarray(x)
    targets, predictions = targets_of(model, x, args, channel)
    out = Path(args.out) if args.out else Path("activations") / f"explain_{Path(args.image).stem}"
    if out.exists() and not out.is_dir():
        raise MinivggError(f"--out {out} is a file, not a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's folder is private (0700); the output is an ordinary folder
    except OSError as e:
        raise MinivggError(f"cannot write to {out.parent}: {e.strerror or e}") from None
    try:
        record = build(args, model, photo, x, targets, predictions, methods, tmp, out, say, t0)
        if args.json:
            write_json(record, Path(args.json))  # before the swap: a --json that cannot be written fails the run
        swap_in(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    report.link_related(out)  # pages in sibling folders (visualize.py, ...) link back
    if not args.quiet:
        if predictions:
            print("top-5: " + ", ".join(f"{n} {100 * float(p):.1f}%" for _, n, p in predictions))
        print(f"{len(targets)} target(s) x {len(methods)} methods in {out}/ ({record['seconds']:.1f} s)")
    return out / "index.html"


def build(args, model, photo, x, targets, predictions, methods, tmp, out, say, t0):
    """Compute every map (and the sanity check) into the folder ``tmp``; returns the JSON record."""
    save(Image.fromarray(photo.astype(np.uint8)), tmp / "original.png")
    fs = method_functions(args, args.samples, args.steps)
    sanity_fs = method_functions(args, min(args.samples, SANITY_SAMPLES), min(args.steps, SANITY_SAMPLES))
    rows, record_targets, steps = [], [], None
    for prefix, label, target in targets:
        cells, entry = [], {"label": label, "target": target if isinstance(target, int) else list(target),
                            "methods": {}}
        maps, rho = {}, {}
        for name in methods:
            t = time.perf_counter()
            if name == "integrated_gradients":
                attributions, gap = integrated_gradients(model, x, target, steps=args.steps)
                maps[name], gap = attributions, float(gap[0])
            else:
                maps[name], gap = fs[name](model, x, target), None
            seconds = time.perf_counter() - t
            say(f"{label}: {name} {seconds:.2f} s" + (f", completeness gap {100 * gap:+.2f}%" if gap is not None else ""))
            save_npy(maps[name][0], tmp / f"{prefix}_{name}.npy")
            save(overlay(photo, maps[name][0]), tmp / f"{prefix}_{name}.png")
            entry["methods"][name] = {"seconds": seconds, "overlay": f"{prefix}_{name}.png", "map": f"{prefix}_{name}.npy",
                                      "shape": list(maps[name][0].shape), **({"gap": gap} if gap is not None else {})}
        if not args.no_sanity:
            t = time.perf_counter()
            # The maps above are the originals, except SmoothGrad's and IG's when made with more copies
            reuse = {m: maps[m] for m in methods if m not in ("smoothgrad", "integrated_gradients")}
            reuse.update((m, maps[m]) for m, n in (("smoothgrad", args.samples), ("integrated_gradients", args.steps))
                         if m in maps and n <= SANITY_SAMPLES)
            result = cascading_randomization(model, x, target, {m: sanity_fs[m] for m in methods}, originals=reuse,
                                             on_step=lambda s: say(f"{label}: sanity check, {s} redrawn"))
            steps = result["steps"]
            for name in methods:
                rho[name] = [float(r) for r in result["spearman"][name][0]]
                entry["methods"][name]["sanity"] = {"steps": steps, "spearman": rho[name],
                                                    "insensitive": bool(insensitive(result["spearman"][name])[0])}
            entry["sanity_seconds"] = time.perf_counter() - t
        for name in methods:
            m = entry["methods"][name]
            s = m.get("sanity")
            cells.append(pages.Cell(name, m["overlay"], m["map"], tuple(m["shape"]), m["seconds"], m.get("gap"),
                                    s["spearman"] if s else None, s["insensitive"] if s else None))
        rows.append(pages.Target(label, cells))
        record_targets.append(entry)

    seconds = time.perf_counter() - t0
    H, W = photo.shape[:2]
    settings = {
        "weights": os.path.basename(str(model.weights_path)),
        "input": f"{H}x{W} RGB, from {Path(args.image).name}",
        "methods": f"SmoothGrad {args.samples} samples (noise 0.2 of the range), IG {args.steps} steps from a black "
                   f"image, CAMs at {args.layer}",
        "sanity check": "off" if args.no_sanity else
                        f"cascading randomisation by block, SmoothGrad and IG at {min(args.samples, SANITY_SAMPLES)} "
                        f"samples / {min(args.steps, SANITY_SAMPLES)} steps",
        "time": f"{seconds:.1f} s in all",
    }
    text = pages.page(Path(args.image).name, "original.png", predictions, rows, settings, steps,
                      related=report.related_html(out), title=model.title)
    report.write_page(tmp / "index.html", text)
    return {"image": str(args.image), "weights": str(model.weights_path), "size": [H, W], "layer": args.layer,
            "samples": args.samples, "steps": args.steps, "sanity": not args.no_sanity,
            "top5": [[i, name, float(p)] for i, name, p in predictions] if predictions else None,
            "targets": record_targets, "seconds": seconds}


def finite(v):
    """The record with NaN and infinities as null (strict JSON has no NaN): a constant map's Spearman,
    the gap of a score that did not change."""
    if isinstance(v, float):
        return v if np.isfinite(v) else None
    if isinstance(v, dict):
        return {k: finite(a) for k, a in v.items()}
    if isinstance(v, (list, tuple)):
        return [finite(a) for a in v]
    return v


def write_json(record, path):
    """The record as JSON (NaN as null), atomically."""
    record = finite(record)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1, allow_nan=False)
    except OSError as e:
        raise MinivggError(f"cannot write --json {path}: {e.strerror or e}") from None


def main(argv=None):
    args = parse_args(argv)
    page, code = run_command(run, args, "interrupted: the earlier output (if any) is as it was")
    if code is not None:
        return code
    print(f"page: {page.resolve()}")
    return 0
