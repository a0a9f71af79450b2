"""The update rules, with Keras 3's names, defaults and arithmetic (``keras/src/optimizers``).

Legend: w a weight tensor (a kernel or a bias), g = dL/dw, lr the learning rate, t the step (1, 2, ...).

SGD (Robbins & Monro 1951; momentum: Polyak 1964; Nesterov: Sutskever et al. 2013, eq. 3-4), as
``keras.optimizers.SGD.update_step`` computes it, with a velocity m (zeros at first):

    momentum = 0:   w <- w - lr * g
    momentum > 0:   m <- momentum * m - lr * g
                    w <- w + m                                    (nesterov=False)
                    w <- w + momentum * m - lr * g                (nesterov=True: the look-ahead)

Adam (Kingma & Ba 2015), as ``keras.optimizers.Adam.update_step`` computes it, with moments m, v:

    alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)              the bias corrections, in the step size
    m <- m + (g - m) * (1 - beta_1)                               = beta_1 m + (1 - beta_1) g
    v <- v + (g^2 - v) * (1 - beta_2)                             = beta_2 v + (1 - beta_2) g^2
    w <- w - alpha * m / (sqrt(v) + epsilon)

The paper's Algorithm 1 divides m and v by (1 - beta^t) and adds epsilon to sqrt(v_hat); Keras (and
the paper's own Section 2, "the efficiency of algorithm 1 can be improved") folds both corrections
into alpha, which puts epsilon beside sqrt(v) instead: the same step up to epsilon * sqrt(1 - beta_2^t),
which is why Keras' default epsilon, 1e-7, differs from the paper's 1e-8.

Weight decay (``weight_decay=``, off by default), as Keras' ``BaseOptimizer._apply_weight_decay``
does it, before the step, to every trainable tensor (decoupled, Loshchilov & Hutter 2019):

    w <- w - w * weight_decay * lr

Each optimiser updates a dict {"layer/kernel": array, "layer/bias": array} in place from a dict of
gradients with the same keys; its ``state()`` (the moments, the step count) goes into checkpoints
and ``load_state`` puts it back, so a resumed run goes on exactly where it stopped.
"""
import numpy as np

from ..errors import MinivggError


class Optimizer:
    """What SGD and Adam share: the step count, weight decay, the slots per tensor, and their state."""

    SLOTS = ()  # the per-tensor arrays the rule keeps ("m", "v")
    PLAIN_SUMS = False  # whether the rule needs each weight's gradient exact to its own size (see Adam)

    def __init__(self, learning_rate, weight_decay=None):
        if not learning_rate > 0:
            raise MinivggError(f"the learning rate must be positive, got {learning_rate}")
        self.learning_rate = float(learning_rate)
        self.weight_decay = weight_decay
        self.iterations = 0  # steps taken (Keras' optimizer.iterations)
        self.slots = {}  # "layer/kernel" -> {"m": array, ...}, made on first use

    def update(self, variables, grads):
        """One step: every tensor of ``variables`` (name -> float32 array, changed in place) by its gradient."""
        lr = np.float32(self.learning_rate)
        for name, w in variables.items():
            g = np.asarray(grads[name], dtype=np.float32)
            if g.shape != w.shape:
                raise MinivggError(f"the gradient of {name} has shape {g.shape}, the tensor {w.shape}")
            if self.weight_decay:
                w -= w * np.float32(self.weight_decay) * lr  # Keras: variable - variable * wd * lr
            slots = self.slots.setdefault(name, {s: np.zeros_like(w) for s in self.SLOTS})
            self._update(w, g, slots, lr)
        self.iterations += 1

    def state(self):
        """The optimiser's state as plain arrays: {"iterations": t, "name/slot": array, ...}."""
        out = {"iterations": np.int64(self.iterations)}
        for name, slots in self.slots.items():
            out.update((f"{name}/{s}", a) for s, a in slots.items())
        return out

    def load_state(self, state):
        """Put back what ``state()`` returned (a checkpoint's arrays)."""
        self.iterations = int(state["iterations"])
        self.slots = {}
        for key, a in state.items():
            if key != "iterations":
                name, slot = key.rsplit("/", 1)
                self.slots.setdefault(name, {})[slot] = np.array(a, dtype=np.float32)


