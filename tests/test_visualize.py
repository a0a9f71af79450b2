"""minivgg.visualize.grids, minivgg.visualize.report (the page) and minivgg-visualize (the command).

Grid tests use lopsided shapes (H != W, channel counts that do not fill the last row). End-to-end
tests run ``main([...])`` on Keras-written weight files (conftest) and the bundled photo.
"""
import html
import html.parser
import importlib.util
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minivgg.files import download
from minivgg.visualize import pipeline
from minivgg.visualize import report
from minivgg.visualize import cli as visualize_cli
from minivgg.errors import MinivggError
from minivgg.files.imagenet import decode_predictions
from minivgg.files.preprocess import load_image, preprocess_input
from minivgg.network.table import layers
from minivgg.network.vgg import VGG16

LAYERS = layers("vgg16")
from minivgg.visualize.grids import CMAPS, GAP_COLOUR, channel_ranges, colourise, grid, grid_name, layer_stats

REPO = Path(__file__).resolve().parents[1]
WIDTH = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}  # channels per block
LAYER_NAMES = [f"block{b}_{k}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
               for k in [f"conv{j}" for j in range(1, n + 1)] + ["pool"]]
GRIDS = [f"{i}.{name}_{s}-{s + 64}.jpg" for i, name in enumerate(LAYER_NAMES)
         for s in range(0, WIDTH[int(name[5])], 64)]


# ---- grids -------------------------------------------------------------------------------------


def test_grid_layout_gaps_and_tiles():
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 3, (5, 7, 10)).astype(np.float32)  # H=5, W=7, 10 channels: last row part-filled
    img = np.asarray(grid(a, cmap="gray", cols=4, gap=3, min_width=1))
    assert img.shape == (3 * 5 + 2 * 3, 4 * 7 + 3 * 3, 3)  # 3 rows x 4 cols of 5x7 tiles, 3 px gaps
    for k in range(12):
        r, c = divmod(k, 4)
        tile = img[r * 8 : r * 8 + 5, c * 10 : c * 10 + 7]
        if k >= 10:  # empty slots of the last row
            assert (tile == GAP_COLOUR).all()
            continue
        ch = a[:, :, k]
        want = np.minimum((ch - ch.min()) / (ch.max() - ch.min()) * 256, 255).astype(np.uint8)  # naive twin
        np.testing.assert_array_equal(tile[:, :, 0], want)
    assert (img[5:8] == 255).all() and (img[:, 7:10] == 255).all()  # a gap row and a gap column


def test_small_maps_upscaled_nearest_large_ones_native():
    a = np.random.default_rng(1).uniform(0, 1, (1, 7, 5, 64)).astype(np.float32)  # (1, H, W, C), H != W
    img = np.asarray(grid(a))
    S = 8  # ceil(448 / (8 tiles * 7 px))
    assert img.shape == (8 * 7 * S + 7 * 2, 8 * 5 * S + 7 * 2, 3)
    assert img.shape[0] >= 448
    want = colourise(a[0], a[0].min(axis=(0, 1)), a[0].max(axis=(0, 1)))  # (64, 7, 5, 3): the NumPy twin
    for k in range(64):  # grid's palette path == colourise, tile by tile
        r, c = divmod(k, 8)
        tile = img[r * (7 * S + 2) : r * (7 * S + 2) + 7 * S, c * (5 * S + 2) : c * (5 * S + 2) + 5 * S]
        blocks = tile.reshape(7, S, 5, S, 3)  # (7*S, 5*S, 3) -> (7, S, 5, S, 3)
        assert (blocks == blocks[:, :1, :, :1]).all(), k  # every SxS block is one colour: nearest neighbour
        np.testing.assert_array_equal(blocks[:, 0, :, 0], want[k], err_msg=f"tile {k}")
    big = grid(np.zeros((224, 200, 64), np.float32))
    assert big.size == (8 * 200 + 7 * 2, 8 * 224 + 7 * 2)  # (width, height): native, no upscaling


