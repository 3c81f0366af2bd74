"""The row kernels (layer norm, bias + activation, embedding, cross-entropy, erf): each Numba
kernel against its numpy twin, float32 and float64, odd sizes, masks and padding rows."""
import importlib

import numpy as np
import pytest
from hypothesis import given, strategies as st

# The family modules (kernels.layer_norm etc. are the switched functions, not the modules).
ln = importlib.import_module("tinygrad_tf.kernels.norm")
ew = importlib.import_module("tinygrad_tf.kernels.elementwise")
lo = importlib.import_module("tinygrad_tf.kernels.loss")

DTYPES = (np.float32, np.float64)
TOLERANCE = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


def assert_twins_agree(ours, reference, dtype, atol_scale=1):
    assert len(ours) == len(reference)
    for got, want in zip(ours, reference):
        if want is None:
            assert got is None
            continue
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=TOLERANCE[dtype]["rtol"],
                                   atol=TOLERANCE[dtype]["atol"] * atol_scale)


@given(st.sampled_from(DTYPES), st.integers(1, 40), st.integers(1, 70), st.integers(0, 2**32 - 1),
       st.sampled_from(["plain", "residual", "residual+dropout", "residual+bias",
                        "residual+bias+dropout"]))
def test_layer_norm_kernels_match_numpy(dtype, rows, width, seed, variant):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, width)) * 3 + rng.standard_normal((rows, 1))).astype(dtype)
    x[0] = 1.5  # a constant row: zero variance, normalises to 0 through eps
    weight, bias = (rng.standard_normal(width).astype(dtype) for _ in range(2))
    grad = rng.standard_normal((rows, width)).astype(dtype)
    extra = {}
    if variant != "plain":
        extra["residual"] = rng.standard_normal((rows, width)).astype(dtype)
    if variant.endswith("+dropout"):
        extra.update(mask=rng.random((rows, width)) > 0.3, scale=1 / 0.7)
    if "+bias" in variant:  # a linear layer's bias, folded in: h = x + dropout(s + c)
        extra["residual_bias"] = rng.standard_normal(width).astype(dtype)
    ours = ln.layer_norm_forward_numba(x, weight, bias, 1e-5, **extra)
    assert_twins_agree(ours, ln.layer_norm_forward_numpy(x, weight, bias, 1e-5, **extra), dtype)
    assert (ours[1] is x) == (variant == "plain")  # h is x itself without a residual
    saved = ours[1:]  # (h, mean, rstd): the kernel's, as the nn layer passes them on
    backward = dict(mask=extra.get("mask"), scale=extra.get("scale", 1.0),
                    residual="residual" in extra, residual_bias="residual_bias" in extra)
    ours = ln.layer_norm_backward_numba(grad, *saved, weight, **backward)
    assert_twins_agree(ours, ln.layer_norm_backward_numpy(grad, *saved, weight, **backward),
                       dtype, atol_scale=rows)
    # without dropout the residual's gradient is grad_x itself, as in the twin
    assert (ours[3] is ours[0]) == (variant in ("residual", "residual+bias"))
    assert all(g.base is None or g.base.shape[0] <= 3 for g in ours[1:3])  # no partials kept


@pytest.mark.parametrize("offset", [0.0, 1.0, 1e3])
def test_layer_norm_float32_stats_stay_accurate_when_the_mean_dominates(offset):
    # The kernel's row variance comes from the sum and the sum of squares in one pass, unless
    # the mean dominates it (mean^2 > 4 var), where that difference cancels: two passes then
    # (offset 1e3). Errors measured: rstd 1.0-1.3e-7 relative, as the two-pass kernel's.
    rng = np.random.default_rng(1)
    x = (offset + rng.standard_normal((64, 256)) * (1 + 10 * rng.random((64, 1))))
    x[:, 0] += 100 * rng.standard_normal(64)  # an outlier feature
    x = x.astype(np.float32)
    weight, bias = np.ones(256, np.float32), np.zeros(256, np.float32)
    out, _, mean, rstd = ln.layer_norm_forward_numba(x, weight, bias, 1e-5)
    exact = x.astype(np.float64)
    exact_rstd = 1 / np.sqrt(exact.var(axis=1) + 1e-5)
    np.testing.assert_allclose(rstd, exact_rstd, rtol=5e-7)
    np.testing.assert_allclose(mean, exact.mean(axis=1), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out, (exact - exact.mean(axis=1, keepdims=True))
                               * exact_rstd[:, None], rtol=0, atol=5e-6 * (1 + offset / 100))


