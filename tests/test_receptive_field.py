"""Receptive fields (network/receptive_field.py): the closed form against its twin, and against the
network itself, the way that cannot lie: zero the input outside a unit's box and the unit does not
change; zero one more row or column of the box and some unit does."""
import numpy as np
import pytest

from minivgg.errors import MinivggError
from minivgg.network.receptive_field import receptive_field, receptive_field_naive, receptive_fields
from minivgg.network.table import Row, conv_base, layers
from minivgg.network.vgg import VGG16, VGG19

H, W = 48, 64  # lopsided, small: block5_pool is 1x2


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_closed_form_equals_following_the_rows_back(arch):
    rows = layers(arch)
    fields = receptive_fields(rows)
    assert list(fields) == [row.name for row in conv_base(arch)]  # every conv and pool layer, none of the top
    for name, rf in fields.items():
        for i in (0, 1, 5):
            top, _, bottom, _ = rf.box(i, i)
            assert (top, bottom) == receptive_field_naive(rows, name, i), (name, i)


def test_published_sizes():
    v16, v19 = receptive_fields(layers("vgg16")), receptive_fields(layers("vgg19"))
    assert [v16[n].size for n in ("block1_conv1", "block1_pool", "block3_conv3", "block5_pool")] == [3, 6, 40, 212]
    assert (v16["block5_pool"].stride, v16["block5_pool"].padding) == (32, 90)
    assert v19["block5_pool"].size == 268


def test_box_clips_to_the_image():
    rf = receptive_field(layers("vgg16"), "block3_conv3")  # 40, stride 4, padding 18
    assert rf.box(0, 0) == (-18, -18, 22, 22)
    assert rf.box(0, 0, shape=(H, W)) == (0, 0, 22, 22)
    assert rf.box(11, 15, shape=(H, W)) == (26, 42, 48, 64)  # the last unit of a 12x16 map
    assert rf.box(11, 15) == (26, 42, 66, 82)


def test_layers_that_mix_positions_see_the_whole_image():
    with pytest.raises(MinivggError, match="whole image"):
        receptive_field(layers("vgg16"), "fc1")
    head = conv_base("vgg16") + (Row("gap", "global_avg_pool"), Row("out", "dense", 5, "softmax"))
    with pytest.raises(MinivggError, match="whole image"):
        receptive_field(head, "gap")
    assert receptive_field(head, "block5_pool").size == 212  # a fine-tuned network: the same conv base
    with pytest.raises(MinivggError, match="no layer"):
        receptive_field(head, "block9_conv1")


def masked(x, box):
    """x with every pixel outside box (top, left, bottom, right) set to 0, the value padding adds."""
    top, left, bottom, right = box
    out = np.zeros_like(x)
    out[top:bottom, left:right] = x[top:bottom, left:right]
    return out


def shrunk(box):
    """The box one pixel smaller on each side in turn: 4 boxes (an empty side stays empty)."""
    top, left, bottom, right = box
    return [(top + 1, left, bottom, right), (top, left + 1, bottom, right),
            (top, left, bottom - 1, right), (top, left, bottom, right - 1)]


def check_layer(model, layer, x, tol, shrink=True):
    """Zeroing outside the clipped box keeps the unit to ``tol`` (relative to the layer's largest value);
    with ``shrink``, shrinking the box by one pixel on any side moves some channel of the unit by more."""
    ref = model.activations(x[None], layers=[layer])[layer][0]  # (H', W', C')
    h, w = ref.shape[:2]
    units = sorted({(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (h // 2, w // 2), (min(1, h - 1), min(2, w - 1))})
    rf = model.receptive_field(layer)
    batch = []
    for i, j in units:
        box = rf.box(i, j, shape=x.shape[:2])
        batch += [masked(x, box)] + [masked(x, b) for b in shrunk(box)]
    acts = model.activations(np.stack(batch), layers=[layer])[layer]  # (units * 5, H', W', C')
    scale = np.abs(ref).max()
    assert scale > 0
    for u, (i, j) in enumerate(units):
        inside = acts[5 * u, i, j]  # (C',)
        assert np.abs(inside - ref[i, j]).max() <= tol * scale, (layer, (i, j), np.abs(inside - ref[i, j]).max() / scale)
        # each side of each unit's box: zeroing its outer row or column moves some channel of the unit
        moved = [np.abs(acts[5 * u + 1 + side, i, j] - ref[i, j]).max() > 10 * tol * scale for side in range(4)]
        if shrink:
            assert all(moved), (layer, (i, j), moved)  # top, left, bottom, right


@pytest.fixture(scope="module")
def image():
    return (np.random.default_rng(5).standard_normal((H, W, 3)) * 60).astype(np.float32)  # like preprocessed pixels


# im2col computes each output from its own window with the same GEMM row, so an unchanged window gives
# the same number up to the GEMM's summation order: 1e-6 of the layer's scale is float rounding.
@pytest.mark.parametrize("cls, layer_names", [
    (VGG16, ["block1_conv1", "block1_pool", "block2_conv2", "block3_conv3", "block4_pool", "block5_conv3"]),
    (VGG19, ["block3_conv4", "block4_conv4", "block5_pool"]),
])
def test_zeroing_outside_the_box_changes_nothing_and_inside_changes_something(cls, layer_names, image):
    model = cls(weights=None, include_top=False, method="im2col")
    for layer in layer_names:
        check_layer(model, layer, image, tol=1e-6)


def test_square_input_too():
    square = (np.random.default_rng(6).standard_normal((56, 56, 3)) * 60).astype(np.float32)
    model = VGG16(weights=None, include_top=False, method="im2col")
    for layer in ("block2_pool", "block4_conv1"):
        check_layer(model, layer, square, tol=1e-6)


# Winograd F(4x4, 3x3) transforms whole 6x6 input tiles, so zeroed neighbours of a window reach its
# outputs' last bits through the transforms: its relative error on VGG layers is ~1e-5 (test_winograd),
# so 1e-4 of the layer's scale allows that and nothing a changed window would give.
def test_zeroing_outside_the_box_with_winograd(image):
    model = VGG16(weights=None, include_top=False, method="winograd")
    for layer in ("block2_pool", "block3_conv3"):
        check_layer(model, layer, image, tol=1e-4, shrink=False)
