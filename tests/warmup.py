"""Compile the Numba kernels into their on-disk cache in the order the test suite first needs
them. tests/conftest.py runs this in a process beside the tests; `make`, when it falls back to
pip, runs it while pip installs the extras (numpy and numba are in by then; the kernels need
nothing else).
Each kernel compiles with wait=False: one that another process is compiling (COMPILE_LOCKS,
kernels/_jit.py) is skipped. Stopping it at any point is safe: Numba writes each cache entry
atomically. Plain Python, no pytest or hypothesis: it runs before they are installed."""
import os
import sys

# What the first tests (tests/models/test_decoding.py) run: a float64 Transformer's forward.
FIRST = ("embedding_position", "layer_norm", "attention_forward", "bias_activation",
         "log_softmax", "softmax")


def first():
    from tinygrad_tf import kernels
    return [(kernel, "float64") for name in FIRST if name in kernels.REGISTRY
            for kernel in kernels.REGISTRY[name].compiled]


def compile_order():
    """[(kernel, dtype)] in the order the suite first needs them: a float64 Transformer's
    forward, every kernel in float32 (the models' training, tests/models/test_recurrent.py), then
    in float64, the Numba GEMMs last ("auto" runs matmul on OpenBLAS)."""
    from tinygrad_tf import kernels
    gemms = set(kernels.REGISTRY["matmul"].compiled)
    order = first()
    for last in (False, True):
        for dtype in ("float32", "float64"):
            order += [(kernel, dtype) for kernel in kernels.compiled_kernels()
                      if (kernel in gemms) == last and dtype in kernel.signatures]
    return list(dict.fromkeys(order))


if __name__ == "__main__":
    # Niced: the compiles take the core the tests leave idle, and do not preempt the second
    # thread of a test's parallel kernel (each parallel call waits for its slowest thread).
    os.nice(10)
    skipped = [(kernel, dtype) for kernel, dtype in compile_order()
               if kernel.compile(dtype, wait=False) is None]
    for kernel, dtype in skipped:  # another process had the kernel's lock: wait, then load
        kernel.compile(dtype)     # (or compile the other dtype, which it may not need)
    if sys.argv[1:]:  # pytest arguments from tests/conftest.py: run those tests now
        os.execv(sys.executable, [sys.executable, "-m", "pytest", *sys.argv[1:]])
    sys.exit(0)
