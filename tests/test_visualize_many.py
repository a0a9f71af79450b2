"""minivgg-visualize on many images: folders per image, the summary page, failures, Ctrl-C.

Small inputs (--size 64) keep it fast. The end-to-end run mixes the kinds of images people have (grey,
RGBA, CMYK, 16-bit, EXIF-rotated, non-square), a folder, a file without an extension, two files with
the same name and an unreadable file in the middle; each image's folder is then compared byte for
byte with a one-image run of the same file.
"""
import html.parser
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minivgg.files import image_files
from minivgg.visualize import cli as visualize_cli
from minivgg.errors import MinivggError
from minivgg.visualize.pipeline import QUEUE, WRITERS

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "minivgg" / "data" / "grace_hopper.jpg"
SIZE = "64"
GRIDS = 89  # per image: VGG16's 18 conv and pool layers, one grid per 64 channels


def save_kind(path, kind):
    """The photo, small, saved as one of the kinds people have."""
    rgb = Image.open(PHOTO).convert("RGB").resize((96, 120))  # non-square: W 96, H 120
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation 6: "rotate 90 degrees clockwise to view"
    img, kw = {
        "grey": (rgb.convert("L"), {}), "rgba": (rgb.convert("RGBA"), {}), "cmyk": (rgb.convert("CMYK"), {}),
        "grey16": (Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257), {}),  # mode I;16
        "rotated": (rgb, {"exif": exif.tobytes(), "quality": 95}), "wide": (rgb.resize((300, 70)), {}),
        "png": (rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT), {}),
    }[kind]
    fmt = {"cmyk": "JPEG", "rotated": "JPEG", "wide": "JPEG"}.get(kind, "PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt, **kw)
    return path


def run(args, capsys):
    code = visualize_cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def tree(folder):
    """Every file under ``folder``: relative path -> bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def without_time(page):
    """An image's page with its run time blanked: the one thing two runs cannot share."""
    return re.sub(rb"<dt>time</dt><dd>[\d.]+ s</dd>", b"<dt>time</dt><dd>-</dd>", page)


class Links(html.parser.HTMLParser):
    def __init__(self, text):
        super().__init__()
        self.srcs, self.hrefs = [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.srcs.append(a["src"])
        if tag == "a":
            self.hrefs.append(a["href"])


# ---- finding images and naming their folders (no network) ----------------------------------------


def test_images_are_found_by_content_sorted_and_once(tmp_path):
    d = tmp_path / "photos"
    save_kind(d / "b.png", "grey")
    save_kind(d / "a.jpeg", "cmyk")
    shutil.copy(d / "b.png", d / "no_extension")  # an image whatever its name
    (d / "notes.txt").write_text("not an image")
    (d / "fake.jpg").write_text("not an image either")
    shutil.copy(d / "b.png", d / ".hidden.png")
    save_kind(d / "sub" / "c.png", "grey")
    images, skipped = image_files.find_images([d, d / "b.png"])
    assert images == [d / "a.jpeg", d / "b.png", d / "no_extension"]  # b.png named twice: once
    assert sorted(p.name for p in skipped) == ["fake.jpg", "notes.txt"]
    images, _ = image_files.find_images([d], recursive=True, exclude=d / "sub")
    assert d / "sub" / "c.png" not in images  # the output folder is not read as input
    images, _ = image_files.find_images([d], recursive=True)
    assert images[-1] == d / "sub" / "c.png"
    missing = tmp_path / "missing.jpg"
    assert image_files.find_images([missing])[0] == [missing]  # fails later, on its own
    (tmp_path / "empty").mkdir()
    with pytest.raises(MinivggError, match="no image files"):
        image_files.find_images([tmp_path / "empty"])


def test_folder_names_are_unique_in_order():
    paths = [Path("a/cat.jpg"), Path("b/cat.png"), Path("Cat.gif"), Path("cat-2.jpg"), Path("index.html.png"),
             Path(".png")]
    assert image_files.folder_names(paths) == ["cat", "cat-2", "Cat-3", "cat-2-2", "index.html-2", ".png"]


def test_default_batch_and_side_layer():
    assert visualize_cli.default_batch(224) == 4 and visualize_cli.default_batch(64) == 8
    assert visualize_cli.default_batch(2048) == 1
    wanted = visualize_cli.select_layers(None)
    assert visualize_cli.side_layer(None, wanted, "jpg") == (8, "block3_conv3", "8.block3_conv3_0-64.jpg")
    five = visualize_cli.select_layers(["block5_*"])
    assert visualize_cli.side_layer(None, five, "png")[1] == "block5_conv3"  # the middle one of those drawn
    with pytest.raises(MinivggError, match="--layer 'block1_conv1' is not one of the layers drawn"):
        visualize_cli.side_layer("block1_conv1", five, "jpg")


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_counts_rate_and_time_left():
    now = [100.0]
    stream = Terminal()
    bar = visualize_cli.ImagesProgress(8, True, stream=stream, clock=lambda: now[0])
    now[0] += 2
    bar.step()
    bar.step()
    assert stream.getvalue().endswith("\r[#####               ] 2/8 images  1.0/s  0:06 left")
    bar.say("error: 'x.jpg' is not an image file")
    assert stream.getvalue().split("\r")[-1].startswith("error: 'x.jpg' is not an image file\n[#####     ")
    bar.close()
    assert stream.getvalue().endswith("\r")
    quiet = Terminal()
    bar = visualize_cli.ImagesProgress(8, False, stream=quiet)
    bar.step()
    bar.say("error: shown even when quiet")
    assert quiet.getvalue() == "error: shown even when quiet\n"
    assert not visualize_cli.ImagesProgress(8, True, stream=io.StringIO()).enabled  # not a terminal: no bar


# ---- end to end ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def many_run(weights_notop, tmp_path_factory):
    """One run over mixed images, a folder, a duplicate name and a bad file in the middle, and the
    one-image runs of the same files (each in its own parent folder, so no sibling pages)."""
    root = tmp_path_factory.mktemp("many")
    inputs = root / "in"
    grey = save_kind(inputs / "grey.png", "grey")
    rgba = save_kind(inputs / "rgba.png", "rgba")
    photos = inputs / "photos"
    folder = [save_kind(photos / f"{k}.{'jpg' if k in ('cmyk', 'rotated', 'wide') else 'png'}", k)
              for k in ("cmyk", "grey16", "rotated", "wide")]
    shutil.copy(save_kind(photos / "png.png", "png"), photos / "noext")
    (photos / "png.png").unlink()
    folder.append(photos / "noext")
    (photos / "readme.txt").write_text("not an image")
    save_kind(photos / "sub" / "deep.png", "grey")  # not without --recursive
    broken = inputs / "broken.jpg"
    data = (inputs / "photos" / "cmyk.jpg").read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    dup = save_kind(inputs / "other" / "grey.jpg", "rotated")  # the same name as grey.png
    args = [grey, broken, photos, dup, rgba, "--weights", weights_notop, "--size", SIZE, "--batch", "3",
            "--out", root / "out"]
    p = subprocess.run([sys.executable, REPO / "scripts" / "visualize.py", *map(str, args)], capture_output=True,
                       text=True, timeout=600, env=dict(os.environ, PYTHONPATH=str(REPO)))
    order = [grey, broken, *sorted(folder), dup, rgba]
    singles = {}
    for path in order:
        if path != broken:
            out = root / "single" / path.parent.name / path.stem / "x"  # its own parent: no sibling pages
            assert visualize_cli.main([str(path), "--weights", str(weights_notop), "--size", SIZE, "--out", str(out),
                                       "--quiet"]) == 0
            singles[path] = out
    return root / "out", p, order, singles, broken


def test_many_images_a_folder_each_byte_identical_to_one_image_runs(many_run):
    out, p, order, singles, broken = many_run
    assert p.returncode == 1, p.stderr
    err = p.stderr.strip().splitlines()
    assert err[-1] == "error: 1 of 9 images could not be read (listed on the page)"  # the last line says how many
    assert [line for line in err if "broken.jpg" in line] == [err[-2]] and err[-2].startswith("error: ")
    assert "Traceback" not in p.stderr and "skipped 1 file(s) that are not images" in p.stderr
    assert p.stdout.splitlines()[-1] == f"page: {(out / 'index.html').resolve()}"
    names = ["grey", "cmyk", "grey16", "noext", "rotated", "wide", "grey-2", "rgba"]
    assert sorted(os.listdir(out)) == sorted(names + ["index.html"])  # broken.jpg: no folder
    for name, path in zip(names, [q for q in order if q != broken]):
        ours, theirs = tree(out / name), tree(singles[path])
        assert sorted(ours) == sorted(theirs) and len(ours) == GRIDS + 2, name  # + original.jpg, index.html
        for f in ours:
            same = without_time(ours[f]) == without_time(theirs[f]) if f == "index.html" else ours[f] == theirs[f]
            assert same, f"{name}/{f} differs from the one-image run's"


def test_summary_page_lists_every_image_and_the_failure(many_run):
    out, _, order, _, _ = many_run
    text = (out / "index.html").read_text("utf-8")
    links = Links(text)
    names = ["grey", "cmyk", "grey16", "noext", "rotated", "wide", "grey-2", "rgba"]
    assert links.srcs == [f"{n}/original.jpg" for n in names] + [f"{n}/8.block3_conv3_0-64.jpg" for n in names]
    assert all((out / src).is_file() for src in links.srcs)
    assert [h for h in links.hrefs if h.endswith("index.html")][:len(names) * 2:2] == [f"{n}/index.html" for n in names]
    assert "broken.jpg</h2><p class=\"why\">could not be read: " in text and "truncated" in text
    assert "8 of 9 images, 1 could not be read" in text
    assert not re.search(r"(src|href)=\"(https?:)?//", text)  # nothing from outside


def test_bad_layer_and_no_images_fail_before_writing(weights_notop, tmp_path, capsys):
    save_kind(tmp_path / "in" / "a.png", "grey")
    save_kind(tmp_path / "in" / "b.png", "rgba")
    code, _, err = run([tmp_path / "in", "--weights", weights_notop, "--size", SIZE, "--layers", "block5_*",
                        "--layer", "block1_conv1", "--out", tmp_path / "out"], capsys)
    assert code == 1 and err.startswith("error: --layer 'block1_conv1' is not one of the layers drawn")
    (tmp_path / "none").mkdir()
    code, _, err = run([tmp_path / "none", tmp_path / "in", "--weights", weights_notop, "--out", tmp_path / "out"],
                       capsys)
    assert code == 1 and err.strip().splitlines() == [f"error: no image files in {tmp_path / 'none'} "
                                                      "(subfolders: --recursive)"]
    assert not (tmp_path / "out").exists()


def test_many_quiet_prints_only_the_page(weights_notop, tmp_path, capsys):
    a, b = save_kind(tmp_path / "a.png", "grey"), save_kind(tmp_path / "b.png", "grey16")
    code, out, err = run([a, b, "--weights", weights_notop, "--size", SIZE, "--layers", "block5_pool", "--quiet",
                          "--out", tmp_path / "out"], capsys)
    assert code == 0 and err == "" and out.splitlines() == [f"page: {(tmp_path / 'out' / 'index.html').resolve()}"]
    assert sorted(os.listdir(tmp_path / "out" / "b")) == sorted(
        [f"17.block5_pool_{s}-{s + 64}.jpg" for s in range(0, 512, 64)] + ["original.jpg", "index.html"])
    text = (tmp_path / "out" / "index.html").read_text("utf-8")
    assert "block5_pool, channels 0-64, side by side" in text  # the only layer drawn


def test_interrupted_run_leaves_whole_files_and_lists_what_finished(weights_notop, tmp_path):
    inputs = tmp_path / "in"
    first = save_kind(inputs / "img00.png", "grey")
    for k in range(1, 40):
        shutil.copy(first, inputs / f"img{k:02d}.png")
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "scripts" / "visualize.py"), str(inputs), "--weights", str(weights_notop),
           "--size", SIZE, "--batch", "2", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    deadline = time.monotonic() + 300  # a cold Numba cache compiles for a minute on a busy 2-core machine
    while not (out / "img00" / "index.html").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # mid-run: img00's page is there, img39's cannot be
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == "interrupted"
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.startswith(".")]  # no temporary file left
    for p in files:  # every file whole
        if p.suffix == ".jpg":
            with Image.open(p) as img:
                img.load()
        else:
            assert p.read_text("utf-8").endswith("</html>\n"), p
    done = sorted(p.parent.name for p in out.glob("*/index.html"))
    assert "img00" in done and len(done) < 40
    text = (out / "index.html").read_text("utf-8")
    assert [h for h in Links(text).hrefs if h.endswith("/index.html")][::2] == [f"{d}/index.html" for d in done]
    assert text.count("not finished (the run was interrupted)") == 40 - len(done)
    for d in done:
        assert len([f for f in os.listdir(out / d) if f.endswith(".jpg")]) == GRIDS + 1


