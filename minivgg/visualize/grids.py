"""Feature maps as pictures: one layer's activation -> a grid of tiles, one tile per channel.

Legend: H, W height and width of a feature map, C channels, S upscaling factor, g gap in pixels.

    activation (H, W, C) --normalise--> [0, 1] --colour map--> (C, H, W, 3) uint8 --tile-->
    a grid of ``cols`` tiles per row, each tile (S*H, S*W), tiles ``gap`` pixels apart

Two ways to put numbers on a colour scale (``NORMS``):
- ``"channel"``: every tile on its own scale, its min dark and its max bright. This is what the
  seed's ``plt.imshow`` did: it shows each channel's *pattern*, but a nearly silent channel looks
  as bright as a strong one.
- ``"layer"``: one scale (the layer's min to max) for all channels of the layer, so tiles can be
  compared: bright means a strong response anywhere in the layer.

Small maps (7x7 in block5) are upscaled by an integer factor with nearest neighbour, so every
activation stays a crisp square; large maps (224x224 in block1) stay at native resolution.
Pillow and NumPy only: ``grid(activation) -> PIL.Image`` works in a notebook as well.
"""
import numpy as np
from PIL import Image

from ..errors import MinivggError

# Viridis (van der Walt & Smith, 2015), the 256 colours of matplotlib's ``_cm_listed._viridis_data``
# (CC0), each rounded to 8 bits: "rrggbb" per entry, 16 per line. tests/test_visualize.py checks
# it against matplotlib's own table.
_VIRIDIS_HEX = (
    "44015444025645045745055946075a46085c460a5d460b5e470d60470e61471063471164471365481467481668481769"
    "48186a481a6c481b6d481c6e481d6f481f70482071482173482374482475482576482677482878482979472a7a472c7a"
    "472d7b472e7c472f7d46307e46327e46337f463480453581453781453882443983443a83443b84433d84433e85423f85"
    "4240864241864142874144874045884046883f47883f48893e49893e4a893e4c8a3d4d8a3d4e8a3c4f8a3c508b3b518b"
    "3b528b3a538b3a548c39558c39568c38588c38598c375a8c375b8d365c8d365d8d355e8d355f8d34608d34618d33628d"
    "33638d32648e32658e31668e31678e31688e30698e306a8e2f6b8e2f6c8e2e6d8e2e6e8e2e6f8e2d708e2d718e2c718e"
    "2c728e2c738e2b748e2b758e2a768e2a778e2a788e29798e297a8e297b8e287c8e287d8e277e8e277f8e27808e26818e"
    "26828e26828e25838e25848e25858e24868e24878e23888e23898e238a8d228b8d228c8d228d8d218e8d218f8d21908d"
    "21918c20928c20928c20938c1f948c1f958b1f968b1f978b1f988b1f998a1f9a8a1e9b8a1e9c891e9d891f9e891f9f88"
    "1fa0881fa1881fa1871fa28720a38620a48621a58521a68522a78522a88423a98324aa8325ab8225ac8226ad8127ad81"
    "28ae8029af7f2ab07f2cb17e2db27d2eb37c2fb47c31b57b32b67a34b67935b77937b87838b9773aba763bbb753dbc74"
    "3fbc7340bd7242be7144bf7046c06f48c16e4ac16d4cc26c4ec36b50c46a52c56954c56856c66758c7655ac8645cc863"
    "5ec96260ca6063cb5f65cb5e67cc5c69cd5b6ccd5a6ece5870cf5773d05675d05477d1537ad1517cd2507fd34e81d34d"
    "84d44b86d54989d5488bd6468ed64590d74393d74195d84098d83e9bd93c9dd93ba0da39a2da37a5db36a8db34aadc32"
    "addc30b0dd2fb2dd2db5de2bb8de29bade28bddf26c0df25c2df23c5e021c8e020cae11fcde11dd0e11cd2e21bd5e21a"
    "d8e219dae319dde318dfe318e2e418e5e419e7e419eae51aece51befe51cf1e51df4e61ef6e620f8e621fbe723fde725"
)
CMAPS = {  # name -> (256, 3) uint8 lookup table, index 0 for the lowest value
    "viridis": np.frombuffer(bytes.fromhex(_VIRIDIS_HEX), np.uint8).reshape(256, 3),  # (768,) -> (256, 3)
    "gray": np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1),  # (256,) -> (256, 3)
}
NORMS = ("channel", "layer")
CHANNELS_PER_GRID = 64  # 8x8 tiles, as the seed drew them
GAP_COLOUR = (255, 255, 255)


