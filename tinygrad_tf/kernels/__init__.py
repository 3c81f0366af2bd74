"""The kernel layer: the engine's hot loops behind one small interface.

Each family module holds a plain-numpy function and a Numba kernel with the same signature and
semantics. The engine calls the names in KERNEL_NAMES (`kernels.matmul(a, b)`, ...) through this
module at call time, so `use(name)` switches every op at once. Three sets:

- "numpy": the reference twins (numpy, OpenBLAS for matmul).
- "numba": every op on its Numba kernel (float32/float64; other dtypes fall back to numpy).
- "auto" (the default): per op and shape class, whichever measured faster in bench/kernels.py:
  Numba for softmax/log-softmax (forward and backward), OpenBLAS for matmul (batched small
  matrices could go to Numba: see AUTO_NUMBA_MAX_MATRIX).

Pick one with `use(...)` (also a context manager) or the TINYGRAD_TF_KERNELS environment variable.
Importing compiles nothing: each Numba kernel compiles (or loads from Numba's disk cache) on its
first call for a dtype; `warmup()` does that up front and reports the timings.
"""
import contextlib
import os
import time

# Numba's OpenMP thread pool spins after each parallel kernel by default, taking the cores from
# OpenBLAS's threads in the matmul that follows: a mixed training step measured 32 ms with
# spinning and 9.6 ms with OMP_WAIT_POLICY=PASSIVE (numpy alone: 14.8 ms, Numba alone: 13.5 ms;
# docs/kernels.md). libgomp reads this when it loads, at Numba's first parallel call, after this
# line; a value you set yourself is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from . import matmul as _matmul  # noqa: E402
from . import softmax as _softmax  # noqa: E402

KERNEL_NAMES = ("matmul", "softmax", "softmax_backward", "log_softmax", "log_softmax_backward")

# Batched float32 products with small matrices (output at most AUTO_NUMBA_MAX_MATRIX elements,
# inner dim at most AUTO_NUMBA_MAX_K) go to Numba under "auto". On this project's 2-core machine
# the cleanest bench/kernels.py runs had OpenBLAS ahead on every matmul shape (Numba 0.5-0.9x,
# docs/kernels.md), so the threshold is 0: "auto" uses OpenBLAS for all matmuls. Set it to e.g.
# 64 * 64 where the benchmark shows the batch-parallel Numba GEMM ahead (one noisy run here did).
AUTO_NUMBA_MAX_MATRIX = 0
AUTO_NUMBA_MAX_K = 64


def matmul_auto_path(a, b):
    """Which matmul "auto" takes for these operands: "numba" or "numpy"."""
    if b.ndim > 2 and a.dtype == b.dtype == np.float32:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        rows = a.shape[-2] if a.ndim > 1 else 1
        cols, inner = b.shape[-1], b.shape[-2]
        if (int(np.prod(batch)) > 1 and rows * cols <= AUTO_NUMBA_MAX_MATRIX
                and inner <= AUTO_NUMBA_MAX_K):
            return "numba"
    return "numpy"


def matmul_auto(a, b):
    """a @ b on the faster path for its shape class (see matmul_auto_path)."""
    if matmul_auto_path(a, b) == "numba":
        return _matmul.matmul_numba(a, b)
    if b.ndim == 2 and a.ndim > 2:  # a linear layer: one big 2-D GEMM, not one per batch item
        return _matmul.matmul_numpy(a.reshape(-1, a.shape[-1]), b).reshape(
            a.shape[:-1] + (b.shape[-1],))
    return _matmul.matmul_numpy(a, b)


_SOFTMAX_NUMBA = {
    "softmax": _softmax.softmax_numba,
    "softmax_backward": _softmax.softmax_backward_numba,
    "log_softmax": _softmax.log_softmax_numba,
    "log_softmax_backward": _softmax.log_softmax_backward_numba,
}

