"""Lazy, cached Numba compilation for the kernel layer.

`import tinygrad_tf` must not compile anything, and each kernel must exist in as few type
specialisations as possible (a cold compile of a GEMM takes seconds). So a kernel is declared as
a plain Python function with the exact signatures it supports; `LazyKernel` compiles (or loads
from Numba's on-disk cache) those signatures on first call, then refuses any other type, so a
C-contiguous and a strided array share one compiled 'A'-layout version instead of making two.

LLVM's SLP vectorizer is off in Numba by default (`NUMBA_SLP_VECTORIZE=0`); without it the GEMM
micro-kernel stays scalar (about 10x slower). We switch it on only while our own kernels compile
and restore the user's setting afterwards, so other Numba code in the process is not affected.
"""
import contextlib
import os
import threading
import time

import numba
from numba.np.ufunc import parallel as _numba_parallel

_compile_lock = threading.RLock()  # reentrant: a compile that waits may compile another

# Below this much work (elements, or multiply-adds for matmul) a kernel runs single-threaded.
SERIAL_BELOW = 1 << 15
# The same for the memory-bound row kernels (layer norm, the fused elementwise kernels): on this
# 2-core machine one thread beat two up to 256k float32 elements (waking the pool costs more
# than half the pass) and two won from 512k on (layer norm 1024 x 512: 178 -> 146 us; 2048 x
# 1024: 1467 -> 752 us); docs/kernels.md has the table.
ROWS_SERIAL_BELOW = 1 << 19

# Whether a kernel may use more than one thread: decided at the first kernel call (before Numba
# loads libgomp, which reads OMP_WAIT_POLICY once), or by kernels.tune_process(). Untuned,
# Numba's OpenMP threads spin after each kernel and OpenBLAS's after each GEMM, each taking the
# core the other's next call needs: the small step at two threads took 250 ms, 99 ms with our
# kernels on the calling thread, 66 ms tuned (bench/RESULTS.md, 7 Dec, lead).
parallel_allowed = None


def parallel_ok():
    global parallel_allowed
    if parallel_allowed is None:
        parallel_allowed = os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
    return parallel_allowed


# Processes that share one Numba cache can name a directory here (the test suite does, for its
# warm-up process, itself and the processes its tests start): each kernel then compiles under a
# file lock in it, so a second process that needs the kernel meanwhile waits and loads the first
# one's cache entry instead of compiling it again (a cold compile takes seconds).
COMPILE_LOCKS = "TINYGRAD_TF_COMPILE_LOCKS"
# The lock is one per kernel, not per (kernel, dtype): every cache save rewrites the function's
# index file unlocked (read, add, write), so two processes compiling two dtypes of one kernel at
# once could lose an entry or point it at the other's code. (A lock per module, to cover the
# cached njit helpers that kernels share, chained attention's and matmul's compiles into ~45 s.)


# What a process that waits for another's compile does meanwhile: [(LazyKernel, dtype name)]
# to compile or load in this order, skipping those another process is compiling (the suite sets
# it to the order its tests need them, so a waiting test process does not leave its core idle).
compile_while_waiting = []


def _compile_another():
    """Compile (or load) the first pending entry of compile_while_waiting that no other process
    is compiling; False when there is none."""
    while compile_while_waiting:
        kernel, dtype_name = compile_while_waiting.pop(0)
        if dtype_name not in kernel.report and kernel.compile(dtype_name, wait=False):
            return True
    return False


@contextlib.contextmanager
def _held_across_processes(name, wait):
    """Hold the lock file `name` in COMPILE_LOCKS (when set); yields False when `wait` is off
    and another process holds it."""
    directory = os.environ.get(COMPILE_LOCKS)
    if not directory:
        yield True
        return
    import fcntl  # POSIX only, like the suite that sets the variable
    with open(os.path.join(directory, name + ".lock"), "a") as file:  # closing unlocks
        while True:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    yield False
                    return
                if not _compile_another():
                    fcntl.flock(file, fcntl.LOCK_EX)
                    break
        yield True


@contextlib.contextmanager
def slp_vectorize():
    """Compile with LLVM's SLP vectorizer on (it is read when each function is compiled)."""
    previous = numba.config.SLP_VECTORIZE
    numba.config.SLP_VECTORIZE = 1
    try:
        yield
    finally:
        numba.config.SLP_VECTORIZE = previous


# The float64 versions of the parallel kernels compile without Numba's parfors (parallel=False:
# each prange runs as a plain range on the calling thread). float64 is the dtype of gradcheck and
# of the tests' references; training runs float32. Lowering the parfors was most of each
# compile: the 23 float64 versions took 37.7 s to compile with them and 15.6 s without (7 Dec,
# bench/RESULTS.md, helper suite5), a fifth of a cold start of the test suite. docs/kernels.md
# has what float64 gives up at run time.
SERIAL_DTYPES = frozenset({"float64"})


