"""minivgg-visualize on other networks than VGG16's: VGG19 (the seed's naming, continued) and
fine-tuned heads (class names from --labels, else "class 3")."""
import html
import os
import re

import pytest

from minivgg import VGG
from minivgg import load_image
from minivgg import preprocess_input
from minivgg.visualize import cli as visualize_cli

# VGG19 written out by hand (not from the package's table): 2, 2, 4, 4, 4 convs per block.
VGG19_MAPS = [f"block{b}_{k}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
              for k in [f"conv{j}" for j in range(1, n + 1)] + ["pool"]]
WIDTH = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}
VGG19_GRIDS = [f"{i}.{name}_{s}-{s + 64}.jpg" for i, name in enumerate(VGG19_MAPS) for s in range(0, WIDTH[int(name[5])], 64)]


def run(argv, capsys):
    code = visualize_cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def fails(argv, capsys, *words):
    code, out, err = run(argv, capsys)
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1, err
    assert all(w in err for w in words), err
    return err


def test_vgg19_grids_continue_the_seed_naming(vgg19_notop, photo, tmp_path, capsys):
    # 96x96: the names and the number of grids do not depend on the size, the time does.
    code, out, err = run([photo, "--weights", vgg19_notop, "--out", tmp_path, "--size", 96], capsys)
    assert code == 0, err
    assert len(VGG19_MAPS) == 21 and len(VGG19_GRIDS) == 109
    assert sorted(os.listdir(tmp_path)) == sorted(VGG19_GRIDS + ["original.jpg", "index.html"])
    assert "20.block5_pool_448-512.jpg" in VGG19_GRIDS and "9.block3_conv4_192-256.jpg" in VGG19_GRIDS
    page = (tmp_path / "index.html").read_text("utf-8")
    assert "What VGG19 sees in grace_hopper.jpg" in page and "No predictions" in page
    assert "268x268 patch" in page  # block5_pool's receptive field in VGG19 (212 in VGG16)
    assert "109 grids of 21 layers" in out


def test_arch_option(vgg19_notop, photo, tmp_path, capsys):
    fails([photo, "--weights", vgg19_notop, "--arch", "vgg16", "--out", tmp_path / "a"], capsys,
          "holds a VGG19, not a VGG16: use minivgg.VGG19")
    assert not (tmp_path / "a").exists()
    code, _, _ = run([photo, "--weights", vgg19_notop, "--arch", "vgg19", "--out", tmp_path / "b", "--size", 48,
                      "--layers", "block3_conv4", "--quiet"], capsys)
    assert code == 0 and sorted(os.listdir(tmp_path / "b")) == sorted(
        [f"9.block3_conv4_{s}-{s + 64}.jpg" for s in range(0, 256, 64)] + ["original.jpg", "index.html"])
    fails([photo, "--weights", vgg19_notop, "--layers", "block6_*", "--out", tmp_path / "c"], capsys, "matches no")


def top_names(scores, names):
    """The five best class names, best first, as ``top_classes`` orders them."""
    import numpy as np

    return [names[i] for i in np.argsort(-scores[0], kind="stable")[:5]]


def test_finetuned_head_with_and_without_labels(finetuned, photo, tmp_path, capsys):
    gap, _ = finetuned["gap"]
    labels = ["cat", "dog", "fish & chips", "<bird>", "horse"]  # html in a name stays text
    (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n\n", encoding="utf-8")
    args = [photo, "--weights", gap, "--size", 96, "--layers", "block5_pool"]
    code, out, err = run(args + ["--labels", tmp_path / "labels.txt", "--out", tmp_path / "l"], capsys)
    assert code == 0 and "no predictions" not in err  # a global pool takes any size: the head stays
    x = preprocess_input(load_image(photo, target_size=(96, 96))[None])
    scores = VGG(weights=gap, keep_transformed=False)(x)  # (1, 5)
    want = top_names(scores, labels)
    assert out.startswith("top-5: " + ", ".join(want[:1]))
    page = (tmp_path / "l" / "index.html").read_text("utf-8")
    where = [page.find(f"<td>{html.escape(n)}</td>") for n in want]
    assert all(w > 0 for w in where) and where == sorted(where)
    code, out, _ = run(args + ["--out", tmp_path / "n"], capsys)  # no labels: class numbers
    want = top_names(scores, [f"class {i}" for i in range(5)])
    assert code == 0 and re.match(rf"top-5: {want[0]} [\d.]+%, {want[1]} ", out)
    (tmp_path / "four.txt").write_text("a\nb\nc\nd\n")
    fails(args + ["--labels", tmp_path / "four.txt", "--out", tmp_path / "f"], capsys, "has 4 names", "scores 5 classes")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00\x81")
    fails(args + ["--labels", tmp_path / "binary.txt", "--out", tmp_path / "f"], capsys, "not UTF-8 text")
    fails(args + ["--labels", tmp_path / "missing.txt", "--out", tmp_path / "f"], capsys, "cannot be read")
    assert not (tmp_path / "f").exists()


def test_flatten_head_at_another_size_drops_it(finetuned, photo, tmp_path, capsys):
    (h5, _), _ = finetuned["flatten"]
    code, out, err = run([photo, "--weights", h5, "--layers", "block1_pool", "--out", tmp_path], capsys)
    assert code == 0 and "takes 64x80 images; using the conv layers only, no predictions" in err
    assert "No predictions" in (tmp_path / "index.html").read_text("utf-8")


@pytest.mark.parametrize("argv, message", [
    (["--arch", "vgg19"], "VGG19"),
    (["--weights", "/nonexistent.keras"], "does not exist"),
])
def test_python_m_minivgg_arch_and_files(capsys, argv, message):
    from minivgg.__main__ import main

    code = main(argv)
    out, err = capsys.readouterr()
    if code == 0:
        assert out.splitlines()[-1].split()[1] == "143,667,240" and "block5_conv4" in out
    else:
        assert err.startswith("error: ") and message in err
