"""The neuron catalogue (minivgg/catalog/): the streaming top-k against brute force, ties, shards merged
== one run, an interrupted scan resumed == one run, bad files among good, the page in Chromium.

Small and fast: 48x48 inputs, a handful of images, weights from conftest (Keras-made, seeded)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minivgg.catalog import cli
from minivgg.catalog.scan import LayerStats, TopK, image_maxima, image_maxima_naive, load_state, top_k_naive
from minivgg.files.preprocess import load_image, preprocess_input
from minivgg.network.vgg import VGG16

from test_browser import IMAGES, chromium  # noqa: F401 -- the headless Chromium fixture and the <img> probe

SIZE = 48
LAYERS = "block1_conv2,block2_pool,block3_conv3,block5_conv1"


def write_images(folder, n, seed=0):
    """n lopsided random JPEGs (the catalogue resizes them to SIZE x SIZE)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40 + 3 * i, 56, 3), dtype=np.uint8)).save(folder / f"im{i:02d}.jpg")
    return folder


def entries(data, layer):
    """[(channel, [(image path, value, row, col, box)])] of a catalogue JSON, images by name (not index)."""
    return [(ch["channel"], [(data["images"][t["image"]], t["value"], t["row"], t["col"], t["box"]) for t in ch["top"]])
            for ch in data["layers"][layer]]


def catalog(args, tmp_path, name="out"):
    out, js = tmp_path / name, tmp_path / f"{name}.json"
    rc = cli.main([*map(str, args), "--out", str(out), "--json", str(js), "--quiet"])
    return rc, out, (json.loads(js.read_text()) if js.exists() else None)


# ---- the top-k itself ---------------------------------------------------------------------------

def test_topk_streamed_in_batches_equals_sorting_everything_with_ties():
    rng = np.random.default_rng(3)
    # small integers: many equal values, within an image (positions) and across images
    acts = [rng.integers(0, 4, (3, 5, 6)).astype(np.float32) for _ in range(11)]  # (H', W', C), H' != W'
    want = top_k_naive(acts, 4)
    stats = LayerStats(6, 4)
    for start in (0, 3, 4, 9):  # uneven batches
        stop = {0: 3, 3: 4, 4: 9, 9: 11}[start]
        value, row, col = image_maxima(np.stack(acts[start:stop]))  # (N, C) each
        stats = stats.updated(value, row, col, np.arange(start, stop))
    assert [stats.top.entries(c) for c in range(6)] == [[(v, i, r, q) for v, i, r, q in w] for w in want]
    assert stats.fires.tolist() == [sum(a[..., c].max() > 0 for a in acts) for c in range(6)]


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 17), (3, 7, 2, 40), (1, 9, 11, 64)])
def test_image_maxima_equals_its_numpy_twin(shape):
    # Lopsided maps, channel counts that are not a multiple of a task's 16, ties within a map (small
    # integers), negative values (a conv output before its ReLU) and all-equal channels.
    rng = np.random.default_rng(sum(shape))
    act = rng.integers(-3, 3, shape).astype(np.float32)
    act[..., 0] = -1.0  # one value everywhere: the first unit
    for ours, naive in zip(image_maxima(act), image_maxima_naive(act)):
        np.testing.assert_array_equal(ours, naive)


def test_batch_maxima_image_by_image_is_the_batch(weights_notop):
    # The catalogue's batch-invariant model runs a batch one image at a time (stream.batch_maxima): the same
    # bits as the batched pass of the same model, and within rounding of the default model's.
    from minivgg.catalog.stream import batch_maxima
    from minivgg.network.vgg import VGG16

    x = np.random.default_rng(5).uniform(-100, 100, (3, 40, 36, 3)).astype(np.float32)
    layers = {"block1_conv2", "block3_conv1", "block4_conv3"}
    invariant = VGG16(weights=weights_notop, include_top=False, batch_invariant=True)
    got = batch_maxima(invariant, x, layers)
    acts = invariant.activations(x)
    for name in layers:
        for ours, naive in zip(got[name], image_maxima_naive(acts[name])):
            np.testing.assert_array_equal(ours, naive)
    default = batch_maxima(VGG16(weights=weights_notop, include_top=False), x, layers)
    for name in layers:
        np.testing.assert_allclose(default[name][0], got[name][0], rtol=1e-4, atol=1e-4 * got[name][0].max())


