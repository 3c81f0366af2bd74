import os

import pytest
from hypothesis import HealthCheck, Phase, settings

import warmup  # tests/warmup.py: the kernels in the order the suite needs them

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

# A cold Numba cache (a fresh clone) costs about 95 s of compiling on this project's 2-core
# machine. A full run therefore compiles every kernel (kernels.warmup's work) in a second process
# that fills the on-disk cache (Numba writes each entry atomically) while the tests run. Every
# process of the run (the warm-up, the test processes, the ones tests start) compiles under a
# file lock per kernel (kernels/_jit.py, COMPILE_LOCKS): a test that needs a kernel
# another process is compiling compiles the next pending kernels meanwhile (_jit's
# compile_while_waiting), then loads it from the cache; the warm-up skips a kernel another
# process is compiling, so no kernel compiles twice. Under pytest-xdist (-n N, not installed by
# `make`: slower here, see the Makefile) the controller starts the warm-up before the workers.
# A bare `pytest` starts it before collecting (and splits the suite, below); runs of a few tests,
# and TINYGRAD_TF_TEST_WARMUP=0, skip it.
_warmup = None
_locks = None

# A bare `pytest` also splits the suite in two: once the warm-up process has compiled every
# kernel, it runs these files itself (a pytest of its own, niced like the compiles), so the
# second core keeps working while this process runs the rest; without the split it idled for
# the last ~45 s of a cold run. It runs tests/test_*.py and tests/nn/: with nn/ in this process
# instead, the warm-up process's tests ended ~14 s before this one's (7 Dec, helper suite5).
# Kept here: tests/models/, and the files that start `mpiexec` jobs (two ranks that busy-wait,
# one per core) or measure thread behaviour.
BESIDE_DIRECTORIES = (".", "nn")
MAIN_ONLY = {"test_distributed.py", "test_torch_distributed.py", "test_threads.py"}
_beside = None  # (the files the warm-up process runs, its output file) when split


def _beside_files():
    tests = os.path.dirname(os.path.abspath(__file__))
    return sorted(os.path.normpath(os.path.join(tests, directory, name))
                  for directory in BESIDE_DIRECTORIES
                  for name in os.listdir(os.path.join(tests, directory))
                  if name.startswith("test_") and name.endswith(".py") and name not in MAIN_ONLY)


# The warm-up process's pytest gets the options of a split run's command line too (-x, -v,
# --durations=N, -W, ...), except that a run with an option that makes pytest write a file the
# two processes would share (the failed tests' record in .pytest_cache for --lf, --ff, --sw; a
# report file; the temporary directory, which each pytest empties at its start) is not split:
# the whole suite runs in this process then, the warm-up process only compiling.
_SHARED_FILE_OPTIONS = {
    "--lf", "--last-failed", "--ff", "--failed-first", "--nf", "--new-first", "--sw",
    "--stepwise", "--sw-skip", "--stepwise-skip", "--cache-clear", "--lfnf",
    "--last-failed-no-failures", "--basetemp", "--junitxml", "--junit-xml", "--report-log",
    "--resultlog", "--result-log"}


def _writes_shared_files(options):
    return any(option.split("=")[0] in _SHARED_FILE_OPTIONS for option in options)


def _start_warmup(split=False, options=()):
    """Set COMPILE_LOCKS for this process and those it starts; start the warm-up process,
    which then runs _beside_files() with the command line's `options` when `split`."""
    global _warmup, _locks, _beside
    import subprocess
    import sys
    import tempfile
    from tinygrad_tf.kernels import _jit
    _locks = tempfile.mkdtemp(prefix="tgtf-compile-locks-")
    os.environ[_jit.COMPILE_LOCKS] = _locks
    args, out = [], subprocess.DEVNULL
    if split:
        _beside = (_beside_files(), os.path.join(_locks, "beside.log"))
        verbosity = [] if any(option.startswith(("-v", "--verbose", "-q", "--quiet"))
                              for option in options) else ["-q"]
        args = [*verbosity, "-p", "no:cacheprovider", *options, *_beside[0]]
        out = open(_beside[1], "w")
    _warmup = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__),
                                                             "warmup.py"), *args],
                               stdout=out, stderr=subprocess.STDOUT,
                               env={**os.environ, "TINYGRAD_TF_TEST_WARMUP": "0"})


def _role(config):
    """"controller" of an xdist run (it runs no test itself), "worker", or "serial"."""
    if hasattr(config, "workerinput"):
        return "worker"
    return "controller" if getattr(config.option, "numprocesses", None) else "serial"


def _wanted():
    return os.environ.get("TINYGRAD_TF_TEST_WARMUP") != "0"


def _whole_suite(config):
    """A bare `pytest` (the configured testpaths, no -k or -m): known before collection."""
    return (str(getattr(config, "args_source", "")).endswith("TESTPATHS")
            and not (config.option.keyword or config.option.markexpr or config.option.collectonly))


def pytest_configure(config):
    # The controller starts the warm-up at once: the workers it starts next inherit COMPILE_LOCKS.
    # So does a serial run of the whole suite: collecting it takes ~4 s the compiles can use.
    role = _role(config)
    if _wanted() and role == "controller":
        _start_warmup()
    elif _wanted() and role == "serial" and _whole_suite(config):
        options = list(config.invocation_params.args)
        _start_warmup(split=not _writes_shared_files(options), options=options)


def pytest_ignore_collect(collection_path, config):
    if _beside is not None and str(collection_path) in _beside[0]:
        return True  # the warm-up process collects and runs it: collected once, not twice
    return None


def pytest_collection_finish(session):
    from tinygrad_tf.kernels import _jit
    if _role(session.config) == "serial" and len(session.items) >= 200 and _wanted():
        if _warmup is None:
            _start_warmup()
        # The first tests need FIRST's kernels within seconds. Compiling them here too, from
        # the other end of the list, makes two compilers of that batch instead of one: each
        # skips what the other is compiling, and the two meet in the middle.
        for kernel, dtype in reversed(warmup.first()):
            kernel.compile(dtype, wait=False)
    if os.environ.get(_jit.COMPILE_LOCKS):  # a full run: wait for no compile with idle hands
        _jit.compile_while_waiting[:] = warmup.compile_order()


def pytest_sessionfinish(session, exitstatus):
    import shutil
    if _warmup is not None and _warmup.poll() is None:
        stopped = exitstatus == 1 and session.config.option.maxfail  # -x: stop them too
        if _beside is not None and exitstatus in (0, 1) and not stopped:  # wait for its tests
            _warmup.wait()
        else:
            _warmup.terminate()
            _warmup.wait()
    if _beside is not None:
        with open(_beside[1]) as log:
            session.config._beside_output = log.read()
        if _warmup.returncode != 0 and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if _locks is not None:
        shutil.rmtree(_locks, ignore_errors=True)


def pytest_terminal_summary(terminalreporter, config):
    output = getattr(config, "_beside_output", None)
    if output is not None:
        terminalreporter.section("tests/test_*.py (but the MPI and thread files) and tests/nn/, "
                                 "run by the warm-up process (tests/conftest.py)")
        terminalreporter.write(output)
        if _warmup.returncode != 0:
            terminalreporter.write_line(f"the warm-up process's tests failed (exit status "
                                        f"{_warmup.returncode}): so does this run", red=True)
