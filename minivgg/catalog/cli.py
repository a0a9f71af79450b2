"""``minivgg-catalog IMAGES...``: which parts of your images make each channel fire most.

    minivgg-catalog photos/                                   # -> activations/catalog/index.html, 13 conv layers, top 9
    minivgg-catalog photos/ --layers block3_conv1,block5_conv3 --top 16 --json catalog.json --projections
    minivgg-catalog photos/ --shard 2/3 --out part2           # one of three shards (on another machine)
    minivgg-catalog --merge part1 part2 part3 --out catalog   # ... merged: the catalogue one run makes

IMAGES: files and folders as ``minivgg-visualize`` takes them (``files/image_files.py``; subfolders with
``--recursive``), in that order: the run's order. Each image is loaded and preprocessed as
visualize.py does (``--size`` square, 224 by default), and streamed through the conv layers
``--batch`` at a time (``stream.py``); per channel of each chosen layer the scan keeps the ``--top``
images with the largest maxima (``scan.py``). Then, for the winners only: their patches (the
receptive field of the unit, ``patches.py``), a sprite sheet per 64 channels, ``--json FILE``, and the
pages (``page.py``): ``<out>/index.html`` and a page per layer.

Large sets: a progress bar (images, per second, time left); the state (``catalog-state.npz`` in
``--out``) is saved every ``--save-every`` images and on Ctrl-C (exit 130); the same command again
resumes where it stopped and gives what one run gives. A changed command (other layers, weights,
images, size, top) refuses to resume, in one line. ``--shard I/N`` scans every N-th image from the I-th
and writes only its state; ``--merge DIRS --out DIR`` merges finished shards and makes the catalogue.

Errors: a file that is not a readable image is reported in one line and listed on the index page, the
others are done, exit 1; bad options, weights or an unwritable ``--out``: ``error: <why>``, exit 1.
"""
import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import MinivggError, run_command
from ..files.atomic import replacing
from ..files.image_files import find_images
from ..files.preprocess import preprocess_input
from ..network.receptive_field import receptive_field
from ..network.table import ARCHS, MIN_SIZE, TOP_SIZE, conv_base, shapes
from ..visualize import report
from ..visualize.cli import MODELS, ImagesProgress, conv_weights, load_input, positive_int
from . import page as pages
from .patches import PER_SHEET, Sheets, cut_many, projection_image
from .scan import HIST_EDGES, STATE_FILE, State, load_state, merge_states
from .stream import decoded, scan

DEFAULT_OUT, DEFAULT_TOP, DEFAULT_BATCH, SAVE_EVERY = "activations/catalog", 9, 8, 256  # beside visualize/features pages
CACHE = 512  # images kept in memory while the sheets are drawn (224x224: 150 kB each)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="minivgg-catalog",
        description="For every channel of VGG16 (or VGG19) conv layers, the images and the parts of them "
                    "where it fires most, as a page (Zeiler & Fergus 2014, fig. 2).",
        epilog="The last line printed is the page's path. Errors: 'error: <why>' on stderr, exit status 1.")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders of them")
    p.add_argument("--layers", default="conv", help="comma-separated layer names, 'all' (conv and pool layers) "
                                                    "or 'conv' (every conv layer, the default)")
    p.add_argument("--top", type=positive_int, default=DEFAULT_TOP, help=f"images per channel (default {DEFAULT_TOP})")
    p.add_argument("--out", help=f"output folder (default {DEFAULT_OUT}/)")
    p.add_argument("--json", metavar="FILE", help="also write the catalogue as JSON")
    p.add_argument("--weights", help="a Keras VGG16 or VGG19 file (default: the published conv layers)")
    p.add_argument("--arch", choices=tuple(ARCHS), help="vgg16 or vgg19 (default: what --weights holds)")
    p.add_argument("--size", type=int, default=TOP_SIZE, help=f"images are resized to SIZE x SIZE (default {TOP_SIZE})")
    p.add_argument("--batch", type=positive_int, default=DEFAULT_BATCH, help=f"images per pass (default {DEFAULT_BATCH})")
    p.add_argument("--recursive", action="store_true", help="look into subfolders too")
    p.add_argument("--projections", action="store_true", help="beside each patch, its deconvnet projection")
    p.add_argument("--shard", metavar="I/N", help="scan every N-th image from the I-th (1..N); merge with --merge")
    p.add_argument("--merge", nargs="+", metavar="DIR", help="merge the scans in these folders into --out")
    p.add_argument("--save-every", type=positive_int, default=SAVE_EVERY,
                   help=f"save the scan's state every this many images (default {SAVE_EVERY})")
    p.add_argument("--quiet", action="store_true", help="print only the page's path (and errors)")
    args = p.parse_args(argv)
    if bool(args.images) == bool(args.merge):
        p.error("give IMAGES to scan, or --merge DIRS (not both)")
    return args


