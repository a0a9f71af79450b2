"""scripts/explain_benchmark.py: it checks every method against TensorFlow before it times, and
refuses a wrong one. Cheap settings: no top, 48x48, 2 samples / steps, one repeat, random weights."""
import os
import runpy
from pathlib import Path

import pytest

from minivgg import explain

pytestmark = pytest.mark.tensorflow
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "explain_benchmark.py"
FAST = ["--no-top", "--size", "48", "--samples", "2", "--steps", "2", "--repeats", "1"]
# Each method TensorFlow traces costs seconds: these four cover every kind of TensorFlow function the
# script has (the plain and the guided input gradient, the scores of IG's gap, the CAMs' layer gradient).
SOME = ["--methods", "guided_backprop", "integrated_gradients", "layer_cam"]


@pytest.fixture
def script(monkeypatch):
    """The script's globals (``main``, ``OURS``), for a run in this process; the environment variables
    main() sets are restored afterwards."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "TF_CPP_MIN_LOG_LEVEL"):
        if var in os.environ:
            monkeypatch.setenv(var, os.environ[var])
        else:
            monkeypatch.delenv(var, raising=False)
    return runpy.run_path(str(SCRIPT))


def test_checks_every_method_then_times_it(tf, script, capsys):
    assert script["main"](FAST + SOME) == 0
    lines = capsys.readouterr().out.splitlines()
    checks = [i for i, line in enumerate(lines) if line.startswith("check ")]
    rows = [i for i, line in enumerate(lines) if line.startswith("| ") and " ms |" in line]
    assert len(checks) == len(SOME) - 1 == len(rows)
    assert max(checks) < min(rows)  # every check before any timing
    for i in rows:
        _, name, ours, eager, eager_ratio, graph, graph_ratio, agreement, _ = lines[i].split("|")
        ms = {side: float(v.strip().removesuffix(" ms")) for side, v in (("ours", ours), ("eager", eager), ("graph", graph))}
        assert name.strip() in explain.METHODS and all(v > 0 for v in ms.values())
        for ratio, side in ((eager_ratio, "eager"), (graph_ratio, "graph")):  # the ratios are of the times printed,
            r = float(ratio.strip().rstrip("x"))  # which are rounded to whole ms, the ratio to 0.01
            assert (ms["ours"] - 0.5) / (ms[side] + 0.5) - 0.005 <= r <= (ms["ours"] + 0.5) / (ms[side] - 0.5) + 0.005
        assert float(agreement) <= script["TOL"]


def test_a_wrong_method_is_refused_before_timing(tf, script, capsys):
    # SmoothGrad with other noise draws than TensorFlow's: a plausible mistake, off by O(1)
    script["OURS"]["smoothgrad"] = lambda m, x, t: explain.smoothgrad(m, x, t, samples=2, seed=1)
    assert script["main"](FAST + ["--methods", "saliency", "smoothgrad"]) == 1
    captured = capsys.readouterr()
    assert "disagree on smoothgrad" in captured.err and captured.err.count("\n") == 1
    assert " ms |" not in captured.out
