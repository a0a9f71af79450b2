"""scripts/threads_benchmark.py and minivgg/benchmarks/scaling.py: the thread counts it runs, the table
it makes from benchmark.py's runs (speed-ups, ratios, what was not measured), one real sweep at 32x32
over one and two threads, and its one-line errors."""
import importlib.util
import json
import runpy
from pathlib import Path

import pytest

from minivgg.benchmarks import scaling

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "threads_benchmark.py"


@pytest.fixture
def main():
    return runpy.run_path(str(SCRIPT))["main"]


def test_thread_counts_double_up_to_every_core():
    assert scaling.thread_counts(16) == [1, 2, 4, 8, 16]
    assert scaling.thread_counts(6) == [1, 2, 4, 6]
    assert scaling.thread_counts(2) == [1, 2] and scaling.thread_counts(1) == [1]


def _run(sgemm, medians):
    """A benchmark.py JSON as the table reads it: the machine's sgemm and one row per (kind, method)."""
    return {"machine": {"sgemm_gflops": sgemm},
            "results": [{"kind": kind, "method": method, "median_ms": ms} for (kind, method), ms in medians.items()]}


def test_rows_give_speed_ups_over_the_fewest_threads_and_ratios():
    runs = {
        4: {"forward": _run(380.0, {("forward", "auto"): 50.0, ("forward", "pytorch"): 100.0}),
            "gradients": _run(390.0, {("gradients", "auto"): 30.0})},  # PyTorch's gradient not measured
        1: {"forward": _run(100.0, {("forward", "auto"): 180.0, ("forward", "pytorch"): 300.0,
                                    ("side_by_side", "auto"): 1.0}),  # other kinds of rows are not read
            "gradients": _run(101.0, {("gradients", "auto"): 90.0})},
    }
    one, four = scaling.rows(runs)
    assert (one["threads"], four["threads"]) == (1, 4)
    assert one["sgemm"] == 100.0 and four["sgemm_x"] == pytest.approx(3.8)  # the forward run's sgemm
    assert one["forward_auto"] == 180.0 and one["forward_auto_x"] == pytest.approx(1.0)
    assert four["forward_auto_x"] == pytest.approx(3.6) and four["forward_pytorch_x"] == pytest.approx(3.0)
    assert four["forward_ratio"] == pytest.approx(0.5) and one["forward_ratio"] == pytest.approx(0.6)
    assert four["gradients_auto_x"] == pytest.approx(3.0)
    assert four["gradients_pytorch"] is None and four["gradients_pytorch_x"] is None and four["gradients_ratio"] is None
    text = scaling.markdown([one, four], batch=8)
    assert text.splitlines()[0].startswith("| threads |") and "forward, batch 8" in text
    assert "| 4 | 380 (3.8) | 50.0 (3.6) | 100.0 (3.0) | 0.50 | 30.0 (3.0) | - (-) | - |" in text


def test_a_sweep_over_one_and_two_threads(main, tmp_path, capsys):
    """The real command at 32x32: two benchmark.py runs per count, every result checked against the
    float64 pass inside them (a wrong one would fail the run, and this), one row per count, the JSON
    holding the table and every run. PyTorch where it is installed (its forward pass and its input
    gradient, both checked the same way), else minivgg alone."""
    out = tmp_path / "threads.json"
    assert main(["--threads", "2,1", "--size", "32", "--batch", "2", "--repeats", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert [row["threads"] for row in data["table"]] == [1, 2] and set(data["runs"]) == {"1", "2"}
    torch = importlib.util.find_spec("torch") is not None
    for row in data["table"]:
        assert row["sgemm"] > 0 and row["forward_auto"] > 0 and row["gradients_auto"] > 0
        assert (row["forward_pytorch"] is not None) == torch and (row["gradients_pytorch"] is not None) == torch
    assert data["table"][0]["forward_auto_x"] == pytest.approx(1.0)
    assert data["runs"]["2"]["forward"]["settings"]["batch"] == 2 and data["runs"]["2"]["gradients"]["settings"]["batch"] == 1
    assert data["runs"]["2"]["forward"]["machine"]["threads"] == 2  # each run at its own count
    assert "| threads |" in printed and ("PyTorch is not installed" in printed) != torch


def test_errors_are_one_line(main, tmp_path, capsys, monkeypatch):
    assert main(["--json", str(tmp_path)]) == 1  # a folder: refused before anything runs
    assert capsys.readouterr().err == f"error: cannot write {tmp_path}: it is a folder\n"
    with pytest.raises(SystemExit) as e:
        main(["--threads", "one,two"])
    assert e.value.code == 2 and "--threads takes comma-separated whole numbers" in capsys.readouterr().err
    failing = tmp_path / "benchmark.py"  # a run that fails: its last line of error is passed on
    failing.write_text("import sys\nprint('error: the result disagrees', file=sys.stderr)\nsys.exit(1)\n")
    globals_ = runpy.run_path(str(SCRIPT))
    globals_["main"].__globals__["BENCHMARK"] = failing
    assert globals_["main"](["--threads", "1", "--size", "32", "--no-pytorch"]) == 1
    assert capsys.readouterr().err == ("error: benchmark.py --threads 1 --layers forward failed: "
                                       "error: the result disagrees\n")
