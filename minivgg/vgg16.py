"""VGG16 (configuration D) by its old names: the table, its top and sizes, and the model class.

Everything lives in ``vgg.py``, where the table is built from the configuration; this module keeps
the names code and notebooks written for VGG16 alone use (``from minivgg.vgg16 import LAYERS``).
"""
from .vgg import IMAGENET_TOP, MIN_SIZE, TOP_SIZE, VGG16, Row, layers, plan, shapes, summary

LAYERS = layers("vgg16", include_top=True)  # block1_conv1 ... block5_pool, flatten, fc1, fc2, predictions
NOTOP = layers("vgg16", include_top=False)  # the conv stack alone, block1_conv1 ... block5_pool
TOP = tuple(row.name for row in IMAGENET_TOP)  # ("flatten", "fc1", "fc2", "predictions")

__all__ = ["LAYERS", "MIN_SIZE", "NOTOP", "TOP", "TOP_SIZE", "VGG16", "Row", "plan", "shapes", "summary"]
