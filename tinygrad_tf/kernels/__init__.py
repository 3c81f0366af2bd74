"""The kernel layer: the engine's hot loops behind one small interface.

Each family module (matmul, softmax, norm, elementwise) holds plain-numpy functions and
Numba kernels with the same signatures and semantics; the registry below names each pair once
(`matmul = register("matmul", numpy_twin, numba_version, ...)`). The engine and nn call
`kernels.matmul(a, b)`, ..., and `use(name)` switches every kernel at once. Three sets:

- "numpy": the reference twins (numpy, OpenBLAS for matmul).
- "numba": every op on its Numba kernel (float32/float64; other dtypes fall back to numpy).
- "auto" (the default): per op and shape class, whichever measured faster in bench/kernels.py:
  Numba for softmax/log-softmax, layer norm and the fused elementwise kernels, OpenBLAS for
  matmul, except batched small products in the attention scores' layout (matmul_auto_path).

Pick one with `use(...)` (also a context manager) or the TINYGRAD_TF_KERNELS environment variable.
Importing compiles nothing: each Numba kernel compiles (or loads from Numba's disk cache) on its
first call for a dtype; `warmup()` does that up front and reports the timings.

Importing changes nothing process-wide (no environment variable, thread count or allocator
setting). `tune_process()` opts in to the settings measured fastest here; the `tinygrad-tf`
command calls it for its own process; TINYGRAD_TF_TUNE=1 in the environment applies it at import.
"""
import contextlib
import math
import os
import time

import numba
import numpy as np

from .. import plugins as _plugins
from . import attention as _attention
from . import elementwise as _elementwise
from . import loss as _loss
from . import norm as _layer_norm
from . import optim as _optim
from . import recurrent as _recurrent
from . import matmul as _matmul
from . import softmax as _softmax
from . import _jit, threads
from ._malloc import keep_freed_memory

# Batched float32 products of small matrices whose right operand is a transposed view (q @ k^T,
# the attention scores' layout) go to Numba's batched kernel under "auto" when it has both
# cores. numpy runs such a batch as one OpenBLAS call per item on one core. On the 2-core EPYC
# (Zen 4; bench/batched_matmul.py, bench/RESULTS.md) the kernel on one core was 0.6-1.1x numpy
# from 16 x 16 to 64 x 64 (K 32-64) and 1.2-1.9x at 128 x 128 (thread CPU time, noisy); on
# two it was 1.76x numpy on (128, 32, 32) in an interleaved run and slower than numpy (0.79x) in
# a sitting where another process held the second core: hence the two-thread condition.
# Smaller matrices (a panel mostly padding), a contiguous right operand (numpy's fast case) and
# K < 16 stay on OpenBLAS.
# Waking a sleeping OpenMP thread costs this VM ~60-80 us per parallel call (7 Dec, heavy lock:
# the kernel alone 81 us with spinning threads, 154 us with OMP_WAIT_POLICY=PASSIVE, which
# tune_process sets). With sleeping threads only 64 x 64 matrices still won (1.26x numpy;
# (128, 32, 32) 0.86x, (512, 16, 64) 0.81x, (8, 128, 64) 0.95x), so then the rule keeps to them.
AUTO_NUMBA_MIN_SIDE = 16
AUTO_NUMBA_MAX_MATRIX = 128 * 128
AUTO_NUMBA_MIN_K, AUTO_NUMBA_MAX_K = 16, 256
AUTO_SLEEPING_SIDE = 64


def _numba_threads():
    # a function: the tests stand in a count. 1 where our kernels stay on the calling thread
    return numba.get_num_threads() if _jit.parallel_ok() else 1


def _threads_sleep():
    """Whether OpenMP's threads sleep as soon as a parallel call ends (libgomp reads these when
    Numba starts its pool): OMP_WAIT_POLICY=PASSIVE without a GOMP_SPINCOUNT of its own."""
    return (os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
            and os.environ.get("GOMP_SPINCOUNT", "0") == "0")


