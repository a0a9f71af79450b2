"""Receptive fields: which input pixels one unit of a conv or pool layer depends on, from the table.

Legend: H, W input height and width; i, j a unit's row and column in its layer's (H', W') map.

Every conv and pool layer of VGG is square, so one number per layer does for both axes. Walking the
table from the input, each layer l of kernel k_l, stride s_l and padding p_l changes (Araujo,
Norelli & Sandler, "Computing Receptive Fields of Convolutional Neural Networks", Distill 2019,
eq. 2 and 9, written as running values):

    size    r += (k_l - 1) * stride      r = 1 + sum_l (k_l - 1) prod_{i<l} s_i
    padding p += p_l * stride            p = sum_l p_l prod_{i<l} s_i
    stride  s *= s_l                     s = prod_l s_l

    conv 3x3, stride 1, pad 1 ("same"):  r += 2 s, p += s
    pool 2x2, stride 2, pad 0 ("valid"): r += s,   s *= 2

Unit (i, j) then sees rows ``i*s - p .. i*s - p + r - 1`` and the same for columns: a square that
can hang over the image's edge, where the network saw zero padding. ``box(i, j, shape=(H, W))``
clips it to the image. VGG16: block1_conv1 3, block1_pool 6, block3_conv3 40, block5_pool 212;
VGG19: block5_pool 268. A flatten, global pool or dense layer mixes every position: each of its units
sees the whole image, and asking for its box is refused with that answer.

``receptive_field_naive`` is the slow twin: it follows one unit's rows back through the table layer
by layer (a conv row reads its neighbours, a pool row its 2 rows) and counts what it reaches.
"""
from typing import NamedTuple

from ..errors import MinivggError

KERNELS = {"conv": (3, 1, 1), "pool": (2, 2, 0)}  # row kind -> (kernel k, stride s, padding p), as table.py runs them


class ReceptiveField(NamedTuple):
    layer: str  # Keras' layer name
    size: int  # r: the side of the square of input pixels one unit sees
    stride: int  # s: input pixels between neighbouring units
    padding: int  # p: unit (i, j)'s square starts at row i*s - p, column j*s - p

    def box(self, i, j, shape=None):
        """(top, left, bottom, right) of unit (i, j)'s square in input pixels, bottom and right exclusive;
        with ``shape=(H, W)``, clipped to the image (then never empty for a unit the layer has)."""
        top, left = i * self.stride - self.padding, j * self.stride - self.padding
        bottom, right = top + self.size, left + self.size
        if shape is None:
            return top, left, bottom, right
        H, W = shape[0], shape[1]
        return max(top, 0), max(left, 0), min(bottom, H), min(right, W)


def _conv_part(rows, layer):
    """The rows up to and including ``layer``; refuse a layer that is not there or sees everything."""
    names = [row.name for row in rows]
    if layer not in names:
        raise MinivggError(f"this network has no layer {layer!r}")
    upto = rows[:names.index(layer) + 1]
    for row in upto:
        if row.kind not in KERNELS:
            raise MinivggError(f"{layer} comes after {row.name} ({row.kind}), which mixes every position: "
                               "each of its units sees the whole image, not a box")
    return upto


def receptive_field(rows, layer):
    """The ReceptiveField of ``layer`` in the table ``rows`` (``model.layers``, ``table.layers(arch)``)."""
    size, stride, padding = 1, 1, 0
    for row in _conv_part(rows, layer):
        k, s, p = KERNELS[row.kind]
        size += (k - 1) * stride  # Araujo et al. eq. 2, one term at a time
        padding += p * stride  # eq. 9
        stride *= s
    return ReceptiveField(layer, size, stride, padding)


def receptive_fields(rows):
    """layer name -> ReceptiveField, for every conv and pool layer before the first that mixes positions."""
    out = {}
    for row in rows:
        if row.kind not in KERNELS:
            break
        out[row.name] = receptive_field(rows, row.name)
    return out


def receptive_field_naive(rows, layer, i=0):
    """The twin: unit ``i``'s rows followed back to the input, one layer at a time.

    Returns (first, last + 1) of the input rows that unit ``i`` of ``layer`` reads (unclipped).
    A conv row k=3, pad 1 reads rows a-1 .. b (of its input) for output rows a .. b-1; a pool row
    k=2, stride 2 reads 2a .. 2b-1.
    """
    first, stop = i, i + 1  # rows of the current layer, half-open
    for row in reversed(_conv_part(rows, layer)):
        k, s, p = KERNELS[row.kind]
        first, stop = first * s - p, (stop - 1) * s - p + k  # the first unit's first input, the last's last + 1
    return first, stop
