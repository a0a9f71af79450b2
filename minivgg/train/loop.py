"""Epochs: batches of steps, validation, early stopping, checkpoints, and resuming.

Legend: N images, B batch, U classes.

    for epoch in 1 ..:
        shuffle (seeded by seed and epoch) -> batches of B -> step() each      (progress bar)
        validate: loss, accuracy (top-5 too with more than 5 classes)          (one line)
        better val accuracy than before? keep these weights as the best
        no better for ``patience`` epochs? stop (Keras' EarlyStopping(restore_best_weights=True))
        checkpoint: weights, optimiser state, history, best so far            (atomic)

Everything random is drawn from (seed, epoch[, batch]): the order, the crops and flips, the dropout
masks. So an epoch run again from its checkpoint is the epoch an uninterrupted run ran, and
``--resume`` ends where the uninterrupted run would have.

The frozen base runs once. The layers below the lowest trainable one never change, so their output
for an image is the same every epoch: the validation images' (always) and, without augmentation, the
training images' are computed once (``base_outputs``) and each step starts from them
(``step(start=...)``). Later epochs then cost only the trainable layers. Above ``MEMMAP_BYTES`` the
cache is a memory-mapped file in the output folder, removed at the end.
"""
import json
import os
import sys
import time

import numpy as np

from ..files.atomic import save_npz
from ..jit import passes
from .data import augment, center, preprocess
from .loss import accuracy, cross_entropy
from .step import predict_logits, set_weights, step

MEMMAP_BYTES = 512 << 20  # a cache larger than this goes to a memory-mapped file


def _seed(*parts):
    """One 32-bit seed from several integers (seed, epoch, batch): independent streams for each."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def base_outputs(model, images, size, start, batch, folder=None, name="cache"):
    """The input of layer ``start`` for every image (uint8 (N, P, P, 3), centre-cropped to ``size``):
    (N, ...) float32, in memory or a memory-mapped file in ``folder`` when large."""
    names = [row.name for row in model.layers]
    below = names[names.index(start) - 1]  # the last frozen row: its output is start's input
    out = None
    with passes():  # BLAS and memory settings, once for all the batches (jit.py)
        for i in range(0, len(images), batch):
            x = preprocess(center(images[i:i + batch], size))  # (B, S, S, 3)
            a = model.output(x, below)  # depth-first through the large maps (vgg.py)
            if out is None:
                shape, nbytes = (len(images),) + a.shape[1:], len(images) * a[0].nbytes
                if folder is not None and nbytes > MEMMAP_BYTES:
                    out = np.lib.format.open_memmap(os.path.join(folder, f".{name}.npy"), "w+", np.float32, shape)
                else:
                    out = np.empty(shape, np.float32)
            out[i:i + len(a)] = a
    return out


class Progress:
    """A one-line progress bar on stderr (a terminal only): batches, loss, accuracy, time left."""

    def __init__(self, epoch, epochs, total, quiet):
        self.epoch, self.epochs, self.total = epoch, epochs, total
        self.show = not quiet and sys.stderr.isatty()
        self.t0 = time.perf_counter()

    def update(self, done, loss, acc):
        if not self.show:
            return
        spent = time.perf_counter() - self.t0
        left = spent / done * (self.total - done)
        bar = "#" * round(20 * done / self.total)
        sys.stderr.write(f"\repoch {self.epoch}/{self.epochs} [{bar:<20}] {done}/{self.total}  loss {loss:.4f}  "
                         f"accuracy {acc:.3f}  {left:4.0f} s left ")
        sys.stderr.flush()

    def close(self):
        if self.show:
            sys.stderr.write("\r" + " " * 90 + "\r")


def evaluate(model, x, y, start=None, batch=32):
    """(loss, top-1, top-5, logits) on a validation set (images or cached inputs of ``start``)."""
    z = predict_logits(model, x, batch, start=start)
    loss, _ = cross_entropy(z, y)
    return loss, accuracy(z, y), accuracy(z, y, 5), z


def save_checkpoint(path, model, trainable, optimizer, state, best):
    """Write the run's state to ``path`` atomically: trainable weights, the best ones, the optimiser's
    moments, and ``state`` (a JSON-able dict: history, best epoch, epochs without progress)."""
    arrays = {"state": np.frombuffer(json.dumps(state).encode(), np.uint8)}
    for name in trainable:
        arrays[f"w/{name}/kernel"], arrays[f"w/{name}/bias"] = model.params[name]
    for name, (k, b) in (best or {}).items():
        arrays[f"best/{name}/kernel"], arrays[f"best/{name}/bias"] = k, b
    arrays.update((f"opt/{k}", v) for k, v in optimizer.state().items())
    save_npz(path, arrays)


def load_checkpoint(path):
    """(state, weights {name: (k, b)}, best {name: (k, b)}, optimiser state) from ``save_checkpoint``'s file."""
    with np.load(path) as f:
        state = json.loads(bytes(f["state"]).decode())
        groups = {"w": {}, "best": {}, "opt": {}}
        for key in f.files:
            if key != "state":
                kind, rest = key.split("/", 1)
                groups[kind][rest] = f[key]
    pair = lambda d: {n.rsplit("/", 1)[0]: (d[n.rsplit("/", 1)[0] + "/kernel"], d[n.rsplit("/", 1)[0] + "/bias"])
                      for n in d}
    return state, pair(groups["w"]), pair(groups["best"]), groups["opt"]


