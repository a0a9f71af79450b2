"""The layers: one file per kind, each with the formula, a naive twin that is obviously right, the fast
Numba kernel, and the backward pass beside the forward one.

Reading order: ``../jit.py`` (what Numba is and how its kernels are compiled and run: read its top
half), ``im2col.py`` (every receptive field as a row of a matrix), ``conv.py`` (convolution = im2col +
one matrix product + bias), ``winograd.py`` (the same convolution with 4x fewer multiplications: the
idea, the naive twin and the simplest fast version; ``winograd_schedules.py``, its schedules for
speed, is for a second read), ``relu.py``, ``pool.py``, ``dense.py``; ``gradcheck.py`` checks any
backward kernel by central differences.
"""