def as_hwc(activation):
    """(H, W, C) or (1, H, W, C) -> (H, W, C) float32; anything else is refused."""
    a = np.asarray(activation)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]  # (1, H, W, C) -> (H, W, C)
    if a.ndim != 3:
        raise MinivggError(f"feature maps are (H, W, C) or (1, H, W, C), got shape {np.shape(activation)}")
    return a.astype(np.float32, copy=False)


def value_range(activation, norm="channel"):
    """The (lo, hi) of the colour scale, each a (C,) array: per channel, or the layer's for all."""
    a = as_hwc(activation)
    if norm == "channel":
        return a.min(axis=(0, 1)), a.max(axis=(0, 1))  # (H, W, C) -> (C,), (C,)
    if norm == "layer":
        C = a.shape[2]
        return np.full(C, a.min(), np.float32), np.full(C, a.max(), np.float32)
    raise MinivggError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")


def colour_index(a, lo, hi):
    """Values -> colour-map indices. a: (H, W, C), lo, hi: (C,); out: (C, H, W) uint8 in 0..255.

    [lo, hi] is cut into 256 equal bins, one per colour, as matplotlib's ``Normalize`` + colour map
    (what ``imshow`` does): lo gets the first colour, hi the last. Where hi == lo (a constant
    channel, e.g. a dead one that is all zero) everything gets the first colour, as in matplotlib.
    """
    span = np.where(hi > lo, hi - lo, 1).astype(np.float32)  # (C,); 1 avoids 0/0 for constant channels
    # Readable form: t = np.clip((a - lo) / span, 0, 1); index = np.minimum(t * 256, 255).astype(np.uint8).
    # The same operations in place on one (H, W, C) float32 buffer instead of four (block1: 12.8 MB each).
    t = a - lo  # (H, W, C), broadcast over H, W
    t /= span
    np.clip(t, 0, 1, out=t)  # in [0, 1]
    t *= 256
    np.minimum(t, 255, out=t)  # floor(t * 256) below, and t == 1 -> 255
    index = t.astype(np.uint8)
    return np.ascontiguousarray(index.transpose(2, 0, 1))  # (H, W, C) -> (C, H, W)


def colourise(a, lo, hi, cmap="viridis"):
    """Values -> colours, the plain NumPy way. a: (H, W, C), lo, hi: (C,); out: (C, H, W, 3) uint8.

    ``grid`` gets the same colours from Pillow's palette images (faster); tests hold them equal.
    """
    return _palette(cmap)[colour_index(a, lo, hi)]  # (C, H, W) -> (C, H, W, 3)


def _palette(cmap):
    if cmap not in CMAPS:
        raise MinivggError(f"unknown colour map {cmap!r}; choose one of {', '.join(CMAPS)}")
    return CMAPS[cmap]


