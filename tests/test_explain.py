"""The explanation methods' own properties, without TensorFlow (tests/test_explain_tf.py compares
them with TensorFlow): shapes and batching, IG's completeness, Grad-CAM's closed form on a linear
top, zero saliency where the target cannot see, the CAM post-processing steps, Spearman's rho, the
cascading randomisation, and one-line errors.

Small inputs (lopsided, 48x80: block5 is 3x5) on random He-normal weights wherever the point does
not need 224x224 and the top.
"""
import numpy as np
import pytest

from minivgg import MinivggError, VGG16, explain
from minivgg.explain import sanity
from minivgg.explain.cam import layer_gradients, upsample_naive
from minivgg.explain.gradient_maps import black, noisy_copies, path_points
from minivgg.explain.targets import resolve, score


@pytest.fixture(scope="module")
def notop():
    return VGG16(weights=None, include_top=False)


@pytest.fixture(scope="module")
def x2():
    """Two lopsided images (48x80), preprocessed-like values (about -120 .. 150)."""
    rng = np.random.default_rng(0)
    return (rng.uniform(0, 255, (2, 48, 80, 3)) - 110).astype(np.float32)


@pytest.fixture(scope="module")
def live(notop, x2):
    """A (layer, channels) target whose channel is active on both images (a dead one has no gradient)."""
    a = notop.activations(x2, ["block5_pool"])["block5_pool"]  # (2, 1, 2, 512)
    return "block5_pool", [int(np.argmax(a[0].mean(axis=(0, 1)))), int(np.argmax(a[1].mean(axis=(0, 1))))]


def test_shapes_and_one_map_per_image(notop, x2, live):
    N, H, W = 2, 48, 80
    assert explain.saliency(notop, x2, live).shape == (N, H, W)
    assert explain.smoothgrad(notop, x2, live, samples=2).shape == (N, H, W)
    attributions, gap = explain.integrated_gradients(notop, x2, live, steps=4)
    assert attributions.shape == (N, H, W, 3) and gap.shape == (N,)
    assert explain.guided_backprop(notop, x2, live).shape == (N, H, W, 3)
    assert explain.deconvnet(notop, x2, live).shape == (N, H, W, 3)
    assert explain.grad_cam(notop, x2, live).shape == (N, 3, 5)  # block5_conv3 of 48x80: /16
    assert explain.layer_cam(notop, x2, live, layer="block3_conv1").shape == (N, 12, 20)
    assert explain.guided_grad_cam(notop, x2, live).shape == (N, H, W, 3)
    # a single (H, W, 3) image is a batch of one
    assert explain.saliency(notop, x2[0], (live[0], live[1][0])).shape == (1, H, W)


def test_batched_equals_one_by_one_and_batch_size_does_not_matter(x2, live):
    """Each image's map is its own: computed in one batch, in batches of 1, or alone. SmoothGrad's
    noise draws do not depend on the batch size. Bar: 1e-4 of the map's max, the project's bar; a
    GEMM over 1 or 2 images sums in another order (measured 1e-5 after 16 layers), while a map
    taken from the wrong image or noise draw differs by O(1).

    The model is batch-invariant (its forward pass gives each image the bits it gives alone): some
    BLAS builds round a row of a GEMM differently with the number of rows (OpenBLAS with
    OPENBLAS_CORETYPE=Haswell, measured: every row of (M, 64) @ (64, 64) depends on M), and then one
    ReLU whose input lies within rounding of 0 can flip between batchings and move a map by 1e-2
    locally: a fact of float32, not a wrong map. The backward pass still batches its GEMMs."""
    notop = VGG16(weights=None, include_top=False, batch_invariant=True)  # the same seeded weights as ``notop``
    layer, ch = live
    both = explain.saliency(notop, x2, live)
    one = explain.saliency(notop, x2[1:], (layer, ch[1]))
    np.testing.assert_allclose(both[1], one[0], rtol=0, atol=1e-4 * both.max())
    a = explain.smoothgrad(notop, x2, live, samples=3, batch=4)
    b = explain.smoothgrad(notop, x2, live, samples=3, batch=1)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * a.max())
    c = explain.grad_cam(notop, x2, live, batch=1)
    np.testing.assert_allclose(explain.grad_cam(notop, x2, live), c, rtol=0, atol=1e-4 * c.max())


