"""``minivgg-train DATA_DIR``: fine-tune VGG on your own classes, from scratch, step for step as Keras.

    minivgg-train fruit/                                  # a new head on the published conv base, 10 epochs
    minivgg-train fruit/ --train-from block5_conv1 --lr 0.001 --augment --out runs/block5
    minivgg-train fruit/ --val fruit-val/ --head gap --size 160 --optimizer adam
    minivgg-train fruit/ --out runs/fruit --resume        # go on after Ctrl-C, ending where it would have

DATA_DIR holds one folder of images per class (Keras' ``image_dataset_from_directory`` layout);
labels follow the folder names sorted. Validation: ``--val DIR`` (the same class folders) or a seeded
``--val-split`` of DATA_DIR, class by class. A file that looks like an image but cannot be decoded is
skipped and named (here, and on the page).

Writes under ``--out`` (default ``runs/<DATA_DIR name>``): ``model.keras`` (the best epoch; Keras'
``load_model`` and ``minivgg.VGG(weights=...)`` read it), ``classes.txt`` (the class names in label
order, one a line: the other scripts' ``--labels``), ``history.json`` (per epoch: loss, accuracy,
val_loss, val_accuracy, seconds; the best epoch), ``checkpoint.npz`` (after every epoch, for
``--resume``) and ``index.html`` (``page.py``). Ctrl-C keeps the best model so far and the history.
``--resume`` on a finished run trains nothing more and rewrites the page (linking the pages other
scripts have since written under ``--out``).

``--weights``: a Keras weight file, else the published conv base (found or downloaded, 59 MB);
``random`` for He-normal kernels rescaled by LSUV on the training images (``head.lsuv``): random
features that still tell colours and stripes apart, for runs without the published file.

Errors (fewer than two classes, an empty class, a class missing from ``--val``, a bad weight file, an
unwritable ``--out``, a checkpoint of another run with ``--resume``) print ``error: <why>``, exit 1.
"""
import argparse
import json
import sys
from pathlib import Path

from ..errors import MinivggError, run_command
from ..files.atomic import replacing
from ..network.table import ARCHS, MIN_SIZE
from ..network.vgg import VGG16, VGG19
from ..visualize.cli import conv_weights
from . import data, page
from .head import HEADS, lsuv, with_head
from .loop import fit, load_checkpoint
from .optimizers import OPTIMIZERS
from .step import trainable_from

