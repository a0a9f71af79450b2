"""The scan: for every channel of the chosen layers, the images where it fires most, in one pass.

Legend: N batch, H', W' a layer's map, C channels, K the --top entries kept per channel, M candidates.

Per image and channel the scan keeps one entry: the channel's largest activation anywhere in the image
and its unit (row, col), the first in row-major order on a tie (``image_maxima``). Per channel it keeps
the K best entries seen so far (``TopK``): larger value first, and on equal values the image that
comes first in the run's order. That order is total (an image has one entry per channel), so
merging two TopKs keeps the K best of their union whatever was merged first: shards of a run, a
resumed run and an uninterrupted one give the same lists entry for entry. Memory is K entries per
channel whatever the number of images, plus per channel a count of the images it fires on (maximum
> 0) and a histogram of its maxima on fixed bins (``HIST_EDGES``), both sums, so they merge too.

``top_k_naive`` is the twin: every entry of every image kept, sorted once; ``image_maxima_naive``
(NumPy's argmax) is ``image_maxima``'s.

``State`` is all of it for one run (or one shard): the TopKs, the counts, which images are done and
which failed, and the ``key`` (the command's settings) that a resumed run must match. ``save`` writes
it to one ``.npz`` file atomically (a temporary file, then os.replace), ``load_state`` reads it back.
"""
import json
import os

import numba
import numpy as np

from ..errors import MinivggError
from ..files.atomic import save_npz
from ..jit import PARALLEL

STATE_FILE = "catalog-state.npz"
# Histogram of a channel's per-image maxima: bin 0 is "<= 0" (the channel did not fire), then powers of
# two from 1/16 to 16384 (VGG16's largest activations on photos are a few thousand), the last bin open.
HIST_EDGES = np.concatenate([[0.0], 2.0 ** np.arange(-4, 15)])  # 20 edges -> 21 bins
BINS = len(HIST_EDGES) + 1


def image_maxima_naive(act):
    """Each image's largest activation per channel and where it is, in NumPy: the twin of ``image_maxima``.

    act: (N, H', W', C). Returns value (N, C) float32, row (N, C) and col (N, C) int64: the first unit
    in row-major order that holds the maximum (np.argmax returns the first).
    """
    N, h, w, C = act.shape
    flat = act.reshape(N, h * w, C)  # (N, H'*W', C), rows of the map one after another
    at = flat.argmax(axis=1)  # (N, C) index of the first maximum
    value = np.take_along_axis(flat, at[:, None, :], axis=1)[:, 0]  # (N, C)
    return value, at // w, at % w


CHANNELS_PER_TASK = 16  # one 64-byte cache line of float32 channels per unit: a task's share of a row


@numba.njit(**PARALLEL)
def _image_maxima(flat, value, at):
    # flat: (N, P, C), P = H'*W' units in row-major order; value (N, C) float32, at (N, C) int64 out.
    # One task per image and block of CHANNELS_PER_TASK channels: it walks the P units in order and keeps,
    # per channel, the largest value and the first unit that holds it (strictly greater replaces).
    N, P, C = flat.shape
    blocks = (C + CHANNELS_PER_TASK - 1) // CHANNELS_PER_TASK
    for task in numba.prange(N * blocks):
        n, c0 = task // blocks, (task % blocks) * CHANNELS_PER_TASK
        c1 = min(C, c0 + CHANNELS_PER_TASK)
        best = flat[n, 0, c0:c1].copy()  # (c1 - c0,) the first unit's values
        where = np.zeros(c1 - c0, np.int64)
        for p in range(1, P):
            row = flat[n, p, c0:c1]
            for c in range(c1 - c0):
                if row[c] > best[c]:
                    best[c] = row[c]
                    where[c] = p
        value[n, c0:c1] = best
        at[n, c0:c1] = where


def image_maxima(act):
    """Each image's largest activation per channel and where it is: the same as ``image_maxima_naive``
    (tests/test_catalog.py), in one parallel pass over the activations instead of NumPy's argmax along a
    strided axis (measured 5-10x faster on VGG16's maps: docs/catalog.md).

    act: (N, H', W', C) float32 without NaN (a NaN would be the maximum for np.argmax, never here).
    Returns value (N, C) float32, row (N, C) and col (N, C) int64: the first unit in row-major order that
    holds the maximum.
    """
    N, h, w, C = act.shape
    if h * w == 0:
        raise ValueError(f"an activation map needs at least one unit, got {act.shape}")
    flat = np.ascontiguousarray(act, dtype=np.float32).reshape(N, h * w, C)  # (N, H'*W', C)
    value, at = np.empty((N, C), np.float32), np.empty((N, C), np.int64)
    _image_maxima(flat, value, at)
    return value, at // w, at % w


