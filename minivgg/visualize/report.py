"""The report page: one self-contained HTML file beside the grid images it shows.

Laid out like the seed's table: a row per block, a column per layer. Each cell shows the layer's
grids (linked to the full-size files), its output shape, a few numbers (fraction of zeros, mean, max,
dead channels) and a one-line caption of what the learner is looking at. No scripts, fonts or
anything from outside: it opens from disk, offline. ``write_page`` writes it atomically, last.

Pages of several commands (feature maps, feature visualisation, ...) that live side by side, in
sibling folders of one output folder, link to each other: each page says what it is in a
``<meta name="generator" content="minivgg KIND">`` tag (``page_meta``) and keeps a block of links
between ``RELATED`` markers (``related_html``), which ``link_related`` rewrites in the siblings'
pages when a new page joins them.
"""
import html
import re
from pathlib import Path
from typing import NamedTuple

from ..files.atomic import replacing
from ..network.receptive_field import receptive_fields as fields_of
from ..network.table import TITLES, layers
from .grids import CMAPS


class LayerResult(NamedTuple):
    index: int  # among conv and pool layers: block1_conv1 = 0 ... block5_pool = 17
    name: str  # Keras' layer name
    shape: tuple  # (H, W, C) of the activation
    grids: list  # [(start, stop, file name)], one per grid of 64 channels
    stats: dict  # visualize.layer_stats()


WHAT = {  # what a learner is looking at, per block (its conv layers) and for the pools
    "block1": "edges, colour blobs and gradients; most maps still look like the photo",
    "block2": "corners, curves and simple textures, built from block 1's edges",
    "block3": "textures and repeated patterns; the photo starts to dissolve into parts",
    "block4": "parts of objects; maps get sparse: most channels stay dark, a few light up where their part is",
    "block5": "object- and scene-level features the classifier reads; the photo is no longer recognisable",
    "pool": "2x2 max-pool: half the width and height, each pixel keeps the strongest of its 2x2 patch",
}


def receptive_fields(arch="vgg16"):
    """layer name -> how many input pixels (a side) one activation of that layer depends on
    (``network/receptive_field.py``: e.g. block1_conv1 3, block1_pool 6, block5_pool 212 in VGG16, 268 in VGG19)."""
    return {name: rf.size for name, rf in fields_of(layers(arch, include_top=False)).items()}


def caption(name, arch="vgg16"):
    block, kind = name.split("_")  # Keras' names: "block3_conv2" -> "block3", "conv2"
    what = WHAT["pool"] if kind == "pool" else WHAT[block]
    rf = receptive_fields(arch)[name]
    return f"{what[0].upper()}{what[1:]}. Each pixel here sees a {rf}x{rf} patch of the input."


def gradient_css(cmap, stops=9):
    """A CSS linear-gradient through ``stops`` colours of the colour map, for the scale bars."""
    lut = CMAPS[cmap]
    colours = ", ".join("#%02x%02x%02x" % tuple(lut[round(i * 255 / (stops - 1))]) for i in range(stops))
    return f"linear-gradient(to right, {colours})"


def scale_bar(cmap, lo, hi):
    return (
        f'<span class="scale"><span>{lo}</span><span class="bar" style="background: {gradient_css(cmap)}">'
        f"</span><span>{hi}</span></span>"
    )


def _cell(layer, norm, cmap, arch):
    e = html.escape
    H, W, C = layer.shape
    s = layer.stats
    imgs = []
    for k, (a, b, file) in enumerate(layer.grids):
        alt = f"{layer.name} channels {a}-{b}"
        cls = "main" if k == 0 else "thumb"
        imgs.append(
            f'<figure class="{cls}"><a href="{e(file)}"><img src="{e(file)}" alt="{e(alt)}" title="{e(alt)}">'
            f"</a><figcaption>ch {a}-{b}</figcaption></figure>"
        )
    main, thumbs = imgs[0], "".join(imgs[1:])
    scale = scale_bar(cmap, f"{s['min']:.3g}", f"{s['max']:.3g}") if norm == "layer" else ""
    return (
        f'<td id="{e(layer.name)}"><h3><span class="idx">{layer.index}</span> {e(layer.name)}</h3>'
        f'<p class="shape">output ({H}, {W}, {C})</p>{main}'
        + (f'<div class="thumbs">{thumbs}</div>' if thumbs else "")
        + f'{scale}<table class="stats"><tr><th>zeros</th><td>{100 * s["zeros"]:.1f}%</td>'
        f'<th>mean</th><td>{s["mean"]:.3g}</td></tr><tr><th>max</th><td>{s["max"]:.3g}</td>'
        f'<th>dead</th><td>{s["dead"]}/{s["channels"]}</td></tr></table>'
        f'<p class="caption">{e(caption(layer.name, arch))}</p></td>'
    )


