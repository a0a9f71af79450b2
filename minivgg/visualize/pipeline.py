"""Images through the network in batches while writer threads turn the activations into grids.

Legend: B images in a batch, S the input size, H', W', C' a layer's output.

    main thread:  load B images -> (B, S, S, 3) -> forward pass, layer by layer --put--> queue
    writers:      take one layer's activation (B, H', W', C') -> a grid per image and 64 channels,
                  each written to a file; the last job of an image writes its index.html

The queue holds at most ``QUEUE`` activations. While it has room the network runs on (the next
layers, the next batch); when it is full the network waits for the writers. That bound is what keeps
memory flat: at most QUEUE + WRITERS activations of one batch are waiting or being drawn, whatever
the number of images. NumPy (normalising) and Pillow (resizing, pasting, encoding JPEG) release the
GIL for their work, so the writers and the network's Numba and BLAS threads share the cores.

Every file is written under a temporary name in its folder, then renamed (``os.replace``, atomic):
an interrupted or failed run leaves whole files only. An image's page is written last, after all of
its grids. Only the writers write files, the input as the network saw it included: the main thread,
where Ctrl-C lands, computes and queues, so an interrupt never falls between a file and its record
(a page written but its image not counted as done, a temporary file not yet removed). A writer that fails stops the others; its error is raised in the main thread (``check``).
One image's grids and page are the same bytes whichever batch it was in: the conv layers compute each
image of a batch bit for bit as they compute it alone (``layers/winograd_schedules.py``, "Batch invariance";
tests/test_visualize_many.py holds the files to it). The top's dense layers are one GEMM per batch:
their scores may differ in the last bits, which the page's one-decimal percentages do not show.
"""
import functools
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import MinivggError
from ..files.atomic import replacing
from ..files.imagenet import top_classes
from ..files.preprocess import preprocess_input
from ..files.weights import release
from ..jit import blas_threads
from .grids import channel_ranges, grid, grid_name, layer_stats, save_image
from .report import LayerResult

WRITERS = 2  # writer threads: this machine has 2 cores, and the network mostly waits for the grids
QUEUE = 2  # activations waiting for a writer, at most


@dataclass
class Item:
    """One image of a run and what became of it."""

    source: Path  # the image file
    out: Path  # the folder its grids and page go to
    x: object = None  # (S, S, 3) float32 RGB 0..255 once loaded (dropped once in a batch)
    status: str = "waiting"  # "waiting", "running", "done", "failed"
    error: str = ""  # why it failed
    layers: list = field(default_factory=list)  # [LayerResult], filled by the writers
    predictions: list = None  # [(id, name, score)] with a top
    grids: int = 0  # grids written, once its page is
    pending: int = 0  # jobs left before its page can be written
    started: float = 0.0  # time.perf_counter() when its batch started


def save_atomic(image, path, fmt="jpg"):
    """``save_image`` to a temporary name in the same folder, then os.replace: never half a file (an
    OSError names ``path``, not the temporary file: ``files/atomic.py``)."""
    with replacing(path) as tmp:
        save_image(image, tmp, fmt)


