"""The attention kernels (tinygrad_tf/kernels/attention.py: the fused Numba kernel and the mixed
version) against their numpy twin, forward and backward, with masks (padding, causal, fully
masked rows, single keys), additive masks and dropout, T = 1 and odd sizes; packed_attention and
F.scaled_dot_product_attention gradchecked in float64 through the fused kernel and the twin."""
import importlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinygrad_tf as tg
from tinygrad_tf import kernels
from tinygrad_tf import testing as tt
from tinygrad_tf.nn import functional as F
from tinygrad_tf.nn.attention import _split, packed_attention

ka = importlib.import_module("tinygrad_tf.kernels.attention")
SIDES = st.integers(1, 6)


@st.composite
def packed_problems(draw, dtype=np.float64):
    """(qkv or q, kv or None, mask (B, 1 or h, L, S) allowed-positions or None) with the heads
    as strided views of packed projections, plus random layouts of the mask."""
    batch, length, heads, features = draw(SIDES), draw(SIDES), draw(st.integers(1, 3)), draw(SIDES)
    cross = draw(st.booleans())
    source = draw(SIDES) if cross else length
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if cross:
        first = rng.standard_normal((batch, length, heads, features)).astype(dtype)
        second = rng.standard_normal((batch, source, 2, heads, features)).astype(dtype)
    else:
        first, second = rng.standard_normal((batch, length, 3, heads, features)).astype(dtype), None
    kind = draw(st.sampled_from(["none", "padding", "fully_masked", "single_key"]
                                + (["causal"] if length == source else [])))
    masked = draw(tt.attention_masks(batch, length, source, kind=kind))  # True = masked out
    mask = None if kind == "none" else ~masked[:, None]  # (B, 1, L, S), True = may attend
    return first, second, mask


@pytest.mark.parametrize("variant", ["fused", "mixed"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(deadline=None, max_examples=25)
@given(data=st.data())
def test_attention_kernels_match_numpy_twin(variant, dtype, data):
    first, second, mask = data.draw(packed_problems(dtype))
    q, k, v = _split(first, second)
    fill = None if mask is None else ~mask
    scores = (q.shape[0], q.shape[2], q.shape[1], k.shape[1])
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    additive = keep = None
    if data.draw(st.booleans()):  # a float mask, e.g. a learned (h, L, S) bias
        additive = rng.standard_normal((1,) + scores[1:]).astype(dtype)
    if data.draw(st.booleans()):  # dropout on the weights
        keep = rng.random(scores) < 0.7
    scale = 0.7
    forward = getattr(ka, f"attention_forward_{variant}")
    backward = getattr(ka, f"attention_backward_{variant}")
    out, weights = forward(q, k, v, fill, scale, additive, keep, 1 / 0.7)
    out_ref, weights_ref = ka.attention_forward_numpy(q, k, v, fill, scale, additive, keep,
                                                      1 / 0.7)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out, out_ref, **tol)
    np.testing.assert_allclose(weights, weights_ref, **tol)
    assert not np.isnan(out).any()
    grad = rng.standard_normal(out.shape).astype(dtype)
    grads = [[np.full_like(x, np.nan) for x in (q, k, v)] for _ in range(2)]
    backward(q, k, v, weights, grad, scale, *grads[0], keep, 1 / 0.7)
    ka.attention_backward_numpy(q, k, v, weights_ref, grad, scale, *grads[1], keep, 1 / 0.7)
    for ours, reference in zip(*grads):
        np.testing.assert_allclose(ours, reference, **tol)


def test_fully_masked_rows_give_zeros():
    q = k = v = np.ones((1, 2, 1, 3))
    fill = np.array([[True, True], [False, True]])[None, None]
    for forward in (ka.attention_forward_fused, ka.attention_forward_mixed,
                    ka.attention_forward_numpy):
        out, weights = forward(q, k, v, fill, 1.0)
        np.testing.assert_array_equal(out[0, 0], 0)
        np.testing.assert_array_equal(weights[0, 0, 0], 0)
        np.testing.assert_allclose(out[0, 1], 1)


@settings(deadline=None, max_examples=15)
@given(problem=packed_problems())
def test_gradcheck_packed_attention(problem):
    first, second, mask = problem
    for kernel_set in ("numba", "numpy"):  # numba: the fused kernel
        with kernels.use(kernel_set):
            inputs = [tg.Tensor(first, requires_grad=True)]
            if second is not None:
                inputs.append(tg.Tensor(second, requires_grad=True))
            assert tg.gradcheck(lambda *xs: packed_attention(*xs, mask=mask), *inputs)


@settings(deadline=None, max_examples=25)
@given(problem=packed_problems())
def test_packed_attention_matches_the_plain_path(problem):
    """The fast path computes exactly F.scaled_dot_product_attention on split heads."""
    first, second, mask = problem
    out = packed_attention(tg.Tensor(first), None if second is None else tg.Tensor(second),
                           mask=mask).array
    q, k, v = (tg.Tensor(np.ascontiguousarray(x.transpose(0, 2, 1, 3)))
               for x in _split(first, second))
    plain = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).array.transpose(0, 2, 1, 3)
    np.testing.assert_allclose(out, plain, rtol=1e-12, atol=1e-12)


