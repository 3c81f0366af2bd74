"""kernels/threads.py: the thread count follows the cores other processes leave free."""
import numba
import pytest

from tinygrad_tf.kernels import threads


def test_threads_for_rounds_the_free_cores_and_clamps():
    assert threads.threads_for(0.0, cores=2, maximum=2) == 2
    assert threads.threads_for(0.4, cores=2, maximum=2) == 2  # light background load: keep both
    assert threads.threads_for(1.0, cores=2, maximum=2) == 1  # one busy neighbour
    assert threads.threads_for(2.0, cores=2, maximum=2) == 1  # never below one
    assert threads.threads_for(0.0, cores=8, maximum=3) == 3  # never above the maximum


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
    monkeypatch.setattr(threads, "_current", None)
    monkeypatch.setattr(threads, "_enabled", True)
    threads._sample()
    yield fake, calls
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