_IMPLEMENTATIONS = {
    "numpy": {
        "matmul": _matmul.matmul_numpy,
        "softmax": _softmax.softmax_numpy,
        "softmax_backward": _softmax.softmax_backward_numpy,
        "log_softmax": _softmax.log_softmax_numpy,
        "log_softmax_backward": _softmax.log_softmax_backward_numpy,
    },
    "numba": {"matmul": _matmul.matmul_numba, **_SOFTMAX_NUMBA},
    "auto": {"matmul": matmul_auto, **_SOFTMAX_NUMBA},
}
DEFAULT = "auto"

# Every compiled kernel, for warmup() and info().
_JIT_KERNELS = (_matmul.gemm, _softmax.softmax_rows, _softmax.log_softmax_rows,
                _softmax.softmax_backward_rows, _softmax.log_softmax_backward_rows)

_active = None


def available():
    """The kernel sets this install can run."""
    return tuple(_IMPLEMENTATIONS)


def active():
    """The name of the kernel set in use."""
    return _active


def _switch(name):
    global _active
    if name not in _IMPLEMENTATIONS:
        raise ValueError(f"kernels.use: unknown kernel set {name!r}; expected one of "
                         f"{', '.join(map(repr, _IMPLEMENTATIONS))}")
    globals().update(_IMPLEMENTATIONS[name])
    previous, _active = _active, name
    return previous


@contextlib.contextmanager
def _restoring(previous):
    try:
        yield
    finally:
        _switch(previous)


def use(name):
    """Make `name` the kernel set for every op. Also a context manager that switches back:

        with kernels.use("numpy"): ...
    """
    return _restoring(_switch(name))


def warmup(dtypes=("float32", "float64")):
    """Compile (or load from Numba's cache) every Numba kernel for `dtypes` now.

    Returns {"kernel/dtype": {"seconds": ..., "source": "compiled" | "cache" | "already loaded"}}
    plus a "total_seconds" entry."""
    start = time.perf_counter()
    report = {}
    for kernel in _JIT_KERNELS:
        for dtype in dtypes:
            done_before = dtype in kernel.report
            entry = dict(kernel.compile(np.dtype(dtype).name))
            if done_before:
                entry = {"seconds": 0.0, "source": "already loaded"}
            report[f"{kernel.name}/{np.dtype(dtype).name}"] = entry
    report["total_seconds"] = time.perf_counter() - start
    return report


def _blas_threads():
    # threadpoolctl is not a dependency; use it when installed, else report the env settings.
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        env = {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
               if k in os.environ}
        return {"source": "environment (install threadpoolctl for the live value)",
                "settings": env or "unset: OpenBLAS uses every core"}
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    return {"source": "threadpoolctl",
            "pools": [{k: p.get(k) for k in ("internal_api", "num_threads", "version",
                                               "architecture")} for p in pools]}


def info():
    """What runs where: the active set, thread counts, threading layer, SLP vectorizer state."""
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet in this process
        layer = f"not started yet (configured: {numba.config.THREADING_LAYER!r})"
    return {
        "active": _active,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "available": available(),
        "numba_version": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "threading_layer": layer,
        "blas_threads": _blas_threads(),
        "slp_vectorize": {"numba_config": bool(numba.config.SLP_VECTORIZE),
                          "tinygrad_tf_kernels": True},
        "compiled": {k.name: dict(k.report) for k in _JIT_KERNELS},
    }


# The optimizers' fused arena updates (kernels/optim.py): numpy twins under "numpy", Numba
# kernels under "numba" and "auto" (one parallel pass over a whole parameter group).
from . import optim as _optim  # noqa: E402

KERNEL_NAMES += _optim.KERNEL_NAMES
for _set_name, _table in _IMPLEMENTATIONS.items():
    _table.update(_optim.IMPLEMENTATIONS["numpy" if _set_name == "numpy" else "numba"])
_JIT_KERNELS += _optim.JIT_KERNELS

_switch(os.environ.get("TINYGRAD_TF_KERNELS", DEFAULT))
