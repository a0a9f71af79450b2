"""The layers: one file per kind, each with the formula, a naive twin that is obviously right, the fast
Numba kernel, and the backward pass beside the forward one.

Reading order: ``im2col.py`` (every receptive field as a row of a matrix), ``conv.py`` (convolution =
im2col + one matrix product + bias), ``winograd.py`` (the same convolution with 4x fewer
multiplications), ``relu.py``, ``pool.py``, ``dense.py``; ``gradcheck.py`` checks any backward kernel
by central differences.
"""
