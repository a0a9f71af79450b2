"""Why did VGG16 choose its class? Attribution maps, and the sanity checks that test them.

Legend: N batch, H, W the input's height and width, h, w a conv layer's.

    from minivgg import explain
    maps = explain.saliency(model, x, target)         # x (N, H, W, 3) preprocessed -> (N, H, W)

A target is a class index (its pre-softmax score) or a (layer, channel) pair (the channel's mean
activation); an int or one per image (``targets.py``). The methods, one module per family:

- ``gradient_maps.py``, from dS/dx: ``saliency`` and ``smoothgrad`` -> (N, H, W);
  ``integrated_gradients`` -> (attributions (N, H, W, 3), gap (N,)); ``guided_backprop`` and
  ``deconvnet`` -> (N, H, W, 3).
- ``cam.py``, from one conv layer: ``grad_cam`` and ``layer_cam`` -> the raw (N, h, w) map,
  ``guided_grad_cam`` -> (N, H, W, 3); ``upsample`` and ``normalize`` to put a CAM on the image.
- ``sanity.py``: ``cascading_randomization`` (Adebayo et al. 2018) and ``spearman``.
- ``overlay.py`` and ``page.py``: heat maps over the photo, and the page of ``scripts/explain.py``;
  ``cli.py``: that command (``minivgg-explain``).
"""
from .cam import grad_cam, guided_grad_cam, layer_cam, normalize, upsample
from .gradient_maps import deconvnet, guided_backprop, integrated_gradients, saliency, smoothgrad
from .sanity import cascading_randomization, spearman

METHODS = {  # name -> function(model, x, target), in the order of the page's columns
    "saliency": saliency,
    "smoothgrad": smoothgrad,
    "integrated_gradients": integrated_gradients,
    "guided_backprop": guided_backprop,
    "deconvnet": deconvnet,
    "grad_cam": grad_cam,
    "layer_cam": layer_cam,
    "guided_grad_cam": guided_grad_cam,
}

__all__ = ["METHODS", "cascading_randomization", "deconvnet", "grad_cam", "guided_backprop", "guided_grad_cam",
           "integrated_gradients", "layer_cam", "normalize", "saliency", "smoothgrad", "spearman", "upsample"]
