"""scripts/train_benchmark.py: it checks the first step against Keras before it times, and reports
every figure the issue asks for. Cheap settings: 32x32, batch 2, one repeat per block, 8 images."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.tensorflow
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_benchmark.py"


def test_checks_then_times_steps_memory_and_epochs(tf, tmp_path):
    out = tmp_path / "train.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--size", "32", "--batch", "2", "--repeats", "1",
                           "--images", "8", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    check = next(i for i, line in enumerate(lines) if line.startswith("check: first step loss"))
    timed = next(i for i, line in enumerate(lines) if line.startswith("one step,"))
    assert check < timed  # checked against Keras before anything is timed
    assert "median of 2" in lines[timed]  # one block per side, in each order
    figures = json.loads(out.read_text())
    assert set(figures["steps_s"]) == {"head", "block5", "full", "keras block5"}
    assert all(s > 0 for s in figures["steps_s"].values())
    assert figures["ratio_block5"] == pytest.approx(figures["steps_s"]["block5"] / figures["steps_s"]["keras block5"])
    assert {"ours", "keras"} <= set(figures["memory_mb"])
    assert len(figures["epochs_s"]) >= 2 and all(s > 0 for s in figures["epochs_s"])
