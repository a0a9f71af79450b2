"""A numerical gradient checker: central differences in float64, for any function you can call.

Legend: x any shape; L a scalar.

    dL/dx[i]  ~=  (L(x + eps*e_i) - L(x - eps*e_i)) / (2*eps)

The error of the central difference is O(eps^2) (Taylor: the eps^2 terms cancel), against O(eps) for
a one-sided difference; in float64 with eps = 1e-5 both the truncation (~eps^2 * L''') and the
rounding (~1e-16 * |L| / eps) stay near 1e-10 of the gradient, so an exact backward pass agrees to
~1e-8 relative and a wrong one is off by orders of magnitude more. It costs two calls of L per
element: use it on small shapes, as the tests do for every backward kernel.

ReLU and max-pool have kinks: a difference taken across one (a pre-activation within eps of 0, or
two window values within eps) is not the derivative. Random data rarely puts a value that close;
checks that care use data kept away from the kinks.

    from minivgg.layers.gradcheck import numerical_gradient, relative_error
    x = np.random.default_rng(0).standard_normal((2, 5, 4, 3))
    dy = np.random.default_rng(1).standard_normal((2, 5, 4, 6))
    L = lambda x: np.sum(dy * conv2d_naive(x, w, b, pad=1))
    dx, dw, db = conv2d_backward_naive(x, w, dy, pad=1)
    print(relative_error(dx, numerical_gradient(L, x)))     # ~1e-10
"""
import numpy as np


def numerical_gradient(f, x, eps=1e-5):
    """dL/dx by central differences.

    Inputs:
    - f: a function of one array, returning a scalar L (it is called with float64 arrays)
    - x: the point, any shape (converted to float64; not modified)
    Returns:
    - grad: float64, x's shape
    """
    x = np.array(x, dtype=np.float64)  # a copy we may nudge
    grad = np.empty_like(x)
    flat, g = x.reshape(-1), grad.reshape(-1)  # (M,) views
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = float(f(x))
        flat[i] = old - eps
        down = float(f(x))
        flat[i] = old
        g[i] = (up - down) / (2 * eps)
    return grad


def relative_error(ours, theirs):
    """||ours - theirs|| / max(||ours||, ||theirs||): 0 for equal arrays, ~1 for unrelated ones."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        raise ValueError(f"shapes differ: {ours.shape} and {theirs.shape}")
    scale = max(np.linalg.norm(ours), np.linalg.norm(theirs))
    return float(np.linalg.norm(ours - theirs) / scale) if scale > 0 else 0.0
