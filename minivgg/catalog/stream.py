"""Feeding the scan: images decoded by worker threads ahead of the network, batches through the
network, the state committed after each batch and saved every few hundred images.

Legend: N batch, S the input side (224 by default), C channels.

    decoded(paths, load)  -> (position, x or the MinivggError that image raised), in order
    scan(model, state, ...) runs the images of ``state`` not done yet, updating it batch by batch

Decoding (Pillow's JPEG decoder and resize release the GIL) runs in ``WORKERS`` threads up to
``AHEAD`` images in front of the network. The network's GEMMs use both cores meanwhile; decoding a
224x224 JPEG costs ~3 ms against ~75 ms of network per image, so the network does not wait.

Ctrl-C: ``scan`` catches the first SIGINT (in the main thread) as a request, finishes the batch in
flight, commits it and returns ``interrupted=True``; the caller saves the state. A second Ctrl-C
stops at once (the state saved last stays as it was: it is replaced atomically, never half-written).
"""
import collections
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import MinivggError
from ..jit import passes
from .scan import image_maxima

WORKERS = 2  # decoding threads
AHEAD = 32  # images decoded ahead of the network at most (32 * 224*224*3 floats = 19 MB)


def decoded(paths, load, workers=WORKERS, ahead=AHEAD):
    """Yield (position, x) for each path in order: x = load(path), or the MinivggError it raised."""
    pool = ThreadPoolExecutor(workers, thread_name_prefix="catalog-decode")
    queue, todo = collections.deque(), iter(enumerate(paths))
    try:
        for pos, path in todo:
            queue.append((pos, pool.submit(load, path)))
            if len(queue) >= ahead:
                break
        while queue:
            pos, future = queue.popleft()
            nxt = next(todo, None)
            if nxt is not None:
                queue.append((nxt[0], pool.submit(load, nxt[1])))
            try:
                x = future.result()
            except MinivggError as e:
                x = e
            yield pos, x
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Interrupt:
    """The first Ctrl-C sets ``requested``; a second raises KeyboardInterrupt. Only in the main thread."""

    def __init__(self):
        self.requested, self.old = False, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)


def batch_maxima(model, x, layers):
    """The forward pass of x (N, S, S, 3), stopping after the last of ``layers``:
    {layer: (value, row, col), each (N, C)} from ``scan.image_maxima``.

    A batch-invariant model (the catalogue's, ``cli.load_model``) runs the images one at a time: its
    GEMMs never mix images anyway, so a batch buys nothing there, while one image's maps (12.8 MB at
    block1 for 224x224) stay in the cache from one layer to the next, where a batch of 8 goes out to
    memory and back (measured: docs/catalog.md). The results are the same bits either way.
    """
    chunks = [x[n:n + 1] for n in range(len(x))] if model.batch_invariant else [x]  # (1 or N, S, S, 3) each
    last = [row.name for row in model.layers if row.name in layers][-1]
    parts = {}
    with passes():  # BLAS and memory settings, once for the batch (jit.py)
        for chunk in chunks:
            for name, a in model.forward(chunk, keep=set(layers)):
                if name in layers:
                    parts.setdefault(name, []).append(image_maxima(a))  # (value, row, col), (n, C) each
                if name == last:
                    break
    return {name: tuple(np.concatenate(p) for p in zip(*found)) for name, found in parts.items()}


def scan(model, state, load, batch, save=None, every=256, on_image=None, on_failed=None):
    """Run the images of ``state`` not done yet through ``model``; returns True if Ctrl-C stopped it.

    - load(path) -> (S, S, 3) preprocessed float32, raising MinivggError for a bad file
    - save(): called every ``every`` images (and not at the end: the caller saves)
    - on_image(), on_failed(index, reason): progress callbacks
    """
    layers = set(state.layers)
    todo = state.indices[state.done:]
    last_saved = state.done
    good, failed = [], {}  # the batch being gathered: [(image index, x)], {image index: reason}
    with _Interrupt() as stop:
        for pos, x in decoded([state.images[i] for i in todo], load):
            index = todo[pos]
            if isinstance(x, MinivggError):
                failed[index] = str(x)
                if on_failed:
                    on_failed(index, str(x))
            else:
                good.append((index, x))
            if len(good) < batch and pos + 1 < len(todo) and not stop.requested:
                continue
            new = dict(state.layers)
            if good:
                indices = np.array([i for i, _ in good])  # (N,)
                maxima = batch_maxima(model, np.stack([x for _, x in good]), layers)  # (N, S, S, 3) in
                new = {name: s.updated(*maxima[name], indices) for name, s in state.layers.items()}
            state.commit(new, state.done + len(good) + len(failed), failed)  # one step: all or nothing
            if on_image:
                for _ in good:
                    on_image()
            good, failed = [], {}
            if stop.requested:
                return True
            if save and state.done - last_saved >= every and not state.finished:
                save()
                last_saved = state.done
    return False
