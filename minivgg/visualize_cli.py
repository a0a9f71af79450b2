"""``minivgg-visualize IMAGE``: the feature maps of every conv and pool layer of VGG16 (or VGG19) on one image.

    minivgg-visualize photo.jpg                      # -> activations/photo/index.html
    minivgg-visualize photo.jpg --layers 'block5_*' --norm layer --cmap gray --out maps/

Writes to ``--out`` (default ``activations/<image name>/``): ``original.jpg`` (the image as the
network sees it), one grid per 64 channels of each layer, named as the seed named them
(``{i}.{layer}_{start}-{end}.jpg``, i = 0 for block1_conv1 ... 17 for block5_pool, 20 in VGG19),
and last ``index.html``, the page that shows them all. The network runs once; each layer's grids are written
as soon as it is computed, then the activation is dropped.

The network: ``--weights FILE`` says which (VGG16 or VGG19, any Keras format, a fine-tuned head
included); without it, the published VGG16 (``--arch vgg19``: VGG19). The page names the classes of
a 1000-class head as ImageNet's, any other head's from ``--labels FILE`` (one name per line), else as
"class 3".

Sizes: with a top (fc1, fc2, predictions) the network needs 224x224 and the page shows the top-5
predictions; a fine-tuned head that flattens needs its own saved size, one with a global pool any. ``--size`` other than 224 uses only the conv layers of the weight file (any size from
MIN_SIZE = 32 to MAX_SIZE = 2048 works without the top) and says so: no predictions then. Without
``--weights`` it then uses a published file already here (either one), else downloads the notop file
(59 MB, not the 553 MB full one).

Errors (a bad image, weights that do not load, an unwritable ``--out``) print ``error: <why>`` and
exit 1. The image and the weights are loaded before ``--out`` is touched, so a run that fails on
them leaves an earlier run's files as they were; a run that fails later, while writing, leaves no
``index.html``. Rerunning into the same folder replaces that run's files (ours only: the names
above) and leaves other files alone.
"""
import argparse
import fnmatch
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from . import report
from .errors import MinivggError
from .imagenet import read_labels, top_classes
from .preprocess import load_image, preprocess_input
from .vgg import ARCHS, MIN_SIZE, TOP_SIZE, VGG, VGG16, VGG19, conv_base
from .visualize import CMAPS, NORMS, channel_ranges, grid, grid_name, layer_stats, save_image

MODELS = {None: VGG, "vgg16": VGG16, "vgg19": VGG19}  # --arch -> the class (None: as the file says)


def maps(arch="vgg16"):
    """The conv and pool layers of ``arch`` with their index in the file names: [(i, name)]."""
    return [(i, row.name) for i, row in enumerate(conv_base(arch))]


MAPS = maps("vgg16")  # (i, name)
OURS = re.compile(r"(\d+\.block\d_(conv\d|pool)_\d+-\d+|original)\.(jpg|png)|index\.html")  # files we own
# The largest --size. Memory grows with S*S: block1's activations are S*S*64 float32, 1 GB at 2048;
# a conv-only pass at 2048 peaked at 2.6 GB (measured), while --size 40000 would need 19 GB for the
# input alone and get killed.
MAX_SIZE = 2048


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="minivgg-visualize",
        description="Save the feature maps of every conv and pool layer of VGG16 on one image, and a page.",
        epilog="The last line printed is the page's path. Errors: 'error: <why>' on stderr, exit status 1.",
    )
    p.add_argument("image", help="an image file (JPEG, PNG, ...)")
    p.add_argument("--weights", help="a Keras VGG16 or VGG19 file: weights, a saved model (.h5, .weights.h5, .keras) "
                                     "(default: the published one, found or downloaded)")
    p.add_argument("--arch", choices=tuple(ARCHS),
                   help="vgg16 or vgg19 (default: what --weights holds; without --weights vgg16)")
    p.add_argument("--labels", metavar="FILE", help="class names of a fine-tuned head, one per line")
    p.add_argument("--out", help="output folder (default: activations/<image name>/)")
    p.add_argument("--layers", nargs="+", metavar="NAME", help="layer names or shell patterns, e.g. 'block5_*'")
    p.add_argument("--size", type=int, default=TOP_SIZE,
                   help=f"resize the image to SIZE x SIZE (default {TOP_SIZE}; any other size from {MIN_SIZE} "
                        f"to {MAX_SIZE} drops the top: no predictions)")
    p.add_argument("--cmap", choices=sorted(CMAPS), default="viridis", help="colour map (default viridis)")
    p.add_argument("--norm", choices=NORMS, default="channel", help="one colour scale per channel or per layer")
    p.add_argument("--format", choices=("jpg", "png"), default="jpg", help="image format (default jpg)")
    p.add_argument("--quiet", action="store_true", help="print only the page's path")
    return p.parse_args(argv)


def select_layers(patterns, arch="vgg16"):
    """The (i, name) of the conv and pool layers of ``arch`` that match any of the patterns (all by default)."""
    all_maps = maps(arch)
    if not patterns:
        return all_maps
    for pat in patterns:
        if not any(fnmatch.fnmatchcase(name, pat) for _, name in all_maps):
            raise MinivggError(f"--layers {pat!r} matches no conv or pool layer (block1_conv1 ... block5_pool)")
    return [(i, name) for i, name in all_maps if any(fnmatch.fnmatchcase(name, pat) for pat in patterns)]


def load_input(path, size):
    """The image as the network sees it: (size, size, 3) float32 RGB; tiny images are refused."""
    if size < MIN_SIZE:
        raise MinivggError(f"--size {size} is too small: VGG16 needs at least {MIN_SIZE}")
    if size > MAX_SIZE:
        raise MinivggError(f"--size {size} is too large: at most {MAX_SIZE} (memory grows with SIZE x SIZE)")
    # every unreadable file, and an image under MIN_SIZE pixels a side (upright), is refused here
    return load_image(path, target_size=(size, size), min_source_size=MIN_SIZE)


