"""The kernel layer: the matmul and softmax kernels against their numpy twins, the switch,
warmup/info, compile locks, and the engine's gradient checks under each kernel set. The row
kernels (layer norm, bias + activation, embedding, cross-entropy) are in test_kernels_rows.py."""
import importlib
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_tf as tg
from tinygrad_tf import kernels

# The family modules (kernels.matmul etc. are the switched functions, not the modules).
mm = importlib.import_module("tinygrad_tf.kernels.matmul")
sm = importlib.import_module("tinygrad_tf.kernels.softmax")
ln = importlib.import_module("tinygrad_tf.kernels.norm")
ew = importlib.import_module("tinygrad_tf.kernels.elementwise")

DTYPES = (np.float32, np.float64)
# Sizes around the 4 x 16 micro-tile (1, primes, multiples and non-multiples of 4 and 16).
EDGE_SIZES = st.sampled_from([1, 2, 3, 4, 5, 7, 13, 16, 17, 31, 32, 33, 64])


# ---------------------------------------------------------------------------- helpers

@st.composite
def laid_out(draw, values):
    """`values` as a C-order array, a transposed view of a copy, or a strided slice of a bigger
    array: the layouts attention and backward hand to the kernels."""
    layout = draw(st.sampled_from(["c", "transposed", "sliced"]))
    if layout == "transposed" and values.ndim >= 2:
        return np.ascontiguousarray(np.swapaxes(values, -1, -2)).swapaxes(-1, -2)
    if layout == "sliced" and values.ndim >= 1:
        big = np.zeros(values.shape[:-1] + (2 * values.shape[-1] + 1,), values.dtype)
        big[..., 1::2] = values
        return big[..., 1::2]
    return values


def random_array(draw, shape, dtype, scale=1.0):
    seed = draw(st.integers(0, 2**32 - 1))
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


# ---------------------------------------------------------------------------- matmul

@st.composite
def matmul_operands(draw):
    dtype = draw(st.sampled_from(DTYPES))
    m, k, n = draw(EDGE_SIZES), draw(EDGE_SIZES), draw(EDGE_SIZES)
    batch_a, batch_b = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3,
                                                              max_side=3)).input_shapes
    a_shape = batch_a + (m, k) if draw(st.integers(0, 5)) else (k,)  # sometimes 1-D
    b_shape = batch_b + (k, n) if draw(st.integers(0, 5)) else (k,)
    a = draw(laid_out(random_array(draw, a_shape, dtype)))
    b = draw(laid_out(random_array(draw, b_shape, dtype)))
    return a, b


def check_matmul(a, b):
    got = mm.matmul_numba(a, b)
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    assert got.shape == want.shape and got.dtype == np.result_type(a, b)
    # Rounding error of a length-K dot product is bounded by ~K eps (|a| @ |b|).
    k = a.shape[-1]
    bound = np.matmul(np.abs(a).astype(np.float64), np.abs(b).astype(np.float64))
    eps = np.finfo(got.dtype).eps
    assert np.all(np.abs(got - want) <= 2 * k * eps * bound + np.finfo(got.dtype).tiny)


@given(matmul_operands())
def test_matmul_numba_matches_numpy(operands):
    check_matmul(*operands)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape_a, shape_b", [
    ((1, 1), (1, 1)), ((97, 61), (61, 89)), ((1024, 128), (128, 100)),
    ((12, 33, 16), (12, 16, 33)), ((2, 3, 5, 7), (7, 11)), ((4, 1, 6, 5), (3, 5, 2)),
    ((5, 2, 3, 4, 6), (6, 7)), ((7,), (7,)), ((7,), (3, 7, 2))])
def test_matmul_numba_fixed_shapes(dtype, shape_a, shape_b):
    rng = np.random.default_rng(0)
    check_matmul(rng.standard_normal(shape_a).astype(dtype),
                 rng.standard_normal(shape_b).astype(dtype))


def test_matmul_numba_reads_attention_transposes():
    # q @ k^T with q, k from a head split: (B, T, h, d) -> permute -> (B, h, T, d) views.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 33, 4, 16)).astype(np.float32)
    q = x.transpose(0, 2, 1, 3)
    check_matmul(q, q.swapaxes(-1, -2))
    check_matmul(q.swapaxes(-1, -2), q)


def test_matmul_numba_falls_back_for_other_dtypes():
    a, b = np.arange(6).reshape(2, 3), np.arange(12).reshape(3, 4)
    np.testing.assert_array_equal(mm.matmul_numba(a, b), a @ b)
    mixed = mm.matmul_numba(a.astype(np.float32), b.astype(np.float64))
    assert mixed.dtype == np.float64
    assert mm.matmul_numba(np.ones((0, 3)), np.ones((3, 2))).shape == (0, 2)
    with pytest.raises(ValueError):
        mm.matmul_numba(np.ones((2, 3)), np.ones((4, 2)))


