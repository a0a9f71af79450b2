"""Numba settings, decided in one place.

Every kernel in minivgg is compiled with one option set, ``PARALLEL`` = ``cache=True, parallel=True``:

- ``cache=True``: compiled once, kept in ``__pycache__``, so later runs start warm;
- ``parallel=True``: the outer loop of each kernel is a ``numba.prange``, which Numba splits over its
  worker threads (one image row, one tile or one channel per task).

``fastmath`` stays off everywhere: it lets LLVM reorder float sums, which changes results from run to
run in the last bits and makes the naive-vs-fast tests harder to reason about. The heavy arithmetic
goes through NumPy's BLAS anyway, which is already vectorised.

Threads. A forward pass alternates between Numba's parallel loops (im2col, pooling, Winograd
transforms) and NumPy's BLAS (the GEMMs). Both keep a pool of worker threads, and both pools, by
default, *spin* for a while after finishing, waiting for more work. On a 2-core machine the two pools
then fight over the cores. Measured here, the VGG16 conv stack at 224x224 took 200 ms (all im2col:
288 ms) with Numba's OpenMP layer, against 74 ms (147 ms) with its ``workqueue`` layer, whose workers
sleep instead of spinning. So unless the user chose a layer (``NUMBA_THREADING_LAYER``), minivgg
selects ``workqueue`` before any parallel kernel runs. (The other cure, ``OMP_WAIT_POLICY=passive``, must be set before the
process starts, which a library cannot do.)
"""
import ctypes
import os

import numba

if "NUMBA_THREADING_LAYER" not in os.environ:
    # Takes effect as long as no parallel kernel has run yet in this process.
    numba.config.THREADING_LAYER = "workqueue"

PARALLEL = dict(cache=True, parallel=True)


def blas_threads(n):
    """Make NumPy's OpenBLAS use ``n`` threads from now on; returns how many it used, or None where
    NumPy's BLAS is not an OpenBLAS found in this process (then nothing changes).

    ``OPENBLAS_NUM_THREADS`` only counts before NumPy is imported; this works any time, by calling
    OpenBLAS's own setter in the library NumPy loaded (found in /proc/self/maps, Linux). OpenBLAS's
    workers spin while they wait for the next GEMM: with other busy threads on the same cores (the
    grid writers of ``pipeline.py``) they fight them for the cores.
    """
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line})
    except OSError:
        return None
    for path in paths:
        lib = ctypes.CDLL(path)
        for prefix, suffix in (("scipy_", "64_"), ("", ""), ("", "64_"), ("scipy_", "")):
            get, put = (getattr(lib, f"{prefix}openblas_{what}_num_threads{suffix}", None) for what in ("get", "set"))
            if get is not None and put is not None:
                old = get()
                put(ctypes.c_int(n))
                return old
    return None
