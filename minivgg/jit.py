"""How minivgg runs on the CPU, decided in one place: Numba's settings, threads, memory.

The idea. NumPy is fast when one call does much work (a matrix product, a sum over a whole array)
and slow when Python loops over single elements, as a layer's formula does. Numba compiles a Python
function to machine code: decorated with ``@numba.njit`` ("no Python": it may use only numbers,
NumPy arrays and a part of NumPy's functions, and runs without the interpreter), its loops over
elements run as fast as C. Write the outer loop as ``for i in numba.prange(n)`` instead of
``range(n)``, compile with ``parallel=True``, and Numba splits that loop's iterations over its worker
threads, about one per core. The first call of a kernel compiles it; later calls run the machine
code. minivgg's layers follow one pattern: a private ``@njit`` body ``_name`` with no
checks, behind a public ``name()`` that validates, allocates the output and calls it.

Every parallel kernel in minivgg is compiled with one option set, ``PARALLEL`` = ``cache=True,
parallel=True`` (the serial helpers they call: ``cache=True``; some also ``nogil=True``, from when
Python threads of minivgg's own ran them at once):

- ``cache=True``: compiled once, kept on disk, so later runs start warm. Numba checks a cached kernel
  against its own file only: a helper from another file compiled into it (the pool's
  ``_window_max4`` in Winograd's output transform, the micro-kernel in Winograd's schedules) would
  keep its old code when only the helper's file changed, and a kernel you edit would seem not to
  change. So the caches go in a folder named by a hash of all of minivgg's source files
  (``minivgg/__pycache__/numba-<hash>``, ``cache_folder`` below): any edit starts a new one, compiled
  afresh (a minute or so of compiling on the next runs; folders unchanged for a week are removed).
  ``NUMBA_CACHE_DIR``, where the user set it, is used instead, as Numba's own setting;
- ``parallel=True``: the outer loop of each kernel is a ``numba.prange``, which Numba splits over its
  worker threads (one image row, one tile or one channel per task).

``fastmath`` stays off everywhere: it lets LLVM reorder float sums, which changes results from run to
run in the last bits and makes the naive-vs-fast tests harder to reason about. The heavy arithmetic
goes through NumPy's BLAS anyway (the library behind ``np.matmul``: its GEMM, general matrix
multiply, is the matrix product), which is already vectorised, or through Winograd's GEMM micro-kernel
(``layers/microkernel.py``), vectorised by hand, its sums in a fixed order.

The threading layer. Numba's worker threads come from a "threading layer" (OpenMP, TBB, or its own
``workqueue``). The ``workqueue`` layer's workers sleep between parallel loops, and waking them costs
about 80 microseconds a loop on this project's 2-core machine (a Python thread hand-off, 55); a
pass at 224x224 runs some 30 parallel loops and shares, 2-3 ms of its 35. GNU OpenMP's (``omp``)
workers spin for a while after a loop instead, so the next one starts in 2 microseconds, but a
spinning worker takes a core from any other thread that wants it: OpenBLAS's own workers, or
minivgg's, if GEMMs ran on threads of their own. So every GEMM a pass shares among threads runs on
Numba's threads, called from inside Numba's parallel loops (``gemm``, below), and then minivgg selects
``omp`` before any parallel kernel runs, unless the user chose a layer (``NUMBA_THREADING_LAYER``), with
a short spin (``GOMP_SPINCOUNT`` = 10000, about 0.3 ms, against GNU OpenMP's default of about 5 ms), so
that after a pass the workers soon sleep. Where the GEMM cannot be called from Numba (a NumPy whose
BLAS is not OpenBLAS) or OpenMP cannot load, ``workqueue`` stays (docs/performance.md, "Numba's threads
for every share"). One cost: GNU OpenMP does not survive ``fork()``. A process forked after minivgg ran
a parallel loop (``multiprocessing``'s "fork" start method) is stopped as soon as it runs one, Numba
printing "Terminating: fork() called from a process already using GNU OpenMP". Start worker processes
with "spawn" or "forkserver" (Dask's workers are spawned), or set ``NUMBA_THREADING_LAYER=workqueue``
before Python starts: forking is then safe, and a pass about 15% slower.

Performance: skip on a first read (the bottom half of this file).

Shared GEMMs. The same fight goes on with OpenBLAS, whose workers also spin after each GEMM: the
Numba transform that runs next shares a core with one, and a second thread bought minivgg much less
than it bought TensorFlow. The cure, ``shared_gemms()``: for a whole pass, OpenBLAS runs
single-threaded, so it has no workers to spin, and minivgg shares each GEMM among Numba's threads
instead (``matmul``: a stack by its products, a matrix by rows or columns; each share one ordinary
BLAS call, made by ``gemm`` from inside a parallel loop), which measured as fast as one two-threaded
np.matmul or faster. With that, Winograd can also give each thread its share of the tiles through
the whole chain, transforms included (``winograd_schedules._per_thread``). The switch is made once
per pass (``model(x)``, ``activations``, ``gradients``, a training step) or once per run of many
passes (feature visualisation, SmoothGrad, IG), not per layer: switching OpenBLAS back to two threads
wakes its worker, which then spins into the next layer's transforms (measured slower per layer:
docs/performance.md). Both hold ``passes()``, which also keeps freed memory for the next array: see
the end of this file.

OpenBLAS's spin. A GEMM on OpenBLAS's own threads outside a pass (a user's np.matmul, a float64
reference in a benchmark) leaves OpenBLAS's worker spinning for its timeout, 2**28 clock cycles by
default (0.12 s here): a pass in that window shares its cores with that worker, and the passes at
32x32 just after a 1024x1024 matmul measured 1.5-3x slower than the ones after. The timeout is
OpenBLAS's setting ``OPENBLAS_THREAD_TIMEOUT``, read once, when NumPy loads it; where minivgg loads
NumPy (``import minivgg`` before NumPy) it sets 20 (2**20 cycles, about 0.5 ms, like GNU OpenMP's spin
above) for that moment, unless the user set it. Where NumPy came first, ``OPENBLAS_THREAD_TIMEOUT=20``
in the environment before Python starts does the same.
"""
import contextlib
import ctypes
import hashlib
import os
import shutil
import sys
import threading
import time