def select_layers(spec, arch):
    """The layer names of ``--layers`` in table order: 'conv', 'all' or a comma-separated list."""
    rows = conv_base(arch)
    if spec == "conv":
        return [r.name for r in rows if r.kind == "conv"]
    if spec == "all":
        return [r.name for r in rows]
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    names = [r.name for r in rows]
    bad = [w for w in wanted if w not in names]
    if bad or not wanted:
        raise MinivggError(f"--layers: {bad[0] if bad else spec!r} is not a conv or pool layer of {arch} "
                           f"({names[0]} ... {names[-1]})")
    return [n for n in names if n in wanted]


def parse_shard(spec):
    try:
        i, n = (int(v) for v in spec.split("/"))
    except ValueError:
        raise MinivggError(f"--shard {spec!r}: expected I/N, e.g. 2/4") from None
    if not 1 <= i <= n:
        raise MinivggError(f"--shard {spec!r}: I must be from 1 to N")
    return i, n


def load_model(weights, arch):
    """The conv layers of the network (any head left out: the catalogue needs conv and pool layers only)."""
    if weights is None:
        weights = conv_weights(arch or "vgg16")
    return MODELS[arch](weights=weights, include_top=False, batch_invariant=True)


def weights_id(path):
    """What identifies a weight file for a resume: its full path, size and modification time."""
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


def key_of(model, layers, args, images, shard):
    return {"arch": model.arch, "weights": weights_id(model.weights_path), "layers": layers, "top": args.top,
            "size": args.size, "images": len(images), "image_list": _digest(images), "shard": shard}


def _digest(images):
    return hashlib.sha256("\n".join(images).encode()).hexdigest()[:16]


def check_resume(old, key, path):
    if old.key != key:
        diff = [k for k in key if old.key.get(k) != key.get(k)]
        raise MinivggError(f"{path} holds a scan made with other settings ({', '.join(diff)}): "
                           "run the same command to resume it, or delete it (or choose another --out) to start over")


def writable(out):
    try:
        (out / "sheets").mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out)
        os.close(fd)
        os.remove(tmp)
    except OSError as e:
        raise MinivggError(f"cannot write to {out}: {e.strerror or e}") from None


