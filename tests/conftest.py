import os

from hypothesis import HealthCheck, Phase, settings

# The test process opts in to what `kernels.tune_process()` sets for its OpenMP threads (import
# itself sets nothing): with libgomp's default wait policy Numba's threads spin after every
# parallel kernel, and on a machine shared with other work the tiny copy model's training
# fixture (tests/models/test_recipe.py) took 126-156 s instead of about 20 s. libgomp reads the
# variable when it loads, at the first parallel kernel, so it is set here, before any test runs.
# Tests that check the defaults run fresh processes without it (tests/test_threads.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# `ci` is derandomized so a red build reproduces; `thorough` digs deeper on a developer's machine:
#   HYPOTHESIS_PROFILE=thorough make test
settings.register_profile("ci", derandomize=True, max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=300, deadline=None)
# `noshrink` is `ci` without shrinking, for iterating on a failure quickly (shrinking can take
# minutes on the machine the helpers share).
settings.register_profile("noshrink", parent=settings.get_profile("ci"),
                          phases=[Phase.explicit, Phase.reuse, Phase.generate])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# A cold Numba cache (a fresh clone) costs about 100 s of compiling on this project's 2-core
# machine, most of it in the first tests that touch each kernel. A full run therefore compiles
# every kernel (kernels.warmup's work) in a second process that fills the on-disk cache (Numba
# writes each entry atomically) while the tests run here. Every process of the run (the warm-up,
# this one, the ones tests start) compiles each (kernel, dtype) under a file lock
# (kernels/_jit.py, COMPILE_LOCKS): a test that needs a kernel the warm-up is compiling waits for
# it and loads it from the cache, and the warm-up skips a kernel another process is compiling,
# so no kernel compiles twice. Runs of a few tests, and TINYGRAD_TF_TEST_WARMUP=0, skip it.
_warmup = None
_locks = None


def pytest_collection_finish(session):
    global _warmup, _locks
    import subprocess
    import sys
    import tempfile
    if len(session.items) < 200 or os.environ.get("TINYGRAD_TF_TEST_WARMUP") == "0":
        return
    from tinygrad_tf.kernels import _jit
    _locks = tempfile.mkdtemp(prefix="tgtf-compile-locks-")
    os.environ[_jit.COMPILE_LOCKS] = _locks
    # float32 first (the models' tests), the Numba GEMM last ("auto" runs matmul on OpenBLAS).
    code = ("from tinygrad_tf import kernels\n"
            "for dtype in ('float32', 'float64'):\n"
            "    for kernel in sorted(kernels.compiled_kernels(),\n"
            "                         key=lambda kernel: kernel.name == '_gemm'):\n"
            "        if dtype in kernel.signatures:  # some kernels are float32 only\n"
            "            kernel.compile(dtype, wait=False)\n")
    _warmup = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)


def pytest_sessionfinish(session):
    import shutil
    if _warmup is not None and _warmup.poll() is None:
        _warmup.terminate()
        _warmup.wait()
    if _locks is not None:
        shutil.rmtree(_locks, ignore_errors=True)
