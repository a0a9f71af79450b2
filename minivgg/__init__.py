"""minivgg: VGG16 and VGG19 from scratch in NumPy and Numba, on the published Keras weights.

Reading order: im2col -> conv -> relu, pool, dense -> vgg (the table) -> weights, keras_files -> download.

    import minivgg
    model = minivgg.VGG16(weights="imagenet")                # the published Keras file (or VGG19, or VGG(FILE))
    x = minivgg.preprocess_input(minivgg.load_image("cat.jpg"))
    print(minivgg.decode_predictions(model(x)))             # top-5 (wnid, name, score)
"""
from . import jit  # first: it loads NumPy, with OpenBLAS's spin set short (see jit.py)
from .errors import MinivggError
from .files.imagenet import decode_predictions
from .files.preprocess import load_image, preprocess_input
from .network.table import summary
from .network.vgg import VGG, VGG16, VGG19

__all__ = ["VGG", "VGG16", "VGG19", "MinivggError", "decode_predictions", "load_image", "preprocess_input",
           "summary"]