# OpenBLAS reads its environment when it loads, with NumPy: here, if minivgg loads NumPy first (``import
# minivgg`` imports this module first). Its workers then wait 2**20 cycles for the next GEMM (about
# 0.5 ms) before they sleep, not its default 2**28 (about 0.1 s): see "OpenBLAS's spin" below.
_BLAS_SPIN = "OPENBLAS_THREAD_TIMEOUT"
_short_blas_spin = "numpy" not in sys.modules and _BLAS_SPIN not in os.environ
if _short_blas_spin:
    os.environ[_BLAS_SPIN] = "20"

import llvmlite.binding  # noqa: E402  (below the setting above: numba imports NumPy)
import numba  # noqa: E402
import numpy as np  # noqa: E402

if _short_blas_spin:  # read; taken out again, so that no other library or child process sees it
    del os.environ[_BLAS_SPIN]

PARALLEL = dict(cache=True, parallel=True)  # every parallel kernel: @numba.njit(**PARALLEL)


def cache_folder(root=os.path.dirname(os.path.abspath(__file__))):
    """Where this copy of minivgg keeps its compiled kernels: ``root/__pycache__/numba-<hash>``, the hash
    (SHA-256, 16 hex digits) of every ``.py`` file under ``root`` (the package), names and contents, so
    that an edit anywhere gives a new folder (see ``cache=True`` above)."""
    digest = hashlib.sha256()
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")  # walked in a fixed order
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as f:
                digest.update(f.read() + b"\0")
    return os.path.join(root, "__pycache__", "numba-" + digest.hexdigest()[:16])


