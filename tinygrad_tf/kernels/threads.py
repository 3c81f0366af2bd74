"""Threads that never hurt: run on fewer threads while other processes keep cores busy.

A parallel region (an OpenBLAS GEMM, a Numba prange) ends when its slowest thread does. When
another process holds a core, the thread the OS parks behind it finishes late and its siblings
wait: beside one busy Python process our 2-thread training step measured 1.7-2.7x our own
1-thread step (docs/kernels.md). So the thread count follows the cores other processes leave
free: every CHECK_SECONDS (at most), `adapt()` reads the machine's busy time from /proc/stat,
subtracts this process's own CPU time (os.times), and sets Numba's and OpenBLAS's thread counts to
the free cores, rounded to the nearest whole core, between 1 and the configured maximum.

The kernel layer calls `adapt()` from its matmul (every linear layer), so a training loop adapts
within a step or two of a neighbour starting or stopping. Off with TINYGRAD_TF_ADAPT_THREADS=0
or `enable(False)`; on systems without /proc/stat it does nothing.
"""
import ctypes
import glob
import os
import time

import numba

CHECK_SECONDS = 0.5  # between /proc/stat reads: long enough to average, short enough to follow
FIRST_CHECK_SECONDS = 0.1  # the first decision, measured from import: short runs adapt too

_enabled = os.environ.get("TINYGRAD_TF_ADAPT_THREADS", "1") != "0"
_last = None  # (monotonic time, machine busy seconds, own CPU seconds) of the previous check
_current = None  # the thread count adapt() last set
_blas_set = None


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


def _find_blas_setter():
    """numpy's bundled OpenBLAS `set_num_threads`, or a no-op when it is not found."""
    import numpy
    libs = os.path.join(os.path.dirname(numpy.__file__), os.pardir, "numpy.libs")
    for path in glob.glob(os.path.join(libs, "*openblas*")):
        lib = ctypes.CDLL(path)  # already loaded by numpy: dlopen returns the same library
        for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                     "openblas_set_num_threads64_", "openblas_set_num_threads"):
            if hasattr(lib, name):
                return getattr(lib, name)
    return lambda threads: None


def max_threads():
    """The configured maximum: NUMBA_NUM_THREADS (the core count unless set)."""
    return numba.config.NUMBA_NUM_THREADS


def threads_for(others_busy, cores=None, maximum=None):
    """The thread count for `others_busy` cores' worth of other processes' work: the free
    cores, rounded to nearest, clamped to [1, maximum]."""
    cores = os.cpu_count() if cores is None else cores
    maximum = max_threads() if maximum is None else maximum
    return max(1, min(maximum, int(cores - others_busy + 0.5)))


def set_threads(threads):
    """Set Numba's (this thread's) and OpenBLAS's thread counts."""
    global _blas_set, _current
    if _blas_set is None:
        _blas_set = _find_blas_setter()
    numba.set_num_threads(threads)
    _blas_set(threads)
    _current = threads


def adapt():
    """Re-check the load (at most every CHECK_SECONDS) and set the thread counts; returns the
    count in effect (None before the first measurement or when disabled)."""
    global _last
    if not _enabled:
        return None
    now = time.monotonic()
    wait = CHECK_SECONDS if _current is not None else FIRST_CHECK_SECONDS
    if _last is not None and now - _last[0] < wait:
        return _current
    busy, own = _machine_busy_seconds(), _own_seconds()
    if busy is None:
        return None
    previous, _last = _last, (now, busy, own)
    if previous is None:
        return None
    elapsed = now - previous[0]
    others = max(0.0, (busy - previous[1]) - (own - previous[2])) / elapsed  # in cores
    threads = threads_for(others)
    if threads != _current:
        set_threads(threads)
    return threads


def _sample():
    global _last
    busy = _machine_busy_seconds()
    _last = None if busy is None else (time.monotonic(), busy, _own_seconds())


def enable(on=True):
    """Switch adapting on or off; off restores the configured maximum."""
    global _enabled, _last
    _enabled = bool(on)
    _sample()
    if not on and _current is not None:
        set_threads(max_threads())


def current():
    """The thread count adapt() last set (None if it has not changed anything yet)."""
    return _current


if _enabled:
    _sample()  # the first window starts at import, so the first matmuls already adapt
