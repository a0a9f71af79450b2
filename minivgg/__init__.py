"""minivgg: VGG16 from scratch in NumPy and Numba, on the published Keras weights.

Reading order: im2col -> conv -> relu, pool, dense -> vgg16 (the table) -> weights -> download.

    import minivgg
    model = minivgg.VGG16(weights="imagenet")                # the published Keras file
    x = minivgg.preprocess_input(minivgg.load_image("cat.jpg"))
    print(minivgg.decode_predictions(model(x)))             # top-5 (wnid, name, score)
"""
from .errors import MinivggError
from .imagenet import decode_predictions
from .preprocess import load_image, preprocess_input
from .vgg16 import LAYERS, VGG16, summary

__all__ = ["VGG16", "LAYERS", "MinivggError", "decode_predictions", "load_image", "preprocess_input", "summary"]
