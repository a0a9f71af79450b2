"""Benchmark helpers: VGG16's layer shapes, a float64 reference, check-then-time, and ceilings.

Legend: N batch, H, W height and width, C input channels, K output channels.

``scripts/benchmark.py`` is built from these. The rules it follows (STYLE.md, rule 7):

1. **Check before timing.** A method's first call is compared with a float64 reference
   (``reference_conv``: the conv formula summed tap by tap in float64, independent of minivgg's
   im2col and BLAS path). A method whose output disagrees raises ``MinivggError`` and is never timed.
2. **Leave the JIT compile out.** That first call (Numba compile or cache load, TensorFlow's
   tracing) is reported apart as ``first_ms``; one more warm-up call follows, then ``repeats``
   timed calls, of which the median is reported.
3. **GFLOP/s** = 2*N*H*W*C*K*9 / t, the multiply-adds of a direct 3x3 convolution whatever the
   method really does: Winograd's figure is "effective" and can beat the GEMM ceiling.
4. **Ceilings measured here.** NumPy's own sgemm (a 2048^3 float32 matmul) bounds the conv
   methods; ``np.copyto`` of the same bytes bounds memory-bound kernels (max-pool, the fused
   in-place bias + ReLU that ends every conv layer), both counted as bytes read + bytes written.

Tolerance. ``TOL = 1e-4`` on max|ours - ref| / max|ref|, for one layer and for the whole pass. A
float32 sum of n products carries a rounding error of about sqrt(n) * 2^-24 of the terms' size;
VGG16's largest sum has n = 3*3*512 = 4608 terms. Winograd F(4x4, 3x3) adds error in its transforms
(Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016; ``winograd.py``). Measured
at 224x224 on the benchmark's weights and inputs, against the float64 reference: im2col, naive and
PyTorch <= 1e-6, TensorFlow (oneDNN) <= 3e-6, Winograd <= 1.3e-5 (1.25e-5 on block3_conv2), whole
forward passes <= 3e-6 (relative to the largest value, rounding does not pile up over the 13
layers). 1e-4 leaves room above all of them, while a real bug (a wrong tap, swapped H/W, a dropped
bias) is off by 1e-2 or more.
"""
import os
import platform
import statistics
import time
from typing import Callable, NamedTuple

import numpy as np

from ..errors import MinivggError
from ..jit import blas_core
from ..layers.conv import (conv2d_backward_input, conv2d_backward_weights, conv2d_direct, conv2d_im2col, conv2d_naive,
                           transpose_kernel)
from ..layers.winograd_weights import conv3x3_winograd_weights
from ..network.table import layers, shapes

LAYERS = layers("vgg16")  # VGG16's table with the top
NOTOP = layers("vgg16", include_top=False)  # the 13 conv and 5 pool layers

TOL = 1e-4


class Shape(NamedTuple):
    """One layer's input: (N, H, W, C), and K output channels for a conv layer (0 for a pool)."""

    name: str
    N: int
    H: int
    W: int
    C: int
    K: int = 0


def layer_shapes(size, batch):
    """The conv and pool layers of VGG16 (no top) at ``size`` x ``size``: a list of ``Shape``."""
    out, (h, w, c) = [], (size, size, 3)
    for row, shape, _ in shapes(NOTOP, size, size, batch):
        out.append(Shape(row.name, batch, h, w, c, row.out if row.kind == "conv" else 0))
        _, h, w, c = shape  # this layer's output is the next one's input
    return out


def conv_flops(s):
    """Multiply-adds of a direct 3x3 'same' conv, times 2: 2*N*H*W*C*K*9."""
    return 2 * s.N * s.H * s.W * s.C * s.K * 9


def forward_flops(size, batch):
    """The conv flops of the whole pass (pools are negligible)."""
    return sum(conv_flops(s) for s in layer_shapes(size, batch) if s.K)


