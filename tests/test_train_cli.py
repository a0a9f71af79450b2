"""``minivgg-train`` end to end on a small generated data set (``train_data.py``): it learns, what it
writes (model.keras that Keras and minivgg read alike, classes.txt, history.json, the page), the
cached frozen base, one-line errors, and ``--resume`` after Ctrl-C ending where an uninterrupted run does."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minivgg import VGG
from minivgg.train import SGD, step, trainable_from, with_head
from minivgg.train.cli import main
from minivgg.train.data import preprocess
from train_data import make_dataset

ROOT = Path(__file__).resolve().parents[1]
# random conv base rescaled by LSUV, a linear head, Adam at 0.01: 32x32 images, ~1 s an epoch
FAST = ["--weights", "random", "--size", "32", "--batch", "8", "--hidden", "--optimizer", "adam", "--lr", "0.01",
        "--quiet"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "stripes", per_class=24, size=40, seed=0)


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "stripes"
    assert main([str(dataset), "--epochs", "6", "--out", str(out)] + FAST) == 0
    return out


def test_a_run_learns_and_writes_its_files(trained):
    history = json.loads((trained / "history.json").read_text())
    assert history["classes"] == ["blue_horizontal", "green_vertical", "red_horizontal"]
    assert (trained / "classes.txt").read_text().split("\n")[:3] == history["classes"]
    epochs = history["epochs"]
    assert {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"} <= set(epochs[0])
    best = history["best_epoch"]
    assert epochs[best - 1]["val_accuracy"] >= 0.9  # the bar on this data set
    assert epochs[best - 1]["val_accuracy"] == max(e["val_accuracy"] for e in epochs)
    page = (trained / "index.html").read_text()
    for part in ("Confusion matrix", "Accuracy per class", "Most wrong", "Confidence and coverage", "<svg"):
        assert part in page
    assert not list(trained.glob(".*.npy")) and not list(trained.glob("*.tmp"))  # caches and temporaries gone


def test_model_keras_predicts_in_keras_what_minivgg_predicts(tf, trained, dataset):
    import keras

    from minivgg.train.data import load_images, read_folder

    paths, labels, _ = read_folder(dataset)
    x = preprocess(load_images(paths[::5], labels[::5], 32)[0])
    ours = VGG(weights=trained / "model.keras")
    p = ours(x)
    q = keras.models.load_model(trained / "model.keras").predict(x, verbose=0)
    # float32 through 13 convs in other summation orders; probabilities in [0, 1]: 1e-4 absolute (the bar)
    assert np.abs(p - q).max() <= 1e-4


@pytest.mark.parametrize("lowest, below", [("dense", "flatten"), ("block5_conv2", "block5_conv1")])
def test_a_step_on_cached_base_outputs_is_the_step_on_images(lowest, below):
    base = VGG(weights=None, include_top=False)
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (4, 32, 40, 3)).astype(np.uint8)  # (N, H, W, 3): H != W
    y = np.array([0, 1, 1, 0])
    a = with_head(base, 2, hidden=(8,), size=(32, 40))
    b = with_head(base, 2, hidden=(8,), size=(32, 40))
    names = trainable_from(a, lowest)
    x = preprocess(images)
    feats = a.activations(x, layers=[below])[below]  # the input of the lowest trainable layer, as fit caches it
    la = step(a, x, y, SGD(0.1), names, seed=4)
    lb = step(b, feats, y, SGD(0.1), names, seed=4, start=lowest)
    assert la == lb
    for name in names:
        assert all(np.array_equal(u, v) for u, v in zip(a.params[name], b.params[name])), name


@pytest.mark.parametrize("case, match", [
    ("one_class", "at least two"),
    ("empty_class", "holds no images"),
    ("val_missing", "has no folder for class"),
    ("not_a_folder", "does not exist"),
])
def test_bad_data_is_one_line_and_exit_1(tmp_path, capsys, case, match):
    data = make_dataset(tmp_path / "d", per_class=3, size=32, classes={"a": ((200, 0, 0), True), "b": ((0, 0, 200), False)})
    args = [str(data)]
    if case == "one_class":
        args = [str(make_dataset(tmp_path / "one", per_class=3, size=32, classes={"a": ((200, 0, 0), True)}))]
    elif case == "empty_class":
        (data / "c").mkdir()
        (data / "c" / "notes.txt").write_text("not an image")
    elif case == "val_missing":
        val = make_dataset(tmp_path / "v", per_class=2, size=32, classes={"a": ((200, 0, 0), True)})
        args += ["--val", str(val)]
    elif case == "not_a_folder":
        args = [str(tmp_path / "nothing")]
    assert main(args + ["--out", str(tmp_path / "out")] + FAST) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and match in err and "\n" not in err, err


def test_a_broken_image_is_skipped_and_named(tmp_path, capsys):
    data = make_dataset(tmp_path / "d", per_class=4, size=32, classes={"a": ((200, 0, 0), True), "b": ((0, 0, 200), False)})
    (data / "a" / "broken.png").write_bytes((data / "a" / "000.png").read_bytes()[:60])  # a PNG header, cut short
    out = tmp_path / "out"
    assert main([str(data), "--epochs", "1", "--out", str(out)] + FAST) == 0
    err = capsys.readouterr().err
    assert err.count("broken.png") == 1 and err.startswith("skipped: ")
    assert "broken.png" in (out / "index.html").read_text()


def test_resume_after_ctrl_c_ends_where_an_uninterrupted_run_does(dataset, tmp_path):
    args = [str(dataset), "--epochs", "4", "--patience", "4"] + FAST
    args[args.index("--batch") + 1] = "2"  # many small steps: a signal lands mid-epoch
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(args + ["--out", str(full)]) == 0
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py")] + args + ["--out", str(cut)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (cut / "checkpoint.npz").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    done = json.loads((cut / "history.json").read_text())["epochs"]
    assert 1 <= len(done) < 4  # stopped part way
    assert (cut / "model.keras").exists()  # the best epoch so far is kept
    assert main(args + ["--out", str(cut), "--resume"]) == 0
    a, b = VGG(weights=full / "model.keras"), VGG(weights=cut / "model.keras")
    for name in ("dense",):
        assert all(np.array_equal(u, v) for u, v in zip(a.params[name], b.params[name])), name
    ha, hb = (json.loads((d / "history.json").read_text()) for d in (full, cut))
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h["epochs"]]
    assert strip(ha) == strip(hb) and ha["best_epoch"] == hb["best_epoch"]


def test_resume_refuses_another_runs_checkpoint(dataset, trained, capsys):
    assert main([str(dataset), "--epochs", "6", "--out", str(trained), "--resume", "--seed", "1"] + FAST) == 1
    assert "other settings" in capsys.readouterr().err


def test_the_page_links_the_pages_of_other_scripts_under_out(trained):
    from minivgg.train.page import _children
    from minivgg.visualize.report import page_meta

    (trained / "maps").mkdir(exist_ok=True)
    (trained / "maps" / "index.html").write_text(f"<html><head>{page_meta('visualize')}<title>maps of x</title></head></html>")
    (trained / "other").mkdir(exist_ok=True)
    (trained / "other" / "index.html").write_text("<html><title>not ours</title></html>")
    assert _children(trained) == [("maps/index.html", "maps of x")]


def test_without_augmentation_block5_trains_on_cached_inputs(dataset, tmp_path, monkeypatch):
    from minivgg.train import loop

    cached = []
    real = loop.base_outputs
    monkeypatch.setattr(loop, "base_outputs", lambda *a, **k: cached.append(a[3]) or real(*a, **k))
    out = tmp_path / "b5"
    assert main([str(dataset), "--epochs", "2", "--no-augment", "--train-from", "block5_conv3", "--out", str(out)]
                + FAST) == 0
    assert cached == ["block5_conv3", "block5_conv3"]  # validation and training inputs of the lowest trainable layer
    assert VGG(weights=out / "model.keras").layers[-1].name == "dense"
    assert len(json.loads((out / "history.json").read_text())["epochs"]) == 2


def test_more_than_five_classes_report_top_5(tmp_path, capsys):
    colours = [(200, 60, 50), (60, 190, 70), (50, 80, 200), (200, 200, 40), (40, 200, 200), (200, 40, 200)]
    classes = {f"c{i}": (c, i % 2 == 0) for i, c in enumerate(colours)}
    data = make_dataset(tmp_path / "six", per_class=4, size=32, classes=classes)
    out = tmp_path / "out"
    args = [str(data), "--epochs", "1", "--out", str(out)] + [a for a in FAST if a != "--quiet"]
    assert main(args) == 0
    epoch = json.loads((out / "history.json").read_text())["epochs"][0]
    assert 0 <= epoch["val_top5_accuracy"] <= 1 and epoch["val_top5_accuracy"] >= epoch["val_accuracy"]
    assert "val top-5" in capsys.readouterr().out
