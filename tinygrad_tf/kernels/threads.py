"""Threads that never hurt: run on fewer threads while other processes keep cores busy.

A parallel region (an OpenBLAS GEMM, a Numba prange) ends when its slowest thread does. When
another process holds a core, the thread the OS parks behind it finishes late and its siblings
wait: beside one busy Python process our 2-thread training step measured 1.7-2.7x our own
1-thread step (docs/kernels.md). So the thread count can follow the cores other processes leave
free: every CHECK_SECONDS (at most), `adapt()` reads the machine's busy time from /proc/stat,
subtracts this process's own CPU time (os.times), and sets Numba's and OpenBLAS's thread counts to
the free cores, rounded to the nearest whole core, between 1 and the configured maximum.

Off unless you opt in: `enable()` (or `kernels.tune_process()`, which the `tinygrad-tf` command
calls, or TINYGRAD_TF_TUNE=1 in the environment). Importing changes no thread count. Your own
choice always wins: with OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS or
NUMBA_NUM_THREADS set, or once you call `numba.set_num_threads` or set BLAS's count yourself
(threadpoolctl, ...), adapting stops and leaves your counts alone. The kernel layer calls `adapt()`
from its matmul (every linear layer), so a training loop adapts within a step or two of a
neighbour starting or stopping. On systems without /proc/stat it does nothing.
"""
import ctypes
import glob
import os
import time

import numba

CHECK_SECONDS = 0.5  # between /proc/stat reads: long enough to average, short enough to follow
FIRST_CHECK_SECONDS = 0.1  # the first decision, measured from enable(): short runs adapt too
# Set by the user, these fix the thread counts: adapting would override an explicit choice.
USER_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")

_enabled = False
_stopped = None  # why adapting stopped by itself (the user set the counts), or None
_last = None  # (monotonic time, machine busy seconds, own CPU seconds) of the previous check
_current = None  # the thread count adapt() last set
_expected = None  # (numba, blas) thread counts as we left them: anything else is the user's
_baseline = None  # (numba, blas) counts when enable() began adapting
_blas_set = None
_blas_get = None


def _machine_busy_seconds():
    """CPU seconds every core has spent busy since boot (user, nice, system, irq, softirq,
    steal: everything but idle and iowait), or None without /proc/stat."""
    try:
        with open("/proc/stat") as file:
            fields = file.readline().split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds():
    times = os.times()
    return times.user + times.system


def _openblas_libraries():
    """numpy's bundled OpenBLAS libraries, as ctypes libraries (usually one)."""
    import numpy
    libs = os.path.join(os.path.dirname(numpy.__file__), os.pardir, "numpy.libs")
    # Already loaded by numpy: dlopen returns the same library.
    return [ctypes.CDLL(path) for path in glob.glob(os.path.join(libs, "*openblas*"))]


def _openblas_library():
    """The OpenBLAS library whose thread pool can be restarted, or None."""
    for lib in _openblas_libraries():
        if hasattr(lib, "openblas_read_env") and hasattr(lib, "blas_thread_shutdown_"):
            return lib
    return None


# OpenBLAS's idle workers spin 2**28 cycles (~0.1 s) after each call before they sleep. A training
# step calls a GEMM every millisecond or so, so they never sleep and hold the second core while
# Numba's parallel kernels run between the GEMMs: Numba's second thread then waits its turn on
# that core. Small step, 2 threads, one process, alternating (bench/numba_threads_in_step.py):
# attention backward 6.2-9.7 ms with 2**28, 4.2-4.6 ms with 2**12-2**18; step 57-64 -> 50-53 ms
# (short 302-303 -> 280-300), CPU time -15%. 2**16 cycles (~20 us): a GEMM that follows at once
# (backward's pairs) still finds them awake; 2**4 (OpenBLAS's minimum) measured slower on short.
BLAS_THREAD_TIMEOUT = "16"
_blas_quieted = False  # quiet_blas_workers set the variable (so a second call is not "user")


def quiet_blas_workers():
    """Let OpenBLAS's idle workers sleep ~20 us after each call (see BLAS_THREAD_TIMEOUT): sets
    OPENBLAS_THREAD_TIMEOUT unless the user has, and restarts the pool, which reads it when it
    starts (at the next parallel GEMM). Call it before other threads use BLAS. Returns the
    timeout in effect ("user" when it was the user's), or None without a restartable OpenBLAS."""
    global _blas_quieted
    if _blas_quieted:
        return BLAS_THREAD_TIMEOUT
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return "user"  # OpenBLAS read it when it loaded: the user's setting is in effect
    lib = _openblas_library()
    if lib is None:
        return None
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = BLAS_THREAD_TIMEOUT
    lib.openblas_read_env()
    lib.blas_thread_shutdown_()
    _blas_quieted = True
    return BLAS_THREAD_TIMEOUT