def test_matmul_numba_leaves_the_operands_writeable():
    # The batched kernel takes read-only views: the caller's arrays stay as they were.
    a = np.ones((4, 16, 16), np.float32)
    b = np.ones((4, 16, 16), np.float32)
    check_matmul(a, b.swapaxes(-1, -2))
    check_matmul(a, b[:1])  # a broadcast batch: the other path to the same views
    assert a.flags.writeable and b.flags.writeable


def test_matmul_auto_routes_by_shape_class(monkeypatch):
    calls = []
    monkeypatch.setattr(mm, "matmul_numba", lambda a, b: calls.append("numba") or a @ b)
    monkeypatch.setattr(mm, "matmul_numpy", lambda a, b: calls.append("numpy") or a @ b)
    monkeypatch.setattr(kernels, "_numba_threads", lambda: 2)
    monkeypatch.setattr(kernels, "_threads_sleep", lambda: False)
    f32 = np.float32
    keys = np.ones((8, 64, 32), f32)
    kernels.matmul_auto(np.ones((8, 64, 32), f32), keys.swapaxes(-1, -2))  # q @ k^T
    kernels.matmul_auto(np.ones((8, 64, 32), f32), np.ones((8, 32, 64), f32))  # contiguous
    kernels.matmul_auto(np.ones((8, 8, 32), f32), np.ones((8, 8, 32), f32).swapaxes(-1, -2))
    kernels.matmul_auto(np.ones((1024, 128), f32), np.ones((128, 512), f32))
    kernels.matmul_auto(np.ones((8, 64, 32)), np.ones((8, 64, 32)).swapaxes(-1, -2))  # f64
    assert calls == ["numba", "numpy", "numpy", "numpy", "numpy"]
    monkeypatch.setattr(kernels, "_numba_threads", lambda: 1)  # one core: numpy's per-item
    kernels.matmul_auto(np.ones((8, 64, 32), f32), keys.swapaxes(-1, -2))  # loop is as fast
    assert calls[-1] == "numpy"


def test_matmul_auto_with_sleeping_threads_keeps_to_64_by_64(monkeypatch):
    # Waking a sleeping thread per call costs more than the kernel saves below 64 x 64.
    monkeypatch.setattr(kernels, "_numba_threads", lambda: 2)
    monkeypatch.setattr(kernels, "_threads_sleep", lambda: True)
    f32 = np.float32
    square = lambda side: np.ones((8, side, 32), f32)  # noqa: E731
    assert kernels.matmul_auto_path(square(64), square(64).swapaxes(-1, -2)) == "numba"
    assert kernels.matmul_auto_path(square(32), square(32).swapaxes(-1, -2)) == "numpy"
    assert kernels.matmul_auto_path(square(128), square(128).swapaxes(-1, -2)) == "numpy"


@pytest.mark.parametrize("environment, sleep", [
    ({"OMP_WAIT_POLICY": "PASSIVE"}, True), ({"OMP_WAIT_POLICY": "passive"}, True),
    ({"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"}, False),
    ({"OMP_WAIT_POLICY": "ACTIVE"}, False), ({}, False)])
def test_threads_sleep_reads_the_openmp_wait_policy(monkeypatch, environment, sleep):
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert kernels._threads_sleep() is sleep


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape_a, shape_b, transpose_b", [
    ((128, 32, 32), (128, 32, 32), True), ((3, 1, 5), (3, 5, 1), False),
    ((2, 3, 17, 9), (3, 19, 9), True), ((4, 1, 6, 33), (1, 3, 33, 16), False),
    ((5, 13, 7), (7, 35), False)])