def test_noisy_copies_are_seeded_and_scaled_to_the_range(x2):
    copies = np.concatenate([c for _, c in noisy_copies(x2, samples=40, noise=0.2, seed=3, batch=7)])
    index = np.concatenate([n for n, _ in noisy_copies(x2, samples=40, noise=0.2, seed=3, batch=7)])
    assert copies.shape == (80, 48, 80, 3) and index.tolist() == [0, 1] * 40  # copy j = s * N + n
    for n in range(2):
        sd = (copies[index == n] - x2[n]).std()
        want = 0.2 * (x2[n].max() - x2[n].min())
        assert abs(sd / want - 1) < 0.01  # 40 * 11520 draws: the sd is known to 0.4%
    again = np.concatenate([c for _, c in noisy_copies(x2, samples=40, noise=0.2, seed=3, batch=16)])
    np.testing.assert_array_equal(copies, again)


def test_integrated_gradients_gap_shrinks_with_steps(notop, x2, live):
    """Completeness (Sundararajan et al., Prop. 1): sum(attributions) -> S(x) - S(baseline) as the
    Riemann sum gets finer. The gap is checked against its definition, then for shrinking."""
    t = resolve(notop, x2, live)
    gaps = []
    for steps in (2, 64):
        attributions, gap = explain.integrated_gradients(notop, x2, live, steps=steps)
        delta = score(notop, x2, t).astype(np.float64) - score(notop, black(x2), t)
        np.testing.assert_allclose(gap, (attributions.reshape(2, -1).sum(axis=1) - delta) / delta, rtol=1e-4)
        gaps.append(np.abs(gap))
    assert np.all(gaps[1] < gaps[0]) and np.all(gaps[1] < 0.05), gaps
    assert path_points(4).tolist() == [0.125, 0.375, 0.625, 0.875]


def test_integrated_gradients_of_a_linear_score_is_exact():
    """The channel mean of block1_conv1 with positive kernels and biases, on positive images: every
    ReLU stays on along the whole path, so S is linear in x and IG = (x - b) * dS/dx whatever the
    steps, with a gap at float32 rounding."""
    model = VGG16(weights=None, include_top=False)
    k, b = model.params["block1_conv1"]
    model = model.with_params({"block1_conv1": (np.abs(k), b + 1)})
    rng = np.random.default_rng(1)
    x = rng.uniform(1, 50, (1, 32, 40, 3)).astype(np.float32)
    base = rng.uniform(1, 50, x.shape).astype(np.float32)  # positive too: the ReLU stays on all along the path
    attributions, gap = explain.integrated_gradients(model, x, ("block1_conv1", 5), steps=3, baseline=base)
    g = model.gradients(x, {"block1_conv1": np.eye(64, dtype=np.float32)[5] * np.ones((1, 32, 40, 1), np.float32) / (32 * 40)})["input"]
    np.testing.assert_allclose(attributions, (x - base) * g, rtol=1e-4, atol=1e-7)
    assert abs(gap[0]) < 1e-4  # float32 sums of 3840 terms