def _find_blas_functions():
    """numpy's bundled OpenBLAS (set_num_threads, get_num_threads), or no-ops when not found."""
    for lib in _openblas_libraries():
        for prefix, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", ""),
                               ("openblas", "64_"), ("openblas", "")):
            setter = f"{prefix}_set_num_threads{suffix}"
            getter = f"{prefix}_get_num_threads{suffix}"
            if hasattr(lib, setter) and hasattr(lib, getter):
                return getattr(lib, setter), getattr(lib, getter)
    return (lambda threads: None), (lambda: None)


def _blas():
    global _blas_set, _blas_get
    if _blas_set is None or _blas_get is None:
        _blas_set, _blas_get = _find_blas_functions()
    return _blas_set, _blas_get


def _counts():
    """(Numba's count for this thread, BLAS's count or None when unknown)."""
    return numba.get_num_threads(), _blas()[1]()


def user_choice():
    """Why the thread counts are the user's to choose (a sentence), or None."""
    if _stopped is not None:
        return _stopped
    named = [name for name in USER_VARIABLES if name in os.environ]
    if named:
        return f"{', '.join(named)} set in the environment"
    if _expected is not None:
        numba_now, blas_now = _counts()
        if numba_now != _expected[0]:
            return f"numba.set_num_threads({numba_now}) called by the user"
        if blas_now is not None and _expected[1] is not None and blas_now != _expected[1]:
            return f"BLAS thread count set to {blas_now} by the user"
    return None


def max_threads():
    """The configured maximum: NUMBA_NUM_THREADS (the core count unless set)."""
    return numba.config.NUMBA_NUM_THREADS


# A change needs the free cores this far past the halfway mark between two counts: background
# noise that hovers around half a core (a quiet machine's daemons, a short-lived process) would
# otherwise flip the count every CHECK_SECONDS, and each drop costs a parallel step on a free core.
HYSTERESIS = 0.25


def threads_for(others_busy, cores=None, maximum=None, current=None):
    """The thread count for `others_busy` cores' worth of other processes' work: the free
    cores, rounded to nearest, clamped to [1, maximum]; with `current` (the count in effect)
    it changes only when the free cores are more than HYSTERESIS past the rounding point."""
    cores = os.cpu_count() if cores is None else cores
    maximum = max_threads() if maximum is None else maximum
    free = cores - others_busy
    wanted = max(1, min(maximum, int(free + 0.5)))
    if current is not None and wanted != current and abs(free - current) < 0.5 + HYSTERESIS:
        return current
    return wanted


def set_threads(threads):
    """Set Numba's (this thread's) and OpenBLAS's thread counts."""
    global _current, _expected
    blas_set, blas_get = _blas()
    numba.set_num_threads(threads)
    blas_set(threads)
    _current = threads
    _expected = (threads, blas_get())


def adapt():
    """Re-check the load (at most every CHECK_SECONDS) and set the thread counts; returns the
    count in effect (None before the first measurement, when disabled, or once the user has
    chosen the counts: see user_choice())."""
    global _last, _enabled, _stopped
    if not _enabled:
        return None
    now = time.monotonic()
    wait = CHECK_SECONDS if _current is not None else FIRST_CHECK_SECONDS
    if _last is not None and now - _last[0] < wait:
        return _current
    reason = user_choice()
    if reason is not None:  # the user's explicit choice wins, for good
        _enabled, _stopped = False, reason
        return None
    busy, own = _machine_busy_seconds(), _own_seconds()
    if busy is None:
        return None
    previous, _last = _last, (now, busy, own)
    if previous is None:
        return None
    elapsed = now - previous[0]
    others = max(0.0, (busy - previous[1]) - (own - previous[2])) / elapsed  # in cores
    threads = threads_for(others, current=_current)
    if threads != _current:
        set_threads(threads)
    return threads


def _sample():
    global _last
    busy = _machine_busy_seconds()
    _last = None if busy is None else (time.monotonic(), busy, _own_seconds())


def enable(on=True):
    """Switch adapting on (an opt-in) or off. Off gives back the counts in effect before
    adapting began, unless the user has set counts of their own since."""
    global _enabled, _stopped, _expected, _current, _baseline
    if on and not _enabled:
        _stopped, _current = None, None
        _expected = _baseline = _counts()
        if _baseline[0] != numba.config.NUMBA_NUM_THREADS:  # set before enabling: the user's
            _stopped = f"numba.set_num_threads({_baseline[0]}) called by the user"
    elif not on and _enabled and _current is not None and user_choice() is None:
        numba.set_num_threads(_baseline[0])
        if _baseline[1] is not None:
            _blas()[0](_baseline[1])
        _current = None
    _enabled = bool(on)
    _sample()


def current():
    """The thread count adapt() last set (None if it has not changed anything yet)."""
    return _current


def state():
    """For kernels.info(): on or off, the count set, and why adapting stopped if it did."""
    return {"enabled": _enabled, "current": _current, "user_choice": user_choice()}