def matmul_auto_path(a, b):
    """Which matmul "auto" takes for these operands: "numba" or "numpy"."""
    if (a.ndim > 2 and b.ndim > 2 and a.dtype == b.dtype == np.float32
            and b.strides[-2] == b.itemsize and _numba_threads() > 1):
        rows, (inner, cols) = a.shape[-2], b.shape[-2:]
        batch = _matmul.batch_shape(a, b)
        if (math.prod(batch) > 1 and min(rows, cols) >= AUTO_NUMBA_MIN_SIDE
                and rows * cols <= AUTO_NUMBA_MAX_MATRIX
                and AUTO_NUMBA_MIN_K <= inner <= AUTO_NUMBA_MAX_K
                and (not _threads_sleep() or rows == cols == AUTO_SLEEPING_SIDE)):
            return "numba"
    return "numpy"


def matmul_auto(a, b):
    """a @ b on the faster path for its shape class (see matmul_auto_path)."""
    threads.adapt()  # fewer threads while other processes hold cores (kernels/threads.py)
    if matmul_auto_path(a, b) == "numba":
        return _matmul.matmul_numba(a, b)
    if b.ndim == 2 and a.ndim > 2:  # a linear layer: one big 2-D GEMM, not one per batch item
        return _matmul.matmul_numpy(a.reshape(-1, a.shape[-1]), b).reshape(
            a.shape[:-1] + (b.shape[-1],))
    return _matmul.matmul_numpy(a, b)


# ---------------------------------------------------------------------------- the registry

class Kernel:
    """One entry of the kernel layer: a numpy twin and a Numba version of the same function.

    Calling the entry runs the version of the active set ("numpy", "numba", or "auto": the
    faster one per shape class). `compiled` lists the entry's LazyKernels, for warmup() and
    info(). Entries are made by `register` below, one per line, so "go to definition" on
    `kernels.<name>` lands on the line naming both versions."""

    __slots__ = ("name", "implementations", "compiled", "current")

    def __init__(self, name, numpy, numba, auto=None, compiled=()):
        self.name, self.compiled = name, tuple(compiled)
        self.implementations = {"numpy": numpy, "numba": numba, "auto": auto or numba}
        self.current = self.implementations[DEFAULT]

    def __call__(self, *args, **kwargs):
        profiler = _plugins.kernel_profiler
        if profiler is None:
            return self.current(*args, **kwargs)
        return profiler.kernel(self.name, self.current, args, kwargs)

    def __repr__(self):
        return f"<kernel {self.name}: {self.current.__module__}.{self.current.__name__}>"


DEFAULT = "auto"
SETS = ("numpy", "numba", "auto")
REGISTRY = {}  # name -> Kernel, in registration order


def register(name, numpy, numba, auto=None, compiled=()):
    """Add a kernel: `numpy` is the reference twin, `numba` the same function on Numba kernels
    (falling back to the twin for dtypes it does not cover), `auto` the per-shape choice
    (default: `numba`), `compiled` its LazyKernels. Returns the entry to bind to a name here."""
    if name in REGISTRY:
        raise ValueError(f"kernels.register: a kernel named {name!r} is already registered")
    REGISTRY[name] = kernel = Kernel(name, numpy, numba, auto, compiled)
    return kernel


# One line (or two) per kernel. A new family: a module beside these with the numpy twins, the
# Numba kernels (LazyKernel) and the wrappers, then its register(...) lines here.
matmul = register("matmul", _matmul.matmul_numpy, _matmul.matmul_numba, auto=matmul_auto,
                  compiled=[_matmul.gemm, _matmul.batched_gemm])
softmax = register("softmax", _softmax.softmax_numpy, _softmax.softmax_numba,
                   compiled=[_softmax.softmax_rows])
softmax_backward = register("softmax_backward", _softmax.softmax_backward_numpy,
                            _softmax.softmax_backward_numba,
                            compiled=[_softmax.softmax_backward_rows])
log_softmax = register("log_softmax", _softmax.log_softmax_numpy, _softmax.log_softmax_numba,
                       compiled=[_softmax.log_softmax_rows])