def prepare_out(out):
    """Create ``out`` and delete what an earlier run of ours left there (index.html first)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        old = [f for f in os.listdir(out) if OURS.fullmatch(f) and (out / f).is_file()]
        for f in sorted(old, key=lambda f: f != "index.html"):  # the page goes first
            (out / f).unlink()
    except OSError as e:
        raise MinivggError(f"cannot write to {out}: {e.strerror or e}") from None


def conv_weights(arch="vgg16"):
    """A published weight file for the conv layers alone: one already here, else the notop one downloaded.

    Either file has the conv layers; the notop file is the one to fetch (59 MB, the full one 553 MB).
    """
    from .download import find_weights, local_weights

    return local_weights(False, arch=arch) or local_weights(True, arch=arch) or find_weights(False, arch=arch)


def load_model(weights, size, quiet, arch=None):
    """The network for ``--size``: with its top or head if that takes size x size images, else without."""
    cls = MODELS[arch]
    if weights is None and size != TOP_SIZE:
        weights = conv_weights(arch or "vgg16")
    model = cls(weights=weights or "imagenet", keep_transformed=False)
    if model.input_size is not None and model.input_size != (size, size):
        h, w = model.input_size
        if not quiet:
            print(f"note: --size {size}: the top of these weights takes {h}x{w} images; "
                  "using the conv layers only, no predictions", file=sys.stderr)
        model = cls(weights=model.weights_path, include_top=False, keep_transformed=False)
    return model


class Progress:
    """``[#####.....] 5/18 block2_pool`` on stderr, redrawn in place; silent unless stderr is a terminal."""

    def __init__(self, total, enabled):
        self.total, self.done, self.enabled = total, 0, enabled and sys.stderr.isatty()

    def step(self, name):
        self.done += 1
        if self.enabled:
            bar = "#" * (20 * self.done // self.total)
            sys.stderr.write(f"\r[{bar:<20}] {self.done}/{self.total} {name:<14}")
            sys.stderr.flush()

    def close(self):
        if self.enabled:
            sys.stderr.write("\r" + " " * 60 + "\r")


def run(args):
    """Do the job; returns the page's path. Raises MinivggError or OSError."""
    say = (lambda msg: None) if args.quiet else print
    t0 = time.perf_counter()
    select_layers(args.layers, args.arch or "vgg19")  # a bad pattern is refused before anything is loaded
    labels = read_labels(args.labels) if args.labels else None
    x = load_input(args.image, args.size)  # (S, S, 3) RGB 0..255
    model = load_model(args.weights, args.size, args.quiet, args.arch)
    wanted = select_layers(args.layers, model.arch)
    if labels is not None and model.include_top and len(labels) != model.layers[-1].out:
        raise MinivggError(f"--labels {args.labels} has {len(labels)} names, the network scores "
                           f"{model.layers[-1].out} classes")
    if labels is not None and not model.include_top and not args.quiet:
        print("note: --labels is not used: no top, so no class scores", file=sys.stderr)
    out = Path(args.out) if args.out else Path("activations") / Path(args.image).stem
    prepare_out(out)  # only now: a bad image or weight file above leaves an earlier run's files as they were
    original = f"original.{args.format}"
    save_image(Image.fromarray(x.astype(np.uint8)), out / original, args.format)

    names, layers, predictions = dict((n, i) for i, n in wanted), [], None
    last = wanted[-1][1]
    progress = Progress(len(wanted) + (1 if model.include_top else 0), not args.quiet)
    try:
        for name, a in model.forward(preprocess_input(x[None])):  # a: (1, H', W', C') or (1, D)
            if name in names:
                grids = []
                for start, stop in channel_ranges(a.shape[3]):
                    file = grid_name(names[name], name, start, stop, args.format)
                    save_image(grid(a, start, stop, cmap=args.cmap, norm=args.norm), out / file, args.format)
                    grids.append((start, stop, file))
                layers.append(report.LayerResult(names[name], name, a.shape[1:], grids, layer_stats(a)))
                progress.step(name)
            if model.include_top and name == model.layers[-1].name:  # the class scores
                predictions = top_classes(a, top=5, labels=labels)[0]
                progress.step(name)
            if name == last and not model.include_top:
                break  # nothing further to draw
    finally:
        progress.close()

    seconds = time.perf_counter() - t0
    settings = {
        "weights": os.path.basename(str(model.weights_path)),
        "input": f"{args.size}x{args.size} RGB, from {Path(args.image).name}",
        "grids": f"{sum(len(l.grids) for l in layers)} grids of {len(layers)} layers, {args.cmap}, --norm {args.norm}",
        "time": f"{seconds:.1f} s",
    }
    text = report.page(Path(args.image).name, original, layers, predictions, args.cmap, args.norm, settings,
                       model.arch, related=report.related_html(out))
    report.write_page(out / "index.html", text)
    report.link_related(out)  # pages in sibling folders (features.py, ...) link back
    if predictions:
        say("top-5: " + ", ".join(f"{n} {100 * float(p):.1f}%" for _, n, p in predictions))
    say(f"{sum(len(l.grids) for l in layers)} grids of {len(layers)} layers in {out}/ ({seconds:.1f} s)")
    return out / "index.html"


def main(argv=None):
    args = parse_args(argv)
    try:
        page = run(args)
    except MinivggError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # writing the output: a full disk, a folder that went away, ...
        why = e.strerror or str(e) or type(e).__name__
        print(f"error: {why}: {e.filename}" if e.filename else f"error: {why}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(f"page: {page.resolve()}")
    return 0