def test_packed_attention_rejects_bad_input():
    qkv = tg.Tensor(np.zeros((2, 3, 3, 2, 4)))
    with pytest.raises(ValueError, match=r"packed_attention: expected qkv"):
        packed_attention(tg.Tensor(np.zeros((2, 3, 2, 4))))
    with pytest.raises(ValueError, match=r"kv must be \(B, S, 2, h, d_k\)"):
        packed_attention(tg.Tensor(np.zeros((2, 3, 2, 4))), qkv)
    with pytest.raises(TypeError, match="mask must be boolean"):
        packed_attention(qkv, mask=np.zeros((2, 1, 3, 3)))
    with pytest.raises(ValueError, match="does not broadcast"):
        packed_attention(qkv, mask=np.ones((2, 1, 3, 4), bool))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("length, source, features, v_features",
                         [(35, 37, 33, 31), (32, 32, 32, 32), (4, 65, 64, 1), (1, 1, 1, 1)])
@pytest.mark.parametrize("keys_only", [False, True])
def test_attention_kernels_across_panel_edges(dtype, length, source, features, v_features,
                                              keys_only):
    """Sizes around the 4 x 16 register tile: several 16-column panels, partial panels and
    partial 4-row tiles, each against the numpy twin; with a mask per (query, key), or a key
    padding mask broadcast over the queries (the kernel's one-bias-per-key route), one batch
    item with every key masked."""
    rng = np.random.default_rng(3)
    q = rng.standard_normal((2, length, 3, features)).astype(dtype)
    k = rng.standard_normal((2, source, 3, features)).astype(dtype)
    v = rng.standard_normal((2, source, 3, v_features)).astype(dtype)
    if keys_only:
        padding = rng.random((2, 1, 1, source)) < 0.3
        padding[1] = True
        fill = np.broadcast_to(padding, (2, 3, length, source))
    else:
        fill = rng.random((2, 1, length, source)) < 0.2
    out, weights = ka.attention_forward_fused(q, k, v, fill, 0.3)
    out_ref, weights_ref = ka.attention_forward_numpy(q, k, v, fill, 0.3)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(out, out_ref, **tol)
    np.testing.assert_allclose(weights, weights_ref, **tol)
    grad = rng.standard_normal(out.shape).astype(dtype)
    grads = [[np.full_like(x, np.nan) for x in (q, k, v)] for _ in range(2)]
    ka.attention_backward_fused(q, k, v, weights_ref, grad, 0.3, *grads[0])
    ka.attention_backward_numpy(q, k, v, weights_ref, grad, 0.3, *grads[1])
    for ours, reference in zip(*grads):
        np.testing.assert_allclose(ours, reference, **tol)


def test_fused_kernel_reads_any_layout():
    """Heads-first inputs seen through a transpose, a broadcast batch and a non-contiguous
    gradient buffer take the copying route of the kernel's wrapper: same numbers."""
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal((3, 2, 5, 7)).transpose(0, 2, 1, 3) for _ in range(3))
    k = np.broadcast_to(k[:1], k.shape)
    fill = np.triu(np.ones((5, 5), bool), 1)[None, None]
    out, weights = ka.attention_forward_fused(q, k, v, fill, 0.5)
    out_ref, weights_ref = ka.attention_forward_numpy(q, k, v, fill, 0.5)
    np.testing.assert_allclose(out, out_ref, rtol=1e-12, atol=1e-12)
    grad = rng.standard_normal(out.shape)
    grads = [[np.zeros((3, 2, 5, 7)).transpose(0, 2, 1, 3) for _ in range(3)] for _ in range(2)]
    ka.attention_backward_fused(q, k, v, weights, grad, 0.5, *grads[0])
    ka.attention_backward_numpy(q, k, v, weights_ref, grad, 0.5, *grads[1])
    for ours, reference in zip(*grads):
        np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel_set", ["numba", "numpy"])