log_softmax_backward = register("log_softmax_backward", _softmax.log_softmax_backward_numpy,
                                _softmax.log_softmax_backward_numba,
                                compiled=[_softmax.log_softmax_backward_rows])
layer_norm = register("layer_norm", _layer_norm.layer_norm_forward_numpy,
                      _layer_norm.layer_norm_forward_numba,
                      compiled=[_layer_norm.layer_norm_rows])
layer_norm_backward = register("layer_norm_backward", _layer_norm.layer_norm_backward_numpy,
                               _layer_norm.layer_norm_backward_numba,
                               compiled=[_layer_norm.layer_norm_backward_rows])
erf = register("erf", _elementwise.erf_numpy, _elementwise.erf_numba,
               compiled=[_elementwise.erf_kernel])
bias_activation = register("bias_activation", _elementwise.bias_activation_forward_numpy,
                           _elementwise.bias_activation_forward_numba,
                           compiled=[_elementwise.bias_activation_rows])
bias_add = register("bias_add", _elementwise.bias_add_numpy, _elementwise.bias_add_numba,
                    compiled=[_elementwise.bias_activation_rows])
bias_activation_backward = register("bias_activation_backward",
                                    _elementwise.bias_activation_backward_numpy,
                                    _elementwise.bias_activation_backward_numba,
                                    compiled=[_elementwise.bias_activation_backward_rows])
embedding_position = register("embedding_position",
                              _elementwise.embedding_position_forward_numpy,
                              _elementwise.embedding_position_forward_numba,
                              compiled=[_elementwise.embedding_position_rows])
scatter_add_rows = register("scatter_add_rows", _elementwise.scatter_add_rows_numpy,
                            _elementwise.scatter_add_rows_numba,
                            compiled=[_elementwise.scatter_add_rows_kernel])
cross_entropy_rows = register("cross_entropy_rows", _loss.cross_entropy_rows_numpy,
                              _loss.cross_entropy_rows_numba,
                              compiled=[_loss.cross_entropy_rows_kernel])
cross_entropy_grad = register("cross_entropy_grad", _loss.cross_entropy_grad_numpy,
                              _loss.cross_entropy_grad_numba,
                              compiled=[_loss.cross_entropy_grad_rows])
# Scaled dot-product attention: the fused kernel for short sequences, OpenBLAS products with the
# Numba softmax kernels between them above FUSED_MAX_LENGTH (kernels/attention.py).
attention_forward = register("attention_forward", _attention.attention_forward_numpy,
                             _attention.attention_forward_fused,
                             auto=_attention.attention_forward_auto,
                             compiled=[_attention.attention_forward_blocks])
attention_backward = register("attention_backward", _attention.attention_backward_numpy,
                              _attention.attention_backward_fused,
                              auto=_attention.attention_backward_auto,
                              compiled=[_attention.attention_backward_blocks])

# The optimizers' fused updates over a whole arena segment, and clip_grad_norm_'s one pass.
sgd_step = register("sgd_step", _optim.sgd_step_numpy, _optim.sgd_step_numba,
                    compiled=[_optim.sgd_kernel])
adam_step = register("adam_step", _optim.adam_step_numpy, _optim.adam_step_numba,
                     compiled=[_optim.adam_kernel])
rmsprop_step = register("rmsprop_step", _optim.rmsprop_step_numpy, _optim.rmsprop_step_numba,
                        compiled=[_optim.rmsprop_kernel])
adagrad_step = register("adagrad_step", _optim.adagrad_step_numpy, _optim.adagrad_step_numba,
                        compiled=[_optim.adagrad_kernel])
sum_of_squares = register("sum_of_squares", _optim.sum_of_squares_numpy,
                          _optim.sum_of_squares_numba, compiled=[_optim.sum_of_squares_kernel])

