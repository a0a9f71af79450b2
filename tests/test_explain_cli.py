"""scripts/explain.py (``minivgg.explain.cli``): what it writes, its JSON, its one-line errors, and
that a failed run leaves an earlier run's output as it was.

Cheap: the notop weight file, the photo at 48x48 (block5_conv3 is 3x3), a channel target, SmoothGrad
and IG at 2 samples / steps. The page in a real browser: tests/test_browser.py.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minivgg import VGG16, load_image, preprocess_input
from minivgg.explain import METHODS
from minivgg.explain import cli

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "explain.py"
CHEAP = ["--size", "48", "--samples", "2", "--steps", "2"]


@pytest.fixture(scope="module")
def channel(weights_notop, photo):
    """A channel of block5_conv3 that is active on the photo at 48x48 (a dead one has no gradient)."""
    x = preprocess_input(load_image(photo, target_size=(48, 48)))[None]
    a = VGG16(weights=weights_notop).activations(x, ["block5_conv3"])["block5_conv3"]  # (1, 3, 3, 512)
    return f"block5_conv3:{int(np.argmax(a[0].mean(axis=(0, 1))))}"


@pytest.fixture(scope="module")
def first_run(weights_notop, photo, channel, tmp_path_factory):
    """One full run (every method, the sanity check, --json) as a user runs it: a subprocess."""
    root = tmp_path_factory.mktemp("explain")
    out, js = root / "why", root / "why.json"
    done = subprocess.run([sys.executable, str(SCRIPT), str(photo), "--channel", channel, *CHEAP,
                           "--weights", str(weights_notop), "--out", str(out), "--json", str(js)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out, js, done


def snapshot(folder):
    return {f: (folder / f).read_bytes() for f in sorted(os.listdir(folder))}


def test_outputs_exist_and_the_last_line_is_the_page(first_run, channel):
    out, _, done = first_run
    assert done.stdout.splitlines()[-1] == f"page: {(out / 'index.html').resolve()}"
    prefix = channel.replace(":", "-")
    want = {"original.png", "index.html"} | {f"{prefix}_{m}.{ext}" for m in METHODS for ext in ("png", "npy")}
    assert set(os.listdir(out)) == want
    shapes = {m: np.load(out / f"{prefix}_{m}.npy").shape for m in METHODS}
    assert shapes == {"saliency": (48, 48), "smoothgrad": (48, 48), "integrated_gradients": (48, 48, 3),
                      "guided_backprop": (48, 48, 3), "deconvnet": (48, 48, 3), "grad_cam": (3, 3),
                      "layer_cam": (3, 3), "guided_grad_cam": (48, 48, 3)}
    text = (out / "index.html").read_text("utf-8")
    assert text.count('<svg class="sanity"') == len(METHODS) and "Spearman" in text
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_json_has_time_sanity_and_gap_per_method(first_run, channel):
    _, js, _ = first_run
    record = json.loads(js.read_text())
    layer, k = channel.split(":")
    (target,) = record["targets"]
    assert target["target"] == [layer, int(k)] and record["size"] == [48, 48] and record["top5"] is None
    assert set(target["methods"]) == set(METHODS)
    for name, m in target["methods"].items():
        assert m["seconds"] > 0
        # by block, at or below block5_conv3: block5 ... block1
        assert m["sanity"]["steps"] == ["block5", "block4", "block3", "block2", "block1"]
        assert len(m["sanity"]["spearman"]) == 5 and isinstance(m["sanity"]["insensitive"], bool)
    assert np.isfinite(target["methods"]["integrated_gradients"]["gap"])
    assert "gap" not in target["methods"]["saliency"]


@pytest.mark.parametrize("argv, message", [
    (["--channel", "CH", "--layer", "block5_pool"], "--layer 'block5_pool' is not a conv layer"),
    (["--channel", "CH", "--layer", "fc1"], "--layer 'fc1' is not a conv layer"),
    (["--class", "3"], "has no top"),  # the notop file asked for a class
    (["--channel", "block5_conv3:512"], "block5_conv3 has channels 0 to 511"),
    (["--channel", "conv3"], "expected LAYER:K"),
    (["--channel", "block3_conv1:0", "--methods", "grad_cam"], "lies above the target's layer"),
    (["--channel", "CH", "--samples", "0"], "--samples must be at least 1"),
    (["--channel", "CH", "--size", "16"], "--size must be from 32"),
    (["--class", "3", "--size", "64"], "--size goes with --channel"),
    (["--image", "missing.jpg"], "missing.jpg"),
])
def test_errors_are_one_line_and_keep_the_earlier_output(first_run, weights_notop, photo, channel, argv, message,
                                                         capsys, tmp_path):
    out, _, _ = first_run
    before = snapshot(out)
    image = str(tmp_path / argv[1]) if argv[0] == "--image" else str(photo)
    argv = [] if argv[0] == "--image" else [channel if a == "CH" else a for a in argv]
    code = cli.main([image, *argv, "--weights", str(weights_notop), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert snapshot(out) == before


def test_vgg19_by_its_file_or_by_arch(vgg19_notop, weights_notop, photo, capsys, tmp_path):
    """A VGG19 file is detected (its block5_conv4 is a valid --layer), --arch vgg19 says the same, and
    --arch vgg16 with that file is refused in one line naming VGG19."""
    argv = [str(photo), "--channel", "block5_conv4:0", *CHEAP, "--methods", "saliency", "grad_cam", "--layer",
            "block5_conv4", "--no-sanity", "--weights", str(vgg19_notop), "--quiet"]
    for extra, out in ([], tmp_path / "detected"), (["--arch", "vgg19"], tmp_path / "named"):
        assert cli.main([*argv, *extra, "--out", str(out)]) == 0, capsys.readouterr().err
        assert np.load(out / "block5_conv4-0_grad_cam.npy").shape == (3, 3)
        assert "VGG19" in (out / "index.html").read_text("utf-8")
    capsys.readouterr()
    assert cli.main([*argv, "--arch", "vgg16", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "VGG19" in err, err


def test_class_outside_the_head_is_refused(weights_top, photo, capsys, tmp_path):
    code = cli.main([str(photo), "--class", "1000", "--weights", str(weights_top), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and err == "error: --class 1000 is outside this network's classes: 0 to 999\n"
    assert not (tmp_path / "o").exists()


def test_a_run_that_fails_midway_leaves_the_earlier_output(first_run, weights_notop, photo, channel, monkeypatch,
                                                           capsys):
    out, _, _ = first_run
    before = snapshot(out)
    calls = []

    def full_disk(image, path):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(path))
        image.save(path, "PNG")

    monkeypatch.setattr(cli, "save", full_disk)
    code = cli.main([str(photo), "--channel", channel, *CHEAP, "--no-sanity", "--weights", str(weights_notop),
                     "--out", str(out), "--quiet"])
    assert code == 1 and "No space left on device" in capsys.readouterr().err
    assert snapshot(out) == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # the half-built folder is gone


def test_a_rerun_replaces_our_files_and_keeps_others(weights_notop, photo, channel, tmp_path, capsys):
    out = tmp_path / "why"
    base = [str(photo), "--channel", channel, *CHEAP, "--no-sanity", "--weights", str(weights_notop), "--out", str(out),
            "--quiet"]
    assert cli.main(base + ["--methods", "saliency", "grad_cam"]) == 0
    (out / "notes.txt").write_text("mine")
    assert cli.main(base + ["--methods", "deconvnet"]) == 0
    prefix = channel.replace(":", "-")
    assert set(os.listdir(out)) == {"notes.txt", "original.png", "index.html", f"{prefix}_deconvnet.png",
                                    f"{prefix}_deconvnet.npy"}
    assert capsys.readouterr().out.splitlines()[-1] == f"page: {(out / 'index.html').resolve()}"
    assert "No sanity check" in (out / "index.html").read_text("utf-8")