def _predictions(predictions):
    if not predictions:
        return '<p class="note">No predictions: these weights have no top (fc1, fc2, predictions).</p>'
    rows = "".join(
        f'<tr><td>{html.escape(name.replace("_", " "))}</td><td class="num">{100 * float(p):.1f}%</td>'
        f'<td><span class="pbar" style="width: {max(1, round(100 * float(p)))}px"></span></td></tr>'
        for _, name, p in predictions
    )
    return f'<table class="preds"><caption>top-{len(predictions)} predictions</caption>{rows}</table>'


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.5em; margin: 0 0 .3em; }
.intro { max-width: 60em; }
.head { display: flex; gap: 2em; align-items: flex-start; flex-wrap: wrap; margin: 1em 0; }
.head img { width: 224px; height: 224px; image-rendering: auto; border: 1px solid #ccc; }
.head dl { display: grid; grid-template-columns: auto auto; gap: .2em 1em; margin: 0; }
.head dt { color: #666; } .head dd { margin: 0; }
.preds caption { text-align: left; font-weight: bold; } .preds td { padding: 0 .5em 0 0; }
.pbar { display: inline-block; height: .8em; background: #3b528b; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.scale { display: inline-flex; align-items: center; gap: .4em; font-size: 12px; color: #444; }
.scale .bar { display: inline-block; width: 120px; height: 10px; border: 1px solid #999; }
table.net { border-collapse: collapse; }
table.net > tbody > tr > th { writing-mode: vertical-rl; transform: rotate(180deg); padding: .5em;
  background: #eee; border: 1px solid #ddd; }
table.net > tbody > tr > td { vertical-align: top; width: 284px; padding: 8px; border: 1px solid #ddd;
  background: #fff; }
h3 { margin: 0; font-size: 1em; } .idx { color: #888; font-weight: normal; }
.shape { margin: 0 0 .3em; color: #555; font-variant-numeric: tabular-nums; }
figure { margin: 0; } figcaption { font-size: 11px; color: #666; }
figure.main img { width: 280px; height: auto; display: block; }
.thumbs { display: flex; flex-wrap: wrap; gap: 4px; margin-top: 4px; }
figure.thumb img { width: 64px; height: auto; display: block; }
table.stats { font-size: 12px; margin: .4em 0; border-collapse: collapse; font-variant-numeric: tabular-nums; }
table.stats th { font-weight: normal; color: #666; text-align: left; padding-right: .4em; }
table.stats td { padding-right: 1.2em; }
.caption { font-size: 12px; color: #333; margin: .3em 0 0; }
.note { color: #666; }
table.net > tbody > tr > td.empty { border: none; background: none; }
nav.related { margin: .3em 0; } nav.related:empty { display: none; }
"""


def page(image_name, original, layers, predictions, cmap, norm, settings, arch="vgg16", related=""):
    """The whole page as a string.

    - original: file name of the input image as the network sees it
    - layers: [LayerResult] in table order; predictions: [(wnid, name, score)] or None
    - settings: label -> value pairs shown at the top (weights, input size, timing, ...)
    - arch: "vgg16" or "vgg19", for the title and the receptive fields in the captions
    - related: the block of links to sibling pages (``related_html``)
    """
    e = html.escape
    blocks = {}
    for layer in layers:
        blocks.setdefault(layer.name.split("_")[0], []).append(layer)
    width = max(len(v) for v in blocks.values())
    rows = "".join(
        f"<tr><th>{e(block)} &middot; {ls[0].shape[0]}x{ls[0].shape[1]}</th>"
        + "".join(_cell(layer, norm, cmap, arch) for layer in ls)
        + '<td class="empty"></td>' * (width - len(ls))
        + "</tr>"
        for block, ls in blocks.items()
    )
    if norm == "channel":
        how = "each tile on its own scale, from its channel's min to its max (compare patterns, not brightness)"
    else:
        how = "one scale per layer, shown in each cell (tiles of a layer can be compared)"
    settings = dict(settings, **{"colour scale": how})
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in settings.items())
    legend = scale_bar(cmap, "low", "high")
    title = TITLES[arch]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{page_meta("visualize")}
<title>{title} feature maps of {e(image_name)}</title>
<style>{STYLE}</style></head>
<body>
<h1>What {title} sees in {e(image_name)}</h1>
{related or related_html(None)}
<p class="intro">Every conv and pool layer of {title}, run once on this image. In each grid, one tile is
one channel: the map of where that channel's filter responded (bright = strong). Click a grid for
full size. Read the table top to bottom: the maps shrink and the features grow more abstract.
Numbers per layer: <b>zeros</b>, the share of values the ReLU set to 0; <b>mean</b> and <b>max</b> of
the activation; <b>dead</b>, channels that are 0 everywhere for this image.</p>
<div class="head">
<figure><img src="{e(original)}" alt="the input image, as the network sees it">
<figcaption>the input, as the network sees it</figcaption></figure>
<dl>{dl}<dt>colours</dt><dd>{legend}</dd></dl>
{_predictions(predictions)}
</div>
<table class="net"><tbody>{rows}</tbody></table>
</body></html>
"""


# ---- links between the pages of sibling folders ------------------------------------------------

RELATED = ("<!-- related pages -->", "<!-- /related pages -->")  # the block link_related rewrites
_GENERATOR = re.compile(r'<meta name="generator" content="minivgg (\w+)">')
_TITLE = re.compile(r"<title>(.*?)</title>", re.S)


def page_meta(kind):
    """The tag that marks a page as minivgg's (``kind``: "visualize", "features", ...)."""
    return f'<meta name="generator" content="minivgg {html.escape(kind)}">'


def related_pages(folder):
    """The minivgg pages in sibling folders of ``folder``: [(href relative to folder, kind, title)].

    A sibling is ``folder/../OTHER/index.html`` carrying ``page_meta``; unreadable files are skipped.
    """
    folder = Path(folder).resolve()
    found = []
    try:
        siblings = sorted(p for p in folder.parent.iterdir() if p.is_dir() and p != folder)
    except OSError:
        return found
    for other in siblings:
        try:
            text = (other / "index.html").read_text("utf-8", errors="replace")
        except OSError:
            continue
        kind, title = _GENERATOR.search(text), _TITLE.search(text)
        if kind:
            found.append((f"../{other.name}/index.html", kind.group(1), html.unescape(title.group(1)) if title else other.name))
    return found


def related_html(folder):
    """The block of links to the sibling pages of ``folder`` (empty when there are none), with markers."""
    links = "" if folder is None else " &middot; ".join(
        f'<a href="{html.escape(href)}">{html.escape(title)}</a>' for href, _, title in related_pages(folder))
    inner = f'<nav class="related">Also here: {links}</nav>' if links else ""
    return f"{RELATED[0]}{inner}{RELATED[1]}"


def link_related(folder):
    """After a page was written in ``folder``: rewrite the link block of every sibling page, so it
    links back (atomically, each page; a page without the markers, or unwritable, is left alone)."""
    folder = Path(folder).resolve()
    for href, _, _ in related_pages(folder):
        other = (folder / href).resolve()
        try:
            text = other.read_text("utf-8")
            start, end = text.find(RELATED[0]), text.find(RELATED[1])
            if start < 0 or end < start:
                continue
            new = text[:start] + related_html(other.parent) + text[end + len(RELATED[1]):]
            if new != text:
                write_page(other, new)
        except OSError:
            continue


def write_page(path, text):
    """Write ``text`` to ``path`` atomically: a temporary file in the same folder, then os.replace."""
    with replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
