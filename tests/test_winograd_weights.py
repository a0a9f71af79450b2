"""The weight gradient by Winograd (winograd_weights.py): its naive twin, its fast kernel, the exact sum.

Tolerance. Both versions compute in float32 and are compared with the exact weight gradient (the
float64 sum of ``conv2d_backward_naive`` on float64 copies of the same float32 data) as
max|ours - exact| / max|exact|. A float32 im2col GEMM already rounds at ~3e-7 of that; Winograd's
transforms hold 2, 4 and 8 (A) and 1/4..1 (G), and each dU sums every tile, so a few bits go (measured:
up to 4e-6 on the shapes below, 5e-6 on block5 at batch 16). 5e-5 leaves 10x room above that and stays
far below what a real mistake gives: a wrong matrix entry, a tile shifted by one pixel or a dropped
edge each move dw by order 1e-1 of max|dw|.
"""
import numpy as np
import pytest

import conftest
from conftest import rand

import minivgg.layers.winograd_weights as ww
from minivgg.layers.conv import conv2d_backward_naive
from minivgg.layers.winograd_weights import conv3x3_winograd_weights, conv3x3_winograd_weights_naive

RTOL = 5e-5  # see the module docstring

# Lopsided shapes: H != W, sizes not a multiple of the 4x4 tile (ragged edges) and smaller than one
# tile, C != K, one channel, batches of 1 to 3.
SHAPES = [(1, 4, 4, 1, 1), (2, 7, 10, 3, 5), (1, 1, 1, 2, 3), (3, 9, 5, 6, 4), (1, 2, 13, 5, 2), (1, 13, 14, 17, 9),
          (2, 8, 8, 8, 16)]


def exact(x, dy):
    """dw and db of the 3x3, pad-1 convolution, summed in float64."""
    _, dw, db = conv2d_backward_naive(x.astype(np.float64), np.zeros((3, 3, x.shape[3], dy.shape[3])),
                                      dy.astype(np.float64), stride=1, pad=1)
    return dw, db


@pytest.mark.parametrize("N, H, W, C, K", SHAPES)
def test_naive_twin_and_fast_kernel_equal_the_exact_gradient(N, H, W, C, K):
    rng = np.random.default_rng(N * 100 + H * 10 + W)
    x, dy = rand(rng, N, H, W, C), rand(rng, N, H, W, K)
    dw_want, db_want = exact(x, dy)
    for version in (conv3x3_winograd_weights_naive, conv3x3_winograd_weights):
        dw, db = version(x, dy)
        assert dw.shape == (3, 3, C, K) and dw.dtype == np.float32 and db.shape == (K,)
        conftest.assert_close(dw, dw_want, RTOL)
        conftest.assert_close(db, db_want, 1e-6)  # a plain sum in float64, rounded once


def test_the_edge_outputs_count_and_the_outputs_past_it_do_not():
    # dy nonzero only in the last row and column, which sit in ragged tiles (7 = 4 + 3): those outputs
    # must count once; the tile's positions past the edge (row and column 7) must not count at all.
    rng = np.random.default_rng(3)
    x, dy = rand(rng, 1, 7, 7, 2), np.zeros((1, 7, 7, 3), np.float32)
    dy[0, 6, :, :], dy[0, :, 6, :] = 1.0, 2.0
    conftest.assert_close(conv3x3_winograd_weights(x, dy)[0], exact(x, dy)[0], RTOL)


def test_blocks_of_tiles_add_up_to_one_sum(monkeypatch):
    # Past BLOCK_FLOATS the tiles go through in blocks whose dU are added: the same gradient.
    rng = np.random.default_rng(5)
    x, dy = rand(rng, 3, 10, 9, 4), rand(rng, 3, 10, 9, 6)  # 3 * 3 * 3 = 27 tiles
    whole, _ = conv3x3_winograd_weights(x, dy)
    monkeypatch.setattr(ww, "BLOCK_FLOATS", 36 * 6 * 5)  # 5 tiles a block: 6 blocks, the last one short
    parts, _ = conv3x3_winograd_weights(x, dy)
    conftest.assert_close(parts, whole, RTOL)  # the same float32 sums, grouped otherwise
    conftest.assert_close(parts, exact(x, dy)[0], RTOL)


def test_error_on_a_block5_sized_layer():
    # VGG16's block5 at 14x14 (4 ragged tiles a side), 64 -> 64 channels, post-ReLU inputs as in the network.
    rng = np.random.default_rng(9)
    x, dy = np.maximum(rand(rng, 4, 14, 14, 64), 0), rand(rng, 4, 14, 14, 64)
    conftest.assert_close(conv3x3_winograd_weights(x, dy)[0], exact(x, dy)[0], RTOL)


def test_shapes_that_do_not_match_are_refused():
    with pytest.raises(ValueError, match="must share N, H, W"):
        conv3x3_winograd_weights(np.zeros((1, 4, 4, 2), np.float32), np.zeros((1, 4, 5, 3), np.float32))
