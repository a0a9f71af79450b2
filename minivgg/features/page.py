"""The feature-visualisation page: one self-contained HTML file beside the images it shows.

For each optimised image: the image (linked to its PNG), the objective's curve over the steps (an
inline SVG: nothing to fetch), the objective on the starting image and on the final one, and the
layer's five most active channels (or classes) on that image, its own target marked, so a reader sees
how specific the image is. Above them the settings and the grid of the layer. Built with
``report.write_page`` (atomic) and linked with sibling pages (``report.related_html``).
"""
import html
from typing import NamedTuple

import numpy as np

from ..files.imagenet import load_class_index
from ..visualize import report


class Card(NamedTuple):
    file: str  # the image's PNG, e.g. "block4_conv3_17.png"
    target: int  # its channel or class (-1 for deep dream)
    curve: np.ndarray  # (steps,) the objective at every step
    start: float  # the objective on the starting image
    final: float  # ... and on the final image (no transforms)
    top: list  # [(channel or class, mean activation or logit)], the five highest, highest first
    rank: int = None  # where its own target ranks among all channels (classes) on this image; 1 = first


def top5(activation):
    """The five most active channels (or classes) of each image: [[(index, value)] * 5] * N.

    activation: (N, H', W', C') -> per-channel means; (N, U) -> the scores themselves.
    """
    a = np.asarray(activation, np.float64)
    score = a.mean(axis=(1, 2)) if a.ndim == 4 else a  # (N, C') or (N, U)
    order = np.argsort(-score, axis=1, kind="stable")[:, :5]  # (N, 5), ties: the lower index first
    return [[(int(k), float(s[k])) for k in row] for s, row in zip(score, order)]


def rank(activation, targets):
    """Where each image's own target ranks among the layer's channels (or classes) on it: 1 = first."""
    a = np.asarray(activation, np.float64)
    score = a.mean(axis=(1, 2)) if a.ndim == 4 else a  # (N, C')
    own = score[np.arange(len(targets)), list(targets)]  # (N,)
    return [int(r) for r in 1 + np.sum(score > own[:, None], axis=1)]


def curve_svg(values, width=200, height=56):
    """The objective over the steps as a small inline SVG line, with its first and last value."""
    v = np.asarray(values, np.float64)
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo if hi > lo else 1.0
    xs = np.linspace(2, width - 2, len(v)) if len(v) > 1 else np.array([width / 2])
    ys = height - 2 - (v - lo) / span * (height - 4)
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
    return (f'<svg class="curve" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
            f"<title>objective from {v[0]:.3g} (step 1) to {v[-1]:.3g} (step {len(v)}); range {lo:.3g} to {hi:.3g}"
            f'</title><rect width="{width}" height="{height}" fill="#fff" stroke="#ccc"/>'
            f'<polyline points="{points}" fill="none" stroke="#3b528b" stroke-width="1.5"/></svg>')


def _name(kind, k):
    if kind == "class":
        return f"class {k} ({load_class_index()[str(k)][1].replace('_', ' ')})"
    return f"channel {k}"


def _curve_caption(kind, layer):
    if kind == "channel" and "conv" in layer:
        return "the objective at each step: the channel's mean before the ReLU, on that step's transformed image"
    return "the objective at each step, on that step's transformed image"