def test_topk_merge_is_order_free():
    rng = np.random.default_rng(4)
    parts = []
    for p in range(3):
        t = TopK(5, 3)
        v = rng.integers(0, 3, (5, 4)).astype(np.float32)
        parts.append(t.merged(v, np.tile(np.arange(p, 12, 3), (5, 1)), np.zeros((5, 4), int), np.zeros((5, 4), int)))
    a = parts[0].merged_with(parts[1]).merged_with(parts[2])
    b = parts[2].merged_with(parts[0].merged_with(parts[1]))
    assert all(a.entries(c) == b.entries(c) for c in range(5))
    assert all(e[1] < f[1] for c in range(5) for e, f in zip(a.entries(c), a.entries(c)[1:]) if e[0] == f[0])


# ---- the command against brute force -------------------------------------------------------------

@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = write_images(tmp_path_factory.mktemp("catalog") / "imgs", 6)
    (folder / "dup.jpg").write_bytes((folder / "im02.jpg").read_bytes())  # an exact tie with im02 everywhere
    return folder


@pytest.fixture(scope="module")
def one_run(weights_notop, images, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("one")
    rc, out, data = catalog([images, "--weights", weights_notop, "--size", SIZE, "--layers", LAYERS, "--top", 4,
                             "--batch", 3], tmp)
    assert rc == 0
    return out, data


def test_catalogue_equals_brute_force(weights_notop, one_run):
    out, data = one_run
    # batch_invariant, as the catalogue's model: each image's activations are the bits it gets alone, so
    # batches of 3 there and one batch of 7 here agree exactly (and the exact tie dup.jpg == im02.jpg holds)
    model = VGG16(weights=str(weights_notop), include_top=False, batch_invariant=True)
    paths = data["images"]
    assert [Path(p).name for p in paths] == ["dup.jpg"] + [f"im{i:02d}.jpg" for i in range(6)]  # sorted by name
    x = np.stack([preprocess_input(load_image(p, (SIZE, SIZE))) for p in paths])  # (7, 48, 48, 3)
    acts = model.activations(x, layers=LAYERS.split(","))  # every activation kept, one batch
    for layer, a in acts.items():
        want = top_k_naive(list(a), 4)
        rf = model.receptive_field(layer)
        got = data["layers"][layer]
        assert len(got) == a.shape[-1]
        for c, ch in enumerate(got):
            assert [t["image"] for t in ch["top"]] == [i for _, i, _, _ in want[c]], (layer, c)
            assert [(t["row"], t["col"]) for t in ch["top"]] == [(r, q) for _, _, r, q in want[c]], (layer, c)
            assert [t["value"] for t in ch["top"]] == [v for v, _, _, _ in want[c]], (layer, c)
            assert [t["box"] for t in ch["top"]] == [list(rf.box(r, q, shape=(SIZE, SIZE))) for _, _, r, q in want[c]]
            assert ch["fires"] == pytest.approx(float((a[..., c].max(axis=(1, 2)) > 0).mean()))


def test_ties_go_to_the_image_first_in_the_run(one_run):
    _, data = one_run
    names = [Path(p).name for p in data["images"]]
    both = 0  # channels where the two copies both made the top: the tie was exercised
    for layer in LAYERS.split(","):
        for ch in data["layers"][layer]:
            top = [(names[t["image"]], t["value"]) for t in ch["top"]]
            for (n1, v1), (n2, v2) in zip(top, top[1:]):
                assert v1 >= v2
            pair = [n for n, _ in top if n in ("dup.jpg", "im02.jpg")]
            if len(pair) == 2:
                assert pair == ["dup.jpg", "im02.jpg"]  # equal values: dup.jpg comes first in the run
                both += 1
            elif pair:
                assert pair == ["dup.jpg"]  # one slot left: the first in the run takes it
    assert both > 10


def test_pages_and_sheets(one_run):
    out, data = one_run
    assert (out / "index.html").exists()
    for layer in LAYERS.split(","):
        page = (out / f"{layer}.html").read_text()
        assert page.count('<section class="ch"') == len(data["layers"][layer])
    sheets = sorted(p.name for p in (out / "sheets").iterdir())
    assert "block3_conv3-3.jpg" in sheets and "block3_conv3-4.jpg" not in sheets  # 256 channels, 64 a sheet
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary file left


def test_shards_merged_equal_one_run(weights_notop, images, one_run, tmp_path):
    common = [images, "--weights", weights_notop, "--size", SIZE, "--layers", LAYERS, "--top", 4, "--batch", 3]
    dirs = []
    for i in (1, 2, 3):
        d = tmp_path / f"part{i}"
        assert cli.main([*map(str, common), "--shard", f"{i}/3", "--out", str(d), "--quiet"]) == 0
        dirs.append(str(d))
    rc, _, merged = catalog(["--merge", dirs[2], dirs[0], dirs[1]], tmp_path, "merged")
    assert rc == 0
    _, data = one_run
    assert merged["images"] == data["images"]
    for layer in LAYERS.split(","):
        assert entries(merged, layer) == entries(data, layer)
    # not all the shards: refused in one line
    rc = cli.main(["--merge", dirs[0], dirs[1], "--out", str(tmp_path / "half"), "--quiet"])
    assert rc == 1


def test_bad_files_among_good(weights_notop, tmp_path, capsys):
    folder = write_images(tmp_path / "imgs", 3, seed=7)
    big = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    Image.fromarray(big).save(folder / "im01.jpg")
    data = (folder / "im01.jpg").read_bytes()
    (folder / "im01.jpg").write_bytes(data[: len(data) // 2])  # a JPEG header, then nothing: truncated
    rc, out, js = catalog([folder, "--weights", weights_notop, "--size", SIZE, "--layers", "block1_conv1"], tmp_path)
    err = capsys.readouterr().err
    assert rc == 1
    assert "im01.jpg" in err and "Traceback" not in err
    assert list(js["failed"]) == ["1"]
    assert {t["image"] for ch in js["layers"]["block1_conv1"] for t in ch["top"]} == {0, 2}
    assert "im01.jpg" in (out / "index.html").read_text()


def test_changed_command_refuses_to_resume(weights_notop, images, one_run, tmp_path, capsys):
    out, _ = one_run
    rc = cli.main([str(images), "--weights", str(weights_notop), "--size", str(SIZE), "--layers", LAYERS,
                   "--top", "5", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("error: ") and "top" in err[0]


def test_sigint_then_resume_equals_one_run(weights_notop, tmp_path):
    folder = write_images(tmp_path / "imgs", 10, seed=2)
    out = tmp_path / "out"
    args = [str(folder), "--weights", str(weights_notop), "--size", str(SIZE), "--layers", "block1_conv2,block3_conv1",
            "--top", "3", "--batch", "1", "--save-every", "1", "--out", str(out), "--json", str(tmp_path / "a.json"),
            "--quiet"]
    # the subprocess decodes slowly (0.3 s an image), so the Ctrl-C lands mid-scan whatever the machine's load
    slow = ("import sys, time; import minivgg.catalog.cli as c; f = c.network_input; "
            "c.network_input = lambda p, s: (time.sleep(0.3), f(p, s))[1]; raise SystemExit(c.main(sys.argv[1:]))")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-c", slow, *args], env=env, stderr=subprocess.PIPE, text=True)
    state = out / "catalog-state.npz"
    deadline = time.monotonic() + 120
    while not state.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not (out / "index.html").exists()
    assert 0 < load_state(state).done < 10  # stopped mid-scan, the batches done kept
    assert cli.main(args) == 0  # the same command: resumes
    resumed = json.loads((tmp_path / "a.json").read_text())
    args[args.index("--out") + 1], args[args.index("--json") + 1] = str(tmp_path / "b"), str(tmp_path / "b.json")
    assert cli.main(args) == 0  # one uninterrupted run
    once = json.loads((tmp_path / "b.json").read_text())
    for layer in ("block1_conv2", "block3_conv1"):
        assert entries(resumed, layer) == entries(once, layer)


@pytest.mark.browser
def test_catalogue_page_in_chromium(chromium, weights_notop, images, tmp_path):  # noqa: F811
    root = tmp_path / "site"
    feats = root / "features_block1_conv2"  # a features.py run beside the catalogue: its images are shown
    feats.mkdir(parents=True)
    Image.new("RGB", (32, 32), (200, 30, 30)).save(feats / "block1_conv2_3.png")
    from minivgg.visualize import report

    (feats / "index.html").write_text(  # a sibling page (as features.py writes them): links both ways
        f"<!doctype html><html><head>{report.page_meta('features')}<title>features</title></head>"
        f"<body>{report.related_html(None)}</body></html>")
    rc, out, _ = catalog([images, "--weights", weights_notop, "--size", SIZE, "--layers", "block1_conv2,block2_pool",
                          "--projections", "--top", 2], root, "catalog")
    assert rc == 0
    for page in ("index.html", "block1_conv2.html", "block2_pool.html"):
        chromium.open(out / page)
        imgs = chromium.evaluate(f"JSON.stringify({IMAGES})")
        assert [src for src, complete, width in imgs if not (complete and width > 0)] == []
        if page != "index.html":
            assert len(imgs) >= 1  # the sheets
            backgrounds = chromium.evaluate("JSON.stringify([...document.querySelectorAll('.tile')].length)")
            assert backgrounds > 0
        chromium.assert_local_and_clean(out)
    assert "features-block1_conv2_3.png" in (out / "block1_conv2.html").read_text()
    assert "../features_block1_conv2/index.html" in (out / "index.html").read_text()
    assert "../catalog/index.html" in (feats / "index.html").read_text()


def test_dask_example_on_a_local_cluster_equals_one_run(weights_notop, images, one_run, tmp_path):
    distributed = pytest.importorskip("distributed")  # the 'dask' extra (CI installs it)
    import importlib.util

    spec = importlib.util.spec_from_file_location("catalog_dask", Path(__file__).resolve().parents[1] / "scripts" / "catalog_dask.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    options = ["--weights", str(weights_notop), "--size", str(SIZE), "--layers", LAYERS, "--top", "4", "--batch", "3",
               "--json", str(tmp_path / "dask.json")]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        assert script.run([str(images)], 3, tmp_path / "out", options, client) == 0
    merged, (_, data) = json.loads((tmp_path / "dask.json").read_text()), one_run
    assert merged["images"] == data["images"]
    for layer in LAYERS.split(","):
        assert entries(merged, layer) == entries(data, layer)


def test_patch_is_the_clipped_box_padded_grey():
    from minivgg.catalog.patches import GREY, cut
    from minivgg.network.receptive_field import receptive_field
    from minivgg.network.table import layers

    img = np.arange(40 * 56 * 3, dtype=np.int64).reshape(40, 56, 3) % 251  # (H, W, 3), H != W
    img = img.astype(np.uint8)
    rf = receptive_field(layers("vgg16"), "block2_conv2")  # 14, stride 2, padding 6
    patch = cut(img, rf, 0, 27)  # top-right unit: rows -6..8, columns 48..62 -> 48..56 inside
    assert patch.shape == (14, 14, 3)
    assert (patch[:6] == GREY).all() and (patch[:, 8:] == GREY).all()  # above and right of the image
    assert (patch[6:, :8] == img[0:8, 48:56]).all()


def test_unwritable_out_is_one_line(weights_notop, images, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rc = cli.main([str(images), "--weights", str(weights_notop), "--size", str(SIZE), "--layers", "block1_conv1",
                   "--out", str(blocker / "out"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("error: cannot write to")
    assert blocker.read_text() == "not a folder"


def test_tile_resize():
    from minivgg.catalog.patches import resize, shrink, shrink_naive, tile_side

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (2, 5, 5, 3), dtype=np.uint8)  # block1_conv2's field, blown up to 48
    for ours, patch in zip(resize(small, 48), small):
        assert (ours == np.asarray(Image.fromarray(patch).resize((48, 48), Image.Resampling.NEAREST))).all()
    assert [tile_side(r) for r in (3, 48, 96, 97, 132, 196, 212)] == [48, 48, 96, 49, 66, 66, 71]
    big = rng.integers(0, 256, (2, 212, 212, 3), dtype=np.uint8)  # block5_pool's field: f = 3, 212 -> 71
    ours = resize(big, tile_side(212))
    assert ours.shape == (2, 71, 71, 3)
    np.testing.assert_array_equal(ours, shrink_naive(big, 3))
    with pytest.raises(ValueError, match="whole factor"):
        resize(big, 96)
    # the compiled box filter against its NumPy twin on lopsided cases (R a multiple of f or not, f = 1),
    # and against Pillow's own box reduction where R is a multiple of f (Pillow rounds the same way)
    for M, R, f in [(3, 7, 2), (1, 9, 3), (2, 10, 4), (4, 6, 1)]:
        p = rng.integers(0, 256, (M, R, R, 3), dtype=np.uint8)
        np.testing.assert_array_equal(shrink(p, f), shrink_naive(p, f))
    p = rng.integers(0, 256, (2, 132, 132, 3), dtype=np.uint8)
    pillow = np.stack([np.asarray(Image.fromarray(q).reduce(2)) for q in p])
    assert np.abs(shrink(p, 2).astype(int) - pillow).max() <= 1