"""Maps at the input's resolution, from dS/dx: saliency, SmoothGrad, Integrated Gradients, guided
backprop and deconvnet.

Legend: N batch, H, W height and width (of the input), M copies (noisy or interpolated images).

Every method here is one or more backward passes to the input, ``model.gradients(x, seeds)``, with
the target's seed (``targets.py``) and ``layers=[]`` (only dS/dx is kept, no layer's gradient):

    saliency             max over colours of |dS/dx|                     Simonyan et al. 2014, sec. 3.1
    smoothgrad           max over colours of mean_m |dS/dx (x + noise_m)|   Smilkov et al. 2017, eq. 3
    integrated_gradients (x - b) * mean_k dS/dx (b + a_k (x - b))         Sundararajan et al. 2017, eq. 1
    guided_backprop      dS/dx with the "guided" ReLU rule             Springenberg et al. 2015, sec. 3.4
    deconvnet            dS/dx with the "deconvnet" ReLU rule              Zeiler & Fergus 2014, sec. 2.1

x is the preprocessed image (``preprocess_input``: BGR, ImageNet mean subtracted), the space the
network sees; maps are in that space too, channel order BGR.

Memory. SmoothGrad and IG send M = samples (or steps) copies of each image through the network. The
copies are made and sent ``batch`` at a time (default ``targets.BATCH`` = 8) and their gradients
summed as they come back, so memory is that of one batch of 8, whatever M is.
"""
import numpy as np

from ..files.preprocess import preprocess_input
from ..jit import passes
from .targets import BATCH, chunks, resolve, score


def input_gradients(model, x, target, relu="plain", batch=BATCH):
    """dS/dx for every image, ``batch`` images per backward pass.

    Inputs: x (N, H, W, 3) or (H, W, 3), preprocessed; target as in ``targets.resolve``;
    relu: "plain" | "guided" | "deconvnet". Returns (N, H, W, 3) float32.
    """
    x = model._check_input(x)  # (N, H, W, 3) float32
    t = resolve(model, x, target)
    out = np.empty_like(x)
    with passes():  # BLAS and memory settings, once for all the chunks (jit.py)
        for i in chunks(len(x), batch):
            out[i] = model.gradients(x[i], t.take(i).seeds(model, x[i]), relu=relu, logits=True, layers=[])["input"]
    return out


def saliency(model, x, target, batch=BATCH):
    """Vanilla saliency (Simonyan et al. 2014): |dS/dx|, its largest value over the 3 colour channels.

    x: (N, H, W, 3) or (H, W, 3), preprocessed. Returns (N, H, W) float32, >= 0.
    """
    return np.abs(input_gradients(model, x, target, batch=batch)).max(axis=3)  # (N, H, W, 3) -> (N, H, W)


def noise_scale(x, noise=0.2):
    """SmoothGrad's sigma per image: ``noise`` times the image's range, max(x) - min(x). (N,) float32."""
    return (noise * (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))).astype(np.float32)  # (N, H, W, 3) -> (N,)


def noisy_copies(x, samples=50, noise=0.2, seed=0, batch=BATCH):
    """SmoothGrad's noisy images, made ``batch`` at a time: yields (index, copies).

    Copy j = s * N + n is image n plus the s-th draw of Gaussian noise with sd ``noise_scale``;
    ``index`` (b,) holds the image n of each copy, ``copies`` is (b, H, W, 3). The draws come from
    ``np.random.default_rng(seed)`` in the order of j, so they do not depend on ``batch``.
    """
    N = len(x)
    sigma = noise_scale(x, noise)  # (N,)
    rng = np.random.default_rng(seed)
    for j in chunks(samples * N, batch):
        n = j % N
        draws = rng.standard_normal((len(j),) + x.shape[1:], dtype=np.float32)  # (b, H, W, 3)
        yield n, x[n] + sigma[n, None, None, None] * draws


