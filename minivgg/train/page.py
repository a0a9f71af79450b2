"""The training run's page, ``index.html`` under ``--out``: one self-contained file (no scripts, no
fonts, images inline), written atomically, last.

    curves            loss and accuracy per epoch, training and validation, the best epoch marked
    confusion matrix  validation images: rows the true class, columns the predicted one
    per-class         accuracy on each class's validation images
    most wrong        the validation images given the lowest probability for their true class, with the top 3
    coverage          answering only above a confidence threshold: the share answered, and their accuracy
    skipped           the files that could not be decoded

The pages of the other scripts run on the trained model in folders under ``--out``
(``minivgg-visualize ... --weights runs/x/model.keras --out runs/x/maps``) are linked at the top.
"""
import base64
import html
import io
from pathlib import Path

import numpy as np
from PIL import Image

from ..visualize import report
from .loss import log_softmax

STYLE = report.STYLE + """
svg { background: #fff; border: 1px solid #ddd; } svg text { font: 11px system-ui, sans-serif; fill: #444; }
table.cm td, table.cm th { padding: 2px 6px; text-align: right; font-variant-numeric: tabular-nums; }
table.cm th { font-weight: normal; color: #555; }
.wrong { display: flex; flex-wrap: wrap; gap: 12px; } .wrong figure { width: 140px; font-size: 12px; }
.wrong img { width: 128px; height: 128px; image-rendering: pixelated; border: 2px solid #c33; }
section { margin: 1.5em 0; }
"""
COLOURS = {"train": "#3b528b", "val": "#e08214"}


def _chart(series, title, ylabel, best=None, width=420, height=220, x_label="epoch", x_values=None):
    """A line chart as inline SVG: series = {name: [y per x]}, x = 1..n unless given."""
    pad, n = 40, max(len(s) for s in series.values())
    xs = x_values or list(range(1, n + 1))
    ys = [v for s in series.values() for v in s if v is not None and np.isfinite(v)]
    lo, hi = (min(ys), max(ys)) if ys else (0, 1)
    hi = hi if hi > lo else lo + 1
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    px = lambda x: pad + (x - x0) / (x1 - x0) * (width - 1.5 * pad)
    py = lambda y: height - pad + (lo - y) / (hi - lo) * (height - 1.6 * pad)
    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">',
             f'<text x="{pad}" y="14">{html.escape(title)}</text>',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad / 2}" y2="{height - pad}" stroke="#999"/>',
             f'<line x1="{pad}" y1="{height - pad}" x2="{pad}" y2="{pad * 0.6}" stroke="#999"/>',
             f'<text x="2" y="{py(hi) + 4:.1f}">{hi:.3g}</text><text x="2" y="{py(lo):.1f}">{lo:.3g}</text>',
             f'<text x="{width / 2:.0f}" y="{height - 8}">{html.escape(x_label)}</text>',
             f'<text x="{pad}" y="{height - pad + 14}">{x0:g}</text>',
             f'<text x="{px(x1) - 10:.1f}" y="{height - pad + 14}">{x1:g}</text>']
    if best:
        parts.append(f'<line x1="{px(best):.1f}" y1="{pad * 0.6}" x2="{px(best):.1f}" y2="{height - pad}" '
                     'stroke="#2a2" stroke-dasharray="3,3"/>')
    for i, (name, s) in enumerate(series.items()):
        colour = COLOURS.get(name.split()[0], ["#3b528b", "#e08214", "#2a2"][i % 3])
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, s) if y is not None and np.isfinite(y))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{pts}"/>')
        parts.append(f'<text x="{width - 120}" y="{pad * 0.6 + 14 * i}" style="fill: {colour}">{html.escape(name)}</text>')
    return "".join(parts) + "</svg>"


