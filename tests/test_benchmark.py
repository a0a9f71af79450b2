"""scripts/benchmark.py: it covers every layer and method, reports sane numbers, and refuses a wrong
method before timing it. Everything runs at 32x32 (VGG16's smallest input) with one repeat.

The script is run twice: once as a real command (a subprocess: the thread variables are set before
NumPy loads, as a user runs it), and in this process through its ``main(argv)``, where a deliberately
wrong method can be registered in ``minivgg.benchmarks.harness.CONV_METHODS``, the benchmark's method table.
"""
import json
import math
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minivgg.benchmarks import harness as bench
from minivgg.layers.conv import METHODS, conv2d_im2col, conv2d_naive
from minivgg.errors import MinivggError
from minivgg.layers.pool import max_pool2d_naive

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
FAST = ["--size", "32", "--quick", "--repeats", "1"]
CONV_LAYERS = [s.name for s in bench.layer_shapes(32, 1) if s.K]
POOL_LAYERS = [s.name for s in bench.layer_shapes(32, 1) if not s.K]
CONV_LAYERS_AND_POOLS = [s.name for s in bench.layer_shapes(32, 1)]  # in VGG16's order


@pytest.fixture
def script(monkeypatch):
    """The script's globals (``main`` among them), for a run in this process; the environment
    variables that main() sets are restored afterwards."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "TF_CPP_MIN_LOG_LEVEL"):
        if var in os.environ:
            monkeypatch.setenv(var, os.environ[var])  # monkeypatch puts back what was there ...
        else:
            monkeypatch.delenv(var, raising=False)  # ... or removes what main() adds
    return runpy.run_path(str(SCRIPT))


@pytest.fixture
def main(script):
    return script["main"]


def test_reference_is_the_formula():
    """The float64 reference every method is checked against equals the naive conv and pool, on
    lopsided shapes (H != W, C != K, odd sizes, N > 1). Tolerance: conv2d_naive sums in float32
    (27 terms here), ~1e-7 of the output's size; 1e-6 allows for it. The pool only compares: exact."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 7, 5, 3), dtype=np.float32)
    w = rng.standard_normal((3, 3, 3, 4), dtype=np.float32)
    b = rng.standard_normal(4, dtype=np.float32)
    assert bench.rel_error(conv2d_naive(x, w, b, stride=1, pad=1, relu=True), bench.reference_conv(x, w, b)) < 1e-6
    x = rng.standard_normal((2, 9, 6, 3), dtype=np.float32)
    np.testing.assert_array_equal(bench.reference_pool(x), max_pool2d_naive(x))


def test_check_refuses_a_wrong_result():
    rng = np.random.default_rng(1)
    w, b = bench.weights()["block1_conv2"]  # (3, 3, 64, 64), non-zero biases
    x = rng.standard_normal((1, 6, 9, 64), dtype=np.float32)
    ref = bench.reference_conv(x, w, b)
    assert bench.check("im2col", "block1_conv2", conv2d_im2col(x, w, b, 1, 1, True), ref) < bench.TOL
    with pytest.raises(MinivggError, match=r"method 'x' on block1_conv2 disagrees .* > 0.0001"):
        bench.check("x", "block1_conv2", ref * (1 + 1e-3), ref)
    with pytest.raises(MinivggError, match=r"shape \(1, 9, 6, 64\), expected \(1, 6, 9, 64\)"):
        bench.check("x", "block1_conv2", ref.transpose(0, 2, 1, 3), ref)