@given(st.sampled_from(DTYPES), st.integers(1, 40), st.integers(1, 70), st.integers(0, 2**32 - 1))
def test_bias_add_kernel_matches_numpy_in_place(dtype, rows, width, seed):
    rng = np.random.default_rng(seed)
    out = rng.standard_normal((rows, width)).astype(dtype)
    bias = rng.standard_normal(width).astype(dtype)
    expected = ew.bias_add_numpy(out.copy(), bias)
    target = out.copy()
    assert ew.bias_add_numba(target, bias) is target  # written in place, not a new array
    assert_twins_agree([target], [expected], dtype)


@given(st.sampled_from(DTYPES), st.integers(1, 40), st.integers(1, 70), st.integers(0, 2**32 - 1),
       st.sampled_from(ew.ACTIVATIONS), st.booleans())
def test_bias_activation_kernels_match_numpy(dtype, rows, width, seed, activation, dropout):
    rng = np.random.default_rng(seed)
    pre, grad = (rng.standard_normal((rows, width)).astype(dtype) for _ in range(2))
    bias = rng.standard_normal(width).astype(dtype)
    mask, scale = (rng.random((rows, width)) > 0.4, 1 / 0.6) if dropout else (None, 1.0)
    reference = ew.bias_activation_forward_numpy(pre, bias, activation, mask, scale)
    ours = ew.bias_activation_forward_numba(pre.copy(), bias, activation, mask, scale)
    assert_twins_agree(ours, reference, dtype)
    assert_twins_agree(ew.bias_activation_backward_numba(grad, reference[1], activation, mask,
                                                         scale),
                       ew.bias_activation_backward_numpy(grad, reference[1], activation, mask,
                                                         scale), dtype, atol_scale=rows)


@given(st.sampled_from(DTYPES), st.integers(1, 9), st.integers(1, 5), st.integers(1, 6),
       st.integers(1, 5), st.booleans(), st.integers(0, 2**32 - 1))
def test_embedding_position_and_scatter_kernels_match_numpy(dtype, vocab, width, batch, length,
                                                           dropout, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, batch * length)
    weight = rng.standard_normal((vocab, width)).astype(dtype)
    table = rng.standard_normal((length, width)).astype(dtype)
    grad = rng.standard_normal((batch * length, width)).astype(dtype)
    mask, scale = (rng.random((batch * length, width)) > 0.5, 2.0) if dropout else (None, 1.0)
    assert_twins_agree([ew.embedding_position_forward_numba(weight, ids, table, 3.0, mask, scale)],
                       [ew.embedding_position_forward_numpy(weight, ids, table, 3.0, mask, scale)],
                       dtype)
    assert_twins_agree([ew.scatter_add_rows_numba(ids, grad, vocab, mask, scale)],
                       [ew.scatter_add_rows_numpy(ids, grad, vocab, mask, scale)], dtype,
                       atol_scale=batch * length)


def cross_entropy_logits(rng, dtype, rows, classes):
    z = (3 * rng.standard_normal((rows, classes))).astype(dtype)
    z[0] = -np.inf  # a row whose logits are all -inf: lse 0, p 0, never NaN
    if classes > 1:
        z[-1, 0] = -np.inf  # one masked class in an otherwise normal row
    return z


@given(st.sampled_from(DTYPES), st.integers(1, 30), st.sampled_from([1, 2, 7, 16, 33, 70]),
       st.booleans(), st.integers(0, 2**32 - 1))
