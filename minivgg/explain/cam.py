"""Class activation maps: where, in one conv layer's grid, the evidence for the target is.

Legend: N batch, h, w the layer's height and width, K its channels, H, W the input's.

With A = the layer's output (N, h, w, K) and G = dS/dA from one backward pass (``layer_gradients``):

    grad_cam   alpha_k = mean over (h, w) of G_k;  CAM = ReLU(sum_k alpha_k A_k)
               (Selvaraju et al. 2017, eqs. 1-2; tf-keras-vis' Gradcam computes the same)
    layer_cam  CAM = ReLU(sum_k ReLU(G_k) * A_k): every position weighs channel k by its own
               positive gradient instead of one average, which keeps the detail of earlier,
               larger layers, where Grad-CAM's averages wash out (Jiang et al. 2021, eqs. 5-6)
    guided_grad_cam   guided backprop * the Grad-CAM upsampled to the image and min-max normalised
               (Selvaraju et al. 2017, sec. 3.1: "Guided Grad-CAM")

The CAM functions return the raw map, (N, h, w) at the layer's resolution (14x14 at block5_conv3
for 224x224 input). To put it on the image there are two more steps, kept apart on purpose:
``upsample`` (bilinear, to (N, H, W)) and ``normalize`` (each map to [0, 1] by its min and max).
"""
import numpy as np

from ..errors import MinivggError
from ..network.table import shapes
from .gradient_maps import guided_backprop
from .targets import BATCH, chunks, resolve

DEFAULT_LAYER = "block5_conv3"  # the last conv layer: the one Grad-CAM was made for


def layer_gradients(model, x, target, layer=DEFAULT_LAYER, batch=BATCH):
    """A and dS/dA at a conv layer, from one backward pass per ``batch`` images.

    Returns (A, G), both (N, h, w, K) float32. Raises MinivggError if ``layer`` is not a conv layer
    of the model, or lies above the target's layer (S would not depend on it).
    """
    x = model._check_input(x)  # (N, H, W, 3)
    t = resolve(model, x, target)
    names = [row.name for row in model.layers]
    convs = [row.name for row in model.layers if row.kind == "conv"]
    if layer not in convs:
        raise MinivggError(f"{layer!r} is not a conv layer of this {model.title} ({convs[0]} ... {convs[-1]})")
    if names.index(layer) > names.index(t.layer):
        raise MinivggError(f"{layer} lies above the target's layer {t.layer}: the target does not depend on it")
    A, G = [], []
    for i in chunks(len(x), batch):
        seeds = t.take(i).seeds(model, x[i])
        # A zero seed at the layer adds nothing to S but makes gradients() return the layer's output.
        seeds.setdefault(layer, np.zeros(_shape(model, x[i], layer), np.float32))
        # input=False: the backward pass stops at the layer (nothing below it is needed)
        grads, outs = model.gradients(x[i], seeds, logits=True, layers=[layer], outputs=True, input=False)
        A.append(outs[layer])
        G.append(grads[layer])
    return np.concatenate(A), np.concatenate(G)


def _shape(model, x, layer):
    return next((len(x),) + s[1:] for row, s, _ in shapes(model.layers, x.shape[1], x.shape[2]) if row.name == layer)


def grad_cam(model, x, target, layer=DEFAULT_LAYER, batch=BATCH):
    """Grad-CAM (Selvaraju et al. 2017) at a conv layer (default block5_conv3).

    x: (N, H, W, 3) or (H, W, 3), preprocessed. Returns the raw CAM, (N, h, w) float32, >= 0.
    """
    A, G = layer_gradients(model, x, target, layer, batch)
    alpha = G.mean(axis=(1, 2))  # (N, h, w, K) -> (N, K): one weight per channel (eq. 1)
    return np.maximum(np.einsum("nhwk,nk->nhw", A, alpha), 0)  # sum_k alpha_k A_k, then ReLU (eq. 2)


