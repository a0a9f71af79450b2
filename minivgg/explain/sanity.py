"""Sanity checks for saliency maps (Adebayo et al. 2018, "Sanity Checks for Saliency Maps", sec. 3.1):
cascading model randomisation, and the Spearman rank correlation it is scored with.

Legend: N batch, P pixels of one map.

The question: does a map depend on what the network learned? Redraw the weights from the top down
(the classifier first, then block5, ... block1), cumulatively, and recompute the map after each
step. A map that explains the *model* must change: its rank correlation with the original map
should fall towards 0. A map that stays the same while the network is replaced by random weights
shows something about the *image* (its edges, its contrast), not about what the network does.
Adebayo et al. found that guided backprop and guided Grad-CAM barely change; plain gradients,
SmoothGrad and Grad-CAM do.

Cheap on purpose: by default the weights are redrawn a block at a time (``by="block"``: the top's
three dense layers, then each conv block: 6 steps with the top), each map recomputed once per step;
``by="layer"`` redraws one layer at a time (16 steps). New weights are He-normal (std
sqrt(2 / fan_in)) with zero biases, as ``VGG16(weights=None)`` draws them.

Correlations compare the maps as the page shows them (``view``): |map| with its largest value over
the colour channels for (N, H, W, 3) maps, the map itself for (N, H, W) or (N, h, w) ones.
"""
import numpy as np

from ..errors import MinivggError
from .targets import resolve

INSENSITIVE = 0.5  # |Spearman| still above this with every layer redrawn: the map explains the image


def rank(a):
    """Ranks 1..P of the values of a (flattened), ties sharing their average rank. (P,) float64.

    Sort once; a run of equal values at sorted positions s .. e - 1 gets rank (s + e + 1) / 2.
    """
    a = np.asarray(a, np.float64).ravel()
    order = np.argsort(a, kind="stable")
    sorted_a = a[order]
    first = np.r_[True, sorted_a[1:] != sorted_a[:-1]]  # (P,) True where a run of ties starts
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], a.size]
    run = np.cumsum(first) - 1  # (P,) index of the run each sorted position belongs to
    ranks = np.empty(a.size)
    ranks[order] = ((starts + ends + 1) / 2)[run]
    return ranks


def spearman(a, b):
    """Spearman's rank correlation of two maps of the same shape: the Pearson correlation of their
    ranks (ties averaged). A float in [-1, 1]; NaN if either map is constant (no order to compare)."""
    if np.shape(a) != np.shape(b):
        raise MinivggError(f"maps to compare must have one shape, got {np.shape(a)} and {np.shape(b)}")
    ra, rb = rank(a), rank(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def spearman_naive(a, b):
    """The same from the definitions, by loops (for small maps): rank_i = 1 + #{a_j < a_i} +
    (#{a_j == a_i} - 1) / 2, then Pearson's formula."""
    def ranks(v):
        v = list(np.asarray(v, np.float64).ravel())
        return [1 + sum(u < vi for u in v) + (sum(u == vi for u in v) - 1) / 2 for vi in v]

    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((p - ma) * (q - mb) for p, q in zip(ra, rb))
    va, vb = sum((p - ma) ** 2 for p in ra), sum((q - mb) ** 2 for q in rb)
    return cov / (va * vb) ** 0.5 if va > 0 and vb > 0 else float("nan")


def view(maps):
    """A map as the page shows it: (N, H, W, 3) -> max over colours of |.| (N, H, W); 3-d maps as they are."""
    maps = np.asarray(maps)
    return np.abs(maps).max(axis=3) if maps.ndim == 4 else maps


def cascade(model, target_layer=None, by="block"):
    """The steps of the cascade: [(label, [layer names redrawn at this step])], from the top down.

    Only layers with weights at or below ``target_layer`` (those the target depends on; default the last).
    by="block": the top's dense layers together ("top"), then block5 ... block1; by="layer": one each.
    """
    if by not in ("block", "layer"):
        raise MinivggError(f"cascade steps are by 'block' or 'layer', got {by!r}")
    names = [row.name for row in model.layers]
    below = names[: names.index(target_layer or names[-1]) + 1]
    weighted = [name for name in reversed(below) if name in model.params]  # top first
    if by == "layer":
        return [(name, [name]) for name in weighted]
    steps = []
    for name in weighted:
        label = name.split("_")[0] if name.startswith("block") else "top"
        if steps and steps[-1][0] == label:
            steps[-1][1].append(name)
        else:
            steps.append((label, [name]))
    return steps


def redraw(model, names, rng):
    """New He-normal kernels and zero biases for ``names``: {name: (kernel, bias)}."""
    new = {}
    for name in names:
        kernel, bias = model.params[name]
        fan_in = int(np.prod(kernel.shape[:-1]))  # KH*KW*C for a conv, D for a dense layer
        k = rng.standard_normal(kernel.shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        new[name] = (k, np.zeros_like(bias))
    return new


def cascading_randomization(model, x, target, methods, by="block", seed=0, originals=None, on_step=None):
    """Adebayo et al.'s cascading randomisation of ``model``, scored per method and image.

    Inputs:
    - x: (N, H, W, 3) preprocessed; target as in ``targets.resolve``
    - methods: {name: f(model, x, target) -> maps}, e.g. {"saliency": explain.saliency}
    - by: "block" or "layer" (see ``cascade``); seed: the new weights' seed
    - originals: {name: maps} already computed on ``model`` (else computed here)
    - on_step: called as on_step(label) after each step (progress)
    Returns {"steps": [label, ...], "spearman": {name: (N, steps) float64}}: the rank correlation of
    each image's map after step s with its original map.
    """
    x = model._check_input(x)
    t = resolve(model, x, target)
    originals = dict(originals or {})
    for name, f in methods.items():
        if name not in originals:
            originals[name] = f(model, x, target)
    steps = cascade(model, t.layer, by)
    rng = np.random.default_rng(seed)
    drawn, rho = {}, {name: np.empty((len(x), len(steps))) for name in methods}
    for s, (label, names) in enumerate(steps):
        drawn.update(redraw(model, names, rng))  # cumulative: every step above stays redrawn
        randomized = model.with_params(drawn)
        for name, f in methods.items():
            before, after = view(originals[name]), view(f(randomized, x, target))
            rho[name][:, s] = [spearman(before[n], after[n]) for n in range(len(x))]
        if on_step:
            on_step(label)
    return {"steps": [label for label, _ in steps], "spearman": rho}


def insensitive(rhos):
    """True where a method's map failed the check: |rho| >= INSENSITIVE with every layer redrawn.

    rhos: (N, steps) from ``cascading_randomization``; returns (N,) bool. NaN (the redrawn network
    gave a constant map, e.g. the target channel went dead) passes: the map did not survive."""
    last = np.abs(np.asarray(rhos)[:, -1])
    return np.nan_to_num(last, nan=0.0) >= INSENSITIVE
