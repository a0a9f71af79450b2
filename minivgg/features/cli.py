"""``minivgg-features``: what each channel of a layer looks for, by activation maximisation.

    minivgg-features --layer block4_conv3 --channels 0-15        # -> activations/features_block4_conv3/index.html
    minivgg-features --layer block3_conv1 --channels 3,9,40-47 --size 96 --steps 128 --seed 1
    minivgg-features --layer predictions --channels 130,309      # class logits (the full weight file)
    minivgg-features --layer block4_conv2 --dream --start photo.jpg   # deep dream from a photo
    minivgg-features --arch vgg19 --layer block3_conv4 --channels 0-7  # VGG19 (or --weights FILE of either)

Writes to ``--out`` (default ``activations/features_<layer>/``, a sibling of visualize.py's
``activations/<image name>/``, so their pages link to each other): one PNG per target named
``<layer>_<channel>.png`` (``predictions_<class>.png``; ``<layer>_dream.png``), the grid of them all
``<layer>_grid.png``, ``start.png`` when started from a photo, and last ``index.html``, the page.
Targets are optimised ``--batch`` at a time (one image each), every batch's files written as soon as
it is done; Ctrl-C stops the run and writes the page for the batches done (exit status 130).

Weights: as visualize.py (``--arch``, or the network a ``--weights`` file holds) without the top, the conv layers of a published file already here, else
the notop file downloaded (59 MB); ``--layer predictions`` needs the full file (553 MB). Errors (an
unknown layer, a channel out of range, bad steps or size, weights that do not load, an unwritable
``--out``) print ``error: <why>`` and exit 1, before ``--out`` is touched where they can be.
"""
import argparse
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import MinivggError, run_command
from ..files.atomic import replacing
from ..files.preprocess import load_image
from ..network.table import ARCHS, MIN_SIZE, TITLES, TOP_SIZE, conv_base, shapes
from ..visualize import report
from ..visualize.cli import MODELS, conv_weights, prepare_out
from ..visualize.grids import tile_images
from . import page as pages
from .optimise import LEARNING_RATE, Objective, optimise, to_image
from .param import PARAMS

DEFAULT_LAYER, DEFAULT_CHANNELS = "block4_conv3", "0-15"
DEFAULT_SIZE, DEFAULT_STEPS, DEFAULT_BATCH = 128, 256, 16
# The largest --size: memory grows with batch * S * S (block1's activations are kept for the
# backward pass: 16 images at 512x512 hold 16 * 512^2 * 64 * 4 B = 1 GB per block1 layer).
MAX_SIZE = 512
OURS = re.compile(r"(block\d_(conv\d|pool)|predictions)_(\d+|grid|dream)\.png|start\.png|index\.html")  # files we own
# The conv and pool layers of every architecture, with their channel counts (a name has the same count in
# VGG16 and VGG19: block3_conv4 has 256 like block3_conv3), so options are checked before a file is read.
CHANNELS = {row.name: shape[3] for arch in ARCHS for row, shape, _ in shapes(conv_base(arch), TOP_SIZE, TOP_SIZE)}


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="minivgg-features",
        description="Show what channels of a VGG16 (or VGG19) layer look for: images optimised to excite each one, "
                    "and a page.",
        epilog="The last line printed is the page's path. Errors: 'error: <why>' on stderr, exit status 1.",
    )
    p.add_argument("--layer", default=DEFAULT_LAYER,
                   help=f"a conv or pool layer, or 'predictions' for class scores (default {DEFAULT_LAYER})")
    p.add_argument("--channels", default=DEFAULT_CHANNELS, metavar="LIST",
                   help=f"channels (classes for predictions) as a list of numbers and ranges, e.g. 3,9,40-47 "
                        f"(default {DEFAULT_CHANNELS})")
    p.add_argument("--dream", action="store_true",
                   help="deep dream: raise the mean squared activation of the whole layer, from --start "
                        "(default: the bundled photo)")
    p.add_argument("--start", metavar="IMAGE", help="start from this photo instead of faint noise")
    p.add_argument("--size", type=int, default=DEFAULT_SIZE,
                   help=f"images are SIZE x SIZE (default {DEFAULT_SIZE}; {MIN_SIZE} to {MAX_SIZE}; "
                        f"predictions: {TOP_SIZE})")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"ascent steps (default {DEFAULT_STEPS})")
    p.add_argument("--seed", type=int, default=0, help="the random start and transforms (default 0)")
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                   help=f"images optimised at once (default {DEFAULT_BATCH}; more is faster per image, needs more memory)")
    p.add_argument("--param", choices=PARAMS, default="fourier",
                   help="fourier: spectrum + colour decorrelation + sigmoid (default); pixel: the naive twin")
    p.add_argument("--no-transforms", action="store_true", help="no random pad, jitter, scale and rotation")
    p.add_argument("--lr", type=float, default=LEARNING_RATE, help=f"Adam's learning rate (default {LEARNING_RATE})")
    p.add_argument("--out", help="output folder (default: activations/features_<layer>/)")
    p.add_argument("--arch", choices=tuple(ARCHS),
                   help="the network (default: the one the --weights file holds, else vgg16)")
    p.add_argument("--weights", help="a Keras VGG16 or VGG19 weight file (default: the published one of --arch, "
                                     "found or downloaded)")
    p.add_argument("--quiet", action="store_true", help="print only the page's path")
    return p.parse_args(argv)


