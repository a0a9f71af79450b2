"""A map over the photo: the heat map of an attribution, drawn on a dimmed grey copy of the image.

Legend: H, W the image's height and width, h, w a CAM's (a conv layer's grid).

    map (H, W), (H, W, 3) or (h, w) --view--> (H, W) >= 0 --scale--> t in [0, 1]
    photo (H, W, 3) RGB 0..255 --grey, dimmed--> g
    out = (1 - ALPHA * t) * g + ALPHA * t * viridis(t)           (H, W, 3) uint8

- ``view``: what is drawn of a map. (H, W, 3) maps (IG, guided backprop, deconvnet, guided Grad-CAM)
  are signed, per colour: drawn is |map|, its largest value over the colours (``sanity.view``, the
  same view the sanity checks score). A CAM (h, w) is first upsampled to (H, W) (``cam.upsample``).
- ``scale``: from 0 (the map's minimum) to 1 at its 99th percentile, values above it clipped.
  Gradient maps are heavy-tailed: a few pixels hold most of the mass, and a min-max scale would leave
  everything else dark (Smilkov et al. 2017, sec. 3, clip their maps at the 99th percentile too).
- the colour map is viridis (``visualize.CMAPS``: perceptually uniform, readable by the colour-blind),
  and the weight of the colour grows with t, so where the map is low the photo shows through, dimmed
  to DIM of its brightness and in grey, so that the photo's own colours cannot be mistaken for heat.
"""
import os

import numpy as np
from PIL import Image

from ..errors import MinivggError
from ..files.atomic import replacing
from ..visualize.grids import CMAPS
from .cam import upsample
from .sanity import view

CMAP = "viridis"
ALPHA = 0.75  # the heat map's opacity where the map is at its top (t = 1)
DIM = 0.5  # the grey photo's brightness under the heat map
CLIP = 99.0  # the percentile that gets the top colour


def as_image_map(m, size):
    """One map as the overlay draws it: (H, W, 3) -> max over colours of |m|; (h, w) -> upsampled
    to size = (H, W); (H, W) as it is. Returns (H, W) float32."""
    m = view(np.asarray(m, np.float32)[None])[0]  # (H, W, 3) -> (H, W); 2-d maps unchanged
    if m.ndim != 2:
        raise MinivggError(f"a map to draw is (H, W), (H, W, 3) or (h, w), got shape {np.shape(m)}")
    if m.shape != tuple(size):
        m = upsample(m[None], size)[0]  # (h, w) -> (H, W), bilinear
    return m


def scale(m, clip=CLIP):
    """(H, W) -> t in [0, 1]: (m - min) / (percentile(m, clip) - min), clipped to 1 above it.

    A constant map gives all 0 (nothing to show)."""
    m = np.asarray(m, np.float32)
    lo, hi = float(m.min()), float(np.percentile(m, clip))
    if not hi > lo:
        hi = float(m.max())  # more than 1% of the pixels at the top value: scale by the max
    if not hi > lo:
        return np.zeros_like(m)
    return np.clip((m - lo) / (hi - lo), 0, 1)


def overlay(photo, m, cmap=CMAP, alpha=ALPHA, dim=DIM, clip=CLIP):
    """The heat map of ``m`` over the dimmed grey photo: a PIL RGB image (W x H).

    - photo: (H, W, 3) RGB 0..255 (``load_image``), the image the map was computed on
    - m: the map, (H, W), (H, W, 3) or (h, w) (see ``as_image_map``)
    """
    photo = np.asarray(photo, np.float32)
    if photo.ndim != 3 or photo.shape[2] != 3:
        raise MinivggError(f"the photo is (H, W, 3) RGB, got shape {photo.shape}")
    t = scale(as_image_map(m, photo.shape[:2]), clip)  # (H, W) in [0, 1]
    grey = photo @ np.array([0.299, 0.587, 0.114], np.float32)  # (H, W, 3) @ (3,) -> (H, W): ITU-R 601 luma
    under = (dim * grey)[..., None]  # (H, W, 1), broadcast over the colours
    colour = CMAPS[cmap][np.minimum(t * 256, 255).astype(np.uint8)].astype(np.float32)  # (H, W) -> (H, W, 3)
    a = (alpha * t)[..., None]  # (H, W, 1): the colour's weight
    out = (1 - a) * under + a * colour
    return Image.fromarray(np.round(np.clip(out, 0, 255)).astype(np.uint8))


def legend_text(cmap=CMAP, clip=CLIP):
    """The sentence the page puts beside the colour bar."""
    return (f"{cmap} over the photo in grey, dimmed to {int(DIM * 100)}%: dark purple = the map's lowest value "
            f"(the photo shows through), yellow = its {clip:g}th percentile and above; each map on its own scale")


def save(image, path):
    """Save a PIL image as PNG (.png) or JPEG (.jpg, .jpeg; quality 90) atomically: a temporary file
    in the same folder, then os.replace, so an interrupted run never leaves half an image."""
    path = str(path)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(os.path.splitext(path)[1].lower())
    if fmt is None:
        raise MinivggError(f"images are saved as .png or .jpg, not {path}")
    with replacing(path) as tmp:
        image.save(tmp, fmt, **({"quality": 90} if fmt == "JPEG" else {}))


def save_npy(a, path):
    """np.save, atomically (a temporary file in the same folder, then os.replace)."""
    with replacing(path) as tmp, open(tmp, "wb") as f:  # a file object: np.save adds no ".npy" to it
        np.save(f, np.asarray(a))
