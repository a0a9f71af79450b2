"""Numba settings, decided in one place.

Every kernel in minivgg is compiled with one of two option sets:

- ``SERIAL``  = ``cache=True``: compiled once, kept in ``__pycache__`` so later runs start warm.
- ``PARALLEL`` = ``cache=True, parallel=True``: the outer loop is a ``numba.prange`` that Numba
  splits over its worker threads.

``fastmath`` stays off everywhere: it lets LLVM reorder float sums, which changes results from run to
run in the last bits and makes the naive-vs-fast tests harder to reason about. The heavy arithmetic
goes through NumPy's BLAS anyway, which is already vectorised.

Threads. A forward pass alternates between Numba's parallel loops (im2col, pooling, Winograd
transforms) and NumPy's BLAS (the GEMMs). Both keep a pool of worker threads, and both pools, by
default, *spin* for a while after finishing, waiting for more work. On a 2-core machine the two pools
then fight over the cores: measured here, the whole VGG16 forward pass took ~390 ms with Numba's
OpenMP layer against ~215 ms with its ``workqueue`` layer, whose workers sleep instead of spinning.
So unless the user chose a layer (``NUMBA_THREADING_LAYER``), minivgg selects ``workqueue`` before
any parallel kernel runs. (The other cure, ``OMP_WAIT_POLICY=passive``, must be set before the
process starts, which a library cannot do.)
"""
import os

import numba

if "NUMBA_THREADING_LAYER" not in os.environ:
    # Takes effect as long as no parallel kernel has run yet in this process.
    numba.config.THREADING_LAYER = "workqueue"

SERIAL = dict(cache=True)
PARALLEL = dict(cache=True, parallel=True)
