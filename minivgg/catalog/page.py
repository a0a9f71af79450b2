"""The catalogue's pages: ``index.html`` (the layers) and one ``<layer>.html`` per layer.

A layer page opens with the mosaic: its sprite sheets (``patches.Sheets``) shown as they are, each
channel's block a link to the channel's section below. A section shows the channel's patches large
(cropped out of the same sheets with CSS, nothing else to fetch), each with its image's name, value and
unit, the deconvnet projections beside them (``--projections``), how often the channel fires, a
histogram of its per-image maxima, and the feature-visualisation image when a ``features.py`` run of
that layer sits beside the output folder. No scripts, fonts or anything from outside: the folder
opens from disk, offline. Pages are written with ``report.write_page`` (atomically) and link to
sibling pages (``report.related_html``).
"""
import html
import os

from ..network.table import TITLES
from ..visualize import report
from .patches import PER_SHEET
from .scan import HIST_EDGES

STYLE = report.STYLE + """
.sheet { position: relative; max-width: 1200px; margin: .5em 0; }
.sheet img { width: 100%; height: auto; display: block; }
.sheet a { position: absolute; } .sheet a:hover { outline: 2px solid #e33; }
section.ch { border-top: 1px solid #ddd; padding: .6em 0; }
.tiles { display: flex; flex-wrap: wrap; gap: 8px; }
.tile { display: block; border: 1px solid #999; image-rendering: pixelated; }
.ent { font-size: 11px; color: #444; max-width: 220px; overflow-wrap: anywhere; }
.pair { display: flex; gap: 2px; }
.hist { display: inline-flex; align-items: flex-end; gap: 1px; height: 40px; border-bottom: 1px solid #999; }
.hist span { display: inline-block; width: 8px; background: #3b528b; }
.hist span.zero { background: #b33; }
table.layers td, table.layers th { padding: 2px 10px; text-align: left; }
"""
ZOOM = 2  # channel sections show the sheets' tiles at twice their size


def _bin_label(b):
    if b == 0:
        return "<= 0"
    lo, hi = HIST_EDGES[b - 1], (HIST_EDGES[b] if b < len(HIST_EDGES) else None)
    return f"({lo:g}, {hi:g}]" if hi is not None else f"> {lo:g}"


def histogram(counts):
    """Inline bars of a channel's histogram of maxima (the first, red: images where it stays <= 0)."""
    top = max(int(counts.max()), 1)
    bars = "".join(
        f'<span class="{"zero" if b == 0 else ""}" style="height: {round(40 * int(n) / top)}px" '
        f'title="{html.escape(_bin_label(b))}: {int(n)} images"></span>' for b, n in enumerate(counts))
    return f'<span class="hist">{bars}</span>'


def _tile(sheets, c, e, zoom=ZOOM):
    n, x, y = sheets.where(c, e)
    w, h = sheets.size(n)
    T = sheets.T * zoom
    return (f'<span class="tile" style="width: {T}px; height: {T}px; background: url({html.escape(sheets.name(n))}) '
            f'-{x * zoom}px -{y * zoom}px / {w * zoom}px {h * zoom}px"></span>')