# nn.RNN / LSTM / GRU: one layer's time loop in one direction, forward and backward. "auto"
# runs small layers in the one-call sequence kernel and bigger ones on the numpy twin (OpenBLAS
# and numpy's vectorised exp/tanh; kernels/recurrent.py, AUTO_SEQUENCE_MAX_MACS).
rnn_forward = register("rnn_forward", _recurrent.rnn_forward_numpy, _recurrent.rnn_forward_numba,
                       auto=_recurrent.rnn_forward_auto,
                       compiled=[_recurrent.sequence_forward_kernel])
rnn_backward = register("rnn_backward", _recurrent.rnn_backward_numpy,
                        _recurrent.rnn_backward_numba, auto=_recurrent.rnn_backward_auto,
                        compiled=[_recurrent.sequence_backward_kernel])

ACTIVATIONS = _elementwise.ACTIVATIONS  # what bias_activation accepts


def tune_process():
    """Opt in to this process's tuning for training (measured in docs/kernels.md); returns what
    it did. Call it early, before the first kernel runs:

    - OMP_WAIT_POLICY=PASSIVE in the environment, unless set: Numba's OpenMP threads then sleep
      instead of spinning after a parallel kernel and taking the cores from OpenBLAS's matmul
      that follows (a mixed step: 32 ms spinning, 9.6 ms passive). libgomp reads it when it
      loads, at Numba's first parallel call, so later calls cannot change it.
    - glibc keeps freed memory in the process (`_malloc.py`: the small step 15-17% faster);
      TINYGRAD_TF_MALLOC=system opts out.
    - OpenBLAS's idle workers sleep ~20 us after each GEMM instead of spinning ~0.1 s and taking
      the core from Numba's next parallel kernel (threads.quiet_blas_workers; small step at 2
      threads 57-64 -> 50-53 ms); an OPENBLAS_THREAD_TIMEOUT of your own is kept.
    - adaptive threads (`threads.py`), unless TINYGRAD_TF_ADAPT_THREADS=0; they never override
      thread counts you set yourself.
    - our kernels may use more than one thread. A process that is neither tuned nor started
      with OMP_WAIT_POLICY=PASSIVE runs them on the calling thread (`_jit.parallel_allowed`):
      there, spinning OpenMP and OpenBLAS workers made the small step 250 ms, not 99.
    """
    policy = os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _jit.parallel_allowed = True  # tuned, even with a policy of the user's own
    blas_timeout = threads.quiet_blas_workers()
    adapt = os.environ.get("TINYGRAD_TF_ADAPT_THREADS", "1") != "0"
    if adapt:
        threads.enable(True)
    return {"omp_wait_policy": policy, "blas_thread_timeout": blas_timeout,
            "malloc": keep_freed_memory(), "adaptive_threads": threads.state()}


def compiled_kernels():
    """Every LazyKernel of every registered kernel, each once."""
    return tuple(dict.fromkeys(k for entry in REGISTRY.values() for k in entry.compiled))


_active = None


def available():
    """The kernel sets this install can run."""
    return SETS


def active():
    """The name of the kernel set in use."""
    return _active


def _switch(name):
    global _active
    if name not in SETS:
        raise ValueError(f"kernels.use: unknown kernel set {name!r}; expected one of "
                         f"{', '.join(map(repr, SETS))}")
    for kernel in REGISTRY.values():
        kernel.current = kernel.implementations[name]
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
    for kernel in compiled_kernels():
        for dtype in dtypes:
            if np.dtype(dtype).name not in kernel.signatures:  # e.g. a float32-only kernel
                continue
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
        "malloc": keep_freed_memory(apply=False),
        "adaptive_threads": threads.state(),
        "available": available(),
        "numba_version": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "threading_layer": layer,
        "blas_threads": _blas_threads(),
        "slp_vectorize": {"numba_config": bool(numba.config.SLP_VECTORIZE),
                          "tinygrad_tf_kernels": True},
        "kernels": {name: k.current.__name__ for name, k in REGISTRY.items()},
        "compiled": {k.name: dict(k.report) for k in compiled_kernels()},
    }


_switch(os.environ.get("TINYGRAD_TF_KERNELS", DEFAULT))
if os.environ.get("TINYGRAD_TF_TUNE", "0") == "1":  # the user's opt-in, read once at import
    tune_process()