def test_memory_bound_is_what_the_pipeline_docstring_says():
    assert (QUEUE, WRITERS) == (2, 2)  # the docs' memory arithmetic (visualize_cli.BATCH_FLOATS) counts on them


# ---- scripts/compare_seed.py --many (without Keras: its children are faked) -------------------------


def test_compare_seed_many_copies_the_photo_and_checks_every_folder(monkeypatch, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_seed", REPO / "scripts" / "compare_seed.py")
    cs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cs)
    names = [f"{i}.{n}_{s}-{s + 64}.jpg" for i, n in visualize_cli.MAPS
             for s in range(0, {1: 64, 2: 128, 3: 256}.get(int(n[5]), 512), 64)] + ["original.jpg"]
    assert len(names) == GRIDS + 1
    calls, made = [], []

    def fake_measure(cmd, env=None):  # writes the files the real child would, takes no time
        calls.append("seed" if "--seed-run" in cmd else "minivgg")
        out = Path(cmd[cmd.index("--seed-run" if calls[-1] == "seed" else "--out") + 1])
        images = sorted(Path(cmd[2]).iterdir())
        made[:] = [np.asarray(Image.open(p).convert("RGB").resize((32, 32))) for p in images]
        for k, image in enumerate(images):
            (out / (str(k) if calls[-1] == "seed" else image.stem)).mkdir(parents=True, exist_ok=True)
            for f in names:
                (out / (str(k) if calls[-1] == "seed" else image.stem) / f).write_text("")
        (out / "index.html").write_text("")
        return (100.0, 2000.0) if calls[-1] == "seed" else (1.0, 500.0)

    monkeypatch.setattr(cs, "measure", fake_measure)
    assert cs.main(["--many", "33", "--weights", "w.h5"]) == 0
    assert calls == ["minivgg", "minivgg", "minivgg", "seed"]  # cold, warm, then one round, minivgg first
    out = capsys.readouterr().out
    assert "33 images (grace_hopper.jpg and transformed copies)" in out and "100.0x" in out and "4.00x" in out
    assert len(made) == 33 and len({a.tobytes() for a in made[:32]}) == 32  # 32 different copies, then again
    assert (made[32] == made[0]).all()
