"""``minivgg-visualize IMAGE ...``: the feature maps of every conv and pool layer of VGG16 (or VGG19).

    minivgg-visualize photo.jpg                      # -> activations/photo/index.html
    minivgg-visualize photo.jpg --layers 'block5_*' --norm layer --cmap gray --out maps/
    minivgg-visualize cat.jpg dog.png photos/        # -> activations/cat/, activations/dog/, ..., activations/index.html

One image: writes to ``--out`` (default ``activations/<image name>/``): ``original.jpg`` (the image
as the network sees it), one grid per 64 channels of each layer, named as the seed named them
(``{i}.{layer}_{start}-{end}.jpg``, i = 0 for block1_conv1 ... 17 for block5_pool, 20 in VGG19),
and last ``index.html``, the page that shows them all. The network runs once; each layer's grids are
drawn by writer threads while the network computes the next layers (``pipeline.py``), then dropped.

Many images (more than one path, or a folder: its image files, recognised by content; subfolders
with ``--recursive``): a folder per image under ``--out`` (default ``activations/``), named after the
image (``photo``, ``photo-2`` when two share a name), each holding exactly what a one-image run
writes, and ``<out>/index.html``, a summary page (``summary_page.py``): every image with its top-5 and a
link to its page, and one layer (``--layer``) side by side across the images. The images go through
the network ``--batch`` at a time (default: ``default_batch``); a progress bar on stderr (images
done, per second, time left) unless ``--quiet``. An image that cannot be read is reported in one
line and listed on the summary page, the others are done, and the run exits 1 with a last line that
says how many failed. Ctrl-C stops it (exit 130): the images finished so far stay and are listed on
the summary page; no file is ever half-written (temporary names, then os.replace).

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
import signal
import sys
import threading
import time
from pathlib import Path

from ..errors import MinivggError, run_command
from ..files.image_files import find_images, folder_names
from ..files.imagenet import read_labels
from ..files.preprocess import load_image
from ..network.table import ARCHS, MIN_SIZE, TOP_SIZE, conv_base
from ..network.vgg import VGG, VGG16, VGG19
from . import pipeline, report, summary_page
from .grids import CMAPS, NORMS, grid_name

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
# The default --batch: as many images as keep one batch's block1 activation (B*S*S*64 floats) under
# BATCH_FLOATS, 1 to 8. At 224x224 that is 4 images, 51 MB per block1 activation, of which at most
# pipeline.QUEUE + WRITERS + 2 are alive at once.
BATCH_FLOATS = 4 * 224 * 224 * 64
SIDE_LAYER = "block3_conv3"  # the summary's side-by-side layer: textures and parts, still 56x56


def default_batch(size):
    """Images per batch at ``size`` x ``size``: BATCH_FLOATS // (S*S*64), between 1 and 8."""
    return max(1, min(8, BATCH_FLOATS // (size * size * 64)))


def positive_int(text):
    """argparse type: an integer >= 1."""
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="minivgg-visualize",
        description="Save the feature maps of every conv and pool layer of VGG16 on images, and a page.",
        epilog="The last line printed is the page's path. Errors: 'error: <why>' on stderr, exit status 1.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files (JPEG, PNG, ...) or folders of them; one image keeps its own layout")
    p.add_argument("--weights", help="a Keras VGG16 or VGG19 file: weights, a saved model (.h5, .weights.h5, .keras) "
                                     "(default: the published one, found or downloaded)")
    p.add_argument("--arch", choices=tuple(ARCHS),
                   help="vgg16 or vgg19 (default: what --weights holds; without --weights vgg16)")
    p.add_argument("--labels", metavar="FILE", help="class names of a fine-tuned head, one per line")
    p.add_argument("--out", help="output folder (default: activations/<image name>/ for one image, "
                                 "activations/ for many)")
    p.add_argument("--layers", nargs="+", metavar="NAME", help="layer names or shell patterns, e.g. 'block5_*'")
    p.add_argument("--size", type=int, default=TOP_SIZE,
                   help=f"resize the image to SIZE x SIZE (default {TOP_SIZE}; any other size from {MIN_SIZE} "
                        f"to {MAX_SIZE} drops the top: no predictions)")
    p.add_argument("--cmap", choices=sorted(CMAPS), default="viridis", help="colour map (default viridis)")
    p.add_argument("--norm", choices=NORMS, default="channel", help="one colour scale per channel or per layer")
    p.add_argument("--format", choices=("jpg", "png"), default="jpg", help="image format (default jpg)")
    p.add_argument("--recursive", action="store_true", help="many images: look into subfolders too")
    p.add_argument("--batch", type=positive_int,
                   help="many images: images per forward pass (default 4 at 224x224, more when smaller)")
    p.add_argument("--layer", metavar="NAME",
                   help=f"many images: the layer the summary shows side by side (default {SIDE_LAYER})")
    p.add_argument("--quiet", action="store_true", help="print only the page's path (and errors)")
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


def side_layer(name, wanted, fmt):
    """The summary's side-by-side layer: (i, name, its first grid's file); ``name`` None: SIDE_LAYER if
    drawn, else the middle one of the layers drawn."""
    if name is None:
        found = [w for w in wanted if w[1] == SIDE_LAYER] or [wanted[len(wanted) // 2]]
    else:
        found = [w for w in wanted if w[1] == name]
        if not found:
            raise MinivggError(f"--layer {name!r} is not one of the layers drawn ({wanted[0][1]} ... {wanted[-1][1]})")
    i, layer = found[0]
    return i, layer, grid_name(i, layer, 0, 64, fmt)


def check_size(size):
    if size < MIN_SIZE:
        raise MinivggError(f"--size {size} is too small: VGG16 needs at least {MIN_SIZE}")
    if size > MAX_SIZE:
        raise MinivggError(f"--size {size} is too large: at most {MAX_SIZE} (memory grows with SIZE x SIZE)")


def load_input(path, size):
    """The image as the network sees it: (size, size, 3) float32 RGB; tiny images are refused."""
    check_size(size)
    # every unreadable file, and an image under MIN_SIZE pixels a side (upright), is refused here
    return load_image(path, target_size=(size, size), min_source_size=MIN_SIZE)


def prepare_out(out, ours=OURS):
    """Create ``out`` and delete what an earlier run of ours left there (index.html first); ``ours``:
    the names this command writes (features.py passes its own)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        old = [f for f in os.listdir(out) if ours.fullmatch(f) and (out / f).is_file()]
        for f in sorted(old, key=lambda f: f != "index.html"):  # the page goes first
            (out / f).unlink()
    except OSError as e:
        raise MinivggError(f"cannot write to {out}: {e.strerror or e}") from None


def conv_weights(arch="vgg16"):
    """A published weight file for the conv layers alone: one already here, else the notop one downloaded.

    Either file has the conv layers; the notop file is the one to fetch (59 MB, the full one 553 MB).
    """
    from ..files.download import find_weights, local_weights

    return local_weights(False, arch=arch) or local_weights(True, arch=arch) or find_weights(False, arch=arch)


def load_model(weights, size, quiet, arch=None):
    """The network for ``--size``: with its top or head if that takes size x size images, else without."""
    cls = MODELS[arch]
    if weights is None and size != TOP_SIZE:
        weights = conv_weights(arch or "vgg16")
    model = cls(weights=weights or "imagenet", keep_transformed=False, batch_invariant=True)
    if model.input_size is not None and model.input_size != (size, size):
        h, w = model.input_size
        if not quiet:
            print(f"note: --size {size}: the top of these weights takes {h}x{w} images; "
                  "using the conv layers only, no predictions", file=sys.stderr)
        model = cls(weights=model.weights_path, include_top=False, keep_transformed=False, batch_invariant=True)
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


class ImagesProgress:
    """``[########............] 12/32 images  2.9/s  0:07 left`` on ``stream`` (stderr), redrawn in
    place; only on a terminal. ``say`` prints a line (an error) above the bar. Thread-safe."""

    def __init__(self, total, enabled, stream=None, clock=time.monotonic):
        self.stream = stream or sys.stderr
        self.total, self.done, self.clock, self.t0 = total, 0, clock, clock()
        self.enabled = enabled and self.stream.isatty()
        self.lock = threading.Lock()

    def line(self):
        rate = self.done / max(self.clock() - self.t0, 1e-9)  # images per second so far
        left = "?:??" if not self.done else "%d:%02d" % divmod(round((self.total - self.done) / rate), 60)
        bar = "#" * (20 * self.done // self.total)
        return f"[{bar:<20}] {self.done}/{self.total} images  {rate:.1f}/s  {left} left"

    def step(self):
        with self.lock:
            self.done += 1
            if self.enabled:
                self.stream.write("\r" + self.line())
                self.stream.flush()

    def say(self, text):
        with self.lock:
            if self.enabled:
                self.stream.write("\r" + " " * 70 + "\r")
            print(text, file=self.stream)
            if self.enabled and self.done:
                self.stream.write(self.line())
            self.stream.flush()

    def close(self):
        with self.lock:
            if self.enabled:
                self.stream.write("\r" + " " * 70 + "\r")
                self.enabled = False


class Job:
    """What every image of one run shares: the options, the model and the layers to draw."""

    def __init__(self, args):
        select_layers(args.layers, args.arch or "vgg19")  # a bad pattern is refused before anything is loaded
        check_size(args.size)
        self.args, self.t0 = args, time.perf_counter()
        self.labels = read_labels(args.labels) if args.labels else None
        self.original = f"original.{args.format}"

    def load(self):
        """The network and the layers to draw (call after the images' names are checked)."""
        args = self.args
        self.model = load_model(args.weights, args.size, args.quiet, args.arch)
        self.wanted = select_layers(args.layers, self.model.arch)
        if self.labels is not None and self.model.include_top and len(self.labels) != self.model.layers[-1].out:
            raise MinivggError(f"--labels {args.labels} has {len(self.labels)} names, the network scores "
                               f"{self.model.layers[-1].out} classes")
        if self.labels is not None and not self.model.include_top and not args.quiet:
            print("note: --labels is not used: no top, so no class scores", file=sys.stderr)

    def writers(self, related, on_layer=None, on_image=None):
        draw = {"cmap": self.args.cmap, "norm": self.args.norm, "format": self.args.format}
        return pipeline.Writers(draw, lambda item: self.write_page(item, related), on_layer, on_image)

    def write_page(self, item, related):
        """An image's page, as a one-image run writes it (``related``: with links to sibling pages)."""
        args, layers = self.args, sorted(item.layers)  # writers finish layers in any order
        seconds = time.perf_counter() - (self.t0 if related else item.started)
        settings = {
            "weights": os.path.basename(str(self.model.weights_path)),
            "input": f"{args.size}x{args.size} RGB, from {item.source.name}",
            "grids": f"{sum(len(l.grids) for l in layers)} grids of {len(layers)} layers, {args.cmap}, --norm {args.norm}",
            "time": f"{seconds:.1f} s",
        }
        text = report.page(item.source.name, self.original, layers, item.predictions, args.cmap, args.norm, settings,
                           self.model.arch, related=report.related_html(item.out if related else None))
        report.write_page(item.out / "index.html", text)

    def run(self, items, batch, writers, on_failed=None):
        pipeline.run(self.model, items, self.wanted, batch, writers, load=lambda item: load_input(item.source, self.args.size),
                     prepare=lambda item: prepare_out(item.out), original=self.original, labels=self.labels,
                     on_failed=on_failed)


def run(args):
    """Do the job; returns (the page's path, images that failed, images). Raises MinivggError or OSError."""
    if len(args.images) == 1 and not Path(args.images[0]).is_dir():
        return run_one(args), 0, 1
    return run_many(args)


def run_one(args):
    """One image: its folder and page, as before many images were possible."""
    say = (lambda msg: None) if args.quiet else print
    job = Job(args)
    image = Path(args.images[0])
    if args.layer and not args.quiet:
        print("note: --layer is for many images (the summary page); one image shows every layer", file=sys.stderr)
    x = load_input(image, args.size)  # (S, S, 3) RGB 0..255
    job.load()
    out = Path(args.out) if args.out else Path("activations") / image.stem
    prepare_out(out)  # only now: a bad image or weight file above leaves an earlier run's files as they were
    item = pipeline.Item(image, out, x=x)
    progress = Progress(len(job.wanted) + (1 if job.model.include_top else 0), not args.quiet)
    writers = job.writers(related=True, on_layer=lambda item, name: progress.step(name))
    try:
        job.run([item], 1, writers)
    except BaseException:
        writers.abort()  # the writers quit after the file they are writing; no page is written
        raise
    finally:
        progress.close()
    report.link_related(out)  # pages in sibling folders (features.py, ...) link back
    seconds = time.perf_counter() - job.t0
    if item.predictions:
        say("top-5: " + ", ".join(f"{n} {100 * float(p):.1f}%" for _, n, p in item.predictions))
    say(f"{item.grids} grids of {len(job.wanted)} layers in {out}/ ({seconds:.1f} s)")
    return out / "index.html"


def run_many(args):
    """Many images: a folder each under --out, and a summary page over them."""
    say = (lambda msg: None) if args.quiet else print
    job = Job(args)
    out = Path(args.out) if args.out else Path("activations")
    paths, skipped = find_images(args.images, args.recursive, exclude=out)
    if skipped and not args.quiet:
        print(f"note: skipped {len(skipped)} file(s) that are not images, e.g. {skipped[0]}", file=sys.stderr)
    job.load()
    side = side_layer(args.layer, job.wanted, args.format)
    batch = args.batch or default_batch(args.size)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MinivggError(f"cannot write to {out}: {e.strerror or e}") from None
    items = [pipeline.Item(p, out / name) for p, name in zip(paths, folder_names(paths))]
    progress = ImagesProgress(len(items), not args.quiet)

    def failed(item):
        progress.say(f"error: {item.error}")
        progress.step()

    writers = job.writers(related=False, on_image=lambda item: progress.step())
    page = out / "index.html"
    try:
        job.run(items, batch, writers, on_failed=failed)
    except BaseException as e:
        interrupted = isinstance(e, KeyboardInterrupt)
        main_thread = threading.current_thread() is threading.main_thread()  # only it may set handlers
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None  # a second Ctrl-C waits
        try:
            writers.abort()
            progress.close()
            write_summary(job, items, side, page, batch)  # what is finished, listed
            if interrupted:
                done = sum(item.status == "done" for item in items)
                print(f"{done} of {len(items)} images finished, listed in {page}", file=sys.stderr)
        except OSError:
            pass  # the error being raised says more
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, handler)
        raise
    progress.close()
    write_summary(job, items, side, page, batch)
    done = [item for item in items if item.status == "done"]
    failures = len(items) - len(done)
    say(f"{len(done)} of {len(items)} images in {out}/, batches of {batch} ({time.perf_counter() - job.t0:.1f} s)")
    return page, failures, len(items)


def write_summary(job, items, side, page, batch):
    args = job.args
    settings = {
        "weights": os.path.basename(str(job.model.weights_path)),
        "input": f"{args.size}x{args.size} RGB, batches of {batch}",
        "grids": f"{len(job.wanted)} layers per image, {args.cmap}, --norm {args.norm}",
        "time": f"{time.perf_counter() - job.t0:.1f} s",
    }
    report.write_page(page, summary_page.page(items, side, job.original, settings, job.model.arch))


def main(argv=None):
    args = parse_args(argv)
    result, code = run_command(run, args)
    if code is not None:
        return code
    page, failed, total = result
    print(f"page: {page.resolve()}")
    if failed:
        print(f"error: {failed} of {total} images could not be read (listed on the page)", file=sys.stderr)
        return 1
    return 0