def parse_channels(spec, count, what="channel"):
    """'3,9,40-47' -> [3, 9, 40, ..., 47]: numbers and inclusive ranges, each in 0..count-1, no repeats."""
    out = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise MinivggError(f"--channels {spec!r}: expected numbers and ranges like 3,9,40-47")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if a > b:
            raise MinivggError(f"--channels {spec!r}: the range {a}-{b} runs backwards")
        if b >= count:
            raise MinivggError(f"--channels {spec!r}: {what} {b} is out of range (0 to {count - 1})")
        out.extend(range(a, b + 1))
    if len(set(out)) != len(out):
        raise MinivggError(f"--channels {spec!r} names a {what} twice")
    return out


def check_args(args):
    """Everything that can be refused before any file is read: returns (objective, size)."""
    if args.layer not in CHANNELS and args.layer != "predictions":
        raise MinivggError(f"--layer {args.layer!r} is not a conv or pool layer of VGG16 or VGG19 nor 'predictions' "
                           f"(block1_conv1 ... block5_pool)")
    if args.arch and args.layer != "predictions" and args.layer not in {r.name for r in conv_base(args.arch)}:
        raise MinivggError(f"--layer {args.layer!r} is not a layer of {TITLES[args.arch]}")
    if args.steps < 1:
        raise MinivggError(f"--steps must be at least 1, got {args.steps}")
    if args.batch < 1:
        raise MinivggError(f"--batch must be at least 1, got {args.batch}")
    if not args.lr > 0 or not np.isfinite(args.lr):
        raise MinivggError(f"--lr must be a positive number, got {args.lr}")
    size = args.size
    if args.layer == "predictions":
        if args.dream:
            raise MinivggError("--dream needs a conv or pool layer, not predictions")
        if size not in (DEFAULT_SIZE, TOP_SIZE):
            raise MinivggError(f"--layer predictions takes {TOP_SIZE}x{TOP_SIZE} images (the top's size), not --size {size}")
        size = TOP_SIZE
    if size < MIN_SIZE:
        raise MinivggError(f"--size {size} is too small: VGG needs at least {MIN_SIZE}")
    if size > MAX_SIZE and args.layer != "predictions":
        raise MinivggError(f"--size {size} is too large: at most {MAX_SIZE} (memory grows with batch x SIZE x SIZE)")
    if args.dream:
        return Objective("dream", args.layer), size
    if args.layer == "predictions":
        return Objective("class", "predictions", tuple(parse_channels(args.channels, 1000, "class"))), size
    return Objective("channel", args.layer, tuple(parse_channels(args.channels, CHANNELS[args.layer]))), size


def load_model(weights, objective, arch=None):
    """Only the conv layers unless the class scores are wanted (then the file must have the top).
    ``arch`` None: the network the file holds (VGG16 when there is no file)."""
    cls = MODELS[arch]
    if objective.kind == "class":
        model = cls(weights=weights or "imagenet", include_top=None if weights else True)
        if not model.include_top:
            raise MinivggError(f"--layer predictions needs a weight file with the top; {weights} has only the conv layers")
        return model
    model = cls(weights=weights or conv_weights(arch or "vgg16"), include_top=False)
    if objective.layer not in {row.name for row in model.layers}:
        raise MinivggError(f"--layer {objective.layer!r} is not a layer of {model.title} ({model.weights_path})")
    return model


def file_name(objective, target):
    return f"{objective.layer}_dream.png" if objective.kind == "dream" else f"{objective.layer}_{target}.png"


def save_png(image, path):
    """Save a PIL image as PNG atomically: a temporary file in the same folder, then os.replace, so
    an interrupted run never leaves half an image."""
    with replacing(path) as tmp:
        image.save(tmp, "PNG")