class TopK:
    """The K best (value, image, row, col) of each of C channels; empty slots have image -1."""

    def __init__(self, channels, k):
        self.value = np.full((channels, k), -np.inf, np.float32)  # (C, K), best first
        self.image = np.full((channels, k), -1, np.int64)  # (C, K) index into the run's image list
        self.row = np.zeros((channels, k), np.int64)
        self.col = np.zeros((channels, k), np.int64)

    @property
    def k(self):
        return self.value.shape[1]

    def merged(self, value, image, row, col):
        """A new TopK: the K best of this one and candidates value, image, row, col, each (C, M)."""
        v = np.concatenate([self.value, value], axis=1)  # (C, K + M)
        i = np.concatenate([self.image, image], axis=1)
        # order: larger value first, then smaller image index; empty slots (-inf) last (np.lexsort: last key first)
        order = np.lexsort((np.where(i < 0, np.iinfo(np.int64).max, i), -v), axis=1)[:, :self.k]  # (C, K)
        out = TopK.__new__(TopK)
        out.value = np.take_along_axis(v, order, axis=1)
        out.image = np.take_along_axis(i, order, axis=1)
        out.row = np.take_along_axis(np.concatenate([self.row, row], axis=1), order, axis=1)
        out.col = np.take_along_axis(np.concatenate([self.col, col], axis=1), order, axis=1)
        return out

    def merged_with(self, other):
        return self.merged(other.value, other.image, other.row, other.col)

    def entries(self, c):
        """Channel c's entries, best first: [(value, image, row, col)], without empty slots."""
        return [(float(v), int(i), int(r), int(q)) for v, i, r, q in
                zip(self.value[c], self.image[c], self.row[c], self.col[c]) if i >= 0]


def top_k_naive(acts, k):
    """The twin of a scan of one layer: acts, a list of (H', W', C) activations, image i = acts[i].

    Every unit of every image is kept; per channel, per image, the maximum and its first position;
    then all images sorted by (-value, image). Returns [[(value, image, row, col)] * <= k] * C.
    """
    C = acts[0].shape[-1]
    out = []
    for c in range(C):
        entries = []
        for i, a in enumerate(acts):
            m = a[:, :, c]
            r, q = divmod(int(np.argmax(m)), m.shape[1])  # the first maximum, row-major
            entries.append((float(m[r, q]), i, r, q))
        entries.sort(key=lambda e: (-e[0], e[1]))
        out.append(entries[:k])
    return out


class LayerStats:
    """One layer's TopK, fire counts (C,) and histograms (C, BINS) of the per-image maxima."""

    def __init__(self, channels, k):
        self.top = TopK(channels, k)
        self.fires = np.zeros(channels, np.int64)  # images whose maximum is > 0
        self.hist = np.zeros((channels, BINS), np.int64)

    def updated(self, value, row, col, images):
        """A new LayerStats with a batch added: value, row, col (N, C) from image_maxima, images (N,) indices."""
        N, C = value.shape
        new = LayerStats.__new__(LayerStats)
        new.top = self.top.merged(value.T, np.broadcast_to(np.asarray(images, np.int64)[None], (C, N)), row.T, col.T)
        new.fires = self.fires + (value > 0).sum(axis=0)
        bins = np.searchsorted(HIST_EDGES, value, side="left")  # (N, C): 0 for <= 0, ...
        new.hist = self.hist.copy()
        np.add.at(new.hist, (np.broadcast_to(np.arange(C), (N, C)), bins), 1)
        return new

    def merged_with(self, other):
        new = LayerStats.__new__(LayerStats)
        new.top, new.fires, new.hist = self.top.merged_with(other.top), self.fires + other.fires, self.hist + other.hist
        return new


