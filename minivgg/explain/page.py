"""The page of ``scripts/explain.py``: one self-contained HTML file beside the overlays it shows.

The photo, the top-5 classes, then a table: a row per target (a class, or a channel of a layer), a
column per method. Each cell: the overlay (linked to the full-size PNG and the raw map's .npy), the
time the method took, IG's completeness gap, and the sanity check (Adebayo et al. 2018) as a small
inline SVG of the Spearman correlation after each randomisation step, with a warning in plain words
where the map barely changed while the network was replaced by random weights. No scripts, fonts or
anything from outside: it opens from disk, offline. Written with ``report.write_page`` (atomic) and
linked both ways with sibling pages (``report.related_html``, e.g. visualize.py's feature maps).
"""
import html
from typing import NamedTuple

import numpy as np

from ..visualize import report
from .overlay import CMAP, legend_text
from .sanity import INSENSITIVE

METHOD_TEXT = {  # name -> (column title, what it is, in one line)
    "saliency": ("Saliency", "|dS/dx|, the largest over the colours: which pixels, changed a little, move the "
                             "score most (Simonyan et al. 2014)"),
    "smoothgrad": ("SmoothGrad", "saliency averaged over noisy copies of the image: less speckle "
                                 "(Smilkov et al. 2017)"),
    "integrated_gradients": ("Integrated Gradients", "gradients summed along the way from a black image to "
                                                     "this one, times the change: they add up to the change "
                                                     "of the score (Sundararajan et al. 2017)"),
    "guided_backprop": ("Guided backprop", "gradients where every ReLU passes back only positive signals "
                                           "(Springenberg et al. 2015)"),
    "deconvnet": ("Deconvnet", "every ReLU passes back the positive part of the signal, whatever its input "
                               "(Zeiler & Fergus 2014)"),
    "grad_cam": ("Grad-CAM", "the conv layer's channels weighted by their mean gradient: where the evidence "
                             "is, at the layer's coarse resolution (Selvaraju et al. 2017)"),
    "layer_cam": ("LayerCAM", "each position's channels weighted by their own positive gradient: finer, "
                              "works on earlier layers (Jiang et al. 2021)"),
    "guided_grad_cam": ("Guided Grad-CAM", "guided backprop times the Grad-CAM: fine detail, only where "
                                           "Grad-CAM points (Selvaraju et al. 2017)"),
}


class Cell(NamedTuple):
    method: str  # a name in explain.METHODS
    overlay: str  # the overlay's PNG, e.g. "class281_saliency.png"
    npy: str  # the raw map, e.g. "class281_saliency.npy"
    shape: tuple  # the raw map's shape
    seconds: float  # the time the method took for this target
    gap: float = None  # IG's relative completeness gap
    spearman: list = None  # the rank correlation with the original map after each randomisation step
    insensitive: bool = None  # True: the map barely changed with every layer redrawn (failed the check)


class Target(NamedTuple):
    label: str  # "class 281 (tabby), 62.1%" or "block5_conv3, channel 17"
    cells: list  # [Cell], in column order