def _forget_old_caches(current, days=7):
    # Removes the other numba-* folders beside ``current`` unchanged for ``days``: an older source's, most
    # likely gone for good (a run still using one re-creates what it saves).
    parent, now = os.path.dirname(current), time.time()
    for name in os.listdir(parent) if os.path.isdir(parent) else []:
        path = os.path.join(parent, name)
        try:
            if name.startswith("numba-") and path != current and now - os.path.getmtime(path) > days * 86400:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:  # removed meanwhile by another process starting up
            pass


if not os.environ.get("NUMBA_CACHE_DIR"):  # before any kernel is decorated: this module is imported first
    # In the environment, not only in numba.config: Numba reads its settings again from the environment
    # whenever a NUMBA_ variable changes (a script setting NUMBA_NUM_THREADS), and this one must stay.
    # (Processes started from this one share the folder: the same sources, the same kernels.)
    os.environ["NUMBA_CACHE_DIR"] = numba.config.CACHE_DIR = cache_folder()
    _forget_old_caches(numba.config.CACHE_DIR)


# ==================================================================================================
# ---- Performance: skip on a first read. OpenBLAS's threads, GEMMs shared among minivgg's threads,
# freed memory kept for whole passes (the module docstring's last part says why).
# ==================================================================================================

# ------------------------------------------------------------------------------- OpenBLAS's threads

_openblas = []  # [(get, set, corename, library)] of the OpenBLAS NumPy loaded, or [None]: looked up once


def _find_openblas():
    """OpenBLAS's own thread-count getter and setter in the library NumPy loaded (found in
    /proc/self/maps, Linux), its kernel-set name and the library itself, or None."""
    if not _openblas:
        found = None
        try:
            with open("/proc/self/maps") as f:
                paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line})
        except OSError:
            paths = []
        for path in paths:
            lib = ctypes.CDLL(path)
            for prefix, suffix in (("scipy_", "64_"), ("", ""), ("", "64_"), ("scipy_", "")):
                get, put = (getattr(lib, f"{prefix}openblas_{what}_num_threads{suffix}", None) for what in ("get", "set"))
                if get is not None and put is not None:
                    found = (get, put, getattr(lib, f"{prefix}openblas_get_corename{suffix}", None), lib)
                    break
            if found is not None:
                break
        _openblas.append(found)
    return _openblas[0]


def blas_threads(n):
    """Make NumPy's OpenBLAS use ``n`` threads from now on; returns how many it used, or None where
    NumPy's BLAS is not an OpenBLAS found in this process (then nothing changes).

    ``OPENBLAS_NUM_THREADS`` only counts before NumPy is imported; this works any time, by calling
    OpenBLAS's own setter. OpenBLAS's workers spin while they wait for the next GEMM: with other busy
    threads on the same cores (the grid writers of ``pipeline.py``) they fight them for the cores.
    """
    found = _find_openblas()
    if found is None:
        return None
    get, put = found[:2]
    old = get()
    put(ctypes.c_int(n))
    return old


def blas_core():
    """The kernel set NumPy's OpenBLAS runs ("Haswell": AVX2, "SkylakeX": AVX-512, ...), or None where
    it cannot be asked. OpenBLAS picks it for the CPU at start, unless ``OPENBLAS_CORETYPE`` names one;
    on a CPU with AVX-512 a forced "Haswell" runs at about half its sgemm speed (docs/performance.md)."""
    found = _find_openblas()
    if found is None or found[2] is None:
        return None
    corename = found[2]
    corename.restype = ctypes.c_char_p
    return corename().decode(errors="replace")


# ------------------------------------------------------------------ GEMMs called from compiled code

