"""Keep freed memory in the process, so fresh arrays do not page-fault (glibc only).

glibc's malloc serves blocks above a threshold (128 KiB, adapting up to 32 MiB) with a fresh
mmap and unmaps them on free; each new array then touches fresh pages, one page fault per 4 KiB.
A training step allocates and frees hundreds of such arrays (activations, gradients,
temporaries), so it pays that again every step: a kernel that takes 70 us alone took 150-290 us
inside a step. Serving them from the heap and not trimming it made the small Transformer step
15-17% faster here (medians of 20 steps, two alternating rounds: 65.3 / 58.9 -> 54.8 / 50.4 ms
with dropout, 55.9 / 58.1 -> 45.8 / 48.7 ms without; tiny: within noise; bench/RESULTS.md).
The cost: memory freed by a step stays mapped to the process for the next one (the peak is
unchanged). Applied only on request (`kernels.tune_process()`, which the `tinygrad-tf` command
calls, or TINYGRAD_TF_TUNE=1), never by importing; TINYGRAD_TF_MALLOC=system then keeps glibc's
defaults.
"""
import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 << 20   # glibc's maximum: blocks up to 32 MiB come from the heap
TRIM_THRESHOLD = 256 << 20  # give memory back only when this much is free at the heap's top
TOP_PAD = 64 << 20          # grow the heap in 64 MiB steps: fewer brk calls, fewer faults

_settings = {"applied": False, "reason": "not tried"}


def keep_freed_memory(apply=True):
    """Apply the settings above once (glibc Linux); returns what happened, for kernels.info()
    (which only asks: apply=False)."""
    if _settings["reason"] != "not tried" or not apply:
        return dict(_settings)
    if os.environ.get("TINYGRAD_TF_MALLOC", "keep") == "system":
        _settings["reason"] = "TINYGRAD_TF_MALLOC=system"
        return dict(_settings)
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        _settings["reason"] = "no glibc mallopt on this platform"
        return dict(_settings)
    done = [mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD), mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            mallopt(M_TOP_PAD, TOP_PAD)]
    _settings.update(applied=all(done), reason="mallopt" if all(done) else f"mallopt {done}",
                     mmap_threshold=MMAP_THRESHOLD, trim_threshold=TRIM_THRESHOLD,
                     top_pad=TOP_PAD)
    return dict(_settings)