def test_grad_cam_of_a_linear_top_equals_its_closed_form():
    """A linear top: non-negative fc kernels and positive biases keep every fc ReLU on (their inputs
    are >= 0 after block5's ReLUs), so the logit is S = v . block5_pool + c with v = W1 W2 w3[:, k].
    Then dS/dA at block5_conv3 is v routed to each 2x2 window's winner, and Grad-CAM's channel weight is
    alpha_k = sum over the 7x7 windows of v[i, j, k] / 196 (one winner per window, 14x14 positions):
    CAM = ReLU(sum_k alpha_k A_k), computed here without any backward pass."""
    model = VGG16(weights=None, include_top=True)
    new = {name: (np.abs(model.params[name][0]), np.ones_like(model.params[name][1])) for name in ("fc1", "fc2", "predictions")}
    model = model.with_params(new)
    x = (np.random.default_rng(2).uniform(0, 255, (1, 224, 224, 3)) - 110).astype(np.float32)
    acts = model.activations(x, ["block5_conv3", "fc1", "fc2"])
    assert (acts["fc1"] > 0).all() and (acts["fc2"] > 0).all()  # the top really is linear here
    k = 7
    W1, W2, w3 = new["fc1"][0], new["fc2"][0], new["predictions"][0][:, k]
    v = (W1.astype(np.float64) @ (W2.astype(np.float64) @ w3)).reshape(7, 7, 512)  # (25088,) -> (H, W, C) as flatten
    alpha = v.sum(axis=(0, 1)) / (14 * 14)  # (512,)
    want = np.maximum(np.einsum("hwk,k->hw", acts["block5_conv3"][0].astype(np.float64), alpha), 0)
    cam = explain.grad_cam(model, x, k)
    assert cam.shape == (1, 14, 14)
    np.testing.assert_allclose(cam[0], want, rtol=0, atol=1e-4 * want.max())  # float32 sums of 4096-25088 terms


def test_saliency_is_zero_where_the_target_cannot_see():
    """Positive block1_conv1 kernels with zero bias see a very dark left part (x = -500) only as
    negative pre-activations: every ReLU there is off, the channel means ignore that region, and its
    gradient must be exactly 0 (a 3x3 conv reaches 1 pixel across the border). Deconvnet ignores
    the forward ReLU masks, so it alone still sends gradient there."""
    model = VGG16(weights=None, include_top=False)
    k, b = model.params["block1_conv1"]
    model = model.with_params({"block1_conv1": (np.abs(k), np.zeros_like(b))})
    x = np.random.default_rng(3).uniform(0, 100, (1, 32, 48, 3)).astype(np.float32)
    x[:, :, :20] = -500  # columns 0..19 dark; 0..18 reach only dead units
    target = ("block2_conv1", 3)
    s = explain.saliency(model, x, target)
    assert (s[0, :, :19] == 0).all() and s[0, :, 20:].max() > 0
    assert (explain.guided_backprop(model, x, target)[0, :, :19] == 0).all()
    assert (explain.integrated_gradients(model, x, target, steps=2, baseline=np.full_like(x, -500))[0][0, :, :19] == 0).all()
    assert np.abs(explain.deconvnet(model, x, target)[0, :, :19]).max() > 0