def layer_page(state, layer, rf, sheets, proj_sheets, names, features, related):
    """One layer's page: the mosaic, then a section per channel.

    - rf: the layer's ReceptiveField; sheets, proj_sheets: patches.Sheets (proj_sheets None without --projections)
    - names: image index -> the name shown; features: channel -> file of its feature-visualisation image
    """
    e, s = html.escape, state.layers[layer]
    C, arch = len(s.fires), state.key["arch"]
    mosaic = []
    for n in range(sheets.count):
        w, h = sheets.size(n)
        links = []
        for c in range(n * PER_SHEET, min(C, (n + 1) * PER_SHEET)):
            _, x, y = sheets.block(c)
            links.append(f'<a href="#c{c}" title="channel {c}" style="left: {100 * x / w:.3f}%; top: {100 * y / h:.3f}%; '
                         f'width: {100 * sheets.block_w / w:.3f}%; height: {100 * sheets.block_h / h:.3f}%"></a>')
        mosaic.append(f'<div class="sheet"><img src="{e(sheets.name(n))}" alt="{e(layer)} channels '
                      f'{n * PER_SHEET}-{min(C, (n + 1) * PER_SHEET) - 1}">{"".join(links)}</div>')
    fires = state.fires(layer)
    sections = []
    for c in range(C):
        tiles = []
        for k, (value, image, row, col) in enumerate(s.top.entries(c)):
            pair = _tile(sheets, c, k) + (_tile(proj_sheets, c, k) if proj_sheets else "")
            box = rf.box(row, col, shape=(state.key["size"], state.key["size"]))
            tiles.append(f'<figure><span class="pair">{pair}</span><figcaption class="ent">{e(names[image])}<br>'
                         f'{value:.4g} at unit ({row}, {col}), box {list(box)}</figcaption></figure>')
        feature = (f'<figure><img src="{e(features[c])}" alt="channel {c} feature visualisation" width="{sheets.T * ZOOM}">'
                   f'<figcaption class="ent">made to excite it (features.py)</figcaption></figure>') if c in features else ""
        sections.append(
            f'<section class="ch" id="c{c}"><h3>{e(layer)} channel {c}</h3>'
            f'<p>fires (maximum &gt; 0) on {100 * fires[c]:.0f}% of {state.scanned} images; maxima: '
            f'{histogram(s.hist[c])} <a href="#top">top</a></p>'
            f'<div class="tiles">{"".join(tiles) or "<p class=note>no images</p>"}{feature}</div></section>')
    title = TITLES.get(arch, arch)
    what = "Each tile: the patch of the input that one unit saw (its receptive field), grey where it hangs over the edge"
    what += "; beside it, its deconvnet projection (Zeiler &amp; Fergus 2014): what in the patch drove the unit." if proj_sheets else "."
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{report.page_meta("catalog")}
<title>{title} {e(layer)}: top images per channel</title>
<style>{STYLE}</style></head>
<body id="top">
<h1>{title} {e(layer)}: where each channel fires most</h1>
<p><a href="index.html">all layers</a></p>
<p class="intro">For each of its {C} channels, the {s.top.k} images (of {state.scanned}) where its largest activation is
largest, best first; a unit of {e(layer)} sees a {rf.size}x{rf.size} patch of the input, {rf.stride} pixels
from its neighbour. {what} Click a channel's block for its section.</p>
{"".join(mosaic)}
{"".join(sections)}
</body></html>
"""


def index_page(state, rfs, settings, related):
    """The catalogue's front page: a row per layer, linked to its page."""
    e = html.escape
    rows = []
    for layer, s in state.layers.items():
        rf, fires = rfs[layer], state.fires(layer)
        rows.append(f'<tr><td><a href="{e(layer)}.html">{e(layer)}</a></td><td class="num">{len(s.fires)}</td>'
                    f'<td class="num">{rf.size}</td><td class="num">{rf.stride}</td>'
                    f'<td class="num">{100 * float((fires > 0).mean()):.0f}%</td>'
                    f'<td class="num">{100 * float(fires.mean()):.0f}%</td></tr>')
    failed = "".join(f"<li>{e(state.images[i])}: {e(why)}</li>" for i, why in sorted(state.failed.items()))
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in settings.items())
    title = TITLES.get(state.key["arch"], state.key["arch"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{report.page_meta("catalog")}
<title>{title} neuron catalogue of {state.scanned} images</title>
<style>{STYLE}</style></head>
<body>
<h1>{title} neuron catalogue: which parts of {state.scanned} images make each channel fire</h1>
{related}
<div class="head"><dl>{dl}</dl></div>
<table class="layers"><tr><th>layer</th><th>channels</th><th>receptive field</th><th>stride</th>
<th>channels that ever fire</th><th>mean share of images fired on</th></tr>{"".join(rows)}</table>
{f"<h2>Images that could not be read</h2><ul>{failed}</ul>" if failed else ""}
</body></html>
"""


def feature_images(out, layer, channels):
    """channel -> path of a features.py image of ``layer`` in a sibling folder of ``out`` (the default
    ``features_<layer>/`` or any folder whose page is a features page of that layer)."""
    found = {}
    parent = os.path.dirname(os.path.abspath(out))
    try:
        siblings = sorted(os.listdir(parent))
    except OSError:
        return found
    wanted = {f"{layer}_{c}.png": c for c in range(channels)}
    for d in siblings:
        folder = os.path.join(parent, d)
        if folder == os.path.abspath(out) or not os.path.isdir(folder):
            continue
        try:
            names = os.listdir(folder)  # one listing a folder, not a look-up per channel
        except OSError:
            continue
        for name in sorted(set(names) & wanted.keys()):
            f = os.path.join(folder, name)
            if wanted[name] not in found and os.path.isfile(f):
                found[wanted[name]] = f
    return found
