"""What each backward kernel costs against its forward twin, measured side by side on VGG16's shapes.

    python scripts/backward_costs.py            # 224x224, batch 1, median of 20 interleaved rounds

For one layer of each kind (block3_conv2: 56x56, 256 -> 256; block3_pool; fc1: 25088 -> 4096; the
softmax over 1000 classes), times the forward kernel and its backward kernels in interleaved rounds (each backward conv beside the
forward conv of the same method)
(so that a busy machine slows both alike), after a warm-up call (the JIT compile). Every backward
result is first checked against its naive twin in float64 on a small slice of the same shapes. It
prints one line per kernel: forward ms, backward ms, and the ratio. The README quotes a run of it.
"""
import statistics
import sys
import time

import minivgg  # noqa: F401  (first: NumPy loads with OpenBLAS's spin short, and Numba's threading layer is chosen before any kernel runs)
import numpy as np
from minivgg.layers.conv import conv2d_backward_input, conv2d_backward_naive, conv2d_backward_weights, conv2d_im2col, conv2d_naive, \
    transpose_kernel
from minivgg.layers.dense import dense, dense_backward, softmax, softmax_backward, softmax_backward_naive
from minivgg.layers.gradcheck import relative_error
from minivgg.layers.pool import max_pool2d, max_pool2d_backward, max_pool2d_backward_naive
from minivgg.layers.relu import bias_relu, relu_backward, relu_backward_naive
from minivgg.layers.winograd import winograd_kernel
from minivgg.layers.winograd_schedules import conv3x3_winograd


def check(name, ours, want, tol):
    err = relative_error(ours, want)
    if not err <= tol:
        sys.exit(f"error: {name} disagrees with its naive twin ({err:.2e} > {tol:g})")


def main():
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s, dtype=np.float32)  # noqa: E731

    # The checks: each backward kernel against its naive twin on a small slice of the same shapes.
    x, w, dy = f32(1, 9, 7, 256), f32(3, 3, 256, 256) * 0.03, f32(1, 9, 7, 256)
    dx_n, dw_n, _ = conv2d_backward_naive(x.astype(np.float64), w, dy.astype(np.float64), 1, 1)
    check("winograd dx", conv2d_backward_input(dy, w, 1, "winograd", winograd_kernel(transpose_kernel(w))), dx_n, 5e-5)
    check("im2col dx", conv2d_backward_input(dy, w, 1, "im2col"), dx_n, 1e-5)
    check("dW", conv2d_backward_weights(x, dy, 3, 3, 1, 1)[0], dw_n, 1e-5)
    y = np.maximum(x, 0)
    check("relu_backward", relu_backward(y, dy), relu_backward_naive(y, dy), 0)
    d = f32(1, 4, 3, 256)  # dL/d(pool output) for the 9x7 input: 4x3 windows
    check("max_pool2d_backward", max_pool2d_backward(x, d), max_pool2d_backward_naive(x, d), 0)
    p = softmax(f32(2, 1000))
    g = f32(2, 1000)
    check("softmax_backward", softmax_backward(p, g), softmax_backward_naive(p.astype(np.float64), g), 1e-5)

    # The timings, at 224x224: block3_conv2 (56x56, 256 -> 256), block3_pool's input, fc1, predictions.
    x, w, b = f32(1, 56, 56, 256), f32(3, 3, 256, 256) * 0.03, f32(256)
    dy = f32(1, 56, 56, 256)
    U, U_t = winograd_kernel(w), winograd_kernel(transpose_kernel(w))
    y = conv3x3_winograd(x, U, b, relu=True)
    xp, dyp = np.maximum(f32(1, 56, 56, 256), 0), f32(1, 28, 28, 256)
    xf, wf, bf, dyf = f32(1, 25088), f32(25088, 4096) * 0.01, f32(4096), f32(1, 4096)
    z, dz = f32(1, 1000), f32(1, 1000)
    pz = softmax(z)
    gemm_out = f32(56 * 56, 256)
    pairs = [  # (kernel, forward, backward)
        ("conv 3x3, block3_conv2: dx (Winograd)", lambda: conv3x3_winograd(x, U, b, relu=True),
         lambda: conv2d_backward_input(dy, w, 1, "winograd", U_t)),
        ("conv 3x3, block3_conv2: dx (im2col)", lambda: conv2d_im2col(x, w, b, 1, 1, relu=True),
         lambda: conv2d_backward_input(dy, w, 1, "im2col")),
        ("conv 3x3, block3_conv2: dW + db (im2col)", lambda: conv2d_im2col(x, w, b, 1, 1, relu=True),
         lambda: conv2d_backward_weights(x, dy, 3, 3, 1, 1)),
        ("ReLU (fused bias + ReLU forward), block3_conv2", lambda: bias_relu(gemm_out, b, True),
         lambda: relu_backward(y, dy)),
        ("max-pool 2x2, block3_pool", lambda: max_pool2d(xp), lambda: max_pool2d_backward(xp, dyp)),
        ("dense, fc1 25088 -> 4096: dx only", lambda: dense(xf, wf, bf, relu=True),
         lambda: dense_backward(xf, wf, dyf, need_weights=False)),
        ("dense, fc1 25088 -> 4096: dx, dW, db", lambda: dense(xf, wf, bf, relu=True),
         lambda: dense_backward(xf, wf, dyf)),
        ("softmax, 1000 classes", lambda: softmax(z), lambda: softmax_backward(pz, dz)),
    ]
    rounds = 20
    print(f"{'kernel':<48}{'forward ms':>11}{'backward ms':>13}{'ratio':>8}")
    for name, fwd, bwd in pairs:
        fwd(), bwd()  # warm-up: the JIT compile (or cache load), lazily allocated buffers
        tf, tb = [], []
        for _ in range(rounds):  # interleaved, so that a busy machine slows both alike
            t = time.perf_counter()
            fwd()
            tf.append(time.perf_counter() - t)
            t = time.perf_counter()
            bwd()
            tb.append(time.perf_counter() - t)
        f, bk = statistics.median(tf) * 1e3, statistics.median(tb) * 1e3
        print(f"{name:<48}{f:>11.2f}{bk:>13.2f}{bk / f:>8.2f}")


if __name__ == "__main__":
    main()