class State:
    """A run's (or a shard's) scan so far.

    - key: the settings a resume must match (arch, weights, layers, top, size, images)
    - images: every image of the run, as strings, in the run's order; ``indices``: the ones this
      shard scans (all of them without --shard); ``done``: how many of ``indices`` are finished
    - failed: {image index: the one-line reason}
    - layers: {layer name: LayerStats}
    """

    def __init__(self, key, images, indices, channels, k):
        self.key, self.images, self.indices = key, list(images), list(indices)
        self.done, self.failed = 0, {}
        self.layers = {name: LayerStats(c, k) for name, c in channels.items()}

    def commit(self, layers, done, failed):
        """A batch finished: its LayerStats, the new count of images done, the batch's failures."""
        self.layers, self.done, self.failed = layers, done, {**self.failed, **failed}

    @property
    def finished(self):
        return self.done == len(self.indices)

    @property
    def scanned(self):
        """How many images went through the network (done minus failed)."""
        return self.done - sum(1 for i in self.indices[:self.done] if i in self.failed)

    def fires(self, layer):
        """(C,) the share of scanned images whose maximum is above zero."""
        return self.layers[layer].fires / max(self.scanned, 1)

    def save(self, path):
        """Write the state to ``path`` atomically (another process sees the old file or the new one)."""
        arrays = {"meta": np.frombuffer(json.dumps({
            "key": self.key, "images": self.images, "indices": self.indices, "done": self.done,
            "failed": {str(i): why for i, why in self.failed.items()}, "layers": list(self.layers)}).encode(), np.uint8)}
        for name, s in self.layers.items():
            t = s.top
            arrays.update({f"{name}.value": t.value, f"{name}.image": t.image, f"{name}.row": t.row,
                           f"{name}.col": t.col, f"{name}.fires": s.fires, f"{name}.hist": s.hist})
        save_npz(path, arrays)


def load_state(path):
    """The State saved at ``path``; MinivggError if it is missing or unreadable."""
    try:
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            state = State.__new__(State)
            state.key, state.images, state.indices = meta["key"], meta["images"], meta["indices"]
            state.done, state.failed = meta["done"], {int(i): why for i, why in meta["failed"].items()}
            state.layers = {}
            for name in meta["layers"]:
                s = LayerStats.__new__(LayerStats)
                s.top = TopK.__new__(TopK)
                s.top.value, s.top.image = z[f"{name}.value"], z[f"{name}.image"]
                s.top.row, s.top.col = z[f"{name}.row"], z[f"{name}.col"]
                s.fires, s.hist = z[f"{name}.fires"], z[f"{name}.hist"]
                state.layers[name] = s
    except FileNotFoundError:
        raise MinivggError(f"no scan in {os.path.dirname(path) or '.'} (no {STATE_FILE})") from None
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise MinivggError(f"{path} is not a catalogue scan that can be read: {e}") from None
    return state


def merge_states(states):
    """The State one run over all the shards' images would have made (every shard finished)."""
    first = states[0]
    key = {k: v for k, v in first.key.items() if k != "shard"}
    for s in states[1:]:
        other = {k: v for k, v in s.key.items() if k != "shard"}
        if other != key:
            diff = sorted(k for k in set(key) | set(other) if key.get(k) != other.get(k))
            raise MinivggError(f"these scans were made with different settings ({', '.join(diff)}): they cannot be merged")
    for s in states:
        if not s.finished:
            raise MinivggError(f"shard {s.key.get('shard')} is not finished ({s.done} of {len(s.indices)} images): "
                               "run it again to finish it, then merge")
    seen = sorted(i for s in states for i in s.indices)
    if seen != list(range(len(first.images))):
        missing = sorted(set(range(len(first.images))) - set(seen))
        raise MinivggError(f"the scans do not cover the run once: {len(missing)} image(s) missing, "
                           f"{len(seen) - len(set(seen))} scanned twice (give every shard 1/N ... N/N once)")
    out = State.__new__(State)
    out.key = dict(key, shard=None)
    out.images, out.indices, out.done = first.images, list(range(len(first.images))), len(first.images)
    out.failed = {i: why for s in states for i, why in s.failed.items()}
    out.layers = {}
    for name in first.layers:
        merged = first.layers[name]
        for s in states[1:]:
            merged = merged.merged_with(s.layers[name])
        out.layers[name] = merged
    return out