# Winograd F(4x4, 3x3) makes a 4x4 tile of outputs for one (c, k) pair with 6*6 = 36 multiplications,
# against 16 * 9 = 144 for the direct sum: a quarter (winograd.py).
WINOGRAD_SAVING = 4


def floor_ms(size, batch, sgemm_gflops):
    """The floor for minivgg's design, in ms: the multiplications Winograd F(4x4, 3x3) leaves of the
    conv stack, ``forward_flops(size, batch) / WINOGRAD_SAVING`` (30.7 / 4 = 7.7 GFLOP per image at
    224), done at the rate of NumPy's own sgemm measured on this machine (``sgemm_gflops``, GFLOP/s),
    as if all of it ran inside GEMMs at full speed, with the transforms, the pools and the first layer's
    own method free. A forward pass takes longer; its time / this floor says how much longer."""
    return forward_flops(size, batch) / WINOGRAD_SAVING / (sgemm_gflops * 1e9) * 1e3


# ---------------------------------------------------------------- reference (float64, obviously right)


def reference_conv(x, w, b):
    """relu(conv(x, w) + b) for a 3x3, stride 1, pad 1 conv, in float64.

    Inputs: x (N, H, W, C); w (3, 3, C, K); b (K,). Returns (N, H, W, K) float64.
    Straight from the formula in ``conv.py``, summed one kernel tap (di, dj) at a time: each tap is
    a shifted copy of the input times a (C, K) matrix.
    """
    N, H, W, C = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))  # (N, H+2, W+2, C)
    out = np.zeros((N, H, W, w.shape[3])) + b  # (N, H, W, K)
    for di in range(3):
        for dj in range(3):
            tap = xp[:, di:di + H, dj:dj + W, :]  # (N, H, W, C): the input shifted by (di, dj)
            out += np.tensordot(tap, w[di, dj].astype(np.float64), axes=1)  # (N, H, W, C) . (C, K) -> (N, H, W, K)
    return np.maximum(out, 0)


def reference_pool(x):
    """2x2, stride 2, 'valid' max-pool in NumPy. x (N, H, W, C) -> (N, H//2, W//2, C)."""
    N, H, W, C = x.shape
    x = x[:, : H // 2 * 2, : W // 2 * 2, :]  # drop an odd last row/column, as Keras does
    return x.reshape(N, H // 2, 2, W // 2, 2, C).max(axis=(2, 4))  # (N, H', 2, W', 2, C) -> (N, H', W', C)


def reference_forward(params, x):
    """VGG16 without its top, in float64, from the table: x (N, H, W, 3) -> (N, H/32, W/32, 512)."""
    for row in NOTOP:
        x = reference_conv(x, *params[row.name]) if row.kind == "conv" else reference_pool(x)
    return x


def weights(seed=0, include_top=False):
    """VGG16's He-normal kernels with seeded non-zero biases (a dropped bias must not pass the check).

    Returns {layer name: (w (3, 3, C, K) or (D, U), b (K,) or (U,))}, float32, for the conv layers
    (and fc1, fc2, predictions with ``include_top``).
    """
    from ..network.vgg import VGG16

    rng = np.random.default_rng(seed)
    params = VGG16(weights=None, include_top=include_top, method="im2col").params  # im2col: no kernel transforms
    return {name: (w, rng.uniform(-0.5, 0.5, b.shape).astype(np.float32)) for name, (w, b) in params.items()}


def reference_conv_backward(x, w, dy):
    """dL/dx and dL/dw of a 3x3, stride 1, pad 1 conv, in float64, tap by tap (``conv.py`` derives them).

    Inputs: x (N, H, W, C), the conv's input; w (3, 3, C, K); dy (N, H, W, K), dL/d(the conv's output
    before its ReLU). Returns dx (N, H, W, C) and dw (3, 3, C, K), float64.
    """
    N, H, W, C = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))  # (N, H+2, W+2, C)
    dxp = np.zeros_like(xp)
    dy = dy.astype(np.float64)
    dw = np.zeros(w.shape)
    for di in range(3):
        for dj in range(3):
            # tap (di, dj) read xp[:, di:di+H, dj:dj+W]: its share of dx goes back there
            dxp[:, di:di + H, dj:dj + W, :] += np.tensordot(dy, w[di, dj].T.astype(np.float64), axes=1)  # (N,H,W,K).(K,C)
            dw[di, dj] = np.tensordot(xp[:, di:di + H, dj:dj + W, :], dy, axes=([0, 1, 2], [0, 1, 2]))  # -> (C, K)
    return dxp[:, 1:H + 1, 1:W + 1, :], dw