def layer_cam(model, x, target, layer=DEFAULT_LAYER, batch=BATCH):
    """LayerCAM (Jiang et al. 2021) at a conv layer; meant for earlier layers than Grad-CAM.

    x: (N, H, W, 3) or (H, W, 3), preprocessed. Returns the raw CAM, (N, h, w) float32, >= 0.
    """
    A, G = layer_gradients(model, x, target, layer, batch)
    return np.maximum((np.maximum(G, 0) * A).sum(axis=3), 0)  # (N, h, w, K) -> (N, h, w)


def guided_grad_cam(model, x, target, layer=DEFAULT_LAYER, batch=BATCH):
    """Guided Grad-CAM (Selvaraju et al. 2017, sec. 3.1): guided backprop times the Grad-CAM,
    upsampled (bilinear) and min-max normalised. Returns (N, H, W, 3) float32 (BGR like x)."""
    x = model._check_input(x)
    cam = normalize(upsample(grad_cam(model, x, target, layer, batch), x.shape[1:3]))  # (N, H, W) in [0, 1]
    return guided_backprop(model, x, target, batch) * cam[..., None]  # (N, H, W, 3) * (N, H, W, 1)


def _bilinear_weights(n_in, n_out):
    """Source indices i0, i1 (n_out,) and weight f of i1, for bilinear resizing with half-pixel centres:
    output pixel i sits at input coordinate (i + 0.5) * n_in / n_out - 0.5, clamped to the edge pixels
    (what tf.image.resize(method="bilinear") and OpenCV's INTER_LINEAR do)."""
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def upsample(cam, size):
    """Bilinear resize of maps (N, h, w) to size = (H, W) -> (N, H, W) float32 (any h, w, H, W).

    Separable: first along the rows, then the columns, each output a mix of its two nearest inputs.
    """
    cam = np.asarray(cam, np.float32)
    if cam.ndim != 3:
        raise MinivggError(f"upsample takes maps (N, h, w), got shape {cam.shape}")
    H, W = size
    r0, r1, fr = _bilinear_weights(cam.shape[1], H)
    c0, c1, fc = _bilinear_weights(cam.shape[2], W)
    rows = cam[:, r0] * (1 - fr)[:, None] + cam[:, r1] * fr[:, None]  # (N, h, w) -> (N, H, w)
    return rows[:, :, c0] * (1 - fc) + rows[:, :, c1] * fc  # (N, H, w) -> (N, H, W)


def upsample_naive(cam, size):
    """The same by loops over output pixels, each the weighted sum of its four neighbours."""
    cam = np.asarray(cam, np.float64)
    N, h, w = cam.shape
    H, W = size
    out = np.zeros((N, H, W))
    for i in range(H):
        y = min(max((i + 0.5) * h / H - 0.5, 0), h - 1)
        y0 = int(y)
        y1, fy = min(y0 + 1, h - 1), y - y0
        for j in range(W):
            xx = min(max((j + 0.5) * w / W - 0.5, 0), w - 1)
            x0 = int(xx)
            x1, fx = min(x0 + 1, w - 1), xx - x0
            out[:, i, j] = ((1 - fy) * (1 - fx) * cam[:, y0, x0] + (1 - fy) * fx * cam[:, y0, x1]
                            + fy * (1 - fx) * cam[:, y1, x0] + fy * fx * cam[:, y1, x1])
    return out


def normalize(maps):
    """Each map to [0, 1]: (m - min) / (max - min), per image. (N, ...) -> same shape, float32.

    A constant map (e.g. a CAM that is 0 everywhere) becomes all 0.
    """
    maps = np.asarray(maps, np.float32)
    axes = tuple(range(1, maps.ndim))
    lo, hi = maps.min(axis=axes, keepdims=True), maps.max(axis=axes, keepdims=True)
    return np.where(hi > lo, (maps - lo) / np.where(hi > lo, hi - lo, 1), 0).astype(np.float32)