def _thumb(img):
    buf = io.BytesIO()
    Image.fromarray(np.asarray(img, np.uint8)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def coverage(probs, y, thresholds):
    """For each threshold t: (t, share of images whose top probability >= t, accuracy among those)."""
    top, pred = probs.max(axis=1), probs.argmax(axis=1)
    out = []
    for t in thresholds:
        answered = top >= t
        acc = float((pred[answered] == y[answered]).mean()) if answered.any() else None
        out.append((float(t), float(answered.mean()), acc))
    return out


def confusion(y, pred, k):
    """(k, k) counts: rows the true class, columns the predicted one."""
    m = np.zeros((k, k), np.int64)
    np.add.at(m, (y, pred), 1)
    return m


def _children(out):
    """The minivgg pages in folders under ``out``: [(href, title)]."""
    found = []
    for p in sorted(Path(out).glob("*/index.html")):
        text = p.read_text("utf-8", errors="replace")
        if 'name="generator" content="minivgg' in text:
            title = text.split("<title>", 1)[1].split("</title>", 1)[0] if "<title>" in text else p.parent.name
            found.append((f"{p.parent.name}/index.html", html.unescape(title)))
    return found


def render(out, model, history, best, classes, logits, y, images, paths, skipped, settings):
    """The page as text (see the module docstring)."""
    k = len(classes)
    probs = np.exp(log_softmax(logits)) if len(logits) else np.zeros((0, k))
    pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, np.int64)
    esc = html.escape
    ep = lambda key: [r.get(key) for r in history]
    curves = (_chart({"train loss": ep("loss"), "val loss": ep("val_loss")}, "loss", "loss", best)
              + " " + _chart({"train accuracy": ep("accuracy"), "val accuracy": ep("val_accuracy")}, "accuracy",
                             "accuracy", best)) if history else "<p>No epoch finished.</p>"
    cm = confusion(y, pred, k)
    peak = max(int(cm.max()), 1)
    rows = "".join(
        f"<tr><th>{esc(c)}</th>" + "".join(
            f'<td style="background: rgba({"59,82,139" if i == j else "204,51,51"},{cm[i, j] / peak:.2f})">{cm[i, j]}</td>'
            for j in range(k)) + "</tr>" for i, c in enumerate(classes))
    matrix = (f'<table class="cm"><tr><th>true \\ predicted</th>{"".join(f"<th>{esc(c)}</th>" for c in classes)}</tr>'
              f"{rows}</table>")
    per_class = "".join(
        f"<tr><td>{esc(c)}</td><td class='num'>{int((y == i).sum())}</td>"
        f"<td class='num'>{(pred[y == i] == i).mean() if (y == i).any() else float('nan'):.3f}</td></tr>"
        for i, c in enumerate(classes))
    true_p = probs[np.arange(len(y)), y] if len(y) else np.zeros(0)
    wrong = [i for i in np.argsort(true_p, kind="stable") if pred[i] != y[i]][:12]
    figures = "".join(
        f'<figure><img src="{_thumb(images[i])}" alt=""><figcaption>{esc(Path(paths[i]).name)}<br>'
        f"true: {esc(classes[y[i]])} ({true_p[i]:.2f})<br>"
        + "<br>".join(f"{esc(classes[j])} {probs[i, j]:.2f}" for j in np.argsort(-probs[i], kind="stable")[:3])
        + "</figcaption></figure>" for i in wrong) or "<p>None: every validation image is right.</p>"
    ts = np.linspace(0, 0.99, 34)
    cov = coverage(probs, y, ts) if len(y) else []
    cov_chart = _chart({"answered": [c for _, c, _ in cov], "accuracy": [a for _, _, a in cov]},
                       "answer only above a confidence threshold", "", None, x_label="threshold",
                       x_values=[t for t, _, _ in cov]) if cov else ""
    cov_rows = "".join(f"<tr><td class='num'>{t:.2f}</td><td class='num'>{c:.3f}</td><td class='num'>"
                       f"{'' if a is None else f'{a:.3f}'}</td></tr>"
                       for t, c, a in coverage(probs, y, (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)) if len(y))
    skipped_html = ("<ul>" + "".join(f"<li>{esc(why)}</li>" for _, why in skipped) + "</ul>") if skipped else "<p>None.</p>"
    links = " &middot; ".join(f'<a href="{esc(h)}">{esc(t)}</a>' for h, t in _children(out))
    last = history[best - 1] if best else {}
    facts = "".join(f"<dt>{esc(a)}</dt><dd>{esc(str(b))}</dd>" for a, b in settings.items())
    title = f"{model.title} fine-tuned on {k} classes"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{report.page_meta("train")}
<title>{esc(title)}</title><style>{STYLE}</style></head><body>
<h1>{esc(title)}</h1>
{f'<nav class="related">Pages of this model: {links}</nav>' if links else ""}
<p class="intro">Best epoch {best} of {len(history)}: val accuracy {last.get("val_accuracy", float("nan")):.3f},
val loss {last.get("val_loss", float("nan")):.4f}. The model saved (<a href="model.keras">model.keras</a>) holds that
epoch's weights; <a href="history.json">history.json</a> every epoch's figures, <a href="classes.txt">classes.txt</a>
the class names in label order.</p>
<div class="head"><dl>{facts}</dl></div>
<section><h2>Loss and accuracy</h2>{curves}<p class="note">Dashed: the best epoch (highest val accuracy).
Training figures are those of the training-mode passes (dropout on, augmented images), as Keras reports them.</p></section>
<section><h2>Confusion matrix (validation)</h2>{matrix}</section>
<section><h2>Accuracy per class (validation)</h2><table class="cm"><tr><th>class</th><th>images</th><th>accuracy</th></tr>
{per_class}</table></section>
<section><h2>Most wrong (validation)</h2><p class="note">The lowest probability given to the true class; each with the
model's top 3.</p><div class="wrong">{figures}</div></section>
<section><h2>Confidence and coverage</h2>{cov_chart}<table class="cm"><tr><th>threshold</th><th>answered</th>
<th>accuracy</th></tr>{cov_rows}</table><p class="note">Answering only when the top probability is at least the
threshold: fewer images answered, more of them right.</p></section>
<section><h2>Skipped files</h2>{skipped_html}</section>
</body></html>
"""


def write(out, model, history, best, classes, logits, y, images, paths, skipped, args):
    settings = {"data": args.data, "weights": args.weights or "published conv base", "head": args.head,
                "hidden": args.hidden, "dropout": args.dropout, "trained from": args.train_from,
                "optimizer": f"{args.optimizer} (lr {args.lr or 'default'})", "batch": args.batch,
                "size": args.size, "augment": args.augment, "seed": args.seed}
    text = render(out, model, history, best, classes, logits, y, images, paths, skipped, settings)
    report.write_page(Path(out) / "index.html", text)  # with the mode open() gives (files/atomic.py)