def reference_gradient(params, x, seed_layer, dy):
    """dL/dx for L = sum(dy * output of ``seed_layer``), in float64: VGG16 from the table (the top if
    ``params`` has it; ``predictions`` as logits), forward with ``reference_conv``/``reference_pool``,
    backward with ``reference_conv_backward`` and NumPy. Returns (N, H, W, 3) float64.

    Its ReLU and pool decisions are float64's own, so a float32 pass may differ from it where a
    pre-activation lies within rounding of 0 (see ``GRADIENT_TOL``).
    """
    from ..layers.pool import max_pool2d_backward_naive

    rows, outs, a = [], [], x.astype(np.float64)
    for row in LAYERS:
        if row.kind == "conv":
            a = reference_conv(a, *params[row.name])
        elif row.kind == "pool":
            a = reference_pool(a)
        elif row.kind == "flatten":
            a = a.reshape(a.shape[0], -1)  # (N, H, W, C) -> (N, H*W*C)
        else:
            w, b = params[row.name]
            a = a @ w.astype(np.float64) + b  # (N, D) @ (D, U)
            a = np.maximum(a, 0) if row.activation == "relu" else a  # predictions: logits
        rows.append(row)
        outs.append(a)
        if row.name == seed_layer:
            break
    g = dy.astype(np.float64)
    for i in range(len(rows) - 1, -1, -1):
        row, a_in = rows[i], outs[i - 1] if i else x.astype(np.float64)
        if row.kind == "conv":
            g, _ = reference_conv_backward(a_in, params[row.name][0], g * (outs[i] > 0))
        elif row.kind == "pool":
            g = max_pool2d_backward_naive(a_in, g)  # to each window's first maximum; odd edges get 0
        elif row.kind == "flatten":
            g = g.reshape(a_in.shape)  # (N, D) -> (N, H, W, C)
        else:
            g = (g * (outs[i] > 0) if row.activation == "relu" else g) @ params[row.name][0].T.astype(np.float64)
    return g


# A whole-network gradient is checked as ||ours - ref|| / ||ref|| <= GRADIENT_TOL. Exact float32 and
# float64 passes agree to ~1e-5 where they make the same ReLU and pool decisions; where a pre-activation
# lies within float32 rounding of 0 they may not, and one such flip moved an input gradient by 6.5e-3
# (measured, against TensorFlow). 5e-2 leaves room for a few flips; a wrong backward rule (a missing
# flip of the kernel, a mask from the wrong layer, a misrouted pool) is off by 0.5 or more.
GRADIENT_TOL = 5e-2


def check_gradient(method, ours, ref, tol=GRADIENT_TOL):
    """Raise MinivggError unless ||ours - ref|| / ||ref|| <= tol; returns that error."""
    ours = np.asarray(ours, dtype=np.float64)
    scale = np.linalg.norm(ref)
    err = float(np.linalg.norm(ours - ref) / scale) if ours.shape == ref.shape and scale > 0 else float("inf")
    if not err <= tol:
        raise MinivggError(f"method {method!r}: its whole-network gradient disagrees with the float64 reference "
                           f"(||ours - ref|| / ||ref|| = {err:.3g} > {tol:g}); not timed")
    return err