def test_batched_gemm_matches_numpy(dtype, shape_a, shape_b, transpose_b):
    # The per-item kernel, called directly and through matmul_numba: odd sizes (edge tiles, a
    # partial panel), broadcast batch dims (stride 0), a transposed right operand (a view).
    rng = np.random.default_rng(2)
    a = rng.standard_normal(shape_a).astype(dtype)
    b = rng.standard_normal(shape_b).astype(dtype)
    b = b.swapaxes(-1, -2) if transpose_b else b
    check_matmul(a, b)  # matmul_numba: the batched kernel for float32, the GEMM for float64
    if dtype != np.float32:
        return
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    (m, k), n = a.shape[-2:], b.shape[-1]
    count = math.prod(batch)
    out = np.empty((count, m, n), dtype)
    mm.batched_gemm(mm._as_3d(a, batch, m, k), mm._as_3d(b, batch, k, n), out, 3, work=0)
    np.testing.assert_allclose(out.reshape(batch + (m, n)), mm.matmul_numpy(a, b),
                               rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- softmax family

SOFTMAX_FAMILY = ["softmax", "log_softmax", "softmax_backward", "log_softmax_backward"]


@st.composite
def softmax_inputs(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = tuple(draw(st.lists(EDGE_SIZES, min_size=1, max_size=3)))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    scale = draw(st.sampled_from([1.0, 30.0, 1e4]))  # 1e4: logits far beyond exp's range
    x = random_array(draw, shape, dtype, scale)
    if draw(st.booleans()) and x.ndim >= 2:  # masked rows: some all -inf, some partly
        moved = np.moveaxis(x, axis, -1)
        moved[..., 0, :] = -np.inf
        moved[..., -1, : moved.shape[-1] // 2] = -np.inf
    grad = random_array(draw, shape, dtype)
    return draw(laid_out(x)), draw(laid_out(grad)), axis


def run_family(name, x, grad, axis, impl):
    fn = getattr(sm, f"{name}_{impl}")
    if name.endswith("_backward"):
        forward = getattr(sm, name.replace("_backward", "") + "_numpy")
        return fn(forward(x, axis), grad, axis)
    return fn(x, axis)


@pytest.mark.parametrize("name", SOFTMAX_FAMILY)
@given(inputs=softmax_inputs())
def test_softmax_family_numba_matches_numpy(name, inputs):
    x, grad, axis = inputs
    with np.errstate(invalid="ignore"):  # the twins compute -inf - -inf in masked rows
        want = run_family(name, x, grad, axis, "numpy")
        got = run_family(name, x, grad, axis, "numba")
    assert got.shape == want.shape and got.dtype == want.dtype
    assert not np.isnan(got).any(), f"{name}: NaN in the Numba result"
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    finite = np.isfinite(want)
    got, want = np.where(finite, got, 0), np.where(finite, want, 0)
    tol = 2e-5 if x.dtype == np.float32 else 1e-12
    # log-softmax of 1e4 logits reaches -2e4: compare relative to each row's magnitude.
    scale = np.maximum(1.0, np.abs(want).max(axis=axis, keepdims=True))
    assert np.all(np.abs(got - want) <= tol * scale), name


def test_softmax_masked_rows_give_zeros_and_log_softmax_minus_inf():
    x = np.full((3, 5), -np.inf, dtype=np.float32)
    x[1] = np.arange(5)
    y = sm.softmax_numba(x, -1)
    assert np.all(y[[0, 2]] == 0) and np.isclose(y[1].sum(), 1)
    ly = sm.log_softmax_numba(x, -1)
    assert np.all(np.isneginf(ly[[0, 2]])) and not np.isnan(ly).any()
    g = np.ones_like(x)
    assert np.all(sm.softmax_backward_numba(y, g, -1)[[0, 2]] == 0)
    np.testing.assert_array_equal(sm.log_softmax_backward_numba(ly, g, -1)[0], g[0])


def test_softmax_falls_back_for_other_dtypes():
    x = np.linspace(-3, 3, 12, dtype=np.float16).reshape(3, 4)
    np.testing.assert_array_equal(sm.softmax_numba(x, 0), sm.softmax_numpy(x, 0))
    assert sm.softmax_numba(np.ones((0, 4), np.float32), 1).shape == (0, 4)


# The float32 polynomial exp: measured max relative error 7.85e-8 over [-87, 0] (numpy's own
# float32 exp: 2.0e-7). The bound leaves little room, so a worse polynomial fails here.
EXP_MAX_RELATIVE_ERROR = 1.2e-7


def kernel_exp_float32(values):
    """exp(values) as the Numba log_softmax backward computes it: with grad = [0, -1] per row,
    grad - exp(y) * sum(grad) is exactly exp(y[:, 0])."""
    y = np.stack([values, np.zeros_like(values)], axis=1).astype(np.float32)
    grad = np.tile(np.array([0, -1], np.float32), (len(values), 1))
    return sm.log_softmax_backward_numba(y, grad, 1)[:, 0]


def test_fast_exp_relative_error_is_bounded():
    x = np.linspace(-87, 0, 2_000_001, dtype=np.float32)
    got = kernel_exp_float32(x).astype(np.float64)
    want = np.exp(x.astype(np.float64))
    assert np.max(np.abs(got - want) / want) <= EXP_MAX_RELATIVE_ERROR


def test_fast_exp_underflow_and_minus_inf_are_exact_zeros():
    got = kernel_exp_float32(np.array([-np.inf, -1e4, -88.0, -103.0], np.float32))
    assert np.all(got == 0)
    assert kernel_exp_float32(np.array([0.0], np.float32))[0] == 1


def kernel_exp_float64(values):
    """As kernel_exp_float32, through the float64 kernel (which uses `_exp_f64`)."""
    y = np.stack([values, np.zeros_like(values)], axis=1).astype(np.float64)
    grad = np.tile(np.array([0, -1], np.float64), (len(values), 1))
    return sm.log_softmax_backward_numba(y, grad, 1)[:, 0]


def test_fast_exp_float64_is_within_one_ulp():
    # Measured: at most 1 ulp from np.exp over every input the softmax sees down to where
    # 2^n stays normal; a shorter polynomial or a lost Cody-Waite split fails here.
    x = np.concatenate([np.linspace(-708.39, 0, 2_000_001), -np.geomspace(1e-300, 1, 200_001)])
    want = np.exp(x)
    assert np.max(np.abs(kernel_exp_float64(x) - want) / np.spacing(want)) <= 1


def test_fast_exp_float64_underflow_minus_inf_and_nan():
    got = kernel_exp_float64(np.array([-np.inf, -1e300, -800.0, -708.4, 0.0, -0.0, np.nan]))
    np.testing.assert_array_equal(got, [0, 0, 0, 0, 1, 1, np.nan])


# ---------------------------------------------------------------------------- the switch

def test_use_switches_and_restores():
    before = kernels.active()
    with kernels.use("numpy"):
        assert kernels.active() == "numpy" and kernels.matmul.current is mm.matmul_numpy
        assert all(k.current is k.implementations["numpy"] for k in kernels.REGISTRY.values())
        with kernels.use("numba"):
            assert kernels.softmax.current is sm.softmax_numba
        assert kernels.active() == "numpy"
    assert kernels.active() == before
    with pytest.raises(ValueError, match="unknown kernel set 'blas'"):
        kernels.use("blas")


def run_python(code, **env):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_environment_variable_picks_the_set_and_import_compiles_nothing():
    code = ("import tinygrad_tf.kernels as k\n"
            "print(k.active(), sum(len(d.signatures) for j in k.compiled_kernels()\n"
            "                      for d in j._dispatchers.values()))")
    assert run_python(code, TINYGRAD_TF_KERNELS="numpy") == "numpy 0"
    assert run_python(code, TINYGRAD_TF_KERNELS="numba") == "numba 0"


def test_warmup_and_info_report():
    report = kernels.warmup(dtypes=("float32",))
    assert report["total_seconds"] >= 0
    assert {"_gemm/float32", "_softmax_rows/float32"} <= set(report)
    assert all(entry["source"] in ("compiled", "cache", "already loaded")
               for key, entry in report.items() if key != "total_seconds")
    info = kernels.info()
    assert info["active"] == kernels.active() and info["numba_threads"] >= 1
    assert info["slp_vectorize"]["tinygrad_tf_kernels"] is True
    assert "float32" in info["compiled"]["_gemm"]
    assert "omp_wait_policy" in info and "enabled" in info["adaptive_threads"]


def test_small_calls_run_serially_and_restore_the_thread_count():
    import numba
    from tinygrad_tf.kernels import _jit
    threads = numba.get_num_threads()
    small = np.ones((4, 4), np.float32)  # work 64 < SERIAL_BELOW: run on the calling thread
    assert small.size * 4 < _jit.SERIAL_BELOW
    np.testing.assert_array_equal(mm.matmul_numba(small, small), small @ small)
    assert numba.get_num_threads() == threads


def test_slp_setting_is_restored_after_compiling():
    import numba
    assert kernels.warmup(dtypes=("float64",))
    assert numba.config.SLP_VECTORIZE == int(os.environ.get("NUMBA_SLP_VECTORIZE", 0))


# ---------------------------------------------------------------------------- gradchecks

@pytest.fixture(params=["numba", "numpy"])
def kernel_set(request):
    with kernels.use(request.param):
        yield request.param


def leaf(shape, seed, transpose=False):
    data = np.random.default_rng(seed).standard_normal(shape)
    if transpose:  # a non-contiguous leaf, as attention's k^T
        data = np.ascontiguousarray(data.swapaxes(-1, -2)).swapaxes(-1, -2)
    return tg.Tensor(data, requires_grad=True)


@pytest.mark.parametrize("shape_a, shape_b", [
    ((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (3, 4, 2)), ((4,), (4, 3)),
    ((2, 3, 4), (4,)), ((4,), (4,)), ((17, 5), (5, 19))])
def test_gradcheck_matmul(kernel_set, shape_a, shape_b):
    a = leaf(shape_a, 0, transpose=len(shape_a) > 1)
    b = leaf(shape_b, 1, transpose=len(shape_b) > 1)
    assert tg.gradcheck(lambda x, y: x @ y, a, b)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape, dim", [((5,), 0), ((3, 7), -1), ((3, 7), 0), ((2, 3, 17), 1)])
def test_gradcheck_softmax(kernel_set, op, shape, dim):
    x = leaf(shape, 2, transpose=len(shape) > 1)
    assert tg.gradcheck(lambda t: getattr(t, op)(dim), x)


def test_gradcheck_attention_block(kernel_set):
    q, k, v = leaf((2, 5, 4), 3), leaf((2, 6, 4), 4), leaf((2, 6, 3), 5)
    mask = np.zeros((2, 5, 6), dtype=bool)
    mask[:, :, 4:] = True
    assert tg.gradcheck(
        lambda q, k, v: (q @ k.transpose(-1, -2)).masked_fill(mask, -np.inf).softmax(-1) @ v,
        q, k, v)


def test_every_registered_kernel_has_twins_and_a_definition_site():
    assert set(kernels.REGISTRY) >= {"matmul", "softmax", "layer_norm", "bias_activation",
                                     "embedding_position", "scatter_add_rows",
                                     "cross_entropy_rows", "cross_entropy_grad"}
    for name, kernel in kernels.REGISTRY.items():
        assert getattr(kernels, name) is kernel  # `kernels.<name>` is the registered entry
        assert set(kernel.implementations) == set(kernels.SETS)
        assert kernel.compiled, f"{name} lists no Numba kernel for warmup()"
    assert set(kernels.compiled_kernels()) >= {ln.layer_norm_rows, ew.scatter_add_rows_kernel}
    with pytest.raises(ValueError, match="'matmul' is already registered"):
        kernels.register("matmul", mm.matmul_numpy, mm.matmul_numba)


def test_malloc_setting_is_applied_only_on_request_and_can_be_switched_off():
    code = ("import tinygrad_tf.kernels as k; before = k.info()['malloc']['applied']; "
            "print(before, k.tune_process()['malloc']['reason'])")
    before, reason = run_python(code).split(" ", 1)
    assert before == "False"  # importing changes no allocator setting
    assert reason == "mallopt" or reason.startswith(("no glibc", "TINYGRAD_TF_MALLOC"))
    assert run_python(code, TINYGRAD_TF_MALLOC="system") == "False TINYGRAD_TF_MALLOC=system"


# ---------------------------------------------------------------------------- compile locks

def _double(x, out):
    for i in range(x.size):
        out[i] = 2 * x[i]


def test_a_compile_waiting_for_another_process_compiles_pending_kernels_meanwhile(
        tmp_path, monkeypatch):
    import fcntl
    import threading
    import time
    from tinygrad_tf.kernels import _jit
    from tinygrad_tf.kernels import elementwise
    waiting = _jit.LazyKernel(_double, {"float64": "void(float64[::1], float64[::1])"})
    pending = _jit.LazyKernel(elementwise._erf_flat, elementwise.erf_kernel.signatures)
    monkeypatch.setenv(_jit.COMPILE_LOCKS, str(tmp_path))
    monkeypatch.setattr(_jit, "compile_while_waiting", [(pending, "float64")])
    # Another process compiling `waiting`: a second open file's lock blocks as another
    # process's would.
    with open(tmp_path / f"{waiting._lock_name}.lock", "a") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        assert waiting.compile("float64", wait=False) is None
        thread = threading.Thread(target=waiting.compile, args=("float64",))
        thread.start()
        for _ in range(600):  # the waiting compile takes the pending kernel meanwhile
            if "float64" in pending.report:
                break
            time.sleep(0.05)
        assert "float64" in pending.report and "float64" not in waiting.report
        assert thread.is_alive() and _jit.compile_while_waiting == []
    thread.join(60)  # closing `other` unlocked it: now it compiles its own
    assert not thread.is_alive() and "float64" in waiting.report
    x, out = np.arange(3.0), np.empty(3)
    waiting(x, out, work=3)
    np.testing.assert_array_equal(out, 2 * x)


def test_the_dtypes_of_one_kernel_share_a_compile_lock():
    # Numba rewrites a function's cache index on each save: two dtypes must not compile at once
    locks = [kernel._lock_name for kernel in kernels.compiled_kernels()]
    assert len(set(locks)) == len(locks)
    assert mm.gemm._lock_name == "tinygrad_tf.kernels.matmul._gemm"
