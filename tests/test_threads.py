"""kernels/threads.py: the thread count follows the cores other processes leave free, only when
asked, and never over the user's own choice; importing tinygrad_tf changes nothing process-wide."""
import json
import os
import subprocess
import sys

import numba
import pytest

from tinygrad_tf.kernels import threads


def test_threads_for_rounds_the_free_cores_and_clamps():
    assert threads.threads_for(0.0, cores=2, maximum=2) == 2
    assert threads.threads_for(0.4, cores=2, maximum=2) == 2  # light background load: keep both
    assert threads.threads_for(1.0, cores=2, maximum=2) == 1  # one busy neighbour
    assert threads.threads_for(2.0, cores=2, maximum=2) == 1  # never below one
    assert threads.threads_for(0.0, cores=8, maximum=3) == 3  # never above the maximum


def test_threads_for_keeps_the_count_under_noise_around_half_a_core():
    # On a quiet machine background noise near half a core must not flip 2 <-> 1 threads; a
    # real neighbour (a busy core) still takes one away, and a quiet machine gives it back.
    for noise in (0.55, 0.7):
        assert threads.threads_for(noise, cores=2, maximum=2, current=2) == 2
    assert threads.threads_for(0.8, cores=2, maximum=2, current=2) == 1
    assert threads.threads_for(0.3, cores=2, maximum=2, current=1) == 1
    assert threads.threads_for(0.2, cores=2, maximum=2, current=1) == 2


class FakeMachine:
    """/proc/stat and os.times as a script: each `advance` moves time and busy seconds."""

    def __init__(self):
        self.now = self.busy = self.own = 0.0

    def advance(self, seconds, others_cores, own_cores):
        self.now += seconds
        self.busy += seconds * (others_cores + own_cores)
        self.own += seconds * own_cores


@pytest.fixture
def machine(monkeypatch):
    fake = FakeMachine()
    monkeypatch.setattr(threads, "_machine_busy_seconds", lambda: fake.busy)
    monkeypatch.setattr(threads, "_own_seconds", lambda: fake.own)
    monkeypatch.setattr(threads.time, "monotonic", lambda: fake.now)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads, "max_threads", lambda: 2)
    calls = []
    monkeypatch.setattr(threads, "_blas_set", calls.append)
    monkeypatch.setattr(threads, "_blas_get", lambda: calls[-1] if calls else 2)
    for name in threads.USER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name in ("_current", "_expected", "_baseline", "_stopped"):
        monkeypatch.setattr(threads, name, None)
    monkeypatch.setattr(threads, "_enabled", False)
    threads.enable(True)
    yield fake, calls
    threads.enable(False)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def test_adapt_drops_to_one_thread_beside_a_busy_core_and_comes_back(machine):
    fake, blas_calls = machine
    fake.advance(0.2, others_cores=1.0, own_cores=1.0)
    assert threads.adapt() == 1
    assert blas_calls[-1] == 1
    fake.advance(0.1, others_cores=0.0, own_cores=1.0)
    assert threads.adapt() == 1  # within CHECK_SECONDS: no new reading
    fake.advance(0.6, others_cores=0.0, own_cores=1.0)
    assert threads.adapt() == 2
    assert blas_calls[-1] == 2


def test_own_threads_do_not_count_as_a_neighbour(machine):
    fake, _ = machine
    fake.advance(0.2, others_cores=0.1, own_cores=2.0)
    assert threads.adapt() == 2


def test_disabled_adapt_changes_nothing(machine):
    fake, blas_calls = machine
    threads.enable(False)
    fake.advance(1.0, others_cores=2.0, own_cores=0.0)
    assert threads.adapt() is None and blas_calls == []


def test_the_users_numba_thread_count_wins(machine):
    fake, blas_calls = machine
    numba.set_num_threads(1)  # the user's explicit choice
    fake.advance(0.2, others_cores=0.0, own_cores=1.0)  # an idle machine: adapting would say 2
    assert threads.adapt() is None
    assert numba.get_num_threads() == 1 and blas_calls == []
    assert "numba.set_num_threads(1)" in threads.state()["user_choice"]


def test_a_numba_thread_count_set_before_enabling_also_wins(machine):
    fake, blas_calls = machine
    threads.enable(False)
    numba.set_num_threads(1)
    threads.enable(True)
    fake.advance(0.2, others_cores=0.0, own_cores=1.0)
    assert threads.adapt() is None and numba.get_num_threads() == 1 and blas_calls == []


def test_the_users_blas_thread_count_wins_over_a_later_adaptation(machine):
    fake, blas_calls = machine
    fake.advance(0.2, others_cores=1.0, own_cores=1.0)
    assert threads.adapt() == 1
    blas_calls.append(2)  # the user sets BLAS's count (threadpoolctl, openblas_set_num_threads)
    fake.advance(0.6, others_cores=1.0, own_cores=1.0)
    assert threads.adapt() is None and blas_calls[-1] == 2
    assert "BLAS" in threads.state()["user_choice"]


def test_a_thread_count_in_the_environment_stops_adapting(machine, monkeypatch):
    fake, blas_calls = machine
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    fake.advance(0.2, others_cores=1.0, own_cores=1.0)
    assert threads.adapt() is None and blas_calls == []


# ---------------------------------------------------------------------------- a pure import

