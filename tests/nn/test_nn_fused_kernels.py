"""nn.fused_kernels: each Numba kernel agrees with its numpy twin, in float32 and float64."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinygrad_tf import Tensor, kernels
from tinygrad_tf.nn import fused_kernels as K
from tinygrad_tf.nn import functional as F

TOLERANCE = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


@given(st.sampled_from([np.float32, np.float64]), st.integers(1, 40), st.integers(1, 70),
       st.integers(0, 2 ** 32 - 1))
def test_layer_norm_kernels_match_numpy(dtype, rows, width, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, width)) * 3 + rng.standard_normal((rows, 1))).astype(dtype)
    x[0] = 1.5  # a constant row: zero variance, normalises to 0 through eps
    weight, bias = (rng.standard_normal(width).astype(dtype) for _ in range(2))
    grad = rng.standard_normal((rows, width)).astype(dtype)
    for ours, reference in zip(K.layer_norm_forward_numba(x, weight, bias, 1e-5),
                               K.layer_norm_forward_numpy(x, weight, bias, 1e-5)):
        assert ours.dtype == dtype
        np.testing.assert_allclose(ours, reference, **TOLERANCE[dtype])
    _, normed, rstd = K.layer_norm_forward_numpy(x, weight, bias, 1e-5)
    for ours, reference in zip(K.layer_norm_backward_numba(grad, normed, rstd, weight),
                               K.layer_norm_backward_numpy(grad, normed, rstd, weight)):
        assert ours.dtype == dtype
        np.testing.assert_allclose(ours, reference, rtol=TOLERANCE[dtype]["rtol"],
                                   atol=TOLERANCE[dtype]["atol"] * rows)


@given(st.sampled_from([np.float32, np.float64]), st.integers(1, 9), st.integers(1, 5),
       hnp.arrays(np.int64, st.integers(0, 30), elements=st.integers(0, 8)))
def test_scatter_add_kernel_matches_numpy(dtype, num_rows, width, ids):
    ids = ids % num_rows
    grad = np.random.default_rng(0).standard_normal((len(ids), width)).astype(dtype)
    ours = K.scatter_add_rows_numba(ids, grad, num_rows)
    assert ours.dtype == dtype
    np.testing.assert_allclose(ours, K.scatter_add_rows_numpy(ids, grad, num_rows),
                               **TOLERANCE[dtype])


@given(st.sampled_from([np.float32, np.float64]), st.integers(1, 12), st.integers(1, 9),
       st.integers(0, 2 ** 32 - 1))
def test_cross_entropy_grad_kernel_matches_numpy(dtype, rows, classes, seed):
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=(rows, classes)).astype(dtype)
    p[0] = np.nan  # an ignored row of a fully -inf logit row: must come out 0, not nan
    target = rng.integers(0, classes, rows)
    keep = rng.uniform(size=rows) < 0.7
    keep[0] = False
    coef, off, picked = (rng.standard_normal(rows).astype(dtype) for _ in range(3))
    weight = rng.uniform(0.5, 2, classes).astype(dtype)
    ours = K.cross_entropy_grad_numba(p.copy(), target, keep, coef, off, weight, picked)
    reference = K.cross_entropy_grad_numpy(p.copy(), target, keep, coef, off, weight, picked)
    assert ours.dtype == dtype and np.isfinite(ours).all()
    np.testing.assert_allclose(ours, reference, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_ops_agree_under_numpy_and_the_default_kernels(dtype):
    rng = np.random.default_rng(1)
    x, w, table = (rng.standard_normal(s).astype(dtype) for s in [(4, 6), (6,), (6, 3)])
    ids = np.array([[1, 1, 5], [0, 1, 2]])
    upstream = rng.standard_normal((2, 3, 3)).astype(dtype)

    def run():
        leaves = [Tensor(a.copy(), requires_grad=True) for a in (x, w, table)]
        normed = F.layer_norm(leaves[0], 6, leaves[1], leaves[1] * 0.5)
        looked_up = F.embedding(ids, leaves[2])
        ((normed * normed).sum() + (looked_up * Tensor(upstream)).sum()).backward()
        return [normed.data] + [leaf.grad.data for leaf in leaves]
    with kernels.use("numpy"):
        reference = run()
    for ours, expected in zip(run(), reference):
        assert ours.dtype == dtype
        np.testing.assert_allclose(ours, expected, **TOLERANCE[dtype])