def smoothgrad(model, x, target, samples=50, noise=0.2, seed=0, batch=BATCH):
    """SmoothGrad (Smilkov et al. 2017): saliency averaged over noisy copies of the image.

    - samples: noisy copies per image (default 50); noise: the noise's sd as a fraction of the
      image's range max(x) - min(x) (default 0.2, the paper's 10-20%); seed: the noise's seed
    - batch: copies per backward pass (memory does not grow with ``samples``)
    As tf-keras-vis computes it: the mean of |dS/dx| over the copies, then the largest value over the
    colour channels. Returns (N, H, W) float32.
    """
    x = model._check_input(x)  # (N, H, W, 3)
    t = resolve(model, x, target)
    total = np.zeros_like(x)  # (N, H, W, 3): sum of |dS/dx| over the copies of each image
    with passes():  # BLAS and memory settings, once for all the chunks (jit.py)
        for n, copies in noisy_copies(x, samples, noise, seed, batch):
            g = model.gradients(copies, t.take(n).seeds(model, copies), logits=True, layers=[])["input"]
            for k, i in enumerate(n):  # i may repeat within a chunk when N < batch
                total[i] += np.abs(g[k])
    return (total / samples).max(axis=3)  # (N, H, W, 3) -> (N, H, W)


def black(x):
    """IG's default baseline: a black image, in the network's input space (preprocess_input(0))."""
    return np.ascontiguousarray(preprocess_input(np.zeros_like(x)))  # (N, H, W, 3): -mean, BGR


def path_points(steps):
    """The a_k of IG's Riemann sum: the midpoints (k + 1/2) / steps, k = 0 .. steps - 1.

    The paper (eq. 3) uses the right ends k / steps; the midpoint rule costs the same and its error
    falls as 1/steps^2 instead of 1/steps (Captum's "riemann_middle").
    """
    return (np.arange(steps, dtype=np.float64) + 0.5) / steps


def integrated_gradients(model, x, target, steps=50, baseline=None, batch=BATCH):
    """Integrated Gradients (Sundararajan et al. 2017), with its completeness gap.

    Inputs:
    - x: (N, H, W, 3) or (H, W, 3), preprocessed; target as in ``targets.resolve``
    - steps: points on the straight path from the baseline b to x (default 50, ``path_points``)
    - baseline: None for a black image (``black``), or an array like x (preprocessed)
    - batch: path points per backward pass (memory does not grow with ``steps``)
    Returns:
    - attributions (N, H, W, 3) float32: (x - b) * mean_k dS/dx(b + a_k (x - b))
    - gap (N,) float64: (sum(attributions) - (S(x) - S(b))) / (S(x) - S(b)), how far the sum is from
      what completeness (the paper's Proposition 1) promises; NaN where S(x) == S(b)
    """
    x = model._check_input(x)  # (N, H, W, 3)
    t = resolve(model, x, target)
    b = black(x) if baseline is None else np.broadcast_to(model._check_input(baseline), x.shape)
    N, alphas = len(x), path_points(steps)
    total = np.zeros(x.shape, np.float64)  # (N, H, W, 3): sum of the gradients along each path
    with passes():  # BLAS and memory settings, once for all the chunks (jit.py)
        for j in chunks(steps * N, batch):  # point j = k * N + n: step k of image n
            n, a = j % N, alphas[j // N].astype(np.float32)[:, None, None, None]  # (b,), (b, 1, 1, 1)
            points = b[n] + a * (x[n] - b[n])  # (b, H, W, 3)
            g = model.gradients(points, t.take(n).seeds(model, points), logits=True, layers=[])["input"]
            for k, i in enumerate(n):
                total[i] += g[k]
    attributions = ((x - b) * (total / steps)).astype(np.float32)
    delta = score(model, x, t).astype(np.float64) - score(model, b, t)  # S(x) - S(b), (N,)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.where(delta != 0, (attributions.reshape(N, -1).sum(axis=1, dtype=np.float64) - delta) / delta, np.nan)
    return attributions, gap


def guided_backprop(model, x, target, batch=BATCH):
    """Guided backprop (Springenberg et al. 2015): dS/dx where every ReLU passes back only positive
    gradients at positive inputs. Returns (N, H, W, 3) float32 (signed; BGR like x)."""
    return input_gradients(model, x, target, relu="guided", batch=batch)


def deconvnet(model, x, target, batch=BATCH):
    """Deconvnet (Zeiler & Fergus 2014): dS/dx where every ReLU passes back the positive part of the
    gradient, whatever its input was. Returns (N, H, W, 3) float32 (signed; BGR like x)."""
    return input_gradients(model, x, target, relu="deconvnet", batch=batch)
