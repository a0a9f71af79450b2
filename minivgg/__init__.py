"""minivgg: VGG16 from scratch in NumPy and Numba, on the published Keras weights.

Reading order: im2col -> conv -> relu, pool, dense -> vgg16 (the table) -> weights -> download.
"""
from .errors import MinivggError
from .vgg16 import LAYERS, VGG16, summary

__all__ = ["VGG16", "LAYERS", "MinivggError", "summary"]