def _card(card, kind, layer, ranked):
    e = html.escape
    what = "deep dream" if kind == "dream" else _name(kind, card.target)
    factor = f" (&times;{card.final / card.start:.3g})" if card.start > 0 and kind != "class" else ""
    unit = "logit" if kind == "class" else ("mean squared activation" if kind == "dream" else "mean activation")
    rows = "".join(
        f'<tr class="{"own" if k == card.target else ""}"><td>{e(_name(kind if kind != "dream" else "channel", k))}</td>'
        f'<td class="num">{v:.3g}</td></tr>' for k, v in card.top)
    own = "class" if kind == "class" else "channel"
    where = "" if ranked is None else f'<p class="rank">its own {own} ranks <b>{ranked}</b> of all on this image</p>'
    return (f'<div class="card" id="t{card.target}"><h3>{e(layer)} &middot; {e(what)}</h3>'
            f'<a href="{e(card.file)}"><img src="{e(card.file)}" alt="{e(layer)} {e(what)}"></a>'
            f'<p class="num">{unit}: {card.start:.3g} &rarr; <b>{card.final:.3g}</b>{factor}</p>'
            f"{curve_svg(card.curve)}"
            f'<p class="note">{e(_curve_caption(kind, layer))}</p>'
            f'<table class="top"><caption>most active on this image</caption>{rows}</table>{where}</div>')


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.5em; margin: 0 0 .3em; } .intro { max-width: 62em; }
.head { display: flex; gap: 2em; align-items: flex-start; flex-wrap: wrap; margin: 1em 0; }
.head dl { display: grid; grid-template-columns: auto auto; gap: .2em 1em; margin: 0; }
.head dt { color: #666; } .head dd { margin: 0; }
.grid img { max-width: 100%; height: auto; border: 1px solid #ccc; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { width: 216px; padding: 8px; background: #fff; border: 1px solid #ddd; }
.card h3 { margin: 0 0 4px; font-size: 13px; }
.card img { width: 200px; height: 200px; display: block; image-rendering: auto; }
.card p { margin: 4px 0; font-size: 12px; } .num { font-variant-numeric: tabular-nums; }
table.top { font-size: 12px; border-collapse: collapse; width: 100%; }
table.top caption { text-align: left; color: #666; } table.top td { padding: 0 .4em 0 0; }
table.top td.num { text-align: right; } tr.own { background: #ffe9a8; font-weight: bold; }
.note { color: #666; } .warn { color: #a33; }
nav.related { margin: .3em 0; } nav.related:empty { display: none; }
"""


def page(kind, layer, cards, settings, grid_file=None, start_file=None, related="", missing="", title="VGG16"):
    """The whole page as a string.

    - kind: "channel", "class" or "dream"; layer: the layer optimised
    - cards: [Card], one per image, in the order of the targets
    - settings: label -> value pairs shown at the top; grid_file: the layer's grid (or None)
    - start_file: the photo the images started from (or None); related: ``report.related_html``
    - missing: a sentence shown in red (an interrupted run: which targets were not done)
    - title: the network ("VGG16" or "VGG19")
    """
    e = html.escape
    what = {"channel": f"what channels of {layer} look for", "class": f"what {title} draws for a class",
            "dream": f"deep dream on {layer}"}[kind]
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in settings.items())
    grid = (f'<figure class="grid"><a href="{e(grid_file)}"><img src="{e(grid_file)}" alt="all images of this run">'
            f"</a><figcaption>all images of this run, in order</figcaption></figure>") if grid_file else ""
    start = (f'<figure><img src="{e(start_file)}" alt="the starting photo" width="160">'
             "<figcaption>every image started from this photo</figcaption></figure>") if start_file else ""
    body = "".join(_card(c, kind, layer, c.rank) for c in cards)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{report.page_meta("features")}
<title>{e(title)} feature visualisation: {e(what)}</title>
<style>{STYLE}</style></head>
<body>
<h1>{e(title)}: {e(what)}</h1>
{related or report.related_html(None)}
<p class="intro">Each image was made by gradient ascent: starting from faint noise (or a photo), it was
changed step by step to raise its objective, the {"mean of one channel (before its ReLU, for a conv layer)" if kind == "channel" else
"pre-softmax score of one class" if kind == "class" else "mean squared activation of the whole layer"},
through a Fourier, colour-decorrelated parameterisation and small random shifts, scalings and
rotations at every step (Lucid's recipe; see minivgg/features/). Under each image: the objective at
the start and at the end, its curve over the steps, and which channels of the layer the finished
image excites most: a specific image has its own {"class" if kind == "class" else "channel"} first.</p>
{f'<p class="warn">{e(missing)}</p>' if missing else ""}
<div class="head">{start}<dl>{dl}</dl></div>
{grid}
<div class="cards">{body}</div>
</body></html>
"""