def run(args):
    """Returns (the page's or state's path, failed images, images, interrupted)."""
    say = (lambda msg: None) if args.quiet else print
    t0 = time.perf_counter()
    out = Path(args.out or DEFAULT_OUT)
    if args.size < MIN_SIZE:
        raise MinivggError(f"--size {args.size} is too small: VGG16 needs at least {MIN_SIZE}")
    if args.merge:
        states = [load_state(Path(d) / STATE_FILE) for d in args.merge]
        state = merge_states(states)
        writable(out)
        model = load_model(state.key["weights"][0], state.key["arch"]) if args.projections else None
        state.save(out / STATE_FILE)
        page = finish(state, out, args, model)
        say(f"{len(states)} scans merged: {state.scanned} images in {out}/ ({time.perf_counter() - t0:.1f} s)")
        return page, len(state.failed), len(state.images), False

    shard = parse_shard(args.shard) if args.shard else None
    select_layers(args.layers, args.arch or "vgg19")  # a bad name is refused before anything is loaded (VGG19's names include VGG16's)
    paths, skipped = find_images(args.images, args.recursive, exclude=out)
    if skipped and not args.quiet:
        print(f"note: skipped {len(skipped)} file(s) that are not images, e.g. {skipped[0]}", file=sys.stderr)
    images = [str(p) for p in paths]
    model = load_model(args.weights, args.arch)
    layers = select_layers(args.layers, model.arch)
    key = key_of(model, layers, args, images, list(shard) if shard else None)
    indices = list(range(len(images)))[shard[0] - 1::shard[1]] if shard else list(range(len(images)))
    writable(out)
    state_path = out / STATE_FILE
    if state_path.exists():
        state = load_state(state_path)
        check_resume(state, key, state_path)
        if state.done and not args.quiet:
            print(f"resuming: {state.done} of {len(state.indices)} images already scanned", file=sys.stderr)
    else:
        channels = {row.name: shape[3] for row, shape, _ in shapes(model.layers, args.size, args.size) if row.name in layers}
        state = State(key, images, indices, channels, args.top)
    progress = ImagesProgress(len(state.indices) - state.done, not args.quiet)

    def failed(index, why):
        progress.say(f"error: {why}")
        progress.step()

    try:
        interrupted = scan(model, state, lambda p: network_input(p, args.size), args.batch,
                           save=lambda: state.save(state_path), every=args.save_every,
                           on_image=progress.step, on_failed=failed)
    finally:
        progress.close()
    state.save(state_path)
    if interrupted:
        print(f"interrupted: {state.done} of {len(state.indices)} images scanned, saved in {state_path}; "
              "the same command resumes", file=sys.stderr)
        return state_path, 0, len(state.indices), True
    if shard:
        say(f"shard {shard[0]}/{shard[1]}: {state.scanned} images scanned in {out}/ "
            f"({time.perf_counter() - t0:.1f} s); merge the shards with --merge")
        return state_path, len(state.failed), len(state.indices), False
    page = finish(state, out, args, model)
    say(f"{state.scanned} images, {len(layers)} layers, top {args.top} in {out}/ ({time.perf_counter() - t0:.1f} s)")
    return page, len(state.failed), len(state.images), False


def network_input(path, size):
    """(size, size, 3) float32, preprocessed as visualize.py's images are."""
    return np.ascontiguousarray(preprocess_input(load_input(path, size)))


def catalogue_json(state, rfs):
    """The catalogue as the JSON --json writes (see the issue's format)."""
    S = state.key["size"]
    layers = {}
    for name, s in state.layers.items():
        fires = state.fires(name)
        layers[name] = [{
            "channel": c, "fires": round(float(fires[c]), 6), "histogram": s.hist[c].tolist(),
            "top": [{"image": i, "value": v, "row": r, "col": q, "box": list(rfs[name].box(r, q, shape=(S, S)))}
                    for v, i, r, q in s.top.entries(c)]} for c in range(len(s.fires))]
    return {"arch": state.key["arch"], "size": S, "top": state.key["top"], "images": state.images,
            "failed": {str(i): why for i, why in sorted(state.failed.items())},
            "histogram_edges": [float(e) for e in HIST_EDGES],
            "layers": layers}


