"""Activation maximisation: gradient ascent on the image until the objective is high.

Legend: N batch (image i optimises target i: a channel or a class), H, W the image size, OH, OW
the size after the transforms, C' the layer's channels.

One step, for the whole batch (``Run.step``):

    p --Image.rgb--> rgb (N, H, W, 3) in (0, 1) --resample(draw())--> (N, OH, OW, 3)
      --to_network_input--> x --model.gradients(x, seed)--> dL/dx, and the objective per image
    dL/dx --to_network_input_backward--> --resample_backward--> --Image.backward--> dL/dp
    p <- Adam(p, dL/dp)      (ascent: L goes up)

Objectives (``objectives.py``): a channel's mean (pre-ReLU for conv layers), a class logit, or
deep dream's mean squared activation; ``objectives.gradient`` gives dL/dx through ``model.gradients``.

L is the sum over the batch of each image's objective, and no image's objective depends on another
image, so one backward pass gives each image its own gradient. The forward pass stops at the seeded
layer. Image i's starting noise comes from its own generator (``seed``, target), and the transforms'
draws from the step number: the same seed gives the same image whatever else is in the batch.
"""
import time
from typing import NamedTuple

import numpy as np
from PIL import Image

from ..errors import MinivggError
from ..jit import passes
from . import param as P
from . import transforms as T
from .objectives import Objective, gradient  # noqa: F401  (Objective: for users of optimise)

LEARNING_RATE = 0.05  # Lucid's render_vis default, Adam


class Adam:
    """Adam, Kingma & Ba, "Adam: A Method for Stochastic Optimization" (ICLR 2015), Algorithm 1,
    with their defaults beta1 = 0.9, beta2 = 0.999, eps = 1e-8 (as TF1's AdamOptimizer that Lucid
    used). Written for ascent: ``step`` moves p *up* its gradient.

        m <- b1 m + (1 - b1) g          v <- b2 v + (1 - b2) g^2         (moment estimates)
        m^ = m / (1 - b1^t)             v^ = v / (1 - b2^t)              (bias correction)
        p <- p + lr m^ / (sqrt(v^) + eps)

    Every number of p gets its own step size ~lr whatever the gradient's scale, which is why one lr
    suits every layer, and why a gradient that is only *nearly* zero still moves p (see the tests).
    """

    def __init__(self, lr=LEARNING_RATE, b1=0.9, b2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.m = self.v = None
        self.t = 0

    def step(self, p, g):
        if self.m is None:
            self.m, self.v = np.zeros_like(p), np.zeros_like(p)
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * g
        self.v = self.b2 * self.v + (1 - self.b2) * g * g
        m_hat = self.m / (1 - self.b1 ** self.t)
        v_hat = self.v / (1 - self.b2 ** self.t)
        p += (self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype(p.dtype)  # in place
        return p


def network_size(objective):
    """The input size the network needs after the transforms: (224, 224) for the class score, else None."""
    return (224, 224) if objective.kind == "class" else None


def evaluate(model, rgb, objective):
    """Run the images (N, H, W, 3) in [0, 1] as they are (no transforms) up to the objective's layer.

    Returns (values (N,), layer output): each image's objective and the layer's activation (pre-softmax
    scores for ``predictions``), for the page's top-5 and the tests.
    """
    x = P.to_network_input(rgb)
    for name, a in model.forward(x, logits=True, keep={objective.layer}):
        if name == objective.layer:
            return objective.values(a), a
    raise MinivggError(f"this model has no layer {objective.layer!r}")


class Run:
    """One batch being optimised. ``step()`` does one ascent step and returns each image's objective
    (as the step saw it: transformed); ``rgb()`` the images now, (N, H, W, 3) in (0, 1)."""

    def __init__(self, model, objective, image, seed=0, transforms=True, lr=LEARNING_RATE):
        self.model, self.objective, self.image = model, objective, image
        self.seed, self.transforms, self.t = seed, transforms, 0
        self.adam = Adam(lr)
        self.size = network_size(objective)

    def affine(self):
        """This step's transform: Lucid's random draw from the step's own generator, or none."""
        h, w = self.image.h, self.image.w
        if not self.transforms:
            return T.identity(h, w) if self.size is None else T.compose(h, w, [lambda h, w: T.centre_crop(h, w, *self.size)])
        return T.draw(np.random.default_rng([self.seed, 1, self.t]), h, w, self.size)

    def step(self, affine=None):
        """One ascent step with this step's random transform (or ``affine``, for benchmarks)."""
        affine = self.affine() if affine is None else affine
        rgb = self.image.rgb()  # (N, H, W, 3)
        x = P.to_network_input(T.resample(rgb, affine))  # (N, OH, OW, 3)
        dx, values = gradient(self.model, x, self.objective)
        drgb = T.resample_backward(P.to_network_input_backward(dx), affine, self.image.h, self.image.w)
        self.adam.step(self.image.p, self.image.backward(drgb))
        self.t += 1
        return values

    def rgb(self):
        return self.image.rgb()


def start_image(kind, n, h, w, seed, targets, photo=None):
    """The batch's starting images: Lucid's random start, each image from its own generator
    (seed, target), or every image the photo (H, W, 3) RGB 0..255."""
    if photo is not None:
        rgb = np.repeat(np.asarray(photo, np.float32)[None] / 255.0, n, axis=0)  # (H, W, 3) -> (N, H, W, 3)
        return P.Image.from_rgb(kind, rgb)
    rngs = [np.random.default_rng([seed, 0, int(t)]) for t in (targets or range(n))]
    return P.Image.random(kind, rngs, h, w)


class Result(NamedTuple):
    rgb: np.ndarray  # (N, H, W, 3) float32 in (0, 1): the final images, no transform
    curve: np.ndarray  # (steps, N) float64: each image's objective at each step, as the step saw it
    start: np.ndarray  # (N,) the reported value (``Objective.values``: after the ReLU) on the starting images
    final: np.ndarray  # (N,) ... and on the final images (no transform)
    activation: np.ndarray  # the layer's output on the final images (N, H', W', C') or (N, 1000)
    seconds: float

    def images(self):
        """The final images as PIL images (a notebook shows each inline), one per target."""
        return [to_image(a) for a in self.rgb]


def to_image(rgb):
    """(H, W, 3) in [0, 1] -> a PIL image, rounded to 8 bits."""
    return Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8))