def test_cross_entropy_rows_kernel_matches_numpy(dtype, rows, classes, weighted, seed):
    rng = np.random.default_rng(seed)
    z = cross_entropy_logits(rng, dtype, rows, classes)
    target = rng.integers(0, classes, rows)
    weight = (rng.uniform(0.5, 2, classes) if weighted else np.ones(classes)).astype(dtype)
    ours = lo.cross_entropy_rows_numba(z, target, weight)
    reference = lo.cross_entropy_rows_numpy(z, target, weight)
    assert ours[0][0] == 0 and not np.isnan(ours[1][0])  # the all -inf row
    # the row sums are reassociated in the kernel; the -inf entries must match exactly
    for got, want in zip(ours, reference):
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        finite = np.isfinite(want)
        assert_twins_agree([got[finite]], [want[finite]], dtype, atol_scale=classes)


@given(st.sampled_from(DTYPES), st.integers(1, 30), st.sampled_from([1, 2, 7, 16, 33, 70]),
       st.integers(0, 2**32 - 1))
def test_cross_entropy_grad_kernel_matches_numpy(dtype, rows, classes, seed):
    rng = np.random.default_rng(seed)
    z = cross_entropy_logits(rng, dtype, rows, classes)
    target = rng.integers(0, classes, rows)
    weight = rng.uniform(0.5, 2, classes).astype(dtype)
    lse = lo.cross_entropy_rows_numpy(z, target, weight)[0]
    keep = rng.uniform(size=rows) < 0.7
    keep[0] = False  # the all -inf row is an ignored (padding) row: comes out 0
    coef, off, picked = (rng.standard_normal(rows).astype(dtype) for _ in range(3))
    ours = lo.cross_entropy_grad_numba(z, lse, target, keep, coef, off, weight, picked)
    reference = lo.cross_entropy_grad_numpy(z, lse, target, keep, coef, off, weight, picked)
    assert np.isfinite(ours).all() and not ours[0].any()
    assert_twins_agree([ours], [reference], dtype)


def test_fused_kernels_fall_back_to_their_twins_for_other_dtypes():
    x = np.arange(12, dtype=np.float16).reshape(3, 4)
    out = ew.bias_activation_forward_numba(x.copy(), np.ones(4, np.float16), "relu")[0]
    np.testing.assert_array_equal(out, np.maximum(x + 1, 0))
    normed = ln.layer_norm_forward_numba(x, np.ones(4, np.float16), np.zeros(4, np.float16),
                                         1e-5)[0]
    assert normed.dtype == np.float16


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_erf_kernel_matches_its_twin(dtype):
    x = np.linspace(-4, 4, 37).astype(dtype).reshape(37, 1)[::2]  # strided
    ours, reference = ew.erf_numba(x), ew.erf_numpy(x)
    assert ours.dtype == dtype and ours.shape == x.shape
    np.testing.assert_allclose(ours, reference, rtol=1e-6 if dtype == np.float32 else 1e-15)


@pytest.mark.parametrize("activation", [None, *ew.ACTIVATIONS])
def test_bias_kernels_take_a_strided_bias(activation):
    # Regression (lead, 7 Dec): F.linear(x, w, b[::2]) raised numba's "No matching definition"
    # once FusedLinear added its bias through bias_add (461791b).
    pre = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    bias = np.arange(12, dtype=np.float32)[::2]
    if activation is None:
        ours, reference = ew.bias_add_numba(pre.copy(), bias), ew.bias_add_numpy(pre.copy(), bias)
        assert_twins_agree([ours], [reference], np.float32)
    else:
        assert_twins_agree(ew.bias_activation_forward_numba(pre.copy(), bias, activation),
                           ew.bias_activation_forward_numpy(pre.copy(), bias, activation),
                           np.float32)


def test_layer_norm_kernels_take_strided_arrays():
    # A direct call with strided weight, bias or input raised numba's "No matching definition".
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 12)).astype(np.float32)[:, ::2]
    weight = rng.standard_normal(12).astype(np.float32)[::2]
    args = (x, weight, weight[::-1], 1e-5)
    assert_twins_agree(ln.layer_norm_forward_numba(*args), ln.layer_norm_forward_numpy(*args),
                       np.float32)
    _, h, mean, rstd = ln.layer_norm_forward_numpy(*args)
    assert_twins_agree(ln.layer_norm_backward_numba(x, h, mean, rstd, weight),
                       ln.layer_norm_backward_numpy(x, h, mean, rstd, weight), np.float32)
