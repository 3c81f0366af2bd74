"""nn.fused: each fused op against its composed formula (the readable twin) in values, under both
kernel sets, and gradchecked in float64 on Hypothesis shapes with non-contiguous inputs. One table
drives the suite: a case names an input strategy, the fused op and the composed oracle."""
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import tinygrad_tf as tg
from tinygrad_tf import Tensor, gradcheck, kernels
from tinygrad_tf import testing as tt
from tinygrad_tf.nn import functional as F
from tinygrad_tf.nn import fused

ROWS = tt.shapes(min_dims=1, max_dims=2, max_side=3)  # the leading dims
PROBABILITIES = st.sampled_from([0.0, 0.3])


@st.composite
def add_norm_inputs(draw):
    lead, width = draw(ROWS), draw(st.integers(2, 6))
    shape = lead + (width,)
    # Distinct x keeps every row's variance away from 0, where the check would lose digits.
    x = draw(tt.tensors(shape=shape, distinct=True, margin=0.05))
    s = draw(tt.tensors(shape=shape))
    weight, bias = draw(tt.tensors(shape=(width,))), draw(tt.tensors(shape=(width,)))
    return (x, s, weight, bias), {"p": draw(PROBABILITIES)}


@st.composite
def linear_add_norm_inputs(draw):
    lead, width, n_in = draw(ROWS), draw(st.integers(2, 6)), draw(st.integers(1, 5))
    x = draw(tt.tensors(shape=lead + (width,), distinct=True, margin=0.05))
    a = draw(tt.tensors(shape=lead + (n_in,)))
    lin_weight, lin_bias = draw(tt.tensors(shape=(width, n_in))), draw(tt.tensors(shape=(width,)))
    weight, bias = draw(tt.tensors(shape=(width,))), draw(tt.tensors(shape=(width,)))
    return (x, a, lin_weight, lin_bias, weight, bias), {"p": draw(PROBABILITIES)}


@st.composite
def feed_forward_inputs(draw):
    lead, n_in, n_out = draw(ROWS), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    x = draw(tt.tensors(shape=lead + (n_in,)))
    weight, bias = draw(tt.tensors(shape=(n_out, n_in))), draw(tt.tensors(shape=(n_out,)))
    activation = draw(st.sampled_from(kernels.ACTIVATIONS))
    if activation == "relu":  # ReLU's kink: keep every pre-activation away from 0
        pre = x.array @ weight.array.T + bias.array
        assume(np.abs(pre).min() > 1e-3)
    return (x, weight, bias), {"activation": activation, "p": draw(PROBABILITIES)}


@st.composite
def embedding_inputs(draw):
    vocab, width = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    batch, length = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    ids = np.asarray(draw(st.lists(st.integers(0, vocab - 1), min_size=batch * length,
                                   max_size=batch * length))).reshape(batch, length)
    weight = draw(tt.tensors(shape=(vocab, width)))
    table = draw(tt.tensors(shape=(length, width), requires_grad=False)).array
    padding_idx = draw(st.one_of(st.none(), st.integers(0, vocab - 1)))
    return (weight,), {"ids": ids, "table": table, "scale": draw(st.sampled_from([1.0, 2.5])),
                       "p": draw(PROBABILITIES), "padding_idx": padding_idx}


def add_norm_composed(x, s, weight, bias, p):
    return F.layer_norm(x + F.dropout(s, p), x.shape[-1], weight, bias)


def linear_add_norm_composed(x, a, lin_weight, lin_bias, weight, bias, p):
    return add_norm_composed(x, F.linear(a, lin_weight, lin_bias), weight, bias, p)


def feed_forward_composed(x, weight, bias, activation, p):
    pre = F.linear(x, weight, bias)
    act = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": lambda t: F.gelu(t, "tanh")}[activation]
    return F.dropout(act(pre), p)


def embedding_composed(weight, ids, table, scale, p, padding_idx):
    looked_up = F.embedding(ids, weight, padding_idx=padding_idx)
    return F.dropout(looked_up * scale + Tensor(table.astype(weight.dtype)), p)


def embedding_fused(weight, ids, table, scale, p, padding_idx):
    return fused.embedding_position_dropout(ids, weight, table, scale, p,
                                            padding_idx=padding_idx)


@dataclass
class Case:
    name: str
    inputs: st.SearchStrategy
    ours: object
    composed: object


CASES = [
    Case("residual_dropout_layer_norm", add_norm_inputs(), fused.residual_dropout_layer_norm,
         add_norm_composed),
    Case("linear_residual_layer_norm", linear_add_norm_inputs(),
         fused.linear_residual_layer_norm, linear_add_norm_composed),
    Case("linear_activation_dropout", feed_forward_inputs(), fused.linear_activation_dropout,
         feed_forward_composed),
    Case("embedding_position_dropout", embedding_inputs(), embedding_fused, embedding_composed),
]


def seeded(fn, seed=11):
    """fn with the generator reset before each call: every call draws the same dropout masks
    (gradcheck calls it many times; the composed and fused forms draw masks in the same order)."""
    def call(*tensors, **kwargs):
        tg.manual_seed(seed)
        return fn(*tensors, **kwargs)
    return call


