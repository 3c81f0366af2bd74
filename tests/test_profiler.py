"""tinygrad_tf.profiler: what it records, that self times add up, and that it is off by default."""
import numpy as np
import pytest

from tinygrad_tf import Tensor, plugins, profiler
from tinygrad_tf.autograd import ArrayFunction
from tinygrad_tf.nn import functional as F


def small_step():
    x = Tensor(np.random.default_rng(0).standard_normal((8, 4)), requires_grad=True)
    w = Tensor(np.random.default_rng(1).standard_normal((3, 4)), requires_grad=True)
    loss = F.linear(x, w).relu().sum()
    loss.backward()
    with profiler.record("update"):
        w.array -= 0.1 * w.grad.array


def test_records_forward_backward_kernels_engine_and_regions():
    with profiler.profile() as prof:
        small_step()
        small_step()
    rows = {row.name: row for row in prof.key_averages()}
    assert rows["FusedLinear.forward"].count == 2 and rows["FusedLinear.forward"].kind == "forward"
    assert rows["FusedLinear.backward"].count == 2
    assert rows["Relu.forward"].count == 2 and rows["Sum.backward"].kind == "backward"
    # One matmul forward, two in the linear's backward, per step.
    assert rows["kernel:matmul"].count == 6 and rows["kernel:matmul"].kind == "kernel"
    assert rows["autograd.backward"].count == 2 and rows["autograd.backward"].kind == "engine"
    assert rows["update"].count == 2 and rows["update"].kind == "record"
    # Kernels are nested in the ops that call them: the linear's total includes its matmul.
    assert rows["FusedLinear.forward"].total >= rows["FusedLinear.forward"].self_time
    assert rows["autograd.backward"].total >= rows["FusedLinear.backward"].total
    for row in rows.values():
        assert row.self_time <= row.total + 1e-12
    assert sum(row.self_time for row in rows.values()) == pytest.approx(prof.wall, rel=1e-9)


def test_table_sorts_and_names_every_column():
    with profiler.profile() as prof:
        small_step()
    text = prof.table(sort_by="count", row_limit=3)
    header = text.splitlines()[0]
    for column in ("Name", "Self ms", "Self %", "Total ms", "Calls"):
        assert column in header
    counts = [int(line.split()[-2]) for line in text.splitlines()[2:5]]
    assert counts == sorted(counts, reverse=True)
    assert "more rows not shown" in text and "self time by kind" in text
    with pytest.raises(ValueError, match="sort_by must be one of"):
        prof.table(sort_by="speed")


def test_off_by_default_and_restored_after_the_block():
    assert plugins.profiler is None and plugins.kernel_profiler is None
    with profiler.profile():
        assert plugins.profiler is not None and plugins.kernel_profiler is not None
        with pytest.raises(RuntimeError, match="already active"):
            profiler.profile().__enter__()
    assert plugins.profiler is None and plugins.kernel_profiler is None
    with profiler.record("nothing"):  # no profile: a no-op
        pass


def test_results_are_unchanged_under_the_profiler():
    x = np.random.default_rng(2).standard_normal((5, 6))
    plain = Tensor(x).softmax(-1).array
    with profiler.profile():
        profiled = Tensor(x).softmax(-1).array
    np.testing.assert_array_equal(plain, profiled)


def test_an_error_inside_backward_leaves_no_event_open():
    class Broken(ArrayFunction):
        @staticmethod
        def forward(ctx, x):
            return x * 1.0

        @staticmethod
        def backward(ctx, grad):
            raise ValueError("broken backward")

    x = Tensor(np.ones(3), requires_grad=True)
    with profiler.profile() as prof:
        with pytest.raises(ValueError, match="broken backward"):
            Broken.apply(x).sum().backward()
    rows = {row.name: row for row in prof.key_averages()}
    assert rows["autograd.backward"].count == 1 and rows["Broken.backward"].count == 1
    assert plugins.profiler is None