def write_json(path, data):
    text = json.dumps(data)  # one string: json.dump would encode in pure Python, ~10x slower here
    with replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def finish(state, out, args, model=None):
    """The winners' patches on sprite sheets, the JSON and the pages; returns index.html's path."""
    arch, S = state.key["arch"], state.key["size"]
    rows = conv_base(arch)
    rfs = {name: receptive_field(rows, name) for name in state.layers}
    if args.json:
        try:
            write_json(args.json, catalogue_json(state, rfs))
        except OSError as e:
            raise MinivggError(f"cannot write --json {args.json}: {e.strerror or e}") from None
    out_shapes = {row.name: shape for row, shape, _ in shapes(rows, S, S, batch=1)}
    cache = {}  # image index -> (S, S, 3) uint8, at most CACHE

    def images_of(indices):
        """{index: (S, S, 3) uint8} for these images: from the cache, or decoded (then cached, oldest out)."""
        found = {i: cache[i] for i in indices if i in cache}
        missing = [i for i in indices if i not in found]
        for pos, x in decoded([state.images[i] for i in missing], lambda p: load_input(p, S)):
            if isinstance(x, MinivggError):
                raise MinivggError(f"{x} (it was scanned: did it change since?)")
            while len(cache) >= CACHE:
                cache.pop(next(iter(cache)))
            found[missing[pos]] = cache[missing[pos]] = x.astype(np.uint8)
        return found

    names = {i: os.path.basename(p) for i, p in enumerate(state.images)}
    pending = []  # the sheet being written, encoded as JPEG by the writer thread while the next one is cut
    with ThreadPoolExecutor(1, thread_name_prefix="catalog-sheets") as writer:
        for layer, s in state.layers.items():
            C = len(s.fires)
            rf = rfs[layer]
            sheets = Sheets(layer, rf.size, C, s.top.k)
            proj = Sheets(layer, rf.size, C, s.top.k, suffix="-proj") if model is not None and args.projections else None
            for n in range(sheets.count):
                entries = [(c, e, *entry) for c in range(n * PER_SHEET, min(C, (n + 1) * PER_SHEET))
                           for e, entry in enumerate(s.top.entries(c))]  # (channel, slot, value, image, row, col)
                for start in range(0, len(entries), CACHE // 2):
                    chunk = entries[start:start + CACHE // 2]
                    imgs = images_of(sorted({i for _, _, _, i, _, _ in chunk}))
                    if not chunk:
                        continue
                    sheets.paste([(c, e) for c, e, *_ in chunk],
                                 cut_many(imgs, rf, [(i, r, q) for _, _, _, i, r, q in chunk]))  # (M, R, R, 3)
                    if proj is not None:
                        done = list(projections(model, layer, out_shapes[layer], chunk, imgs, args.batch))
                        proj.paste([(c, e) for c, e, *_ in done], np.stack([projection_image(g, rf, r, q) for _, _, r, q, g in done]))
                if pending:
                    pending.pop().result()  # one sheet in the writer at a time: memory stays at two sheets
                pending.append(writer.submit(_save_sheets, out, n, sheets, proj))
            features = {}
            for c, f in pages.feature_images(out, layer, C).items():
                dest = out / "sheets" / f"features-{layer}_{c}.png"
                write_bytes(dest, Path(f).read_bytes())
                features[c] = f"sheets/{dest.name}"
            report.write_page(out / f"{layer}.html", pages.layer_page(state, layer, rf, sheets, proj, names, features, ""))
        for job in pending:
            job.result()  # raises what the last save raised
    settings = {
        "weights": os.path.basename(str(state.key["weights"][0])),
        "input": f"{S}x{S} RGB", "entries": f"top {state.key['top']} images per channel",
        "images": f"{state.scanned} scanned, {len(state.failed)} could not be read",
    }
    page = out / "index.html"
    report.write_page(page, pages.index_page(state, rfs, settings, report.related_html(out)))
    report.link_related(out)
    return page


def _save_sheets(out, n, sheets, proj):
    sheets.save(out, n)
    if proj is not None:
        proj.save(out, n)


def write_bytes(path, data):
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def projections(model, layer, shape, chunk, imgs, batch):
    """Deconvnet projections of the chunk's units, ``batch`` at a time: yields (channel, slot, row, col,
    (S, S, 3) gradient of that one unit w.r.t. the input)."""
    _, h, w, C = shape
    for start in range(0, len(chunk), batch):
        part = chunk[start:start + batch]
        x = np.stack([preprocess_input(imgs[i].astype(np.float32)) for _, _, _, i, _, _ in part])  # (N, S, S, 3)
        dy = np.zeros((len(part), h, w, C), np.float32)  # (N, H', W', C): one unit each
        for n, (c, _, _, _, r, q) in enumerate(part):
            dy[n, r, q, c] = 1.0
        g = model.gradients(x, {layer: dy}, relu="deconvnet", input=True)["input"]  # (N, S, S, 3)
        for n, (c, e, _, _, r, q) in enumerate(part):
            yield c, e, r, q, g[n]


def main(argv=None):
    args = parse_args(argv)
    result, code = run_command(run, args)
    if code is not None:
        return code
    page, failed, total, interrupted = result
    if interrupted:
        return 130
    print(f"{'page' if page.suffix == '.html' else 'scan'}: {page.resolve()}")
    if failed:
        print(f"error: {failed} of {total} images could not be read (listed on the page)", file=sys.stderr)
        return 1
    return 0
