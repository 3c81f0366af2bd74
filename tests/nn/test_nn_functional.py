"""nn.functional: values against float64 numpy references, gradcheck on Hypothesis shapes (the
losses: test_nn_losses.py)."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_tf as tg
from tinygrad_tf import Tensor, gradcheck
from tinygrad_tf import testing as tt
from tinygrad_tf.nn import functional as F

from functional_checks import check  # tests/nn/functional_checks.py

# ---------------------------------------------------------------------------- linear, activations

@given(st.data(), tt.shapes(max_dims=2, max_side=3), st.integers(1, 4), st.integers(1, 4),
       st.booleans())
def test_linear(data, batch, in_features, out_features, with_bias):
    x = data.draw(tt.tensors(shape=batch + (in_features,)))
    w = data.draw(tt.tensors(shape=(out_features, in_features)))
    b = data.draw(tt.tensors(shape=(out_features,))) if with_bias else None
    if with_bias:
        check(F.linear, lambda x, w, b: x @ w.T + b, x, w, b)
    else:
        check(F.linear, lambda x, w: x @ w.T, x, w)


def test_linear_errors_name_op_and_shapes():
    with pytest.raises(ValueError, match=r"linear: input of shape \(2, 3\).*in_features=4"):
        F.linear(Tensor(np.zeros((2, 3))), Tensor(np.zeros((5, 4))))
    with pytest.raises(TypeError, match="linear: dtypes differ"):
        F.linear(Tensor(np.zeros((2, 4), np.float32)), Tensor(np.zeros((5, 4))))


@given(tt.tensors(), st.sampled_from(["none", "tanh"]))
def test_gelu(x, approximate):
    def reference(x):
        if approximate == "tanh":
            return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
        return x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    check(lambda t: F.gelu(t, approximate=approximate), reference, x)


@given(tt.tensors(avoid=(0.0,)))
def test_relu(x):
    check(F.relu, lambda x: np.maximum(x, 0), x)


@given(tt.tensors(shape=tt.shapes(min_dims=1, max_dims=3, max_side=4)), st.data())
def test_softmax_and_log_softmax(x, data):
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1))

    def reference(x):
        e = np.exp(x - x.max(axis=dim, keepdims=True))
        return e / e.sum(axis=dim, keepdims=True)
    check(lambda t: F.softmax(t, dim), reference, x)
    check(lambda t: F.log_softmax(t, dim), lambda x: np.log(reference(x)), x)


# ---------------------------------------------------------------------------- dropout

@given(tt.tensors(), st.sampled_from([0.1, 0.5, 0.9]))
def test_dropout_gradcheck_with_a_fixed_mask(x, p):
    def fn(t):
        tg.manual_seed(7)  # the same mask on every call gradcheck makes
        return F.dropout(t, p)
    out = fn(x).array
    kept = out != 0
    np.testing.assert_allclose(out[kept], x.array[kept] / (1 - p), rtol=1e-12)
    assert gradcheck(fn, x)


def test_dropout_statistics_and_modes():
    tg.manual_seed(0)
    x = Tensor(np.ones((200, 500), dtype=np.float32), requires_grad=True)
    out = F.dropout(x, 0.3)
    assert out.dtype == np.float32
    kept = out.array != 0
    assert abs(kept.mean() - 0.7) < 0.005  # 100k draws: std of the fraction is 0.0015
    np.testing.assert_allclose(out.array[kept], 1 / 0.7, rtol=1e-6)
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.array, out.array)  # grad flows exactly where kept
    assert F.dropout(x, 0.3, training=False) is x
    assert F.dropout(x, 0.0) is x
    np.testing.assert_array_equal(F.dropout(x, 1.0).array, 0)
    with pytest.raises(ValueError, match=r"dropout: p must be a probability in \[0, 1\]"):
        F.dropout(x, 1.5)


def test_dropout_follows_manual_seed():
    x = Tensor(np.ones((50,)))
    tg.manual_seed(3)
    a = F.dropout(x, 0.5).array
    tg.manual_seed(3)
    np.testing.assert_array_equal(a, F.dropout(x, 0.5).array)


# ---------------------------------------------------------------------------- layer norm

@given(st.data(), tt.shapes(min_dims=1, max_dims=4, max_side=4), st.booleans(), st.booleans())
def test_layer_norm(data, shape, with_weight, with_bias):
    normalized_ndim = data.draw(st.integers(1, len(shape)))
    normalized_shape = shape[len(shape) - normalized_ndim:]
    # Rows of one distinct value have zero variance; keep them spread so the check is smooth.
    x = data.draw(tt.tensors(shape=shape, distinct=True, margin=0.05))
    w = data.draw(tt.tensors(shape=normalized_shape)) if with_weight else None
    b = data.draw(tt.tensors(shape=normalized_shape)) if with_bias else None
    axes = tuple(range(len(shape) - normalized_ndim, len(shape)))

    def reference(x, *affine):
        mean = x.mean(axis=axes, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
        out = (x - mean) / np.sqrt(var + 1e-5)
        if with_weight:
            out = out * affine[0]
        if with_bias:
            out = out + affine[-1]
        return out

    affine = [t for t in (w, b) if t is not None]

    def fn(x, *affine):
        it = iter(affine)
        weight = next(it) if with_weight else None
        bias = next(it) if with_bias else None
        return F.layer_norm(x, normalized_shape, weight, bias)
    if math.prod(normalized_shape) == 1:
        np.testing.assert_allclose(fn(x, *affine).array, reference(x.array, *[a.array for a in affine]))
        return  # a single element normalises to 0 for every x: nothing smooth to check
    check(fn, reference, x, *affine)


def test_layer_norm_shape_errors():
    x = Tensor(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"layer_norm: normalized_shape \(3,\) must be the trailing"):
        F.layer_norm(x, (3,))
    with pytest.raises(ValueError, match=r"layer_norm: weight of shape \(3,\) should have shape"):
        F.layer_norm(x, 4, weight=Tensor(np.ones(3)))


# ---------------------------------------------------------------------------- embedding

@given(st.data(), st.integers(1, 6), st.integers(1, 4), st.booleans())
def test_embedding(data, num, dim, with_padding):
    weight = data.draw(tt.tensors(shape=(num, dim)))
    ids = data.draw(tt.index_arrays(num)) % num  # repeats included
    padding_idx = data.draw(st.integers(0, num - 1)) if with_padding else None
    if padding_idx is None:
        check(lambda w: F.embedding(ids, w), lambda w: w[ids], weight)
        return
    # The padding row's gradient is 0 by design (not the true derivative), so compare with the
    # scatter-add reference instead of gradcheck.
    out = F.embedding(Tensor(ids), weight, padding_idx)
    np.testing.assert_array_equal(out.array, weight.array[ids])
    upstream = np.random.default_rng(0).standard_normal(out.shape)
    (out * Tensor(upstream)).sum().backward()
    expected = np.zeros((num, dim))
    np.add.at(expected, ids.reshape(-1), upstream.reshape(-1, dim))
    expected[padding_idx] = 0
    np.testing.assert_allclose(weight.grad.array, expected, rtol=1e-12)


def test_embedding_rejects_ids_outside_the_vocabulary():
    weight = Tensor(np.zeros((5, 2)), requires_grad=True)
    with pytest.raises(IndexError, match=r"embedding: token id 7 is outside the valid range \[0, 5\)"):
        F.embedding(np.array([1, 7]), weight)
    with pytest.raises(IndexError, match=r"embedding: token id -1"):
        F.embedding(np.array([-1]), weight)
    with pytest.raises(TypeError, match="embedding: indices must be an integer tensor"):
        F.embedding(np.array([1.0]), weight)


# ---------------------------------------------------------------------------- attention

def ref_attention(q, k, v, allowed=None, additive=None, dropout_keep=None, p=0.0):
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if additive is not None:
        scores = scores + additive
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    row_max = scores.max(axis=-1, keepdims=True)
    e = np.exp(scores - np.where(np.isfinite(row_max), row_max, 0))
    total = e.sum(axis=-1, keepdims=True)
    weights = e / np.where(total == 0, 1, total)
    if dropout_keep is not None:
        weights = weights * dropout_keep / (1 - p)
    return weights @ v


@st.composite
def attention_cases(draw):
    batch, heads = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    q_len, k_len = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    d_k, d_v = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    q = draw(tt.tensors(shape=(batch, heads, q_len, d_k)))
    k = draw(tt.tensors(shape=(batch, heads, k_len, d_k)))
    v = draw(tt.tensors(shape=(batch, heads, k_len, d_v)))
    kind = draw(st.sampled_from(["none", "bool", "additive", "causal"]))
    mask = None
    if kind == "bool":
        # testing.attention_masks marks positions NOT to attend; torch's bool mask is the
        # opposite (True = take part), so invert. Broadcast over heads: (B, 1, L, S).
        mask = ~draw(tt.attention_masks(batch, q_len, k_len))[:, None]
    elif kind == "additive":
        blocked = draw(tt.attention_masks(batch, q_len, k_len))[:, None]
        offsets = draw(tt.tensors(shape=(q_len, k_len))).array
        mask = np.where(blocked, -np.inf, offsets)
    elif kind == "causal" and q_len != k_len:
        kind = "none"
    return q, k, v, kind, mask


@given(attention_cases())
def test_scaled_dot_product_attention(case):
    q, k, v, kind, mask = case
    causal = kind == "causal"

    def fn(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)

    def reference(q, k, v):
        if causal:
            allowed = np.tril(np.ones((q.shape[-2], k.shape[-2]), dtype=bool))
            return ref_attention(q, k, v, allowed=allowed)
        if kind == "bool":
            return ref_attention(q, k, v, allowed=mask)
        return ref_attention(q, k, v, additive=mask)
    check(fn, reference, q, k, v)


@given(attention_cases(), st.booleans())
def test_attention_float_mask_gets_a_gradient(case, broadcast):
    """A float attn_mask is an input like q, k, v (issue 11): a learned attention bias trains.
    Gradchecked in float64, also for a bias broadcast over the batch dims."""
    q, k, v, _, _ = case
    scores_shape = np.broadcast_shapes(q.shape[:-1], k.shape[:-2] + (1,)) + (k.shape[-2],)
    shape = scores_shape[-2:] if broadcast else scores_shape
    bias = Tensor(np.random.default_rng(2).standard_normal(shape), requires_grad=True)
    fn = lambda q, k, v, bias: F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # noqa: E731
    assert gradcheck(fn, q, k, v, bias)
    out = fn(q, k, v, bias)
    np.testing.assert_allclose(out.array, ref_attention(q.array, k.array, v.array,
                                                       additive=bias.array), rtol=1e-10)


def test_attention_fully_masked_rows_give_zero_output_and_gradients():
    rng = np.random.default_rng(0)
    q, k, v = (Tensor(rng.standard_normal((2, 3, 4)), requires_grad=True) for _ in range(3))
    allowed = np.ones((2, 3, 3), dtype=bool)
    allowed[0, 1] = False  # query 1 of batch 0 may look at nothing
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    np.testing.assert_array_equal(out.array[0, 1], 0)
    out.sum().backward()
    for t in (q, k, v):
        assert np.isfinite(t.grad.array).all()
    np.testing.assert_array_equal(q.grad.array[0, 1], 0)
    additive = np.where(allowed, 0.0, -np.inf)
    out2 = F.scaled_dot_product_attention(q, k, v, attn_mask=additive)
    np.testing.assert_allclose(out2.array, out.array, rtol=1e-12)


@given(st.sampled_from([0.2, 0.5]))
def test_attention_dropout_gradcheck(p):
    rng = np.random.default_rng(1)
    q, k, v = (Tensor(rng.standard_normal((2, 3, 2)), requires_grad=True) for _ in range(3))

    def fn(q, k, v):
        tg.manual_seed(11)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p)
    tg.manual_seed(11)
    keep = F._keep_mask((2, 3, 3), p)
    expected = ref_attention(q.array, k.array, v.array, dropout_keep=keep, p=p)
    np.testing.assert_allclose(fn(q, k, v).array, expected, rtol=1e-12)
    assert gradcheck(fn, q, k, v)


def test_attention_errors():
    q = Tensor(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="either attn_mask or is_causal"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=np.ones((3, 3), bool), is_causal=True)
    with pytest.raises(ValueError, match=r"attn_mask of shape \(2, 2\) does not broadcast"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="shapes do not fit"):
        F.scaled_dot_product_attention(q, Tensor(np.zeros((2, 3, 5))), q)


def test_embedding_of_no_ids_has_a_zero_gradient():
    weight = Tensor(np.ones((4, 2)), requires_grad=True)
    out = F.embedding(np.zeros((2, 0), dtype=np.int64), weight)
    assert out.shape == (2, 0, 2)
    out.sum().backward()
    np.testing.assert_array_equal(weight.grad.array, 0)


def test_fused_ops_record_one_node():
    rng = np.random.default_rng(0)
    x, w, b = (Tensor(rng.standard_normal(s), requires_grad=True) for s in [(2, 3, 4), (4,), (4,)])
    q = Tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    weight = Tensor(rng.standard_normal((5, 4)), requires_grad=True)
    cases = [
        (F.layer_norm(x, 4, w, b), F.FusedLayerNorm, (x, w, b)),
        (F.linear(x, weight), F.FusedLinear, (x, weight)),
        (F.cross_entropy(x, np.zeros((2, 4), dtype=np.int64), label_smoothing=0.1),
         F.FusedCrossEntropy, (x,)),
        (F.scaled_dot_product_attention(q, q, q, is_causal=True, dropout_p=0.1),
         F.FusedAttention, (q, q, q)),
        (F.dropout(x, 0.2), F.FusedDropout, (x,)),
        (F.embedding(np.array([1, 2]), weight, padding_idx=0), F.Gather, (weight,)),
    ]
    for out, op, inputs in cases:
        assert type(out._ctx) is op
        assert all(a is b for a, b in zip(out._ctx.parents, inputs))
        assert len(out._ctx.parents) == len(inputs)


# ---------------------------------------------------------------------------- torch-parity ops

@given(tt.tensors(min_value=-40, max_value=40))
def test_silu(x):
    check(F.silu, lambda x: x / (1 + np.exp(-x)), x)


@given(tt.tensors(avoid=(0.0,)), st.sampled_from([0.01, 0.2]))
def test_leaky_relu(x, slope):
    check(lambda t: F.leaky_relu(t, slope), lambda x: np.where(x > 0, x, slope * x), x)


@given(tt.tensors(min_value=-30, max_value=30, avoid=(5.0, 10.0, 20.0)),
       st.sampled_from([(1.0, 20.0), (2.0, 10.0), (0.5, 5.0)]))
def test_softplus(x, params):
    beta, threshold = params  # kinks at beta * x == threshold are avoided
    check(lambda t: F.softplus(t, beta, threshold),
          lambda x: np.where(beta * x > threshold, x, np.logaddexp(0, beta * x) / beta), x)


@given(tt.tensors(shape=tt.shapes(min_dims=1, max_dims=3, max_side=3)), st.data())
def test_pad(x, data):
    pairs = data.draw(st.integers(1, x.ndim))
    widths = tuple(data.draw(st.lists(st.integers(0, 2), min_size=2 * pairs,
                                      max_size=2 * pairs)))
    np_widths = [(0, 0)] * (x.ndim - pairs) + [(widths[2 * i], widths[2 * i + 1])
                                               for i in reversed(range(pairs))]
    check(lambda t: F.pad(t, widths, value=0.5),
          lambda x: np.pad(x, np_widths, constant_values=0.5), x)


@given(tt.tensors(shape=tt.shapes(min_dims=1, max_dims=3, max_side=4), avoid=(0.0,)),
       st.sampled_from([1.0, 2.0, 3.0]), st.data())
def test_normalize(x, p, data):
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1))

    def reference(x):
        norm = (np.abs(x) ** p).sum(axis=dim, keepdims=True) ** (1 / p)
        return x / np.maximum(norm, 1e-12)
    check(lambda t: F.normalize(t, p, dim), reference, x)


@given(tt.tensors(shape=tt.shapes(min_dims=1, max_dims=3, max_side=4), avoid=(0.0,)),
       st.booleans())
def test_rms_norm(x, with_weight):  # an all-zero row has slope 1 / sqrt(eps): no finite diff
    shape = x.shape[-1:]
    weight = Tensor(np.linspace(0.5, 1.5, shape[0]), requires_grad=True) if with_weight else None

    def reference(x, *w):
        out = x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + np.finfo(np.float64).eps)
        return out * w[0] if w else out
    inputs = (x, weight) if with_weight else (x,)
    check(lambda *t: F.rms_norm(t[0], shape, *t[1:]), reference, *inputs)


def test_new_ops_errors_name_op_and_values():
    x = Tensor(np.array([[0.5, 1.5]]))
    with pytest.raises(ValueError, match=r"binary_cross_entropy: every element of input must be "
                                         r"a probability in \[0, 1\]"):
        F.binary_cross_entropy(x, Tensor(np.zeros((1, 2))))
    with pytest.raises(ValueError, match=r"l1_loss: input \(1, 2\) and target \(2,\)"):
        F.l1_loss(x, Tensor(np.zeros(2)))
    with pytest.raises(ValueError, match="kl_div: reduction must be one of"):
        F.kl_div(x, x, reduction="avg")
    with pytest.raises(NotImplementedError, match="pad: mode 'reflect'"):
        F.pad(x, (1, 1), mode="reflect")
    with pytest.raises(ValueError, match=r"pad: widths \(-2, -1\) crop dim 1 of size 2 below zero"):
        F.pad(x, (-2, -1))  # a negative width crops, as torch's; past the size it raises
    with pytest.raises(IndexError, match=r"one_hot: class id 3 is outside \[0, 3\)"):
        F.one_hot(np.array([0, 3]), 3)


def test_stable_forms_far_out_in_float32():
    # the traps: 0.5 * (1 + tanh(x / 2)) loses sigmoid below about -17 in float32, so BCE built
    # from it gives inf; the fused forms stay finite and exact
    x = Tensor(np.array([-90.0, -30.0, 30.0, 90.0], np.float32), requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(x, Tensor(np.array([1, 1, 0, 0], np.float32)),
                                              reduction="none")
    np.testing.assert_allclose(loss.array, [90.0, 30.0, 30.0, 90.0], rtol=1e-6)
    silu = F.silu(x)
    assert np.isfinite(silu.array).all() and silu.array[0] == pytest.approx(-90 * np.exp(-90.0))
