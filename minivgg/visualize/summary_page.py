"""The summary page of a many-image run: ``<out>/index.html`` over the images' own pages.

    <out>/index.html          this page
    <out>/<name>/index.html   each image's page, as a one-image run writes it (report.py)

A card per image, in the order given: its input as the network saw it (``original.jpg``, as a
thumbnail), its top-5 classes, a link to its page; a card that says why for an image that could not
be read, or that it was not finished (an interrupted run). Below, one layer side by side across the
images (``--layer``): each image's first grid of that layer, so the same channels line up. Like the
image pages: self-contained, nothing from outside, written atomically (``report.write_page``).
"""
import html
from urllib.parse import quote

from ..network.table import TITLES
from .report import STYLE as PAGE_STYLE
from .report import page_meta

STYLE = PAGE_STYLE + """
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { width: 224px; padding: 8px; background: #fff; border: 1px solid #ddd; font-size: 12px; }
.card img { width: 224px; height: 224px; display: block; }
.card h2 { font-size: 13px; margin: .3em 0; overflow-wrap: anywhere; }
.card ol { margin: 0; padding-left: 1.6em; } .card.failed { background: #fff4f4; border-color: #e0b4b4; }
.card .why { color: #a33; overflow-wrap: anywhere; }
.side { display: flex; flex-wrap: wrap; gap: 10px; }
.side figure img { width: 300px; height: auto; display: block; }
.side figcaption { font-size: 12px; overflow-wrap: anywhere; max-width: 300px; }
"""


def href(folder, file):
    """A link to ``file`` in an image's folder; the folder name is an image's, so it is quoted."""
    return html.escape(f"{quote(folder)}/{quote(file)}")


def _card(item, original):
    e = html.escape
    name, source = item.out.name, item.source.name
    if item.status == "failed":
        return (f'<div class="card failed"><h2>{e(source)}</h2><p class="why">could not be read: '
                f"{e(item.error)}</p></div>")
    if item.status != "done":
        return f'<div class="card"><h2>{e(source)}</h2><p class="why">not finished (the run was interrupted)</p></div>'
    top = ""
    if item.predictions:
        top = "<ol>" + "".join(f'<li>{e(n.replace("_", " "))} <span class="num">{100 * float(p):.1f}%</span></li>'
                               for _, n, p in item.predictions) + "</ol>"
    return (f'<div class="card"><a href="{href(name, "index.html")}"><img src="{href(name, original)}" '
            f'alt="{e(source)} as the network sees it"></a><h2><a href="{href(name, "index.html")}">{e(source)}</a>'
            f"</h2>{top}</div>")


def _side(items, layer):
    """Each finished image's first grid of ``layer`` = (i, name, file of its first grid)."""
    e = html.escape
    figs = "".join(
        f'<figure><a href="{href(item.out.name, "index.html")}#{e(layer[1])}"><img src="{href(item.out.name, layer[2])}" '
        f'alt="{e(layer[1])} of {e(item.source.name)}"></a><figcaption>{e(item.source.name)}</figcaption></figure>'
        for item in items if item.status == "done")
    return figs or '<p class="note">No image was finished.</p>'


def page(items, layer, original, settings, arch="vgg16"):
    """The summary page as a string.

    - items: the run's ``pipeline.Item``s, in order; layer: (i, name, file of its first grid), the
      layer shown side by side; original: the file name of each input (``original.jpg``)
    - settings: label -> value pairs shown at the top
    """
    e = html.escape
    done = sum(item.status == "done" for item in items)
    failed = sum(item.status == "failed" for item in items)
    count = f"{done} of {len(items)} images" + (f", {failed} could not be read" if failed else "")
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in dict(settings, images=count).items())
    title = TITLES[arch]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{page_meta("summary")}
<title>{title} feature maps of {len(items)} images</title>
<style>{STYLE}</style></head>
<body>
<h1>What {title} sees in {len(items)} images</h1>
<p class="intro">One card per image: the image as the network sees it, its top classes, and a link to its
page with every layer. Below, one layer of every image side by side: the same 64 channels in the same
places, so you can see which channels light up for which image.</p>
<div class="head"><dl>{dl}</dl></div>
<div class="cards">{"".join(_card(item, original) for item in items)}</div>
<h2 id="side">{e(layer[1])}, channels {e(layer[2].rsplit("_", 1)[1].rsplit(".", 1)[0])}, side by side</h2>
<div class="side">{_side(items, layer)}</div>
</body></html>
"""