# OpenBLAS's C interface to its GEMM, cblas_sgemm, as NumPy's wheels build it: 64-bit integers, the
# symbol named with a "64_" suffix (and a "scipy_" prefix in scipy-openblas, NumPy 2's). Compiled code
# calls it by the name below, which llvmlite resolves to the address registered at import; the cached
# kernels hold the name, not the address, so they stay valid from one process to the next.
_SGEMM, _SGEMV = "minivgg_cblas_sgemm64", "minivgg_cblas_sgemv64"
_I, _F, _P = numba.types.int64, numba.types.float32, numba.types.intp  # integer, float, address
_cblas_sgemm = numba.types.ExternalFunction(_SGEMM, numba.types.void(
    numba.types.int32, numba.types.int32, numba.types.int32,  # layout, a transposed?, b transposed?
    _I, _I, _I, _F, _P, _I, _P, _I, _F, _P, _I))  # M, N, K, alpha, a, lda, b, ldb, beta, c, ldc
_cblas_sgemv = numba.types.ExternalFunction(_SGEMV, numba.types.void(
    numba.types.int32, numba.types.int32,  # layout, A transposed?
    _I, _I, _F, _P, _I, _P, _I, _F, _P, _I))  # rows, columns, alpha, A, lda, x, incx, beta, y, incy
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # cblas' enums


def _register_sgemm():
    """Register the cblas_sgemm and cblas_sgemv of the OpenBLAS NumPy loaded under ``_SGEMM`` and
    ``_SGEMV``; returns whether both were found."""
    found = _find_openblas()
    for prefix in ("scipy_", "") if found is not None else ():
        gemm_f, gemv_f = (getattr(found[3], f"{prefix}cblas_{what}64_", None) for what in ("sgemm", "sgemv"))
        if gemm_f is not None and gemv_f is not None:
            for name, f in ((_SGEMM, gemm_f), (_SGEMV, gemv_f)):
                llvmlite.binding.add_symbol(name, ctypes.cast(f, ctypes.c_void_p).value)
            return True
    return False