def test_channel_ranges_and_names_for_512_channels():
    assert channel_ranges(512) == [(s, s + 64) for s in range(0, 512, 64)]
    assert channel_ranges(100) == [(0, 64), (64, 100)]
    assert grid_name(10, "block4_conv1", 128, 192) == "10.block4_conv1_128-192.jpg"
    a = np.random.default_rng(2).uniform(0, 1, (3, 4, 512)).astype(np.float32)
    a[:, :, 448] = np.arange(12).reshape(3, 4)  # a ramp: dark top-left, bright bottom-right
    img = np.asarray(grid(a, 448, 512, cmap="gray", min_width=1))
    assert img.shape == (8 * 3 + 14, 8 * 4 + 14, 3)
    assert img[0, 0, 0] == 0 and img[2, 3, 0] == 255  # tile 0 is channel 448
    with pytest.raises(MinivggError):
        grid(a, 448, 576)


def test_norm_channel_vs_layer():
    a = np.zeros((4, 6, 3), np.float32)
    a[:, :, 0] = np.linspace(0, 1, 24).reshape(4, 6)  # weak channel
    a[:, :, 1] = np.linspace(0, 1000, 24).reshape(4, 6)  # strong channel; channel 2 dead (all zero)
    gray = lambda norm: np.asarray(grid(a, cmap="gray", norm=norm, cols=3, gap=0, min_width=1))[:, :, 0]  # noqa: E731
    ch, ly = gray("channel"), gray("layer")
    assert ch[:, :6].max() == 255 and ch[:, 6:12].max() == 255  # each channel spans the whole scale
    assert ly[:, :6].max() == 0 and ly[:, 6:12].max() == 255  # on the layer's scale, 1/1000 is black
    assert (ch[:, 12:] == 0).all() and (ly[:, 12:] == 0).all()  # a dead channel gets the first colour


def test_viridis_equals_matplotlib():
    pytest.importorskip("matplotlib.colors")  # in the `reference` extra, which CI installs
    import matplotlib

    theirs = matplotlib.colormaps["viridis"](np.arange(256))[:, :3]  # (256, 3) floats in [0, 1]
    assert np.abs(CMAPS["viridis"] / 255 - theirs).max() <= 0.5 / 255  # our table rounds to 8 bits
    v = np.random.default_rng(3).uniform(-2, 5, (9, 11, 1)).astype(np.float32)
    norm = matplotlib.colors.Normalize(v.min(), v.max())
    want = matplotlib.colormaps["viridis"](norm(v[:, :, 0]), bytes=True)[:, :, :3]  # what imshow paints
    got = colourise(v, v.min(axis=(0, 1)), v.max(axis=(0, 1)))[0]
    assert np.abs(got.astype(int) - want).max() <= 1  # same bin; matplotlib truncates to bytes, we round


def test_layer_stats_and_shape_errors():
    a = np.zeros((1, 2, 3, 4), np.float32)
    a[0, 0, 0, :2] = [2, 6]  # channels 2 and 3 all zero
    s = layer_stats(a)
    assert s == {"zeros": 22 / 24, "mean": pytest.approx(8 / 24, rel=1e-6), "min": 0.0, "max": 6.0, "dead": 2,
                 "channels": 4}  # rel=1e-6: the mean is summed in float32
    with pytest.raises(MinivggError, match="shape"):
        grid(np.zeros((2, 3, 3, 4)))


def test_captions_follow_the_block_in_the_layer_name():
    maps = [row.name for row in LAYERS if row.kind in ("conv", "pool")]
    for name in maps:
        block, kind = name.split("_")
        what = report.WHAT["pool" if kind == "pool" else block]
        assert what[1:] in report.caption(name), name  # caption() capitalises the first letter
    assert report.WHAT["block3"][1:] in report.caption("block3_conv2")
    assert "212x212 patch" in report.caption("block5_pool")


# ---- the command, end to end ---------------------------------------------------------------------


def run(args, capsys):
    code = visualize_cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


class Page(html.parser.HTMLParser):
    """The <img> sources of a page, and the text of each table cell that has an id."""

    def __init__(self, text):
        super().__init__()
        self.imgs, self.text, self._open, self._depth = [], {}, {}, 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self._depth += tag == "td"
        if tag == "img":
            self.imgs.append(a["src"])
        if tag == "td" and "id" in a:
            self._open[a["id"]], self.text[a["id"]] = self._depth, ""

    def handle_endtag(self, tag):
        if tag == "td":
            self._open = {k: d for k, d in self._open.items() if d < self._depth}
            self._depth -= 1

    def handle_data(self, data):
        for k in self._open:
            self.text[k] += data + " "