def upscale_factor(h, w, cols=8, min_width=448):
    """The integer S that makes ``cols`` tiles of S*W pixels at least ``min_width`` across (S >= 1)."""
    return max(1, -(-min_width // (cols * max(h, w))))  # ceil(min_width / (cols * max(H, W)))


def grid(activation, start=0, stop=None, cmap="viridis", norm="channel", cols=8, gap=2, min_width=448):
    """Channels ``start:stop`` of one activation as a grid image.

    Inputs:
    - activation: (H, W, C) or (1, H, W, C), e.g. ``model.activations(x)["block5_conv3"]``
    - start, stop: the channel range, ``stop=None`` for all channels up to C
    - cmap: a name in ``CMAPS``; norm: ``"channel"`` or ``"layer"`` (see the module docstring;
      ``"layer"`` scales by the whole activation, not only the channels drawn)
    - cols: tiles per row; gap: pixels between tiles; min_width: upscale small maps to about this
    Returns:
    - a PIL RGB image, rows = ceil((stop - start) / cols) tiles high and ``cols`` tiles wide
      (fewer if there are fewer channels), each tile (S*H, S*W) with S = ``upscale_factor``
    """
    a = as_hwc(activation)
    H, W, C = a.shape
    stop = C if stop is None else stop
    if not 0 <= start < stop <= C:
        raise MinivggError(f"channel range {start}-{stop} is outside 0-{C}")
    lo, hi = value_range(a, norm)
    palette = _palette(cmap).tobytes()  # (256, 3) -> 768 bytes: r0 g0 b0 r1 g1 b1 ...
    index = colour_index(a[:, :, start:stop], lo[start:stop], hi[start:stop])  # (n, H, W)
    n = stop - start
    cols = min(cols, n)
    S = upscale_factor(H, W, cols, min_width)
    tiles = []
    for k in range(n):
        tile = Image.fromarray(index[k])  # (H, W) uint8: a greyscale ("L") image of colour indices
        tile.putpalette(palette)  # -> a palette ("P") image: index i shows colour CMAPS[cmap][i]
        tiles.append(tile.resize((S * W, S * H), Image.Resampling.NEAREST))  # (H, W) -> (S*H, S*W), SxS squares
    return tile_images(tiles, cols, gap)


def tile_images(tiles, cols=8, gap=2):
    """Same-size PIL images side by side, ``cols`` a row, ``gap`` pixels of GAP_COLOUR between them.

    Returns an RGB image ceil(n / cols) tiles high and min(cols, n) wide (palette tiles are
    converted to RGB as they are pasted).
    """
    n = len(tiles)
    cols = min(cols, n)
    rows = -(-n // cols)  # ceil(n / cols)
    tw, th = tiles[0].size  # (width, height) of one tile
    canvas = Image.new("RGB", (cols * (tw + gap) - gap, rows * (th + gap) - gap), GAP_COLOUR)  # (width, height)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        canvas.paste(tile, (c * (tw + gap), r * (th + gap)))
    return canvas


def channel_ranges(C, per=CHANNELS_PER_GRID):
    """[(0, 64), (64, 128), ...]: the channel range of each grid of a layer with C channels."""
    return [(s, min(s + per, C)) for s in range(0, C, per)]


def grid_name(index, layer, start, stop, fmt="jpg"):
    """The seed's file name for a grid: ``10.block4_conv1_128-192.jpg``."""
    return f"{index}.{layer}_{start}-{stop}.{fmt}"


def save_image(image, path, fmt="jpg"):
    """Save a PIL image as JPEG (quality 90) or PNG."""
    if fmt == "jpg":
        image.save(path, "JPEG", quality=90)
    else:
        image.save(path, "PNG")


def layer_stats(activation):
    """The page's numbers for one layer, a dict: ``zeros`` (fraction of values that are 0), ``mean``,
    ``min``, ``max``, ``dead`` (how many channels are dead) and ``channels`` (C).

    activation: (H, W, C) or (1, H, W, C). A channel is dead if it is zero everywhere (for this
    image): after a ReLU, its filter's response was negative at every position.
    """
    a = as_hwc(activation)
    return {
        "zeros": float(np.mean(a == 0)),
        "mean": float(a.mean()),
        "min": float(a.min()),
        "max": float(a.max()),
        "dead": int(np.sum(~a.any(axis=(0, 1)))),  # (H, W, C) -> (C,) True where any value != 0
        "channels": a.shape[2],
    }