def save_weights(params, path):
    """Write {layer: (kernel, bias)} as a Keras HDF5 weight file (the layout ``weights.py`` reads),
    so that ``VGG16(weights=path)`` loads exactly these weights through its public door."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name in params]
        for name, (w, b) in params.items():
            group = f.create_group(name)
            group.attrs["weight_names"] = [b"kernel", b"bias"]  # dataset paths inside the group
            group["kernel"], group["bias"] = w, b
    return path


def data(shape, seed=0):
    """Seeded standard-normal float32 input of ``shape``."""
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


# ---------------------------------------------------------------- check, then time


def rel_error(ours, ref):
    """max|ours - ref| / max|ref| (inf if the shapes differ)."""
    ours = np.asarray(ours, dtype=np.float64)
    if ours.shape != ref.shape:
        return float("inf")
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-30))


def check(method, layer, ours, ref, tol=TOL):
    """Raise MinivggError (one line naming method, layer and error) unless ``ours`` matches ``ref``."""
    err = rel_error(ours, ref)
    if not err <= tol:  # also catches NaN
        if np.shape(ours) != ref.shape:
            got = f"shape {np.shape(ours)}, expected {ref.shape}"
        else:
            got = f"max|ours-ref|/max|ref| = {err:.3g} > {tol:g}"
        raise MinivggError(f"method {method!r} on {layer} disagrees with the float64 reference ({got}); not timed")
    return err


class Timing(NamedTuple):
    first_ms: float  # the first call: JIT compile / tracing included, reported apart
    median_ms: float  # median of the timed calls, after the first call and one warm-up
    times_ms: list


def seconds(fn, repeats, warmup=True):
    """Wall times of ``fn()`` over ``repeats`` calls (a list, in seconds), after one untimed warm-up
    call if ``warmup``: caches, thread pools, lazily allocated buffers. The one timing loop here."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def median_seconds(fn, repeats, warmup=True):
    """Median wall time of ``fn()`` over ``repeats`` calls, after one warm-up call if ``warmup``."""
    return statistics.median(seconds(fn, repeats, warmup))


def time_checked(run, check_first, repeats):
    """Call ``run()`` once and pass its result to ``check_first`` (which raises on a wrong result),
    then once more to warm up, then ``repeats`` times under the clock. Returns a ``Timing``."""
    t = time.perf_counter()
    out = run()
    first = time.perf_counter() - t
    check_first(out)
    times = seconds(run, repeats, warmup=True)
    return Timing(first * 1e3, statistics.median(times) * 1e3, [s * 1e3 for s in times])


def interleaved(calls, repeats):
    """Wall times of each of ``calls`` ({name: fn}) over ``repeats`` rounds, each round one call of
    every fn, the order turned by one each round: a machine that gets busier or quieter during the run
    weighs on every method alike, so that their ratios hold better than those of medians taken one
    method after another. Returns {name: [ms, ...]}. The calls should be warm (already run)."""
    names = list(calls)
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t = time.perf_counter()
            calls[name]()
            times[name].append((time.perf_counter() - t) * 1e3)
    return times


def sgemm_gflops(n=2048, repeats=5):
    """NumPy's own float32 matmul on this machine, (n, n) @ (n, n): the ceiling for conv methods."""
    a, b = data((n, n), 1), data((n, n), 2)
    out = np.empty((n, n), np.float32)
    return 2 * n**3 / median_seconds(lambda: np.matmul(a, b, out=out), repeats) / 1e9