@pytest.fixture(scope="session")
def top_run(weights_top, photo, tmp_path_factory):
    out = tmp_path_factory.mktemp("top") / "out"
    code = visualize_cli.main([str(photo), "--weights", str(weights_top), "--out", str(out)])
    assert code == 0
    return out


@pytest.fixture(scope="session")
def model_top(weights_top):
    return VGG16(weights=str(weights_top))


def test_full_run_names_images_and_page(top_run):
    files = sorted(os.listdir(top_run))
    assert len(GRIDS) == 89 and "0.block1_conv1_0-64.jpg" in GRIDS and "10.block4_conv1_128-192.jpg" in GRIDS
    assert files == sorted(GRIDS + ["original.jpg", "index.html"])
    for f in GRIDS + ["original.jpg"]:
        with Image.open(top_run / f) as img:
            img.verify()
        with Image.open(top_run / f) as img:
            img.load()
            assert img.format == "JPEG" and min(img.size) >= 224
    with Image.open(top_run / "original.jpg") as img:
        assert img.size == (224, 224)
    page = Page((top_run / "index.html").read_text("utf-8"))
    assert sorted(page.imgs) == sorted(GRIDS + ["original.jpg"])
    assert not re.search(r"(src|href)=\"(https?:)?//", (top_run / "index.html").read_text("utf-8"))  # nothing outside


def test_page_numbers_and_predictions(top_run, model_top, photo):
    x = preprocess_input(load_image(photo)[None])
    acts = model_top.activations(x, layers=["block3_conv2", "predictions"])
    a = acts["block3_conv2"][0]  # (56, 56, 256)
    text = Page((top_run / "index.html").read_text("utf-8")).text["block3_conv2"]
    nums = dict(re.findall(r"(zeros|mean|max|dead)\s+([\d.e+]+)", text))
    assert abs(float(nums["zeros"]) - 100 * np.mean(a == 0)) <= 0.05  # shown with 1 decimal, in %
    assert float(nums["mean"]) == pytest.approx(a.mean(), rel=5e-3)  # shown with 3 significant digits
    assert float(nums["max"]) == pytest.approx(a.max(), rel=5e-3)
    assert re.search(rf"dead\s+{int((a.max(axis=(0, 1)) == 0).sum())}/256", text)
    page = (top_run / "index.html").read_text("utf-8")
    names = [name.replace("_", " ") for _, name, _ in decode_predictions(acts["predictions"], top=5)[0]]
    where = [page.find(f"<td>{html.escape(n)}</td>") for n in names]
    assert all(w > 0 for w in where) and where == sorted(where)  # all five, in order


def test_options_size_layers_norm_cmap_format(weights_notop, photo, tmp_path, capsys):
    args = [photo, "--weights", weights_notop, "--out", tmp_path, "--size", 160, "--layers", "block5_*",
            "block1_pool", "--norm", "layer", "--cmap", "gray", "--format", "png", "--quiet"]
    code, out, err = run(args, capsys)
    assert code == 0 and err == ""  # no progress bar: stderr is not a terminal
    assert out.splitlines() == [f"page: {(tmp_path / 'index.html').resolve()}"]
    want = [f"{i}.{n}_{s}-{s + 64}.png" for i, n in enumerate(LAYER_NAMES)
            if n.startswith("block5") or n == "block1_pool" for s in range(0, WIDTH[int(n[5])], 64)]
    assert sorted(os.listdir(tmp_path)) == sorted(want + ["original.png", "index.html"])
    with Image.open(tmp_path / "14.block5_conv1_0-64.png") as img:
        assert img.format == "PNG" and img.size == (8 * 60 + 14,) * 2  # 10x10 maps, upscaled 6x
        assert img.getpixel((0, 0))[0] == img.getpixel((0, 0))[1]  # grey
    page = (tmp_path / "index.html").read_text("utf-8")
    assert "No predictions" in page and page.count('class="scale"') == 1 + 5  # legend + 5 layer scales