class LazyKernel:
    """A Numba kernel compiled on first use, one fixed signature per dtype.

    `signatures` maps a dtype name ("float32", "float64") to a Numba signature string. Calling
    `kernel(x, ...)` compiles (or loads from cache) the signature for x's dtype the first time
    that dtype is seen, then runs it. `report` records what each compile did and how long it took.
    A `parallel=True` kernel is parallel in every dtype but SERIAL_DTYPES.
    """

    def __init__(self, py_func, signatures, serial_below=None, **options):
        self.name = py_func.__name__
        self._lock_name = f"{py_func.__module__}.{py_func.__name__}"
        self.signatures = signatures
        # Work below this runs on the calling thread (default SERIAL_BELOW, read at call time).
        self.serial_below = serial_below
        self.report = {}  # dtype name -> {"seconds": float, "source": "compiled" | "cache"}
        # One dispatcher per kind (parallel or not; nothing compiles yet). Both share the
        # function's cache index, whose entries are keyed by signature, so they never collide.
        parallel = options.pop("parallel", False)
        kinds = {name: parallel and name not in SERIAL_DTYPES for name in signatures}
        by_kind = {kind: numba.njit(cache=True, parallel=kind, **options)(py_func)
                   for kind in set(kinds.values())}
        self._dispatchers = {name: by_kind[kind] for name, kind in kinds.items()}
        self._parallel = kinds
        # dtype -> (dispatcher, parallel) once compiled or loaded: a dict lookup, not dtype.name
        # (~2 us)
        self._ready = {}

    def compile(self, dtype_name, wait=True):
        """Compile or load the `dtype_name` version now (once); returns its report entry, or
        None when `wait` is off and another process is compiling it (see COMPILE_LOCKS)."""
        if dtype_name not in self.report:
            with _compile_lock, _held_across_processes(self._lock_name, wait) as held:
                if not held:
                    return None
                if dtype_name not in self.report:
                    self.report[dtype_name] = self._compile(dtype_name)
        return self.report[dtype_name]

    def _compile(self, dtype_name):
        signature, dispatcher = self.signatures[dtype_name], self._dispatchers[dtype_name]
        hits_before = sum(dispatcher.stats.cache_hits.values())
        start = time.perf_counter()
        dispatcher.disable_compile(False)
        try:
            with slp_vectorize():
                dispatcher.compile(signature)
        finally:
            # From now on a call must match a compiled signature (a C-contiguous array is
            # accepted as 'A' layout): no silent extra specialisation per layout.
            dispatcher.disable_compile(True)
        loaded = sum(dispatcher.stats.cache_hits.values()) > hits_before
        return {"seconds": time.perf_counter() - start, "source": "cache" if loaded else "compiled"}

    def __call__(self, *args, work):
        """Run on args; `work` (elements or multiply-adds) below SERIAL_BELOW runs on the
        calling thread alone: waking the other threads would cost more than it saves. So does
        all work in a process that is not tuned (`parallel_allowed`)."""
        dtype = args[0].dtype
        ready = self._ready.get(dtype)
        if ready is None:
            self.compile(dtype.name)
            ready = self._ready[dtype] = (self._dispatchers[dtype.name],
                                          self._parallel[dtype.name])
        dispatcher, parallel = ready
        if not parallel or (work >= (SERIAL_BELOW if self.serial_below is None
                                     else self.serial_below) and parallel_ok()):
            return dispatcher(*args)
        get_threads, set_threads = _thread_count_functions()
        threads = get_threads()
        if threads == 1:
            return dispatcher(*args)
        set_threads(1)
        try:
            return dispatcher(*args)
        finally:
            set_threads(threads)


_thread_counts = None  # (get, set), found at the first serial call


def _thread_count_functions():
    """(get, set) of this thread's Numba thread count for the serial path. numba's public pair
    re-checks its threading layer under a lock on every call (~1 us each, three per serial
    kernel call: 5-8% of a small layer norm at two threads); once the layer is up
    (numba.get_num_threads() starts it), the C functions behind them do the same work without.
    The public pair if a numba version lacks them."""
    global _thread_counts
    if _thread_counts is None:
        numba.get_num_threads()
        get_threads = getattr(_numba_parallel, "_get_num_threads", None)
        set_threads = getattr(_numba_parallel, "_set_num_threads", None)
        _thread_counts = (get_threads, set_threads) if get_threads and set_threads \
            else (numba.get_num_threads, numba.set_num_threads)
    return _thread_counts