def test_command_covers_every_layer_and_method(tmp_path):
    """The real command line: exit 0, and a JSON with every conv layer for every minivgg method,
    every pool and conv layer's bias + ReLU, the forward pass, all numbers positive and consistent."""
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    command = [sys.executable, str(SCRIPT), *FAST, "--no-frameworks", "--json", str(out), "--plot", str(png)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "threads: " in done.stdout and "block5_conv3" in done.stdout
    report = json.loads(out.read_text())

    machine = report["machine"]
    assert {"cpu", "cores", "threads", "versions", "sgemm_gflops", "sgemm_gflops_end"} <= set(machine)
    assert machine["threads"] == len(os.sched_getaffinity(0)) and machine["sgemm_gflops"] > 0
    assert {"numpy", "numba", "python"} <= set(machine["versions"])

    results = report["results"]
    assert set(METHODS) <= set(bench.CONV_METHODS)  # the benchmark's table covers minivgg's methods
    conv = {(r["layer"], r["method"]) for r in results if r["kind"] == "conv"}
    assert conv == {(layer, m) for layer in CONV_LAYERS for m in METHODS}
    assert [r["layer"] for r in results if r["kind"] == "bias_relu"] == CONV_LAYERS
    assert [r["shape"] for r in results if r["kind"] == "bias_relu"] == [  # (N*H*W, K): the conv's GEMM output
        [s.N * s.H * s.W, s.K] for s in bench.layer_shapes(32, 1) if s.K]
    assert [r["layer"] for r in results if r["kind"] == "max_pool2d"] == POOL_LAYERS
    assert {r["method"] for r in results if r["kind"] == "forward"} >= set(METHODS)

    backward = {(r["layer"], r["method"], r["kind"]) for r in results if r["kind"] in ("dx", "dW")}
    assert backward == {(layer, m, kind) for layer in CONV_LAYERS for m in ("im2col", "winograd") for kind in ("dx", "dW")}
    gradients = [r for r in results if r["kind"] == "gradients"]
    assert {r["method"] for r in gradients} == {"im2col", "winograd", "auto"}  # the naive twins are left out
    assert all(r["rel_error"] <= bench.GRADIENT_TOL for r in gradients), gradients

    assert [r["layer"] for r in results if r["kind"] == "profile"] == CONV_LAYERS_AND_POOLS  # the auto pass, by layer
    assert {r["layer"] for r in results if r["kind"] == "side_by_side"} == {"forward", "gradients"}
    for r in results:
        if r["kind"] in ("profile", "side_by_side"):  # test_profile_of_the_auto_pass, test_side_by_side_rows
            continue
        assert r["median_ms"] > 0 and all(t > 0 for t in r["times_ms"]) and r["first_ms"] > 0, r
        if r["kind"] == "gradients":
            continue
        assert math.isfinite(r["median_ms"]) and r["rel_error"] <= bench.TOL, r
        if r["kind"] in ("conv", "dx", "dW"):
            N, H, W, C, K = r["shape"]
            assert r["gflops"] == pytest.approx(2 * N * H * W * C * K * 9 / r["median_ms"] / 1e6), r
            assert r["sgemm_share"] > 0, r
        elif r["kind"] == "forward":
            assert r["gflops"] > 0 and r["shape"] == [1, 32, 32, 3], r
        else:
            assert r["gbps"] > 0 and r["copy_gbps"] > 0 and r["rel_error"] == 0, r  # pool and bias+ReLU are exact
    assert {r["method"] for r in results if r["kind"] == "conv" and r["load_ms"] is not None} == {"winograd"}

    with Image.open(png) as img:
        assert img.width == 1200 and img.height > 800  # 13 layer groups of 3 bars, and the forward pass


def test_backward_references_are_the_naive_twins():
    """The float64 references of the backward rows equal the package's naive backward kernels on a
    lopsided batch (float64 in, so only summation order differs: 1e-12)."""
    from minivgg.network.backprop import channel_mean
    from minivgg.layers.conv import conv2d_backward_naive
    from minivgg.network.vgg import VGG16

    rng = np.random.default_rng(2)
    x, w, dy = rng.standard_normal((2, 7, 5, 3)), rng.standard_normal((3, 3, 3, 4)), rng.standard_normal((2, 7, 5, 4))
    dx, dw = bench.reference_conv_backward(x, w, dy)
    want_dx, want_dw, _ = conv2d_backward_naive(x, w, dy, stride=1, pad=1)
    assert bench.rel_error(dx, want_dx) < 1e-12 and bench.rel_error(dw, want_dw) < 1e-12
    params = bench.weights()
    model = VGG16(weights=None, include_top=False, method="im2col")
    model.params = params  # the benchmark's weights, non-zero biases
    x = bench.data((2, 48, 40, 3), seed=3)
    seeds = channel_mean(model, x, "block4_pool", [1, 2])
    ref = bench.reference_gradient(params, x, "block4_pool", seeds["block4_pool"])
    assert bench.check_gradient("im2col", model.gradients(x, seeds)["input"], ref) < 1e-3
    with pytest.raises(MinivggError, match="whole-network gradient disagrees"):
        bench.check_gradient("x", -ref, ref)


def test_wrong_backward_method_is_refused_before_timing(main, monkeypatch, capsys):
    calls = []

    def wrong():
        def run(dy, w):
            calls.append(dy.shape)
            return 1.001 * bench.DX_METHODS["im2col"]().run(dy, w)

        return bench.Method(run=run)

    monkeypatch.setitem(bench.DX_METHODS, "winograd", wrong)  # the test hook, as for forward methods
    code = main([*FAST, "--no-frameworks", "--methods", "im2col,winograd", "--layers", "block2_conv1"])
    assert code == 1 and calls == [(1, 16, 16, 128)]  # called once, for the check; never timed
    assert capsys.readouterr().err.startswith("error: method 'winograd dx' on block2_conv1 disagrees")


@pytest.mark.parametrize("mistake", [
    lambda y, b: y * np.float32(1.001),  # off by 1e-3: just past the 1e-4 tolerance
    lambda y, b: np.maximum(y - b, 0),  # the bias dropped (b is uniform in -0.5..0.5, never all zero)
    lambda y, b: np.full_like(y, np.nan),
    lambda y, b: y[:, :, :-1],  # a missing column
], ids=["scaled", "no-bias", "nan", "shape"])
def test_wrong_method_is_refused_before_timing(main, monkeypatch, capsys, tmp_path, mistake):
    calls = []

    def wrong():
        def run(x, p):
            calls.append(x.shape)
            return mistake(conv2d_im2col(x, p[0], p[1], stride=1, pad=1, relu=True), p[1])

        return bench.Method(run=run)

    monkeypatch.setitem(bench.CONV_METHODS, "wrong", wrong)  # the test hook: one more method
    out = tmp_path / "bench.json"
    code = main([*FAST, "--no-frameworks", "--methods", "im2col,wrong", "--layers", "block2_conv1", "--json", str(out)])
    stdout, stderr = capsys.readouterr()
    assert code == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: method 'wrong' on block2_conv1 disagrees with the float64 reference")
    assert calls == [(1, 16, 16, 64)]  # called once, for the check; never timed
    assert "im2col" in stdout and "wrong" not in stdout and not out.exists()


def test_unknown_names_are_one_line_errors(main, capsys):
    assert main([*FAST, "--methods", "im2col,fft"]) == 1
    assert capsys.readouterr().err.startswith("error: unknown method(s) fft; choose from naive, im2col")
    assert main([*FAST, "--layers", "block6_conv1"]) == 1
    assert capsys.readouterr().err.startswith("error: unknown layer(s) block6_conv1")


def test_missing_frameworks_are_left_out_or_refused(script, monkeypatch, capsys):
    monkeypatch.setitem(script["IMPORT_NAME"], "tensorflow", "no_such_tensorflow")
    monkeypatch.setitem(script["IMPORT_NAME"], "pytorch", "no_such_torch")
    assert script["main"]([*FAST, "--layers", "block5_conv3"]) == 0  # all methods: they are noted and left out
    stdout = capsys.readouterr().out
    assert "note: tensorflow: not installed, left out" in stdout and "note: pytorch: not installed" in stdout
    assert not any(line.split()[2:3] in (["tensorflow"], ["pytorch"]) for line in stdout.splitlines() if line.strip())
    assert script["main"]([*FAST, "--methods", "im2col,pytorch"]) == 1  # asked for by name: an error
    assert capsys.readouterr().err == "error: pytorch is not installed\n"


def test_frameworks_agree_and_are_timed(tf, main, tmp_path):
    """TensorFlow (and PyTorch when installed) pass the same check as minivgg, per layer, for the
    whole forward pass and for the input gradient, with minivgg's weights copied into Keras' VGG16
    (and PyTorch's layers)."""
    import importlib.util

    frameworks = ["tensorflow"] + (["pytorch"] if importlib.util.find_spec("torch") else [])
    out = tmp_path / "bench.json"
    methods = ",".join(["im2col", *frameworks])
    assert main([*FAST, "--methods", methods, "--layers", "block3_conv2,forward,gradients", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    for kind, layer in (("conv", "block3_conv2"), ("forward", "forward")):
        rows = {r["method"]: r for r in results if r["kind"] == kind and r["layer"] == layer}
        assert set(rows) == {"im2col", *frameworks}
        assert all(r["rel_error"] <= bench.TOL and r["median_ms"] > 0 for r in rows.values()), rows
    for kind in ("dx", "dW"):  # the backward rows are TensorFlow's only
        rows = {r["method"]: r for r in results if r["kind"] == kind}
        assert set(rows) == {"im2col", "tensorflow"} and all(r["rel_error"] <= bench.TOL for r in rows.values())
    rows = {r["method"]: r for r in results if r["kind"] == "gradients"}
    assert set(rows) == {"im2col", "tensorflow", "tensorflow-eager", *frameworks[1:]}  # the tape compiled and eager
    assert rows["tensorflow"]["vs_tensorflow"] == 1 and rows["tensorflow-eager"]["vs_tensorflow_eager"] == 1
    assert rows["im2col"]["vs_tensorflow_eager"] == rows["im2col"]["median_ms"] / rows["tensorflow-eager"]["median_ms"]
    assert all(r["rel_error"] <= bench.GRADIENT_TOL for r in rows.values()), rows


def test_timing_runs_check_then_warm_up_then_repeats():
    """time_checked: one checked call, one warm-up, ``repeats`` timed calls; median_seconds: the
    same loop, with or without its warm-up call."""
    calls, checked = [], []

    def run():
        calls.append(len(calls))
        return len(calls)

    t = bench.time_checked(run, checked.append, repeats=4)
    assert calls == [0, 1, 2, 3, 4, 5] and checked == [1]  # the check saw the first call's result only
    assert len(t.times_ms) == 4 and t.median_ms == pytest.approx(np.median(t.times_ms)) and t.first_ms > 0
    calls.clear()
    bench.median_seconds(run, 3)
    assert len(calls) == 4
    calls.clear()
    bench.median_seconds(run, 3, warmup=False)
    assert len(calls) == 3


def test_output_paths_are_checked_before_the_run(main, monkeypatch, capsys, tmp_path):
    """--json/--plot that cannot be written fail at once, in one line, before anything is measured
    (not after the whole run, losing its results)."""
    cheap = [*FAST, "--no-frameworks", "--methods", "im2col", "--layers", "block5_conv1"]
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    real_access = os.access
    # Root may write anywhere, so the read-only folder is simulated: os.access says no for it.
    monkeypatch.setattr(os, "access",
                        lambda p, mode, **kw: os.fspath(p) != str(readonly) and real_access(p, mode, **kw))
    for option, path, why in [
        ("--json", tmp_path, "it is a folder"),
        ("--plot", tmp_path, "it is a folder"),
        ("--json", tmp_path / "missing" / "out.json", "no such folder"),
        ("--plot", readonly / "out.png", "permission denied"),
    ]:
        assert main([*cheap, option, str(path)]) == 1, (option, path)
        stdout, stderr = capsys.readouterr()
        assert stderr == f"error: cannot write {path}: {why}\n"
        assert stdout == ""  # nothing was measured


@pytest.mark.parametrize("argv, message", [
    (["--methods", "auto", "--layers", "block5_conv1"], "method 'auto' runs on the whole forward pass only"),
    (["--methods", "im2col,auto", "--layers", "block5_pool"], "method 'auto' runs on the whole forward pass only"),
    (["--methods", "tensorflow", "--no-frameworks", "--layers", "block5_conv1"],
     "--methods asks for tensorflow and --no-frameworks leaves it out"),
    (["--methods", "im2col,pytorch", "--no-frameworks", "--layers", "block5_conv1"],
     "--methods asks for pytorch and --no-frameworks leaves it out"),
    (["--methods", "im2col", "--layers", ","], "--layers is empty; choose from block1_conv1"),
    (["--methods", " , ", "--layers", "block5_conv1"], "--methods is empty; choose from naive"),
], ids=["auto-alone", "auto-and-im2col", "tensorflow", "pytorch", "no-layers", "no-methods"])
def test_requests_that_cannot_be_met_are_one_line_errors(main, capsys, argv, message):
    """What was asked for by name but would not run is an error, never left out silently."""
    assert main([*FAST, *argv]) == 1
    stdout, stderr = capsys.readouterr()
    assert stderr.startswith(f"error: {message}") and stderr.count("\n") == 1, stderr
    assert stdout == ""  # refused before anything ran


def test_memory_section_times_the_fused_bias_relu(main, monkeypatch, tmp_path):
    """The kernel conv layers really run after their GEMM, ``bias_relu(y, b, relu=True)`` in place on
    the (N*H*W, K) output, is the one timed; the plain ``relu()`` (no layer calls it) is not."""
    import minivgg.layers.relu

    calls, real = [], minivgg.layers.relu.bias_relu

    def spy(y, b, relu=False):
        calls.append((y.shape, relu))
        return real(y, b, relu)

    def no_relu(x):
        raise AssertionError("relu() is not what a conv layer runs")

    monkeypatch.setattr(minivgg.layers.relu, "bias_relu", spy)  # conv.py keeps its own reference: only the benchmark sees it
    monkeypatch.setattr(minivgg.layers.relu, "relu", no_relu)
    out = tmp_path / "bench.json"
    assert main([*FAST, "--no-frameworks", "--methods", "im2col", "--layers", "block2_conv1", "--json", str(out)]) == 0
    assert calls == [((16 * 16, 128), True)] * 3  # block2_conv1 at 32: 16x16 -> 128; checked, warm-up, 1 timed
    rows = [r for r in json.loads(out.read_text())["results"] if r["layer"] == "block2_conv1" and r["kind"] not in ("conv", "dx", "dW")]
    assert [(r["kind"], r["shape"], r["rel_error"]) for r in rows] == [("bias_relu", [256, 128], 0.0)]


def test_forward_table_prints_the_floor(main, capsys, tmp_path):
    """The forward table's floor is the conv stack's multiplications under Winograd (a quarter of
    2*H*W*C*K*9 summed over VGG16's 13 conv layers, here counted from the paper's configuration "D"
    itself) at the sgemm rate the run measured, and each row's "x floor" is its time / that floor:
    in the JSON, in the printed line and in the printed table. The printed figures are rounded
    (``.2f`` for the line, ``.1f`` and ``.2f`` in the table): compared as printed."""
    from minivgg.network.table import CONFIGS

    out = tmp_path / "bench.json"
    assert main([*FAST, "--no-frameworks", "--methods", "im2col,winograd", "--layers", "forward", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    report = json.loads(out.read_text())
    sgemm = report["machine"]["sgemm_gflops"]

    flops, size, c = 0, 32, 3  # the conv stack at 32x32, batch 1, from the configuration
    for k in CONFIGS["D"]:
        if k == "M":
            size //= 2
        else:
            flops, c = flops + 2 * size * size * c * k * 9, k
    floor = flops / 4 / (sgemm * 1e9) * 1e3  # ms
    line = next(line for line in text.splitlines() if line.startswith("floor at 32x32, batch 1:"))
    assert line.endswith(f"at sgemm {sgemm:.1f} GFLOP/s = {floor:.2f} ms"), line

    rows = [r for r in report["results"] if r["kind"] == "forward"]
    assert {r["method"] for r in rows} == {"im2col", "winograd"}
    for r in rows:
        assert r["floor_ms"] == pytest.approx(floor) and r["vs_floor"] == pytest.approx(r["median_ms"] / floor)
        printed = next(line.split() for line in text.splitlines() if line.startswith("forward") and r["method"] in line.split())
        assert printed[-2:] == [f"{floor:.1f}", f"{r['median_ms'] / floor:.2f}"], printed


@pytest.mark.parametrize("rates", [(100.0, 250.0), (250.0, 100.0)], ids=["faster-at-the-end", "slower-at-the-end"])
def test_forward_rows_against_the_end_sgemm_when_it_is_faster(main, capsys, tmp_path, monkeypatch, rates):
    """The sgemm measured at the end, when faster than at the start, gives a stricter floor: each forward
    row's time / that floor is printed after the run and kept as ``vs_floor_end``; when slower, nothing."""
    rate = iter(rates)
    monkeypatch.setattr(bench, "sgemm_gflops", lambda repeats: next(rate))
    out = tmp_path / "bench.json"
    assert main([*FAST, "--no-frameworks", "--methods", "im2col", "--layers", "forward", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    (row,) = [r for r in json.loads(out.read_text())["results"] if r["kind"] == "forward"]
    assert row["floor_ms"] == pytest.approx(bench.floor_ms(32, 1, rates[0]))
    if rates[1] > rates[0]:
        strict = bench.floor_ms(32, 1, rates[1])
        assert row["vs_floor_end"] == pytest.approx(row["median_ms"] / strict)
        assert f"x floor at the end's rate, forward im2col: {row['median_ms'] / strict:.2f} (floor {strict:.1f} ms)" in text
    else:
        assert "vs_floor_end" not in row and "x floor at the end's rate" not in text


@pytest.mark.parametrize("size,batch", [(32, 1), (96, 2)])  # at 96, batch 2 goes image by image through block1
def test_profile_of_the_auto_pass(main, tmp_path, size, batch):
    """With ``auto`` in a forward run, the auto pass is also timed layer by layer inside whole passes:
    one row per conv and pool layer in VGG16's order, each with the method the plan gives it, shares
    that add up to the pass, and a conv layer's floor (its Winograd multiplications at the measured
    sgemm). The per-layer times are the same work as the forward row, timed in other passes: their sum
    is held to it within 3x either way, loose because at 32x32 a pass is a few ms and this machine's
    noise is 20-30%; a profile that timed the wrong thing (one layer, or every pass summed) misses by
    more. Both are medians of 3 calls, not FAST's one: a NumPy GEMM on OpenBLAS's two threads (a load,
    a reference) leaves OpenBLAS's worker spinning for ~0.1 s, and the passes in that window ran 2-4x
    slower (one machine: a single timed forward call at 4.9x the profile's sum). At 96x96, batch 2, the pass goes as ``model(x)`` runs it, block1 image
    by image (``VGG._depth_first``), the rest together: the rows still cover every layer once."""
    from minivgg.network.vgg import VGG16

    out = tmp_path / "bench.json"
    argv = [*FAST, "--size", str(size), "--batch", str(batch), "--no-frameworks", "--methods", "auto",
            "--layers", "forward", "--json", str(out),
            "--repeats", "3"]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    sgemm = report["machine"]["sgemm_gflops"]
    rows = [r for r in report["results"] if r["kind"] == "profile"]
    shapes = bench.layer_shapes(size, batch)
    if batch > 1:
        assert VGG16(weights=None, include_top=False)._depth_first(size, size) >= 0  # the split is exercised
    assert all(r["shape"][0] == batch for r in rows)
    assert [r["layer"] for r in rows] == [s.name for s in shapes]
    plan = VGG16(weights=None, include_top=False).plan
    assert [r["method"].split()[0] for r in rows] == [plan.get(s.name, "max-pool") for s in shapes]
    # F(2x2)'s tiles (winograd2.py) where F(4x4) has 2-32 tiles and C*K >= 256*256: at 32, block3's 8x8 maps
    # (4 tiles; not block3_conv1, 128*256); at 96, batch 2, block4's 12x12 (2*9 tiles) and block5's 6x6 (2*4)
    small = [r["layer"] for r in rows if r["method"].startswith("winograd 2x2")]
    assert small == {32: ["block3_conv2", "block3_conv3"],
                     96: ["block4_conv1", "block4_conv2", "block4_conv3", "block5_conv1", "block5_conv2", "block5_conv3"]}[size]
    # as model(x) runs it: each conv before a pool computes the pool (the conv's map unused), in the
    # depth-first part (block1 at 96, batch 2, image by image through block1_pool) as in the batched one
    fused = {"block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3"}
    assert {r["layer"] for r in rows if r["method"].endswith(" +pool")} == fused
    assert {r["layer"] for r in rows if r["method"] == "max-pool (fused)"} == {n.replace("conv2", "pool").replace("conv3", "pool") for n in fused}
    assert all(r["median_ms"] > 0 for r in rows)
    assert sum(r["pass_share"] for r in rows) == pytest.approx(1)
    for r, s in zip(rows, shapes):
        if s.K:
            assert r["floor_ms"] == pytest.approx(bench.conv_flops(s) / 4 / (sgemm * 1e9) * 1e3)
            assert r["vs_floor"] == pytest.approx(r["median_ms"] / r["floor_ms"])
        else:
            assert r["floor_ms"] is None
    forward = next(r for r in report["results"] if r["kind"] == "forward")["median_ms"]
    assert forward / 3 < sum(r["median_ms"] for r in rows) < 3 * forward


def test_interleaved_rounds_turn_the_order():
    """harness.interleaved: every call once a round, the order turned by one each round, so that no
    method always runs first (after the others' threads, or in a cache the others left)."""
    order = []
    calls = {name: (lambda name=name: order.append(name)) for name in "abc"}
    times = bench.interleaved(calls, 4)
    assert order == list("abc" "bca" "cab" "abc")
    assert {name: len(t) for name, t in times.items()} == {"a": 4, "b": 4, "c": 4}
    assert all(t >= 0 for ts in times.values() for t in ts)


def test_side_by_side_rows(main, tmp_path):
    """With two methods or more, the forward passes are timed again in interleaved rounds: a row per
    method with its median (of as many rounds as --repeats), and a ratio to TensorFlow's only where
    TensorFlow ran (here it did not)."""
    out = tmp_path / "bench.json"
    assert main([*FAST, "--repeats", "3", "--no-frameworks", "--methods", "im2col,winograd", "--layers", "forward",
                 "--json", str(out)]) == 0
    rows = [r for r in json.loads(out.read_text())["results"] if r["kind"] == "side_by_side"]
    assert [r["method"] for r in rows] == ["im2col", "winograd"] and all(r["layer"] == "forward" for r in rows)
    for r in rows:
        assert len(r["times_ms"]) == 3 and r["median_ms"] == pytest.approx(float(np.median(r["times_ms"])))
        assert r["median_ms"] > 0 and r["ratio"] is None