def sanity_svg(rhos, steps, width=180, height=64):
    """Spearman's rho after each randomisation step as a small inline SVG: the original map at 1 on
    the left, one point per step, the dashed line at +-INSENSITIVE, the axis from -1 to 1."""
    v = [1.0] + [float(r) for r in rhos]  # step 0: the map against itself
    xs = np.linspace(8, width - 8, len(v))

    def y(r):
        return 4 + (1 - r) / 2 * (height - 8)  # rho 1 at the top, -1 at the bottom

    finite = [(x_, y(r)) for x_, r in zip(xs, v) if np.isfinite(r)]
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in finite)
    labels = ", ".join(f"{s} {r:.2f}" for s, r in zip(steps, v[1:]))
    dots = "".join(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2" fill="#3b528b"/>' for a, b in finite)
    return (f'<svg class="sanity" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
            f"<title>Spearman's rho with the original map after redrawing, cumulatively: {html.escape(labels)}</title>"
            f'<rect width="{width}" height="{height}" fill="#fff" stroke="#ccc"/>'
            f'<line x1="0" x2="{width}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#ddd"/>'
            f'<line x1="0" x2="{width}" y1="{y(INSENSITIVE):.1f}" y2="{y(INSENSITIVE):.1f}" stroke="#c33" '
            f'stroke-dasharray="3,3"/>'
            f'<line x1="0" x2="{width}" y1="{y(-INSENSITIVE):.1f}" y2="{y(-INSENSITIVE):.1f}" stroke="#c33" '
            f'stroke-dasharray="3,3"/>'
            f'<polyline points="{points}" fill="none" stroke="#3b528b" stroke-width="1.5"/>{dots}</svg>')


def _cell(c, steps):
    e = html.escape
    title = METHOD_TEXT[c.method][0]
    parts = [f'<a href="{e(c.overlay)}"><img src="{e(c.overlay)}" alt="{e(title)}" title="{e(title)}"></a>',
             f'<p class="nums">{c.seconds:.2f} s &middot; raw map <a href="{e(c.npy)}">{e(c.npy)}</a> '
             f'{" x ".join(map(str, c.shape))}</p>']
    if c.gap is not None:
        ok = np.isfinite(c.gap) and abs(c.gap) <= 0.05
        parts.append(f'<p class="nums{"" if ok else " warn"}">completeness gap {100 * c.gap:+.2f}% '
                     f'{"(the attributions add up to the change of the score)" if ok else "(more --steps would close it)"}'
                     "</p>")
    if c.spearman is not None:
        rhos = " ".join(f"{r:.2f}" for r in c.spearman)
        parts.append(f'{sanity_svg(c.spearman, steps)}<p class="nums">rho: {e(rhos)}</p>')
        if c.insensitive:
            parts.append(f'<p class="warn">Warning: this map barely changes when the network\'s weights are '
                         f"replaced by random ones (rank correlation still {abs(c.spearman[-1]):.2f} with every layer "
                         f"redrawn). It shows the image (its edges and contrast) more than what the model learned: "
                         f"do not read it as the model's reason.</p>")
        else:
            parts.append('<p class="ok">Passes: the map changes as the network is randomised, so it depends on '
                         "what the model learned.</p>")
    return f'<td>{"".join(parts)}</td>'


STYLE = report.STYLE + """
table.maps { border-collapse: collapse; }
table.maps th, table.maps td { vertical-align: top; padding: 8px; border: 1px solid #ddd; background: #fff; }
table.maps thead th { width: 200px; text-align: left; font-weight: normal; font-size: 12px; color: #444; }
table.maps thead th b { display: block; font-size: 14px; color: #222; }
table.maps tbody th { writing-mode: vertical-rl; transform: rotate(180deg); background: #eee; }
table.maps td img { width: 200px; height: auto; display: block; }
.nums { font-size: 12px; color: #444; margin: .3em 0 0; font-variant-numeric: tabular-nums; }
.warn { color: #b00; font-size: 12px; margin: .3em 0 0; max-width: 200px; }
.ok { color: #262; font-size: 12px; margin: .3em 0 0; max-width: 200px; }
svg.sanity { display: block; margin-top: .4em; }
"""


def page(image_name, photo_file, predictions, targets, settings, sanity_steps=None, related="", title="VGG16"):
    """The whole page as a string.

    - photo_file: the image as the network saw it (RGB); predictions: [(id, name, score)] or None
    - targets: [Target], a row each; settings: label -> value shown at the top
    - sanity_steps: the randomisation steps' labels (["top", "block5", ...]) or None (no sanity check)
    - related: the block of links to sibling pages (``report.related_html``)
    - title: the network ("VGG16" or "VGG19")
    """
    e = html.escape
    methods = [c.method for c in targets[0].cells] if targets else []
    head = "".join(f"<th><b>{e(METHOD_TEXT[m][0])}</b>{e(METHOD_TEXT[m][1])}</th>" for m in methods)
    rows = "".join(f"<tr><th>{e(t.label)}</th>{''.join(_cell(c, sanity_steps) for c in t.cells)}</tr>"
                   for t in targets)
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in settings.items())
    legend = report.scale_bar(CMAP, "low", "high")
    if sanity_steps:
        sanity = (f"<p class=\"intro\"><b>Sanity check</b> (Adebayo et al. 2018, cascading randomisation): the "
                  f"network's weights were replaced by random ones from the top down, "
                  f"{e(', then '.join(sanity_steps))}, cumulatively, and every map computed again after each step. "
                  f"Under each map: Spearman's rank correlation rho between the new map and the original, one point "
                  f"per step (rho 1 at the top of the box, -1 at the bottom, the dashed lines at +-{INSENSITIVE:g}). "
                  f"A map that explains the <i>model</i> must change as the model is destroyed, so rho should fall "
                  f"towards 0. A map that still correlates above {INSENSITIVE:g} with every layer redrawn shows "
                  f"the image, not the model: such maps are marked in red.</p>")
    else:
        sanity = '<p class="note">No sanity check in this run (--no-sanity).</p>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{report.page_meta("explain")}
<title>Why {e(title)} chose its class: attribution maps of {e(image_name)}</title>
<style>{STYLE}</style></head>
<body>
<h1>Why {e(title)} chose its class: {e(image_name)}</h1>
{related or report.related_html(None)}
<p class="intro">Each map says which pixels of the photo the target's score S depends on (for a class,
its score before the softmax; for a channel, its mean activation), by one attribution method per
column, all computed by minivgg's own backward pass (minivgg/explain/). Click a map for full size; the
raw numbers are in the .npy beside it. The maps are drawn as heat over the photo in grey.</p>
{sanity}
<div class="head">
<figure><img src="{e(photo_file)}" alt="the input image, as the network sees it">
<figcaption>the input, as the network sees it</figcaption></figure>
<dl>{dl}<dt>colours</dt><dd>{legend}<br><span class="note">{e(legend_text())}</span></dd></dl>
{report._predictions(predictions)}
</div>
<table class="maps"><thead><tr><th></th>{head}</tr></thead><tbody>{rows}</tbody></table>
</body></html>
"""