def test_layer_gradients_are_the_layer_output_and_its_gradient(notop, x2, live):
    A, G = layer_gradients(notop, x2, live, "block4_conv2")
    assert A.shape == G.shape == (2, 6, 10, 512)
    np.testing.assert_array_equal(A, notop.activations(x2, ["block4_conv2"])["block4_conv2"])
    seeds = resolve(notop, x2, live).seeds(notop, x2)
    np.testing.assert_array_equal(G, notop.gradients(x2, seeds, layers=["block4_conv2"])["block4_conv2"])
    alpha = G.mean(axis=(1, 2))
    np.testing.assert_allclose(explain.grad_cam(notop, x2, live, "block4_conv2"),
                               np.maximum((A * alpha[:, None, None]).sum(axis=3), 0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(explain.layer_cam(notop, x2, live, "block4_conv2"),
                               np.maximum((A * np.maximum(G, 0)).sum(axis=3), 0), rtol=1e-5, atol=1e-7)


def test_backward_pass_stops_at_the_layer_when_no_input_gradient_is_wanted(notop, x2, live, monkeypatch):
    """``input=False`` (what Grad-CAM uses): the same dS/dA, no "input", and no conv below the layer
    runs its backward pass."""
    import minivgg.network.backprop as bp

    seeds = resolve(notop, x2, live).seeds(notop, x2)
    full = notop.gradients(x2, seeds, layers=["block4_conv2"])
    ran = []
    real = bp.conv2d_backward_input
    monkeypatch.setattr(bp, "conv2d_backward_input", lambda g, k, **kw: ran.append(k.shape) or real(g, k, **kw))
    short = notop.gradients(x2, seeds, layers=["block4_conv2"], input=False)
    assert set(short) == {"block4_conv2"} and set(full) == {"input", "block4_conv2"}
    np.testing.assert_array_equal(short["block4_conv2"], full["block4_conv2"])
    assert len(ran) == 4  # block5_conv3 ... block4_conv3: the convs above block4_conv2 only


def test_overlay_draws_the_map_over_the_dimmed_grey_photo(tmp_path):
    """Where the map is at its low the pixel is the grey photo dimmed to DIM; at its top it is mostly
    the colour map's last colour. A CAM is upsampled to the photo first."""
    from PIL import Image

    from minivgg.explain import overlay as ov

    photo = np.zeros((6, 10, 3), np.float32)
    photo[..., 0] = 200  # pure red: grey 0.299 * 200
    m = np.zeros((6, 10), np.float32)
    m[:, 5:] = 1.0
    img = np.asarray(ov.overlay(photo, m))
    assert img.shape == (6, 10, 3)
    np.testing.assert_allclose(img[:, :5], round(ov.DIM * 0.299 * 200), atol=1)
    top = (1 - ov.ALPHA) * ov.DIM * 0.299 * 200 + ov.ALPHA * ov.CMAPS[ov.CMAP][255].astype(np.float32)
    np.testing.assert_allclose(img[:, 5:], np.broadcast_to(np.round(top), (6, 5, 3)), atol=1)
    assert np.asarray(ov.overlay(photo, np.ones((3, 5, 3)))).shape == (6, 10, 3)  # (H, W, 3) at another size: upsampled view
    assert ov.scale(np.full((4, 4), 2.0)).max() == 0  # a constant map shows nothing
    ov.save(Image.fromarray(img), tmp_path / "a.png")
    ov.save(Image.fromarray(img), tmp_path / "a.jpg")
    ov.save_npy(m, tmp_path / "m.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), m)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "a.png", "m.npy"]  # no temporary left
    with pytest.raises(MinivggError, match="png or .jpg"):
        ov.save(Image.fromarray(img), tmp_path / "a.gif")


@pytest.mark.parametrize("h, w, H, W", [(3, 5, 48, 80), (14, 14, 224, 224), (7, 4, 9, 30), (2, 3, 2, 3), (5, 6, 3, 4)])
def test_upsample_equals_its_naive_twin(h, w, H, W):
    cam = np.random.default_rng(h * w).uniform(0, 1, (2, h, w)).astype(np.float32)
    np.testing.assert_allclose(explain.upsample(cam, (H, W)), upsample_naive(cam, (H, W)), rtol=0, atol=1e-6)


def test_upsample_keeps_constants_and_normalize_spans_0_1():
    np.testing.assert_allclose(explain.upsample(np.full((1, 3, 4), 2.5, np.float32), (10, 7)), 2.5)
    maps = np.array([[[1.0, 3.0], [2.0, 5.0]], [[4.0, 4.0], [4.0, 4.0]]], np.float32)
    out = explain.normalize(maps)
    np.testing.assert_allclose(out[0], [[0, 0.5], [0.25, 1]])
    assert (out[1] == 0).all()  # a constant map has no scale: all 0


def test_spearman_equals_its_naive_twin_with_ties():
    rng = np.random.default_rng(4)
    for shape in [(5, 7), (3, 4, 2), (40,)]:
        a = rng.integers(0, 4, shape).astype(np.float32)  # many ties
        b = a + rng.normal(0, 1, shape)
        assert abs(explain.spearman(a, b) - sanity.spearman_naive(a, b)) < 1e-12
    a = rng.normal(size=50)
    assert explain.spearman(a, np.exp(a)) == pytest.approx(1)  # any increasing map of a: rho 1
    assert explain.spearman(a, -a ** 3) == pytest.approx(-1)
    assert np.isnan(explain.spearman(a, np.zeros(50)))
    assert sanity.rank([3, 1, 3, 2]).tolist() == [3.5, 1, 3.5, 2]
    with pytest.raises(MinivggError):
        explain.spearman(np.zeros(3), np.zeros(4))


def test_cascade_steps_run_from_the_top_down():
    top = VGG16.__new__(VGG16)  # only .layers and .params are read
    from minivgg.network.table import layers

    LAYERS = layers("vgg16")

    top.layers, top.params = LAYERS, {r.name: None for r in LAYERS if r.kind in ("conv", "dense")}
    steps = sanity.cascade(top)
    assert [label for label, _ in steps] == ["top", "block5", "block4", "block3", "block2", "block1"]
    assert steps[0][1] == ["predictions", "fc2", "fc1"] and steps[-1][1] == ["block1_conv2", "block1_conv1"]
    assert len(sanity.cascade(top, by="layer")) == 16
    assert [label for label, _ in sanity.cascade(top, "block3_pool")] == ["block3", "block2", "block1"]


def test_cascading_randomization_separates_guided_backprop_from_saliency(notop, x2, live):
    """Adebayo et al.'s finding, on our maps: with every layer redrawn, guided backprop's map still
    ranks pixels almost as before (it shows the image), the plain gradient's does not."""
    methods = {"saliency": explain.saliency, "guided_backprop": explain.guided_backprop}
    result = explain.cascading_randomization(notop, x2, live, methods, seed=1)
    assert result["steps"] == ["block5", "block4", "block3", "block2", "block1"]
    rho = result["spearman"]
    assert rho["saliency"].shape == (2, 5)
    assert (np.nan_to_num(rho["guided_backprop"][:, 0]) > np.nan_to_num(rho["saliency"][:, 0])).all()
    assert sanity.insensitive(np.array([[0.9, 0.7], [0.9, 0.2], [0.9, np.nan]])).tolist() == [True, False, False]
    # the model itself is left as it was
    again = explain.saliency(notop, x2, live)
    np.testing.assert_array_equal(again, explain.saliency(notop, x2, live))


def test_with_params_replaces_only_what_it_is_given(notop):
    k, b = notop.params["block3_conv2"]
    new = notop.with_params({"block3_conv2": (2 * k, b)})
    assert new.params["block3_conv2"][0][0, 0, 0, 0] == 2 * k[0, 0, 0, 0]
    assert notop.params["block3_conv2"][0] is k and new.params["block1_conv1"][0] is notop.params["block1_conv1"][0]
    x = np.random.default_rng(5).normal(0, 50, (1, 32, 32, 3)).astype(np.float32)
    a, b2 = notop.activations(x, ["block3_conv2"])["block3_conv2"], new.activations(x, ["block3_conv2"])["block3_conv2"]
    assert not np.allclose(a, b2)
    with pytest.raises(MinivggError, match="shapes"):
        notop.with_params({"block3_conv2": (k[:1], b)})
    with pytest.raises(MinivggError, match="no weights"):
        notop.with_params({"fc1": (k, b)})


@pytest.mark.parametrize("call, message", [
    (lambda m, x: explain.saliency(m, x, 3), "needs the network's top"),
    (lambda m, x: explain.saliency(m, x, ("block9_conv1", 0)), "not a conv or pool layer"),
    (lambda m, x: explain.saliency(m, x, ("block5_conv3", 512)), "channels 0 to 511"),
    (lambda m, x: explain.saliency(m, x, ("block5_conv3", [1, 2, 3])), "one int per image"),
    (lambda m, x: explain.grad_cam(m, x, ("block5_conv3", 0), layer="block5_pool"), "not a conv layer"),
    (lambda m, x: explain.grad_cam(m, x, ("block3_conv1", 0), layer="block4_conv1"), "above the target's layer"),
    (lambda m, x: explain.smoothgrad(m, x, ("block3_conv1", 0), batch=0), "batch must be a positive int"),
])
def test_errors_are_one_line(notop, x2, call, message):
    with pytest.raises(MinivggError, match=message) as e:
        call(notop, x2)
    assert "\n" not in str(e.value)


def test_class_out_of_range_with_top():
    model = VGG16.__new__(VGG16)  # only .layers and .include_top are read
    from minivgg.network.table import layers

    LAYERS = layers("vgg16")

    model.layers, model.include_top = LAYERS, True
    x = np.zeros((1, 224, 224, 3), np.float32)
    with pytest.raises(MinivggError, match="0 to 999"):
        resolve(model, x, 1000)
    with pytest.raises(MinivggError, match="0 to 999"):
        resolve(model, x, -1)
    assert resolve(model, x, 5).ids.tolist() == [5]