MODELS = {"vgg16": VGG16, "vgg19": VGG19}
DEFAULT_LR = {"sgd": 0.01, "adam": 0.001}  # Keras' defaults
MAX_SIZE = 512


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="minivgg-train", description=__doc__.split("\n")[0].split(": ", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", metavar="DATA_DIR", help="one folder of images per class")
    v = p.add_mutually_exclusive_group()
    v.add_argument("--val", metavar="DIR", help="validation images, in the same class folders")
    v.add_argument("--val-split", type=float, default=0.2, help="share of DATA_DIR held out (default 0.2)")
    p.add_argument("--weights", help="a Keras weight file, or 'random' (default: the published conv base)")
    p.add_argument("--arch", choices=list(ARCHS), default="vgg16")
    p.add_argument("--head", choices=list(HEADS), default="flatten")
    p.add_argument("--hidden", type=int, nargs="*", default=[256], help="hidden dense layers' units (none: 0 args)")
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--train-from", default="head", help="'head' or the lowest layer to train, e.g. block5_conv1")
    p.add_argument("--optimizer", choices=list(OPTIMIZERS), default="sgd")
    p.add_argument("--lr", type=float, help="learning rate (default: Keras', 0.01 for SGD, 0.001 for Adam)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD's momentum")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--patience", type=int, default=3, help="epochs without a better val accuracy before stopping")
    p.add_argument("--size", type=int, default=224, help="images are resized to SIZE x SIZE")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                   help="random crops and flips (default on)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output folder (default runs/<DATA_DIR name>)")
    p.add_argument("--resume", action="store_true", help="go on from --out's checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    return p.parse_args(argv)


def _check(args):
    if not MIN_SIZE <= args.size <= MAX_SIZE:
        raise MinivggError(f"--size must be from {MIN_SIZE} to {MAX_SIZE}, got {args.size}")
    for name, value, least in (("--batch", args.batch, 1), ("--epochs", args.epochs, 1), ("--patience", args.patience, 1)):
        if value < least:
            raise MinivggError(f"{name} must be at least {least}, got {value}")
    if not 0 <= args.dropout < 1:
        raise MinivggError(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.lr is not None and not args.lr > 0:
        raise MinivggError(f"--lr must be positive, got {args.lr}")


def _out_folder(args):
    out = Path(args.out or Path("runs") / Path(args.data).resolve().name)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise MinivggError(f"cannot write to {out}: {e.strerror}") from None
    return out


def _base(args, sample):
    """The conv base: a weight file, the published one, or random + LSUV on ``sample`` (uint8 images)."""
    if args.weights == "random":
        model = MODELS[args.arch](weights=None, include_top=False)
        return lsuv(model, data.preprocess(sample))
    weights = args.weights or conv_weights(args.arch)
    return MODELS[args.arch](weights=weights, include_top=False)


def _write_text(path, text):
    with replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def run(args, log=print):
    _check(args)
    paths, labels, classes = data.read_folder(args.data)
    if args.val:
        tr_paths, tr_labels = paths, labels
        va_paths, va_labels, _ = data.read_folder(args.val, classes)
    else:
        tr_paths, tr_labels, va_paths, va_labels = data.split(paths, labels, args.val_split, args.seed)
    out = _out_folder(args)
    ckpt = out / "checkpoint.npz"
    fingerprint = {k: getattr(args, k) for k in ("arch", "head", "hidden", "dropout", "train_from", "optimizer", "lr",
                                                 "momentum", "batch", "size", "augment", "seed", "weights", "val_split")}
    fingerprint.update(classes=classes, data=str(Path(args.data).resolve()), val=args.val and str(Path(args.val).resolve()))
    resume = None
    if args.resume:
        if not ckpt.exists():
            raise MinivggError(f"--resume: {ckpt} does not exist (nothing to go on from)")
        try:
            resume = load_checkpoint(str(ckpt))
        except (OSError, ValueError, KeyError) as e:
            raise MinivggError(f"--resume: {ckpt} is damaged ({e.__class__.__name__})") from None
        if resume[0].get("fingerprint") != json.loads(json.dumps(fingerprint)):
            raise MinivggError(f"--resume: {ckpt} is the checkpoint of a run with other settings or data")

    pad = round(args.size * data.PAD) if args.augment else args.size
    x_tr, y_tr, _, skipped = data.load_images(tr_paths, tr_labels, pad)
    x_va, y_va, va_kept, skipped_va = data.load_images(va_paths, va_labels, args.size)
    skipped += skipped_va
    for path, why in skipped:
        print(f"skipped: {why}", file=sys.stderr)
    for name, y in (("training", y_tr), ("validation", y_va)):
        empty = [c for i, c in enumerate(classes) if not (y == i).any()]
        if empty:
            raise MinivggError(f"class {empty[0]!r} has no readable {name} image")

    base = _base(args, data.center(x_tr[:32], args.size))
    model = with_head(base, classes, args.head, tuple(args.hidden), args.dropout, args.seed, size=(args.size,) * 2)
    trainable = trainable_from(model, args.train_from)
    opt_cls = OPTIMIZERS[args.optimizer]
    lr = args.lr or DEFAULT_LR[args.optimizer]
    optimizer = opt_cls(lr, momentum=args.momentum) if args.optimizer == "sgd" else opt_cls(lr)
    if not args.quiet:
        log(f"{len(classes)} classes, {len(y_tr)} training and {len(y_va)} validation images at {args.size}x{args.size}; "
            f"training {', '.join(trainable)} ({args.optimizer}, lr {lr})")
    settings = dict(epochs=args.epochs, batch=args.batch, patience=args.patience, size=args.size,
                    augment=args.augment, seed=args.seed, quiet=args.quiet, fingerprint=fingerprint)
    run_state = {}
    interrupted = False
    try:
        fit(model, (x_tr, y_tr), (x_va, y_va), optimizer, trainable, settings, str(out), run_state, log, resume)
    except KeyboardInterrupt:
        interrupted = True
    history, best = run_state.get("history", []), run_state.get("best_epoch", 0)
    if best:
        model.save(out / "model.keras")
    _write_text(out / "classes.txt", "".join(c + "\n" for c in classes))
    _write_text(out / "history.json", json.dumps({"classes": classes, "epochs": history, "best_epoch": best}, indent=1))
    if "val_logits" in run_state:
        page.write(out, model, history, best, classes, run_state["val_logits"], y_va, x_va, va_kept, skipped, args)
    if interrupted:
        raise KeyboardInterrupt
    return out


def main(argv=None):
    args = parse_args(argv)
    out, code = run_command(run, args, "interrupted: the best epoch so far and the history are kept; --resume goes on")
    if code is not None:
        return code
    print(f"page: {(out / 'index.html').resolve()}")
    return 0