@numba.njit(cache=True)
def gemm(a, b, c):
    """c = a @ b, float32 (M, K) @ (K, N) -> (M, N), as one call of OpenBLAS's GEMM from compiled code:
    each thread of a parallel loop calls its own. a and b: rows or columns contiguous (a transposed
    view is passed to BLAS as a transposed matrix); c: rows contiguous. Only where ``GEMM_IN_NUMBA``."""
    M, K = a.shape
    N = b.shape[1]
    if M == 0 or N == 0:
        return
    # BLAS's leading dimension: the step between rows in memory (between columns for a transposed
    # view), at least the row's length (a single row's step may be anything, and BLAS checks it)
    ta, lda = (NO_TRANS, max(a.strides[0] // 4, K)) if a.strides[1] == 4 else (TRANS, max(a.strides[1] // 4, M))
    tb, ldb = (NO_TRANS, max(b.strides[0] // 4, N)) if b.strides[1] == 4 else (TRANS, max(b.strides[1] // 4, K))
    if M == 1:  # one row: c[0] = b^T a[0], BLAS's matrix-vector product, as np.matmul calls it (a GEMM
        # with one row measured 2.5x slower on fc1's dL/dx); b as laid out (K, N), or b = w.T, w (N, K)
        rows, cols = (K, N) if tb == NO_TRANS else (N, K)
        _cblas_sgemv(ROW_MAJOR, TRANS if tb == NO_TRANS else NO_TRANS, rows, cols, np.float32(1.0), b.ctypes.data,
                     max(ldb, 1), a.ctypes.data, max(a.strides[1] // 4, 1), np.float32(0.0), c.ctypes.data,
                     max(c.strides[1] // 4, 1))
        return
    _cblas_sgemm(ROW_MAJOR, ta, tb, M, N, K, np.float32(1.0), a.ctypes.data, max(lda, 1), b.ctypes.data, max(ldb, 1),
                 np.float32(0.0), c.ctypes.data, max(c.strides[0] // 4, N))


def gemm_ready(*arrays):
    """Whether ``gemm`` takes these float32 matrices (or stacks of them, the last two axes): each with
    its rows or its columns contiguous."""
    return GEMM_IN_NUMBA and all(x.dtype == np.float32 and x.ndim >= 2 and (x.strides[-1] == 4 or x.strides[-2] == 4)
                                 and x.strides[-1] % 4 == 0 and x.strides[-2] % 4 == 0 for x in arrays)


def _omp_loads():
    """Whether Numba's OpenMP threading layer loads here, GNU OpenMP's spin set short first (its
    environment is read when the library loads: ``GOMP_SPINCOUNT`` = 10000, about 0.3 ms on this
    machine, against the default's 5 ms; put back after, so that no other library sees it)."""
    old = os.environ.get("GOMP_SPINCOUNT")
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    try:
        from numba.np.ufunc import omppool  # noqa: F401  (loads libgomp, which reads its environment)
        return True
    except ImportError:
        return False
    finally:
        if old is None:
            del os.environ["GOMP_SPINCOUNT"]


GEMM_IN_NUMBA = _register_sgemm()
if "NUMBA_THREADING_LAYER" not in os.environ:  # takes effect as long as no parallel kernel has run yet
    numba.config.THREADING_LAYER = "omp" if GEMM_IN_NUMBA and _omp_loads() else "workqueue"


# ------------------------------------------------------------------------------------ shared GEMMs

_lock = threading.Lock()
SHARE_FLOPS = 2e6  # a product smaller than this (2*M*K*N) stays one np.matmul: a thread hand-off costs more
FEW_ROWS = 64  # a @ w.T with 2 to this many rows of a is computed as (w @ a^T)^T (see matmul)


class _Held:
    """A process-wide setting, on while at least one caller is inside ``with held():`` (nested or
    from other threads: the first one in turns it on, the last one out turns it off). ``on()``
    returns what ``off(saved)`` needs to put things back."""

    def __init__(self, possible, on, off):
        self.possible, self.on, self.off = possible, on, off
        self.depth, self.saved = 0, None

    @contextlib.contextmanager
    def __call__(self):
        if not self.possible():
            yield False
            return
        with _lock:
            if self.depth == 0:
                self.saved = self.on()
            self.depth += 1
        try:
            yield True
        finally:
            with _lock:
                self.depth -= 1
                if self.depth == 0:
                    self.off(self.saved)


_sharing = _Held(lambda: GEMM_IN_NUMBA and numba.get_num_threads() > 1,
                 lambda: blas_threads(1), blas_threads)


def shared_gemms():
    """Inside: OpenBLAS at one thread, and ``matmul`` cuts each product into as many shares as Numba
    has threads, each share on its own thread (see the module docstring). Nested callers share one
    switch, so a whole pass (or a whole optimisation run) switches once: switching costs more than a
    layer's worth of time, because OpenBLAS's woken workers spin into whatever runs next. A context
    manager; yields whether it is sharing (False where OpenBLAS cannot be set, or with one thread).
    """
    return _sharing()


def sharing():
    """Whether the caller is inside ``shared_gemms()`` (OpenBLAS single-threaded, work shared here)."""
    return _sharing.depth > 0


_workspace = threading.local()


def scratch(name, size):
    """A float32 scratch buffer of ``size`` elements, kept between calls, one per calling thread: the
    per-thread schedules take one with a row per share (Winograd's blocks of tiles, im2col's blocks
    of rows), the inner-dimension shares one (M, N) part each.

    Fresh tens of megabytes per layer would be mapped in by the OS page by page on every call, a cost
    measured of the order of the convolution itself (docs/performance.md).
    """
    buf = getattr(_workspace, name, None)
    if buf is None or buf.size < size:
        buf = np.empty(size, dtype=np.float32)
        setattr(_workspace, name, buf)
    return buf[:size]


def matmul(a, b, out=None):
    """``np.matmul(a, b, out=out)`` for float32 a (M, K) @ b (K, N) -> (M, N), or stacks a (F, M, K) @
    b (F, K, N) -> (F, M, N); inside ``shared_gemms()`` computed in shares on minivgg's threads.

    The shares: a stack by its F products; a matrix by rows of a where a is the larger operand (an
    im2col matrix); else by b, the larger one (a dense layer's kernel, hundreds of MB for a few rows
    of a), so that each thread reads its own part of it, once: b transposed (``w.T``, dL/dx of a dense
    layer) by its columns, which are rows of the array in memory; b as laid out (``w``, the forward
    pass) by its rows, the inner dimension, each share's (M, N) product then added up (by columns
    instead, each thread would read every row of w, half of it at a time: 1.8-2.2x slower at 4096
    units and 8-64 rows). Each share is one BLAS call of the same kind np.matmul makes, so the result is
    np.matmul's up to rounding. Outside ``shared_gemms()``, for small products, or with one thread:
    one np.matmul.

    One product is turned around, shared or not: a @ w.T for a of 2 to ``FEW_ROWS`` rows (a dense
    layer's dL/dx for a small batch, dy @ w^T) is computed as (w @ a^T)^T, which OpenBLAS does faster:
    0.5-0.8x the time for VGG16's three dense layers at 2-64 rows, 1, 2 or shared threads (the same
    at one row, where OpenBLAS takes a matrix-vector product either way; slower from ~128 rows), see
    docs/performance.md.
    """
    if a.ndim == 2 and 2 <= a.shape[0] <= FEW_ROWS and b.flags.f_contiguous and not b.flags.c_contiguous:
        return _turned(a, b.T, out)  # b = w.T, w C-contiguous
    shares = numba.get_num_threads()
    if not sharing() or shares == 1 or 2.0 * a.size * b.shape[-1] < SHARE_FLOPS or not gemm_ready(a, b):
        return np.matmul(a, b, out=out)
    if out is None:
        out = np.empty(a.shape[:-1] + b.shape[-1:], dtype=np.float32)
    if not gemm_ready(out) or out.strides[-1] != 4:
        return np.matmul(a, b, out=out)
    if a.ndim == 3:  # by products: a[lo:hi] @ b[lo:hi]
        _product_shares(a, b, out, min(shares, a.shape[0]))
    elif a.shape[0] >= 4 * shares and a.size >= b.size:  # by rows of a: a[lo:hi] @ b
        _row_shares(a, b, out, shares)
    elif b.flags.c_contiguous:  # by rows of b, the inner dimension: sum over shares of a[:, lo:hi] @ b[lo:hi]
        _inner_shares(a, b, out, shares)
    else:  # by columns of b: a @ b[:, lo:hi], for b = w.T rows of w
        _column_shares(a, b, out, min(shares, b.shape[1]))
    return out


def _turned(a, w, out):
    """out = a @ w.T for a (M, K), w (N, K) C-contiguous, computed as (w @ a^T)^T: a (N, M) product,
    inside ``shared_gemms()`` by rows of w (each thread reading its own rows, contiguous), then
    turned back into out (M, N)."""
    aT = np.ascontiguousarray(a.T)  # (M, K) -> (K, M)
    outT = matmul(w, aT)  # (N, K) @ (K, M) -> (N, M): by rows of w, the larger operand
    if out is None:
        return np.ascontiguousarray(outT.T)  # (N, M) -> (M, N)
    out[...] = outT.T
    return out


def _inner_shares(a, b, out, shares):
    """out = a @ b for a (M, K) @ b (K, N), the inner dimension K cut into shares: share i computes
    a[:, Ki] @ b[Ki] (each thread reading its own rows of b, contiguous) into its own (M, N) part,
    the parts added up at the end."""
    shares = min(shares, a.shape[1])
    parts = scratch("inner parts", shares * out.size).reshape((shares,) + out.shape)  # (shares, M, N)
    _inner_parts(a, b, parts, shares)
    np.sum(parts, axis=0, out=out)


# The shares, each thread its own BLAS call (``gemm``); share i of ``shares`` takes items
# n*i//shares .. n*(i+1)//shares - 1 of the n it cuts.

@numba.njit(**PARALLEL)
def _product_shares(a, b, out, shares):
    # a (F, M, K) @ b (F, K, N) -> out (F, M, N), by products
    F = a.shape[0]
    for i in numba.prange(shares):
        for f in range(F * i // shares, F * (i + 1) // shares):
            gemm(a[f], b[f], out[f])


@numba.njit(**PARALLEL)
def _row_shares(a, b, out, shares):
    # a (M, K) @ b (K, N) -> out (M, N), by rows of a
    M = a.shape[0]
    for i in numba.prange(shares):
        lo, hi = M * i // shares, M * (i + 1) // shares
        gemm(a[lo:hi], b, out[lo:hi])


@numba.njit(**PARALLEL)
def _column_shares(a, b, out, shares):
    # a (M, K) @ b (K, N) -> out (M, N), by columns of b
    N = b.shape[1]
    for i in numba.prange(shares):
        lo, hi = N * i // shares, N * (i + 1) // shares
        gemm(a, b[:, lo:hi], out[:, lo:hi])


@numba.njit(**PARALLEL)
def _inner_parts(a, b, parts, shares):
    # a (M, K) @ b (K, N), by the inner dimension: parts[i] (M, N) = a[:, Ki] @ b[Ki]
    K = a.shape[1]
    for i in numba.prange(shares):
        lo, hi = K * i // shares, K * (i + 1) // shares
        gemm(a[:, lo:hi], b[lo:hi], parts[i])


# ------------------------------------------------------------------------------- freed memory kept

_libc = []  # [glibc], or [None]: looked up once
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4  # mallopt's parameters, from glibc's malloc.h
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: 32 MB


def _glibc():
    if not _libc:
        try:
            lib = ctypes.CDLL("libc.so.6")
            lib.mallopt  # glibc's, not in every C library
        except (OSError, AttributeError):
            lib = None
        _libc.append(lib)
    return _libc[0]


def _keep():
    _glibc().mallopt(M_MMAP_MAX, 0)  # large blocks from the heap too, not each from its own mmap
    _glibc().mallopt(M_TRIM_THRESHOLD, 2**31 - 1)  # and the heap's free top kept, not given back


def _give_back(_):
    # Where glibc's own rule ends up once large arrays have come and gone: blocks of 32 MB and more in
    # their own mmap, a free top of the heap beyond twice that given back. Its rule cannot be switched
    # back on (any mallopt of these stops it for good), and glibc's fixed defaults (128 KB) would give
    # back every freed layer output at once, so that the next pass faults all its pages in again
    # (measured: the batch-1 forward pass 1.15-1.5x slower, docs/performance.md).
    _glibc().mallopt(M_MMAP_MAX, 65536)  # glibc's default
    _glibc().mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
    _glibc().mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD_MAX)


_keeping = _Held(lambda: _glibc() is not None, _keep, _give_back)


def keep_freed_memory():
    """Inside: memory NumPy frees stays with the process for the next array, instead of going back
    to the OS (glibc's malloc; elsewhere nothing changes). A context manager, held by ``passes()``.

    Why: glibc gives every large block its own mmap and unmaps it when it is freed (and gives a
    freed top of its heap back), so the next array of that size is new memory again, and the OS
    faults it in page by page, zeroing each: one pass at 224x224 allocates about 60 MB of layer
    outputs an image, a feature-visualisation step at batch 16 about 1 GB of outputs and gradients
    (the time it saves: docs/performance.md). At the end the settings become those glibc's own
    rule reaches after a few large arrays (``_give_back``): a free top of the heap beyond 64 MB goes
    back to the OS at once, the freed blocks below it stay for the next pass, as glibc keeps them.
    Yields whether it took effect.
    """
    return _keeping()


@contextlib.contextmanager
def passes():
    """What a whole pass holds from start to end (``model(x)``, ``activations``, ``gradients``, a
    training step), or a run of many passes (an optimisation, SmoothGrad's batches): ``shared_gemms()``
    and ``keep_freed_memory()``, switched by the outermost holder only, so once for a whole run."""
    with shared_gemms(), keep_freed_memory():
        yield