def fit(model, train, val, optimizer, trainable, settings, out, run, log=print, resume=None):
    """Train ``model`` in place, the best epoch's weights put back at the end.

    - train: (images uint8 (N, P, P, 3), labels); val: (images uint8 (M, S, S, 3), labels)
    - trainable: the weighted layers to train, in model order
    - settings: dict with epochs, batch, patience, size, augment, seed, quiet, and "fingerprint" (what
      a checkpoint must match on --resume)
    - out: the output folder (checkpoint.npz, caches); resume: ``load_checkpoint``'s tuple or None
    - run: a dict this fills as it goes: "history" (a record per epoch), "best_epoch", "val_logits"
      (of the best weights, at the end). On Ctrl-C (KeyboardInterrupt) the best weights so far are put
      back, ``run`` holds what was done, and the exception goes on.
    """
    epochs, batch, size = settings["epochs"], settings["batch"], settings["size"]
    names = [row.name for row in model.layers]
    start = trainable[0] if names.index(trainable[0]) > 0 else None  # the lowest trainable layer
    history, best_epoch, best_acc, wait, first, best = [], 0, -1.0, 0, 1, None
    if resume is not None:
        state, weights, best, opt_state = resume
        history, best_epoch, best_acc, wait = state["history"], state["best_epoch"], state["best_acc"], state["wait"]
        first = len(history) + 1
        set_weights(model, weights)
        optimizer.load_state(opt_state)
        best = best or None
    run.update(history=history, best_epoch=best_epoch)
    t_cache = time.perf_counter()  # the frozen base's pass over every image counts in this process's first epoch
    x_val = base_outputs(model, val[0], size, start, batch, out, "val") if start else preprocess(val[0])
    x_train = None
    if start and not settings["augment"]:
        x_train = base_outputs(model, train[0], size, start, batch, out, "train")
    t_cache = time.perf_counter() - t_cache
    ckpt = os.path.join(out, "checkpoint.npz")
    n = len(train[1])
    try:
        for epoch in range(first, epochs + 1):
            if wait >= settings["patience"]:
                break  # a resumed run that had already stopped early
            t0 = time.perf_counter()
            rng = np.random.default_rng(_seed(settings["seed"], epoch))
            order = rng.permutation(n)
            steps = (n + batch - 1) // batch
            bar = Progress(epoch, epochs, steps, settings["quiet"])
            loss_sum = correct = seen = 0.0
            with passes():  # BLAS and memory settings, once for the epoch's steps (jit.py)
                for b in range(steps):
                    idx = order[b * batch:(b + 1) * batch]
                    if x_train is not None:  # the frozen base's outputs, cached: the step runs the rest only
                        xb = x_train[idx]
                    else:  # images; the frozen rows run forward only, inside the step
                        imgs = augment(train[0][idx], size, rng) if settings["augment"] else center(train[0][idx], size)
                        xb = preprocess(imgs)
                    loss, z = step(model, xb, train[1][idx], optimizer, trainable, seed=_seed(settings["seed"], epoch, b),
                                   start=start if x_train is not None else None, return_logits=True)
                    loss_sum, seen = loss_sum + loss * len(idx), seen + len(idx)
                    correct += accuracy(z, train[1][idx]) * len(idx)
                    bar.update(b + 1, loss_sum / seen, correct / seen)
            bar.close()
            val_loss, val_acc, val_top5, _ = evaluate(model, x_val, val[1], start, batch)
            record = {"epoch": epoch, "loss": loss_sum / n, "accuracy": correct / n, "val_loss": val_loss,
                      "val_accuracy": val_acc}
            if len(model.classes) > 5:
                record["val_top5_accuracy"] = val_top5
            record["seconds"] = time.perf_counter() - t0 + (t_cache if epoch == first else 0.0)
            history.append(record)
            if val_acc > best_acc:
                best_epoch, best_acc, wait = epoch, val_acc, 0
                best = {name: tuple(a.copy() for a in model.params[name]) for name in trainable}
            else:
                wait += 1
            run["best_epoch"] = best_epoch
            if not settings["quiet"]:
                top5 = f"  val top-5 {val_top5:.3f}" if len(model.classes) > 5 else ""
                log(f"epoch {epoch}/{epochs}  loss {record['loss']:.4f}  accuracy {record['accuracy']:.3f}  "
                    f"val loss {val_loss:.4f}  val accuracy {val_acc:.3f}{top5}  ({record['seconds']:.1f} s)"
                    + ("  best" if best_epoch == epoch else ""))
            state = {"history": history, "best_epoch": best_epoch, "best_acc": best_acc, "wait": wait,
                     "fingerprint": settings.get("fingerprint")}
            save_checkpoint(ckpt, model, trainable, optimizer, state, best)
            if wait >= settings["patience"]:
                if not settings["quiet"]:
                    log(f"early stop: no better val accuracy for {wait} epochs; best epoch {best_epoch}")
                break
    finally:
        if best is not None:  # the best epoch's weights, as EarlyStopping(restore_best_weights=True)
            set_weights(model, best)
        for name in ("train", "val"):
            cache = os.path.join(out, f".{name}.npy")
            if os.path.exists(cache):
                os.remove(cache)  # a mapped cache stays readable until it is dropped
    run["val_logits"] = evaluate(model, x_val, val[1], start, batch)[3]