def copy_gbps(nbytes, repeats=5):
    """np.copyto of ``nbytes`` float32 bytes, counted as read + written: the memory ceiling."""
    src = data((max(nbytes // 4, 1),), 3)
    dst = np.empty_like(src)
    return 2 * src.nbytes / median_seconds(lambda: np.copyto(dst, src), repeats) / 1e9


# ---------------------------------------------------------------- the methods


class Method(NamedTuple):
    """How the benchmark runs one method. Only ``run`` is timed; the rest happens outside the clock.

    - run(x, params) -> out: the timed call
    - load(weights) -> params: done once when a model loads (e.g. Winograd's kernel transform),
      timed apart as load_ms. ``weights`` is (w, b) for a conv layer, {layer: (w, b)} for a whole
      forward pass. None: params = weights.
    - feed(x) -> what ``run`` takes, from x (N, H, W, C) float32 (e.g. an NCHW tensor). None: x.
    - fetch(out) -> the result as an (N, H', W', K) NumPy array, to check it. None: out.
    """

    run: Callable
    load: Callable = None
    feed: Callable = None
    fetch: Callable = None


def _winograd():
    from ..layers.winograd_schedules import conv3x3_winograd, fast_kernel

    return Method(
        run=lambda x, p: conv3x3_winograd(x, p[0], p[1], True),
        load=lambda wb: (fast_kernel(wb[0]), wb[1]),  # U as panels, b: transformed and packed once, at load, as the model does
    )


def _winograd_dx():
    from ..layers.winograd_schedules import fast_kernel

    return Method(
        run=lambda dy, p: conv2d_backward_input(dy, p[0], pad=1, method="winograd", U_t=p[1]),
        load=lambda w: (w, fast_kernel(transpose_kernel(w))),  # the backward kernel, transformed and packed once
    )


# The backward conv methods (naive is left out: the naive twins take seconds per layer at 224):
# dx, dL/d(input) = the conv of dy with the flipped kernel, run(dy, w); and dW = im2col(x)^T @ dy,
# run((x, dy), w), by im2col or by Winograd run backwards (winograd_weights.py).
DX_METHODS = {
    "im2col": lambda: Method(run=lambda dy, w: conv2d_backward_input(dy, w, pad=1, method="im2col")),
    "winograd": _winograd_dx,
}
DW_METHODS = {
    "im2col": lambda: Method(run=lambda xdy, w: conv2d_backward_weights(xdy[0], xdy[1], 3, 3, stride=1, pad=1)[0]),
    "winograd": lambda: Method(run=lambda xdy, w: conv3x3_winograd_weights(xdy[0], xdy[1])[0]),
}


# The conv methods the benchmark walks: name -> a function that returns a ``Method``. It covers
# ``conv.METHODS``. Tests add a deliberately
# wrong entry here to see that the benchmark refuses it before timing it.
CONV_METHODS = {
    "naive": lambda: Method(run=lambda x, p: conv2d_naive(x, p[0], p[1], stride=1, pad=1, relu=True)),
    "im2col": lambda: Method(run=lambda x, p: conv2d_im2col(x, p[0], p[1], stride=1, pad=1, relu=True)),
    "winograd": _winograd,
    "direct": lambda: Method(run=lambda x, p: conv2d_direct(x, p[0], p[1], stride=1, pad=1, relu=True)),
}


def check_writable(path):
    """Raise MinivggError unless ``path`` can be written as a file: not a folder, in a writable folder
    (the scripts check their output paths before a run rather than after it)."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise MinivggError(f"cannot write {path}: it is a folder")
    if not os.path.isdir(folder):
        raise MinivggError(f"cannot write {path}: no such folder")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise MinivggError(f"cannot write {path}: permission denied")


def machine_info(threads):
    """CPU model, cores, threads and library versions, for the JSON and the table header."""
    import numba

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas['name']} {blas.get('version', '')}".strip()
    except Exception:  # the layout of show_config differs across NumPy versions
        blas = "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": threads,
        "platform": platform.platform(),
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__, "blas": blas},
        "blas_core": blas_core(),
        "blas_env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ},
    }


def blas_note(machine):
    """A line for the table header where the environment forces OpenBLAS's kernels, else None."""
    forced = machine.get("blas_env") or {}
    if not forced:
        return None
    return (f"{' '.join(f'{k}={v}' for k, v in forced.items())} is set: OpenBLAS runs its {machine['blas_core']} kernels, "
            "not the ones it would pick for this CPU (on an AVX-512 CPU about half the sgemm speed). To time "
            "this machine's own: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/benchmark.py ...")