class Writers:
    """Writer threads behind a bounded queue of jobs (see the module docstring).

    - draw: dict of ``grid`` options: cmap, norm, format
    - write_page(item): writes an image's page once its grids are all there (any thread calls it)
    - on_layer(item, name), on_image(item): progress callbacks, called under a lock
    """

    def __init__(self, draw, write_page, on_layer=None, on_image=None, threads=WRITERS, size=QUEUE):
        self.draw, self.write_page = draw, write_page
        self.on_layer, self.on_image = on_layer or (lambda item, name: None), on_image or (lambda item: None)
        self.queue = queue.Queue(size)
        self.stop = threading.Event()  # set on an error or an interrupt: writers quit after their current file
        self.lock = threading.Lock()
        self.error = None  # the first exception a writer raised
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def check(self):
        """Raise, in the caller's thread, the error a writer stopped on."""
        if self.error is not None:
            raise self.error

    def put(self, job):
        """Queue a job, waiting while the queue is full (and raising a writer's error meanwhile)."""
        while True:
            self.check()
            try:
                self.queue.put(job, timeout=0.1)
                return
            except queue.Full:
                continue

    def layer(self, items, index, name, a):
        """Draw layer ``name`` (index ``index`` in the file names) of each item; a: (B, H', W', C')."""
        self.put(functools.partial(self._draw, items, index, name, a))

    def finish(self, item, name, path, pixels, fmt):
        """The network is done with ``item``: a writer saves ``pixels`` (S, S, 3) uint8, the input as the
        network saw it, to ``path``, then counts the forward pass's job done (``name``: the class scores'
        layer, or None)."""
        self.put(functools.partial(self._finish, item, name, path, pixels, fmt))

    def done(self, item, name=None):
        """One job of ``item`` is finished; the last one writes its page."""
        with self.lock:
            item.pending -= 1
            if name is not None:
                self.on_layer(item, name)
            last = item.pending == 0
        if last:
            self.write_page(item)
            with self.lock:
                item.grids = sum(len(layer.grids) for layer in item.layers)
                item.status, item.layers = "done", []  # the page has the numbers now
                self.on_image(item)

    def close(self):
        """Wait for every queued job, then for the threads; raise a writer's error if there was one."""
        for _ in self.threads:
            self.put(None)  # one end marker per thread
        for t in self.threads:
            while t.is_alive():
                t.join(0.1)
        self.check()

    def abort(self):
        """Stop now: the writers finish the file they are writing and quit; queued jobs are dropped."""
        self.stop.set()
        for t in self.threads:
            while t.is_alive():
                t.join(0.1)

    def _work(self):
        while not self.stop.is_set():
            try:
                job = self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if job is None:
                return
            try:
                job()
            except BaseException as e:  # noqa: BLE001 -- handed to the main thread, which raises it
                with self.lock:
                    self.error = self.error or e
                self.stop.set()
                return

    def _finish(self, item, name, path, pixels, fmt):
        if not self.stop.is_set():
            save_atomic(Image.fromarray(pixels), path, fmt)
            self.done(item, name)

    def _draw(self, items, index, name, a):
        fmt, cmap, norm = self.draw["format"], self.draw["cmap"], self.draw["norm"]
        for k, item in enumerate(items):
            one = a[k:k + 1]  # (1, H', W', C'): this image's activation
            grids = []
            for start, stop in channel_ranges(a.shape[3]):
                if self.stop.is_set():
                    return
                file = grid_name(index, name, start, stop, fmt)
                save_atomic(grid(one, start, stop, cmap=cmap, norm=norm), item.out / file, fmt)
                grids.append((start, stop, file))
            item.layers.append(LayerResult(index, name, one.shape[1:], grids, layer_stats(one)))
            self.done(item, name)


def run(model, items, wanted, batch, writers, load, prepare, original, labels=None, on_failed=None):
    """Every item through the network, ``batch`` at a time; the writers draw and write.

    - wanted: [(i, name)] the layers to draw; load(item) -> (S, S, 3) RGB 0..255 (raises
      MinivggError for an unreadable image); prepare(item) readies its folder; original: the
      file name of the input as the network sees it (``original.jpg``)
    - on_failed(item): an image that could not be read (its ``error`` says why); the run goes on
    Returns when every page is written. Raises what a writer raised (OSError, ...), and
    KeyboardInterrupt as it comes: the caller then calls ``writers.abort()``.
    """
    # One BLAS thread while the writers draw: OpenBLAS's workers spin while they wait, and they would
    # fight the writers for the cores (measured: docs/performance.md).
    threads = blas_threads(1)
    try:
        _run(model, items, wanted, batch, writers, load, prepare, original, labels, on_failed)
    finally:
        if threads is not None:
            blas_threads(threads)


def _run(model, items, wanted, batch, writers, load, prepare, original, labels, on_failed):
    names = dict((n, i) for i, n in wanted)
    last = wanted[-1][1]
    head = model.layers[-1].name if model.include_top else None
    for b in range(0, len(items), batch):
        good = []
        t0 = time.perf_counter()
        for item in items[b:b + batch]:
            try:
                item.x = item.x if item.x is not None else load(item)
            except MinivggError as e:
                item.status, item.error = "failed", str(e)
                on_failed(item)
                continue
            prepare(item)
            item.status, item.started, item.pending = "running", t0, len(wanted) + 1  # + 1: the forward pass
            good.append(item)
        if not good:
            continue
        x = preprocess_input(np.stack([item.x for item in good]))  # B x (S, S, 3) -> (B, S, S, 3)
        pixels = [item.x.astype(np.uint8) for item in good]  # (S, S, 3) each: saved by the writers
        for item in good:
            item.x = None
        for name, a in model.forward(x):  # a: (B, H', W', C') or (B, D)
            release(*model.params.get(name, ()))  # its weights' pages: mapped back, from the OS's cache, next batch
            if name in names:
                writers.layer(good, names[name], name, a)
            if name == head:  # the class scores
                for item, top in zip(good, top_classes(a, top=5, labels=labels)):
                    item.predictions = top
            if name == last and head is None:
                break  # nothing further to draw
        del x, a
        for item, p in zip(good, pixels):
            writers.finish(item, head, item.out / original, p, original.rsplit(".", 1)[1])
    writers.close()