@pytest.mark.parametrize("mask_kind", ["bool", "keys", "float", "causal", "none"])
def test_gradcheck_scaled_dot_product_attention_through_the_kernels(kernel_set, mask_kind):
    """F.scaled_dot_product_attention in float64 through the fused kernel ("numba") and the
    twin: odd sizes, a padding row (every key masked) and a learned float mask's gradient."""
    rng = np.random.default_rng(7)
    q, k, v = (tg.Tensor(rng.standard_normal(shape), requires_grad=True)
               for shape in ((2, 3, 5, 3), (2, 3, 4, 3), (2, 3, 4, 2)))
    mask, causal = None, False
    if mask_kind == "bool":
        allowed = rng.random((2, 1, 5, 4)) < 0.7
        allowed[0, 0, 1] = False  # a padding row: zeros, never NaN
        mask = tg.Tensor(allowed)
    elif mask_kind == "keys":  # a key padding mask (B, 1, 1, S); batch item 1 all padding
        allowed = rng.random((2, 1, 1, 4)) < 0.7
        allowed[1] = False
        mask = tg.Tensor(allowed)
    elif mask_kind == "float":
        mask = tg.Tensor(rng.standard_normal((3, 5, 4)), requires_grad=True)
    elif mask_kind == "causal":
        q = tg.Tensor(rng.standard_normal((2, 3, 4, 3)), requires_grad=True)
        causal = True
    inputs = (q, k, v) + ((mask,) if mask_kind == "float" else ())
    with kernels.use(kernel_set):
        assert tg.gradcheck(lambda q, k, v, *m: F.scaled_dot_product_attention(
            q, k, v, attn_mask=m[0] if m else mask, is_causal=causal), *inputs)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    assert not np.isnan(out.array).any()


def test_scaled_dot_product_attention_dropout_matches_the_composed_formula():
    """Same seed, same dropout mask: the fused path equals composed_attention with that mask."""
    from tinygrad_tf.nn.attention import composed_attention
    rng = np.random.default_rng(8)
    q, k, v = (tg.Tensor(rng.standard_normal((2, 3, 6, 4)), requires_grad=True)
               for _ in range(3))
    tg.manual_seed(3)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.3)
    tg.manual_seed(3)
    keep = F._keep_mask((2, 3, 6, 6), 0.3)
    expected, _ = composed_attention(q, k, v, 0.5, keep=keep, drop_scale=1 / 0.7)
    np.testing.assert_allclose(out.array, expected.array, rtol=1e-12, atol=1e-12)


def test_sdpa_blocks_are_writable_views_of_contiguous_inputs():
    """F.scaled_dot_product_attention hands the kernels its (..., T, E) inputs as (B', T, 1, E)
    blocks: views when no broadcasting is needed, and writable, since the kernels' signatures
    take writable arrays and would copy a read-only view (every call copied q, k, v and dO)."""
    from tinygrad_tf.nn.attention import _attention_blocks
    x = np.zeros((2, 3, 5, 4), np.float32)
    blocks = _attention_blocks(x, (2, 3))
    assert blocks.shape == (6, 5, 1, 4) and np.shares_memory(blocks, x)
    assert blocks.flags.writeable
    q5, _ = ka._slots(blocks)
    assert np.shares_memory(q5, x)  # no copy on the way into the kernel
    broadcast = _attention_blocks(np.zeros((1, 3, 5, 4)), (2, 3))  # batch broadcast: a copy
    assert broadcast.shape == (6, 5, 1, 4)


def test_key_padding_mask_reaches_the_kernel_as_one_row_per_key():
    """A mask the same for every query (B, 1, 1, S), broadcast over heads and queries, becomes a
    (B, 1, 1, S) float bias, not a full (B, 1, L, S) block built and read per call; a causal
    mask stays (1, 1, L, S). The kernel's answers on both routes: the panel-edge test above."""
    padding = np.zeros((3, 1, 1, 5), bool)
    padding[:, :, :, 3:] = True
    fill = np.broadcast_to(padding, (3, 2, 4, 5))
    bias = ka._row_mask((3, 2, 4, 5), np.float32, fill=fill)
    assert bias.shape == (3, 1, 1, 5)
    np.testing.assert_array_equal(bias[:, 0, 0], np.where(padding[:, 0, 0], -np.inf, 0))
    causal = np.triu(np.ones((4, 4), bool), 1)[None, None]
    assert ka._row_mask((3, 2, 4, 4), np.float32, fill=causal).shape == (1, 1, 4, 4)