def test_top_weights_at_another_size_drop_the_top(weights_top, photo, tmp_path, capsys):
    args = [photo, "--weights", weights_top, "--out", tmp_path, "--size", 64, "--layers", "block1_conv1"]
    code, out, err = run(args, capsys)
    assert code == 0 and "conv layers only, no predictions" in err
    assert out.splitlines()[-1].startswith("page: ") and "No predictions" in (tmp_path / "index.html").read_text()


PEOPLE = ["grey.png", "rgba.png", "cmyk.jpg", "palette.gif", "grey16.png", "rotated.jpg", "wide.jpg"]


def people_image(tmp_path, name):
    """The photo saved as people have images: grey, RGBA, CMYK, palette, 16-bit, EXIF-rotated, very wide."""
    rgb = Image.open(REPO / "minivgg" / "data" / "grace_hopper.jpg").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation 6: "rotate 90 degrees clockwise to view"
    img, kw = {
        "grey.png": (rgb.convert("L"), {}), "rgba.png": (rgb.convert("RGBA"), {}),
        "cmyk.jpg": (rgb.convert("CMYK"), {}), "palette.gif": (rgb.convert("P"), {}),
        "grey16.png": (Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257), {}),  # mode I;16
        "rotated.jpg": (rgb, {"exif": exif.tobytes(), "quality": 95}), "wide.jpg": (rgb.resize((2400, 80)), {}),
    }[name]
    img.save(tmp_path / name, **kw)
    return tmp_path / name


@pytest.mark.parametrize("name", PEOPLE)
def test_images_as_people_have_them(name, weights_notop, tmp_path, capsys):
    code, out, err = run([people_image(tmp_path, name), "--weights", weights_notop, "--out", tmp_path / "out"], capsys)
    assert code == 0, err
    assert len([f for f in os.listdir(tmp_path / "out") if f.endswith(".jpg")]) == 89 + 1
    assert (tmp_path / "out" / "index.html").is_file()
    if name == "rotated.jpg":  # the network sees the photo upright: turned as EXIF says, not as stored
        seen = np.asarray(Image.open(tmp_path / "out" / "original.jpg"), np.float32)
        rgb = Image.open(REPO / "minivgg" / "data" / "grace_hopper.jpg").convert("RGB")
        upright, stored = (np.asarray(im.resize((224, 224)), np.float32)
                           for im in (rgb.transpose(Image.Transpose.ROTATE_270), rgb))
        assert np.abs(seen - upright).mean() < 0.5 * np.abs(seen - stored).mean()


# ---- bad input: one line, exit 1, no traceback, within seconds -----------------------------------


def fails(args, capsys, *words):
    t0 = time.monotonic()
    code, out, err = run(args, capsys)
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in out + err
    assert all(w in err.lower() for w in words), err
    assert time.monotonic() - t0 < 30  # "within seconds"; generous for a busy shared 2-core machine
    return err


