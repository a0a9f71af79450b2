"""notebooks/tour.ipynb: committed without outputs, calls only what the package exports, and runs top to
bottom without an error (nbclient, a real Jupyter kernel), as CI runs it.

The tour uses the published weights when they are on the machine and seeded random weights otherwise
(CI: random), and small sizes, so that it runs in well under three minutes on 2 cores.
"""
import ast
import time
from pathlib import Path

import pytest

TOUR = Path(__file__).resolve().parents[1] / "notebooks" / "tour.ipynb"


def cells(kind):
    nbformat = pytest.importorskip("nbformat", reason="needs the notebook tools: pip install -e .[test]")
    return [c for c in nbformat.read(TOUR, as_version=4).cells if c.cell_type == kind]


def test_committed_without_outputs():
    code = cells("code")
    assert len(code) >= 10
    dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count") is not None]
    assert not dirty, f"code cells {dirty} hold outputs or execution counts: clear them before committing"


def private_names(source):
    """Names the cell takes from minivgg that start with '_' (attributes, imports, import paths)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            found.append(node.attr)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minivgg"):
            found += [p for p in node.module.split(".") if p.startswith("_")]
            found += [a.name for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Import):
            found += [p for a in node.names for p in a.name.split(".") if p.startswith("_") and "minivgg" in a.name]
    return found


def test_private_name_finder_finds_them():
    assert sorted(private_names("from minivgg.layers.winograd import _scratch\nm._winograd\nimport minivgg._x")) == [
        "_scratch", "_winograd", "_x"]
    assert private_names("from minivgg.layers.im2col import im2col\nmodel.summary()") == []


def test_cells_call_only_public_names():
    for c in cells("code"):
        assert not private_names(c.source), f"a cell uses private names {private_names(c.source)}:\n{c.source}"


def test_runs_top_to_bottom():
    nbformat = pytest.importorskip("nbformat", reason="needs the notebook tools: pip install -e .[test]")
    nbclient = pytest.importorskip("nbclient", reason="needs the notebook tools: pip install -e .[test]")
    pytest.importorskip("ipykernel", reason="needs the notebook tools: pip install -e .[test]")
    pytest.importorskip("matplotlib", reason="needs matplotlib: pip install -e .[reference]")
    nb = nbformat.read(TOUR, as_version=4)
    t0 = time.monotonic()
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(TOUR.parent)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    seconds = time.monotonic() - t0
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    html = [o for o in outputs if "text/html" in o.get("data", {})]
    assert len(images) >= 6, "the pictures show inline: grids, overlays, the plot, the features"
    assert any("<table>" in o["data"]["text/html"] for o in html), "model.summary() shows as an HTML table"
    first = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert ("published VGG16 weights" in first) or ("RANDOM weights" in first), first
    assert seconds < 180, f"the tour took {seconds:.0f} s; CI's budget for it is 3 minutes"