# Runs in a fresh interpreter: the environment, the thread counts and the allocator setting before
# and after `import tinygrad_tf` and a few matmuls. /proc/stat is made to report a fully busy
# machine, so an adaptive thread rule that were on would drop to one thread.
PURE_IMPORT = """
import json, os, time, numba, numpy as np
before = (dict(os.environ), numba.get_num_threads())
import tinygrad_tf as tg
from tinygrad_tf.kernels import threads
threads._machine_busy_seconds = lambda: time.monotonic() * 2 * (os.cpu_count() or 1)
x = tg.randn(64, 64)
for _ in range(3):
    (x @ x).sum().item()
    time.sleep(0.15)
after = (dict(os.environ), numba.get_num_threads())
print(json.dumps({"env_changed": sorted(set(before[0].items()) ^ set(after[0].items())),
                  "threads": [before[1], after[1]],
                  "malloc": tg.kernels.info()["malloc"]["applied"]}))
"""


def _fresh(code, **env):
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT", "TINYGRAD_TF_TUNE")
                   + threads.USER_VARIABLES}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**environment, **env}, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_and_a_matmul_change_no_environment_thread_count_or_allocator():
    # Regression (issue 18, defect 10): main's import set OMP_WAIT_POLICY=PASSIVE and called
    # mallopt, and its adaptive threads went down to 1 thread here.
    report = _fresh(PURE_IMPORT)
    assert report["env_changed"] == []
    assert report["threads"][0] == report["threads"][1]
    assert report["malloc"] is False


BLAS_SPIN = """
import json, os, time, numpy as np, tinygrad_tf as tg
done = tg.kernels.tune_process()
a = np.ones((512, 512), np.float32)
spun = 0.0
for _ in range(3):  # CPU time while asleep after a GEMM: OpenBLAS's idle workers spinning
    a @ a
    started = time.process_time()
    time.sleep(0.05)
    spun += time.process_time() - started
again = tg.kernels.tune_process()["blas_thread_timeout"]  # a second call reports the same
print(json.dumps([done["blas_thread_timeout"], os.environ.get("OPENBLAS_THREAD_TIMEOUT"), spun,
                  tg.kernels.threads.user_choice(), again]))
"""


def test_tune_process_lets_openblas_workers_sleep_right_after_each_call():
    # Regression (helper threads2): OpenBLAS's idle workers spun ~0.1 s after each GEMM (here
    # ~0.15 s of CPU in these three 50 ms sleeps), so in a training step they held the core
    # Numba's second thread needed for the parallel kernels between the GEMMs.
    timeout, variable, spun, _, again = _fresh(BLAS_SPIN, OPENBLAS_NUM_THREADS="2")
    if timeout is None:
        pytest.skip("numpy's OpenBLAS has no restartable thread pool")
    assert timeout == variable == again == threads.BLAS_THREAD_TIMEOUT
    assert spun < 0.03
    # The user's own timeout is kept; restarting the pool is not a thread count of the user's.
    assert _fresh(BLAS_SPIN, OPENBLAS_NUM_THREADS="2", OPENBLAS_THREAD_TIMEOUT="20")[:2] == [
        "user", "20"]
    assert _fresh(BLAS_SPIN)[3] is None


def test_tune_process_is_the_opt_in_and_the_cli_uses_it():
    code = ("import json, os, tinygrad_tf as tg\n"
            "done = tg.kernels.tune_process()\n"
            "print(json.dumps([os.environ.get('OMP_WAIT_POLICY'), done['adaptive_threads'],"
            " tg.kernels.info()['malloc']['reason']]))")
    policy, adaptive, malloc = _fresh(code)
    assert policy == "PASSIVE" and adaptive["enabled"] is True
    assert malloc == "mallopt" or malloc.startswith("no glibc")
    # An explicit value of the user's is kept; TINYGRAD_TF_TUNE=1 opts in at import.
    policy, _, _ = _fresh(code, OMP_WAIT_POLICY="ACTIVE")
    assert policy == "ACTIVE"
    code = "import json, os, tinygrad_tf\nprint(json.dumps(os.environ.get('OMP_WAIT_POLICY')))"
    assert _fresh(code, TINYGRAD_TF_TUNE="1") == "PASSIVE"
    code = ("import json, sys, os\nfrom tinygrad_tf.models import cli\n"
            "cli.main = lambda: 0\n"
            "try:\n    cli.command()\nexcept SystemExit:\n    pass\n"
            "print(json.dumps(os.environ.get('OMP_WAIT_POLICY')))")
    assert _fresh(code) == "PASSIVE"


PARALLEL = """
import json, sys, numpy as np, tinygrad_tf as tg
from tinygrad_tf.kernels import _jit
calls = []
_jit._thread_count_functions = lambda: (lambda: 2, calls.append)  # record the serial path
x = np.ones((1024, 1024), np.float32)  # above every serial threshold
if sys.argv[1:] == ["tune"]:
    tg.kernels.tune_process()
tg.kernels.layer_norm(x, np.ones(1024, np.float32), np.zeros(1024, np.float32), 1e-5)
print(json.dumps([_jit.parallel_ok(), calls]))
"""


def test_untuned_process_runs_the_kernels_on_the_calling_thread():
    # Regression (lead, 7 Dec): untuned, Numba's OpenMP threads spun after each kernel and
    # OpenBLAS's after each GEMM, each holding the core the other's next call needed (small step
    # at two threads 250 ms; 99 ms with our kernels on one thread; 66 ms tuned).
    run = lambda *args, **env: _fresh(PARALLEL.replace("sys.argv[1:]", repr(list(args))), **env)
    assert run() == [False, [1, 2]]  # set to one thread, then back
    assert run(OMP_WAIT_POLICY="PASSIVE") == [True, []]
    assert run("tune") == [True, []]