def test_bad_images_are_refused(photo, tmp_path, capsys, monkeypatch):
    w = tmp_path / "no-weights-needed.h5"  # the image is checked before the weights are read
    (tmp_path / "notes.txt").write_text("not an image")
    data = (photo).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    Image.new("RGB", (20, 300)).save(tmp_path / "tiny.png")
    Image.new("RGB", (100, 100)).save(tmp_path / "bomb.png")
    fails([tmp_path / "notes.txt", "--weights", w, "--out", tmp_path / "o"], capsys, "not an image")
    fails([tmp_path / "cut.jpg", "--weights", w, "--out", tmp_path / "o"], capsys, "truncated")
    (tmp_path / "empty").mkdir()  # a folder is many images (tests/test_visualize_many.py); this one has none
    fails([tmp_path / "empty", "--weights", w, "--out", tmp_path / "o"], capsys, "no image files")
    fails([tmp_path / "missing.jpg", "--weights", w, "--out", tmp_path / "o"], capsys, "not found")
    fails([tmp_path / "tiny.png", "--weights", w, "--out", tmp_path / "o"], capsys, "too small")
    fails([photo, "--weights", w, "--out", tmp_path / "o", "--size", 16], capsys, "too small")
    fails([photo, "--weights", w, "--out", tmp_path / "o", "--layers", "block6_*"], capsys, "block6_*")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100 // 3)  # so a 100x100 image is a "bomb"
    fails([tmp_path / "bomb.png", "--weights", w, "--out", tmp_path / "o"], capsys, "too large")
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_bad_weights_or_image_leave_an_earlier_run_untouched(photo, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    earlier = {"index.html": "an earlier run's page", "original.jpg": "its image",
               "0.block1_conv1_0-64.jpg": "one of its grids"}
    for f, text in earlier.items():
        (out / f).write_text(text)
    (tmp_path / "garbage.h5").write_text("not HDF5")
    (tmp_path / "notes.txt").write_text("not an image")
    fails([photo, "--weights", "/nonexistent", "--out", out], capsys, "/nonexistent")
    fails([photo, "--weights", tmp_path / "garbage.h5", "--out", out], capsys, "garbage.h5")
    fails([tmp_path / "notes.txt", "--weights", tmp_path / "garbage.h5", "--out", out], capsys, "not an image")
    assert {f: (out / f).read_text() for f in os.listdir(out)} == earlier  # failed before writing: all kept


def test_unwritable_out_is_refused(weights_notop, photo, tmp_path, capsys):
    (tmp_path / "file").write_text("a regular file")
    out = tmp_path / "file" / "out"  # a folder inside a regular file cannot be made
    fails([photo, "--weights", weights_notop, "--out", out, "--layers", "block5_pool"], capsys, "file/out")


def test_size_is_capped(photo, tmp_path, capsys):
    w = tmp_path / "no-weights-needed.h5"  # --size is checked before anything is read
    for size in (40000, visualize_cli.MAX_SIZE + 1):
        err = fails([photo, "--weights", w, "--out", tmp_path / "o", "--size", size], capsys, "too large")
        assert f"--size {size}" in err and str(visualize_cli.MAX_SIZE) in err
    assert not (tmp_path / "o").exists()
    assert visualize_cli.MAX_SIZE == 2048
    with pytest.raises(SystemExit):
        visualize_cli.parse_args(["--help"])
    assert "32 to 2048" in " ".join(capsys.readouterr().out.split())  # --help says the range


def test_other_size_without_weights_uses_a_local_file_else_fetches_notop(photo, tmp_path, capsys, monkeypatch):
    home, keras = tmp_path / "minivgg-home", tmp_path / "keras-home"
    home.mkdir()
    (keras / "models").mkdir(parents=True)  # both empty: no published file here
    monkeypatch.setenv("MINIVGG_HOME", str(home))
    monkeypatch.setenv("KERAS_HOME", str(keras))
    asked = []

    def offline(include_top=None, *args, **kwargs):
        asked.append(include_top)
        raise MinivggError("cannot download (offline in this test)")

    monkeypatch.setattr(download, "find_weights", offline)
    fails([photo, "--size", 64, "--out", tmp_path / "o"], capsys, "offline in this test")
    assert asked == [False]  # the 59 MB notop file, not find_weights(None) -> the 553 MB full one
    assert not (tmp_path / "o").exists()

    full = keras / "models" / download.FILES["vgg16"][True].name  # a full file in Keras' cache: its conv layers do
    full.write_bytes(b"")
    assert visualize_cli.conv_weights() == full
    notop = home / download.FILES["vgg16"][False].name  # with both here, the smaller one
    notop.write_bytes(b"")
    assert visualize_cli.conv_weights() == notop
    assert asked == [False]  # nothing more was fetched


@pytest.mark.parametrize("error, message", [
    (OSError("the disk went away"), "error: the disk went away"),
    (OSError(13, "Permission denied"), "error: Permission denied"),
    (OSError(28, "No space left on device", "out/1.jpg"), "error: No space left on device: out/1.jpg"),
])
def test_os_errors_are_one_clean_line(error, message, photo, capsys, monkeypatch):
    def failing_run(args):
        raise error

    monkeypatch.setattr(visualize_cli, "run", failing_run)
    code, out, err = run([photo], capsys)
    assert code == 1 and err == message + "\n"  # no trailing ": " when the error names no file


def test_script_in_a_subprocess(tmp_path):
    p = subprocess.run([sys.executable, REPO / "scripts" / "visualize.py", tmp_path / "missing.jpg"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and p.stderr.startswith("error: image not found")
    assert not (tmp_path / "activations").exists()


def test_failure_midway_and_interrupt_leave_no_page(weights_notop, photo, tmp_path, capsys, monkeypatch):
    code, _, _ = run([photo, "--weights", weights_notop, "--out", tmp_path, "--layers", "block2_*"], capsys)
    assert code == 0 and (tmp_path / "index.html").exists()
    calls = []

    def failing_save(image, path, fmt="jpg"):
        calls.append(path)
        if len(calls) == 4:
            raise OSError(28, "No space left on device", str(path))
        image.save(path, "JPEG")

    monkeypatch.setattr(pipeline, "save_image", failing_save)  # the writer threads save through it
    fails([photo, "--weights", weights_notop, "--out", tmp_path], capsys, "no space left")
    assert not (tmp_path / "index.html").exists()

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "grid", interrupt)  # raised in a writer thread, re-raised in the main one
    code, out, err = run([photo, "--weights", weights_notop, "--out", tmp_path], capsys)
    assert code == 130 and "Traceback" not in err
    assert not (tmp_path / "index.html").exists() and not [f for f in os.listdir(tmp_path) if f.startswith(".")]


def test_rerun_replaces_our_files_and_keeps_others(weights_notop, photo, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    run([photo, "--weights", weights_notop, "--out", out, "--layers", "block1_*", "--format", "png"], capsys)
    foreign = ["notes.txt", "0.block1_conv1_0-64.jpg.bak", "my_original.jpg", "index.html.orig"]
    for f in foreign:
        (out / f).write_text("mine")
    code, _, _ = run([photo, "--weights", weights_notop, "--out", out, "--layers", "block5_pool"], capsys)
    assert code == 0
    new = [f"17.block5_pool_{s}-{s + 64}.jpg" for s in range(0, 512, 64)]
    assert sorted(os.listdir(out)) == sorted(new + foreign + ["original.jpg", "index.html"])
    assert all((out / f).read_text() == "mine" for f in foreign)
    assert os.listdir(tmp_path) == ["out"]  # nothing written outside --out


def test_default_out_is_activations_image_name(weights_notop, photo, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run([photo, "--weights", weights_notop, "--layers", "block5_pool"], capsys)
    page = tmp_path / "activations" / "grace_hopper" / "index.html"
    assert code == 0 and page.is_file() and out.splitlines()[-1] == f"page: {page.resolve()}"


# ---- scripts/compare_seed.py (without Keras: its children are faked) ------------------------------


def compare_seed():
    spec = importlib.util.spec_from_file_location("compare_seed", REPO / "scripts" / "compare_seed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("repeat", ["0", "-1"])
def test_compare_seed_refuses_repeat_below_1(repeat, capsys):
    with pytest.raises(SystemExit) as e:
        compare_seed().main(["photo.jpg", "--weights", "w.h5", "--repeat", repeat])
    assert e.value.code == 2 and "--repeat" in capsys.readouterr().err


@pytest.mark.parametrize("same", [True, False])
def test_compare_seed_checks_file_names_after_the_first_round(same, monkeypatch, capsys):
    cs, calls = compare_seed(), []

    def fake_measure(cmd, env=None):  # writes the files the real child would, takes no time
        calls.append(cmd)
        seed = "--seed-run" in cmd
        out = Path(cmd[cmd.index("--seed-run" if seed else "--out") + 1])
        out.mkdir(exist_ok=True)
        for f in GRIDS + ["original.jpg"]:
            (out / (f if same or seed else f.replace("block", "blk"))).write_text("")
        return 1.0, 100.0

    monkeypatch.setattr(cs, "measure", fake_measure)
    if same:
        assert cs.main(["photo.jpg", "--weights", "w.h5", "--repeat", "2"]) == 0
        assert len(calls) == 2 + 2 * 2  # cold, warm, then 2 rounds of (seed, minivgg)
        assert "89 grids each" in capsys.readouterr().out
    else:
        with pytest.raises(SystemExit) as e:
            cs.main(["photo.jpg", "--weights", "w.h5", "--repeat", "3"])
        assert "different files" in str(e.value)
        assert len(calls) == 2 + 2  # stopped after the first round, not after all three