class Progress:
    """``[#####.....] step 40/256, batch 1/4 (channels 0-15), objective 12.3, 2m10s left`` on stderr,
    redrawn in place when stderr is a terminal; otherwise one line per finished batch."""

    def __init__(self, total_steps, enabled):
        self.total, self.done, self.enabled = total_steps, 0, enabled
        self.tty = enabled and sys.stderr.isatty()
        self.t0 = time.perf_counter()

    def step(self, label, values):
        self.done += 1
        if not self.tty:
            return
        rate = (time.perf_counter() - self.t0) / self.done
        left = int(rate * (self.total - self.done))
        bar = "#" * (20 * self.done // self.total)
        sys.stderr.write(f"\r[{bar:<20}] {self.done}/{self.total} {label}, objective {np.mean(values):.4g}, "
                         f"{left // 60}m{left % 60:02d}s left ")
        sys.stderr.flush()

    def batch_done(self, label, seconds):
        if self.enabled and not self.tty:
            print(f"{label}: done in {seconds:.1f} s", file=sys.stderr)

    def close(self):
        if self.tty:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()


def label_of(targets):
    ts = list(targets)
    if not ts:
        return "the whole layer"
    if ts == list(range(ts[0], ts[-1] + 1)) and len(ts) > 1:
        return f"{ts[0]}-{ts[-1]}"
    return ",".join(map(str, ts))


def run(args):
    """Do the job; returns (page path, interrupted). Raises MinivggError or OSError."""
    say = (lambda msg: None) if args.quiet else print
    t0 = time.perf_counter()
    objective, size = check_args(args)
    photo = None
    start = args.start
    if objective.kind == "dream" and start is None:
        start = str(Path(__file__).resolve().parents[1] / "data" / "grace_hopper.jpg")
    if start is not None:
        photo = load_image(start, target_size=(size, size), min_source_size=MIN_SIZE)  # (S, S, 3) RGB 0..255
    model = load_model(args.weights, objective, args.arch)
    out = Path(args.out) if args.out else Path("activations") / f"features_{args.layer}"
    prepare_out(out, OURS)  # only now: bad options, image or weights above leave an earlier run's files as they were
    start_file = None
    if photo is not None:
        start_file = "start.png"
        save_png(Image.fromarray(photo.astype(np.uint8)), out / start_file)

    targets = list(objective.targets) or [-1]
    batches = [targets[i:i + args.batch] for i in range(0, len(targets), args.batch)]
    progress = Progress(len(batches) * args.steps, not args.quiet)
    cards, tiles, interrupted = [], [], False
    try:
        for b, batch in enumerate(batches):
            sub = objective._replace(targets=tuple(batch) if objective.kind != "dream" else ())
            label = f"batch {b + 1}/{len(batches)} ({'channels' if sub.kind == 'channel' else 'classes'} {label_of(batch)})" \
                if sub.kind != "dream" else f"deep dream on {sub.layer}"
            result = optimise(model, sub, size, args.steps, seed=args.seed, param=args.param,
                              transforms=not args.no_transforms, lr=args.lr, photo=photo,
                              on_step=lambda t, v, label=label: progress.step(label, v))
            top = pages.top5(result.activation)
            ranks = pages.rank(result.activation, batch) if sub.kind != "dream" else [None] * len(batch)
            for i, target in enumerate(batch):
                img = to_image(result.rgb[i])
                save_png(img, out / file_name(sub, target))
                tiles.append(img)
                cards.append(pages.Card(file_name(sub, target), target, result.curve[:, i], float(result.start[i]),
                                        float(result.final[i]), top[i], ranks[i]))
            progress.batch_done(label, result.seconds)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()

    grid_file = None
    if len(tiles) > 1:
        grid_file = f"{objective.layer}_grid.png"
        save_png(tile_images(tiles, cols=8, gap=2), out / grid_file)
    seconds = time.perf_counter() - t0
    done = len(cards)
    missing = ""
    if interrupted:
        left = [t for t in targets[done:]]
        missing = (f"Interrupted: {done} of {len(targets)} done; not done: {label_of(left)}." if objective.kind != "dream"
                   else "Interrupted before the deep dream finished: nothing to show.")
    settings = {
        "weights": f"{os.path.basename(str(model.weights_path))} ({model.title})",
        "objective": {"channel": f"mean of one channel of {objective.layer}", "class": "one class logit",
                      "dream": f"mean squared activation of {objective.layer}"}[objective.kind],
        "images": f"{size}x{size}, {args.param} parameterisation, "
                  + ("no transforms" if args.no_transforms else "Lucid's transforms (pad 12, jitter 8, scale, rotate, jitter 4)"),
        "steps": f"{args.steps}, Adam lr {args.lr:g}, seed {args.seed}, batch {args.batch}",
        "time": f"{seconds:.1f} s",
    }
    text = pages.page(objective.kind, objective.layer, cards, settings, grid_file, start_file,
                      related=report.related_html(out), missing=missing, title=model.title)
    report.write_page(out / "index.html", text)
    report.link_related(out)
    what = "deep dream" if objective.kind == "dream" else f"{done} {'classes' if objective.kind == 'class' else 'channels'} of {objective.layer}"
    say(f"{what} in {out}/ ({seconds:.1f} s)")
    if interrupted:
        print(f"interrupted: {missing}", file=sys.stderr)
    return out / "index.html", interrupted


def main(argv=None):
    args = parse_args(argv)
    result, code = run_command(run, args)
    if code is not None:
        return code
    page, interrupted = result
    print(f"page: {page.resolve()}")
    return 130 if interrupted else 0