class SGD(Optimizer):
    """Stochastic gradient descent, with momentum and Nesterov's look-ahead as options (Keras' defaults)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None):
        super().__init__(learning_rate, weight_decay)
        if not 0 <= momentum <= 1:
            raise MinivggError(f"momentum must be in [0, 1], got {momentum}")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)
        self.SLOTS = ("m",) if self.momentum else ()

    def _update(self, w, g, slots, lr):
        if not self.momentum:
            w -= g * lr
            return
        mu, m = np.float32(self.momentum), slots["m"]
        m[...] = m * mu - g * lr  # the velocity
        if self.nesterov:
            w += m * mu - g * lr
        else:
            w += m


class Adam(Optimizer):
    """Adam with Keras' defaults and its form of the step (see the module docstring)."""

    SLOTS = ("m", "v")
    # Adam divides each gradient by its own running size, so a weight whose gradient is tiny still moves
    # by about the learning rate, in the direction of its sign. Winograd's dw is exact to a few 1e-6 of
    # the largest |dw| (winograd_weights.py), which can flip the sign of such a tiny one and move that
    # weight by twice the learning rate (measured: the loss after one Adam step 3e-4 off Keras'). So
    # with Adam the step sums dw plainly (im2col: float32 rounding of each element's own sum). SGD's
    # step is linear in the gradient: there the error stays a few 1e-6 of the largest change.
    PLAIN_SUMS = True

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None):
        super().__init__(learning_rate, weight_decay)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def _update(self, w, g, slots, lr):
        t = np.float32(self.iterations + 1)
        b1, b2 = np.float32(self.beta_1), np.float32(self.beta_2)
        alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        m, v = slots["m"], slots["v"]
        m += (g - m) * (1 - b1)
        v += (g * g - v) * (1 - b2)
        w -= (m * alpha) / (np.sqrt(v) + np.float32(self.epsilon))


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


# ---------------------------------------------------------------- naive twins: one element at a time


def sgd_update_naive(w, g, m, lr, momentum=0.0, nesterov=False, weight_decay=None):
    """SGD's rule on one tensor, element by element in float64, as the formulas read. Returns (w, m), new arrays."""
    w, m = np.array(w, np.float64).ravel(), np.array(m, np.float64).ravel()
    for i, gi in enumerate(np.asarray(g, np.float64).ravel()):
        if weight_decay:
            w[i] = w[i] - w[i] * weight_decay * lr
        if momentum:
            m[i] = momentum * m[i] - lr * gi
            w[i] = w[i] + (momentum * m[i] - lr * gi if nesterov else m[i])
        else:
            w[i] = w[i] - lr * gi
    shape = np.shape(g)
    return w.reshape(shape), m.reshape(shape)


def adam_update_naive(w, g, m, v, t, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None):
    """Adam's rule at step t (1, 2, ...) on one tensor, element by element in float64: the paper's
    Algorithm 1 with the bias-corrected moments, and epsilon where Keras puts it (see the module
    docstring). Returns (w, m, v), new arrays."""
    w, m, v = (np.array(a, np.float64).ravel() for a in (w, m, v))
    for i, gi in enumerate(np.asarray(g, np.float64).ravel()):
        if weight_decay:
            w[i] = w[i] - w[i] * weight_decay * lr
        m[i] = beta_1 * m[i] + (1 - beta_1) * gi
        v[i] = beta_2 * v[i] + (1 - beta_2) * gi * gi
        m_hat = m[i] / (1 - beta_1 ** t)
        v_hat = v[i] / (1 - beta_2 ** t)
        # Keras' epsilon sits beside sqrt(v), not sqrt(v_hat): sqrt(v_hat) + eps / sqrt(1 - beta_2^t)
        w[i] = w[i] - lr * m_hat / (np.sqrt(v_hat) + epsilon / np.sqrt(1 - beta_2 ** t))
    shape = np.shape(g)
    return w.reshape(shape), m.reshape(shape), v.reshape(shape)