def optimise(model, objective, size, steps, seed=0, param="fourier", transforms=True, lr=LEARNING_RATE,
             photo=None, on_step=None):
    """Maximise ``objective`` for every image of the batch; returns a ``Result``.

    Inputs:
    - model: a ``VGG16``; objective: an ``Objective`` (one image per target, or one for "dream")
    - size: the images' side S (they are S x S); steps: how many ascent steps
    - seed: the random start and the transforms' draws; param: "fourier" or "pixel" (``param.py``)
    - transforms: Lucid's random pad, jitter, scale and rotation at every step (``transforms.py``)
    - photo: start every image from this (S, S, 3) RGB 0..255 instead of noise
    - on_step: called as on_step(t, values) after every step (the progress bar); may raise
      KeyboardInterrupt, which propagates
    """
    if steps < 1:
        raise MinivggError(f"steps must be at least 1, got {steps}")
    t0 = time.perf_counter()
    n = max(1, len(objective.targets))
    image = start_image(param, n, size, size, seed, objective.targets, photo)
    with passes():  # BLAS and memory settings, once for the whole run (jit.py)
        start, _ = evaluate(model, image.rgb(), objective)
        run = Run(model, objective, image, seed, transforms, lr)
        curve = np.empty((steps, n))
        for t in range(steps):
            curve[t] = run.step()
            if on_step is not None:
                on_step(t + 1, curve[t])
        rgb = run.rgb()
        final, activation = evaluate(model, rgb, objective)
    return Result(rgb, curve, start, final, activation, time.perf_counter() - t0)