@pytest.mark.parametrize("kernel_set", ["numba", "numpy"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@given(data=st.data())
def test_fused_op_equals_its_composed_formula_and_gradchecks(case, kernel_set, data):
    with kernels.use(kernel_set):
        check_against_composed(case, data.draw(case.inputs))


def check_against_composed(case, drawn):
    tensors, kwargs = drawn
    ours, composed = seeded(case.ours), seeded(case.composed)
    out, expected = ours(*tensors, **kwargs), composed(*tensors, **kwargs)
    assert out.shape == expected.shape and out.dtype == np.float64
    np.testing.assert_allclose(out.array, expected.array, rtol=1e-10, atol=1e-12)
    upstream = np.random.default_rng(0).standard_normal(out.shape)
    grads = []
    for fn in (ours, composed):
        leaves = [Tensor(t.array.copy(), requires_grad=True) for t in tensors]
        (fn(*leaves, **kwargs) * Tensor(upstream)).sum().backward()
        grads.append([leaf.grad.array for leaf in leaves])
    for got, want in zip(*grads):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)
    if kwargs.get("padding_idx") is None:  # the padding row's gradient is 0 by design
        assert gradcheck(lambda *t: ours(*t, **kwargs), *tensors)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_float32_and_float64_match_the_composed_formula(case, dtype):
    rng = np.random.default_rng(5)
    if case.name == "residual_dropout_layer_norm":
        tensors = [rng.standard_normal(s) for s in [(4, 7, 16), (4, 7, 16), (16,), (16,)]]
        kwargs = {"p": 0.2}
    elif case.name == "linear_residual_layer_norm":
        tensors = [rng.standard_normal(s) for s in [(4, 7, 16), (4, 7, 24), (16, 24), (16,),
                                                      (16,), (16,)]]
        kwargs = {"p": 0.2}
    elif case.name == "linear_activation_dropout":
        tensors = [rng.standard_normal(s) for s in [(4, 7, 16), (24, 16), (24,)]]
        kwargs = {"activation": "relu", "p": 0.2}
    else:
        tensors = [rng.standard_normal((11, 16))]
        kwargs = {"ids": rng.integers(0, 11, (4, 7)), "table": rng.standard_normal((7, 16)),
                  "scale": 4.0, "p": 0.2, "padding_idx": 0}
    results = []
    for fn in (seeded(case.ours), seeded(case.composed)):
        leaves = [Tensor(t.astype(dtype), requires_grad=True) for t in tensors]
        out = fn(*leaves, **kwargs)
        (out * out).sum().backward()
        results.append([out.array] + [leaf.grad.array for leaf in leaves])
    tolerance = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10,
                                                                           atol=1e-10)
    for got, want in zip(*results):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, **tolerance)


def test_eval_mode_and_p_zero_draw_no_mask():
    x = Tensor(np.random.default_rng(0).standard_normal((3, 4)))
    w, b = Tensor(np.ones(4)), Tensor(np.zeros(4))
    tg.manual_seed(1)
    before = tg.random.generator().bit_generator.state
    fused.residual_dropout_layer_norm(x, x, w, b, p=0.5, training=False)
    fused.linear_activation_dropout(x, Tensor(np.ones((2, 4))), Tensor(np.zeros(2)), p=0.0)
    assert tg.random.generator().bit_generator.state == before


@pytest.mark.parametrize("kernel_set", ["numba", "numpy"])
def test_add_norm_of_a_tensor_with_itself_sums_both_gradients(kernel_set):
    # Without dropout the backward returns one array as both x's and s's gradient; the engine
    # must add them into a new array, not into that one.
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((5, 8)).astype(np.float32), requires_grad=True)
    w, b = (Tensor(rng.standard_normal(8).astype(np.float32), requires_grad=True)
            for _ in range(2))
    grad = rng.standard_normal((5, 8)).astype(np.float32)
    previous = kernels.active()
    kernels.use(kernel_set)
    try:
        fused.residual_dropout_layer_norm(x, x, w, b).backward(grad)
    finally:
        kernels.use(previous)
    fused_grads = [t.grad.array for t in (x, w, b)]
    for t in (x, w, b):
        t.grad = None
    F.layer_norm(x + x, (8,), w, b).backward(grad)
    for got, t in zip(fused_grads, (x, w, b)):
        np.testing.assert_allclose(got, t.grad.array, rtol=1e-5, atol=1e-5)


def test_errors_name_the_op_and_shapes():
    x = Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"residual_dropout_layer_norm: x \(2, 3\) and "
                                         r"sublayer_out \(2, 4\) must match"):
        fused.residual_dropout_layer_norm(x, Tensor(np.ones((2, 4))), Tensor(np.ones(3)),
                                          Tensor(np.ones(3)))
    with pytest.raises(ValueError, match=r"linear_residual_layer_norm: x \(2, 3\), a \(2, 4\), "
                                         r"lin_weight \(3, 5\)"):
        fused.linear_residual_layer_norm(x, Tensor(np.ones((2, 4))), Tensor(np.ones((3, 5))),
                                         *(Tensor(np.ones(3)) for _ in range(3)))
    with pytest.raises(ValueError, match=r"linear_activation_dropout: input \(2, 3\), weight "
                                         r"\(4, 2\) and bias \(4,\) do not fit"):
        fused.linear_activation_dropout(x, Tensor(np.ones((4, 2))), Tensor(np.ones(4)))
    with pytest.raises(ValueError, match="activation must be one of"):
        fused.linear_activation_dropout(x, Tensor(np.ones((4, 3))), Tensor(np.ones(4)), "tanh")
    with pytest.raises(ValueError, match=r"dropout p must be a probability in \[0, 1\)"):
        fused.residual_dropout_layer_norm(x, x, Tensor(np.ones(3)), Tensor(np.ones(3)), p=1.0)
    with pytest.raises(ValueError, match=r"embedding_position_dropout: ids \(2, 2\), weight "
                                         r"\(5, 3\) and table \(3, 3\) do not fit"):
        fused.embedding_position_dropout(np.zeros((2, 2), int), Tensor(np.ones((5, 3))),
                                         np.ones((3, 3)))
    with pytest.raises(IndexError, match="embedding_position_dropout: token id 7"):
        fused.embedding_position_dropout(np.full((1, 3), 7), Tensor(np.ones((5, 3))),
                                         np.ones((3, 3)))
