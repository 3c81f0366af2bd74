"""Higher-order gradients (issue 19): create_graph on Tensor.backward and autograd.grad.

1. torch's semantics: retain_graph's default, accumulation into .grad, inputs=, grad_outputs
   on the graph, third derivatives, a dtype cast.
2. Every op twice differentiable: gradgradcheck over each Function of tests/op_catalogue.py,
   the nn functionals, and the create_graph branches of the fused ops.
3. A user's own ops: written with operators they are twice differentiable; numpy inside a
   backward on the graph path is an error; gradgradcheck names the worst element of a wrong
   second derivative; the grad_outputs strategy for property tests.
4. Models: the tiny Transformer's Hessian-vector product against finite differences of its
   gradient (float64); Newton's method on a logistic regression.

Parity with torch is in test_higher_order_torch.py.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinygrad_tf as tg
from tinygrad_tf import Function, Tensor, testing as tt
from tinygrad_tf.autograd import ArrayFunction
from tinygrad_tf.autograd import functional as AF, grad
from tinygrad_tf.nn import attention, fused, functional as F

from op_catalogue import CASES, _float, build


# ---------------------------------------------------------------------------- 1. semantics


def test_retain_graph_defaults_to_create_graph():
    x = Tensor(np.array([0.5, -1.5])).requires_grad_()
    y = (x.exp() * x).sum()
    y.backward(create_graph=True)
    y.backward()  # the graph was kept
    z = (x.exp() * x).sum()
    z.backward()
    with pytest.raises(RuntimeError, match="second time"):
        z.backward()


@pytest.mark.filterwarnings("ignore:Using backward")  # torch's note on .grad reference cycles
def test_backward_create_graph_accumulates_as_torch():
    torch = pytest.importorskip("torch")
    values = np.array([0.3, -0.7, 1.2])
    x = Tensor(values).requires_grad_()
    tx = torch.tensor(values, requires_grad=True)
    for lib, v in ((tg, x), (torch, tx)):
        y = (v.sin() * v * v).sum()
        y.backward(create_graph=True)
        first = v.grad
        (first * first).sum().backward()  # grads of grads accumulate into v.grad
    np.testing.assert_allclose(x.grad.array, tx.grad.detach().numpy(), rtol=1e-12)
    assert x.grad.requires_grad == tx.grad.requires_grad


def test_backward_inputs_as_torch():
    torch = pytest.importorskip("torch")
    a_values, b_values = np.array([0.3, -0.7]), np.array([1.5, 0.2])
    a, b = Tensor(a_values).requires_grad_(), Tensor(b_values).requires_grad_()
    ta = torch.tensor(a_values, requires_grad=True)
    tb = torch.tensor(b_values, requires_grad=True)
    h, th = a * b, ta * tb
    (h.exp().sum()).backward(inputs=[a, h])
    th.retain_grad()  # torch fills a non-leaf input's .grad too; compare to its value
    (th.exp().sum()).backward(inputs=[ta, th])
    assert b.grad is None and tb.grad is None
    np.testing.assert_allclose(a.grad.array, ta.grad.numpy())
    np.testing.assert_allclose(h.grad.array, th.grad.numpy())
    with pytest.raises(RuntimeError, match="cannot be empty"):
        (a * 2).sum().backward(inputs=[])


def test_grad_outputs_tensor_is_differentiated_through():
    x = Tensor(np.array([0.5, 1.5])).requires_grad_()
    v = Tensor(np.array([2.0, -1.0])).requires_grad_()
    (g,) = grad(x * x, x, grad_outputs=v, create_graph=True)  # 2 x v
    (dv,) = grad(g.sum(), v)
    np.testing.assert_allclose(dv.array, 2 * x.array)


def test_third_derivative():
    x = Tensor(np.array([0.5, -1.5, 2.0])).requires_grad_()
    (g,) = grad((x ** 4).sum(), x, create_graph=True)
    (h,) = grad(g.sum(), x, create_graph=True)
    (t,) = grad(h.sum(), x)
    np.testing.assert_allclose(t.array, 24 * x.array)


def test_cast_second_derivative():
    x = Tensor(np.array([0.5, -2.0], np.float32)).requires_grad_()
    (g,) = grad((x.double() ** 3).sum(), x, create_graph=True)
    assert g.dtype == np.float32
    (h,) = grad(g.sum(), x)
    np.testing.assert_allclose(h.array, 6 * x.array, rtol=1e-6)


# ---------------------------------------------------------------------------- 2. every op


@pytest.mark.parametrize("name", sorted(set(CASES) - {"Cast"}))
def test_gradgradcheck_every_function(name):
    fn, inputs = build(name)
    assert tg.gradgradcheck(fn, inputs, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["Mul", "Div", "MatMul", "LinearWeightGrad", "SoftmaxBackward",
                                  "LogSoftmaxBackward", "FusedLinear", "matmul 1-D", "matmul 3-D",
                                  "LinearActivationDropout", "linear relu"])
def test_gradgradcheck_with_one_input_requiring_grad(name):
    # these ops save an input only for another input's gradient (as torch): the graph of
    # the backward must still be right when only one input needs a gradient
    extra = {"matmul 1-D": (lambda x, y: x @ y + (y @ x.reshape(3, 1)).sum(),
                            lambda rng: [_float(rng, 3), _float(rng, 3)]),
             "matmul 3-D": (lambda x, y: x @ y, lambda rng: [_float(rng, 2, 2, 3),
                                                              _float(rng, 3, 2)]),
             "linear relu": (lambda x, w, b: fused.linear_activation_dropout(x, w, b) * x.sum(),
                             lambda rng: [_float(rng, 2, 3), _float(rng, 4, 3), _float(rng, 4)])}
    fn, make = extra[name] if name in extra else CASES[name]
    for k in range(len(make(np.random.default_rng(0)))):
        inputs = make(np.random.default_rng(0))
        for i, t in enumerate(inputs):
            t.requires_grad_(i == k)
        assert tg.gradgradcheck(fn, inputs, atol=1e-6, rtol=1e-5), (name, k)


def _nn_functionals():
    t = lambda *shape: Tensor(np.linspace(-1.3, 1.1, int(np.prod(shape))).reshape(shape)  # noqa
                              ).requires_grad_()
    pos = Tensor(np.linspace(0.2, 0.9, 6).reshape(2, 3))
    return {
        "mse_loss": (lambda x: F.mse_loss(x.tanh(), pos), [t(2, 3)]),
        "l1_loss": (lambda x: F.l1_loss(x * x, pos), [t(2, 3)]),
        "smooth_l1_loss": (lambda x: F.smooth_l1_loss(x * x, pos, beta=0.5), [t(2, 3)]),
        "kl_div": (lambda x: F.kl_div(x.log_softmax(-1), pos, reduction="batchmean"), [t(2, 3)]),
        "rms_norm": (lambda x, w: F.rms_norm(x, (3,), w), [t(2, 3), t(3)]),
        "leaky_relu": (lambda x: F.leaky_relu(x, 0.2) * x, [t(2, 3)]),
        "cross_entropy_3d": (lambda x: F.cross_entropy(x, Tensor(np.array([[0, 2], [1, 1]])),
                                                       label_smoothing=0.3), [t(2, 3, 2)]),
        "cross_entropy_none_sum": (lambda x: F.cross_entropy(
            x, Tensor(np.array([1, 0])), reduction="none", label_smoothing=0.1) * x.sum()
            + F.cross_entropy(x, Tensor(np.array([2, 2])), reduction="sum"), [t(2, 3)]),
        "nll_loss_none": (lambda x: F.nll_loss(x.log_softmax(1), Tensor(np.array([2, 0])),
                                               reduction="none"), [t(2, 3)]),
        "sdpa_causal": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                        [t(1, 3, 2), t(1, 3, 2), t(1, 3, 2)]),
        "sdpa_float_mask": (lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v,
                                                                              attn_mask=m),
                            [t(1, 2, 2), t(1, 3, 2), t(1, 3, 2), t(2, 3)]),
        "softmax_log_softmax": (lambda x: F.softmax(x, 0) * F.log_softmax(x, 1), [t(2, 3)]),
        # the create_graph branches of the fused ops the catalogue's one case each leaves out
        "layer_norm_2d_no_affine": (lambda x: F.layer_norm(x, (2, 3)) * x, [t(2, 2, 3)]),
        "layer_norm_bias_only": (lambda x, b: F.layer_norm(x, (3,), bias=b) * x,
                                 [t(2, 3), t(3)]),
        "linear_relu_dropout": (lambda x, w, b: _seeded_relu_ffn(x, w, b) * x.sum(),
                                [t(2, 3), t(4, 3), t(4)]),
        "linear_gelu_tanh": (lambda x, w, b: fused.linear_activation_dropout(
            x, w, b, activation="gelu_tanh"), [t(2, 3), t(4, 3), t(4)]),
        "residual_layer_norm_no_dropout": (lambda x, s, w, b: fused.residual_dropout_layer_norm(
            x, s, w, b) * s, [t(2, 3), t(2, 3), t(3), t(3)]),
        "linear_residual_layer_norm_no_dropout": (lambda x, a, lw, lb, w, b:
                                                  fused.linear_residual_layer_norm(
                                                      x, a, lw, lb, w, b) * x,
                                                  [t(2, 3), t(2, 2), t(3, 2), t(3), t(3), t(3)]),
        "packed_cross_attention": (lambda q, kv: attention.packed_attention(
            q, kv, mask=Tensor(np.array([[True, False, True], [False, False, False]]))),
            [t(2, 2, 2, 2), t(2, 3, 2, 2, 2)]),  # the second query sees no key
    }


def _seeded_relu_ffn(x, w, b):
    tg.manual_seed(0)
    return fused.linear_activation_dropout(x, w, b, activation="relu", p=0.3)


@pytest.mark.parametrize("name", sorted(_nn_functionals()))
def test_gradgradcheck_nn_functionals(name):
    fn, inputs = _nn_functionals()[name]
    assert tg.gradgradcheck(fn, inputs, atol=1e-6, rtol=1e-5)


# PackedAttention's create_graph node, PackedAttentionGrad: its backward (attention's second
# derivative) is derived by hand, so it is checked on drawn shapes, against a wrong twin, and
# (section 4) against torch. `FEW` examples in the ci profile, more under `thorough`.
FEW = max(3, settings.default.max_examples // 6)


@st.composite
def packed_attention_operands(draw):
    """(inputs, mask, scale): a self- or cross-attention's packed projections (float64, some
    strided) and a boolean mask of shape (L, S), (B, 1, L, S) or none; rows may be fully masked."""
    b, length, source, h, e = (draw(st.integers(1, n)) for n in (2, 3, 3, 2, 3))
    cross = draw(st.booleans())
    source = source if cross else length
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))

    def projection(*shape):
        if draw(st.booleans()):  # strided: every other element of a wider last dim
            return Tensor(rng.uniform(-1.5, 1.5, shape[:-1] + (2 * shape[-1],))[..., ::2]
                          ).requires_grad_()
        return Tensor(rng.uniform(-1.5, 1.5, shape)).requires_grad_()
    inputs = ([projection(b, length, h, e), projection(b, source, 2, h, e)] if cross
              else [projection(b, length, 3, h, e)])
    mask_shape = draw(st.sampled_from([None, (length, source), (b, 1, length, source)]))
    mask = None if mask_shape is None else Tensor(rng.uniform(size=mask_shape) > 0.3)
    return inputs, mask, draw(st.sampled_from([None, 0.8]))


def _packed_grad_node(inputs, mask, scale, node=None):
    """PackedAttentionGrad as a function of (first, (second,) dO), as packed_attention calls it."""
    first = inputs[0]
    length, heads, features = first.shape[1], first.shape[-2], first.shape[-1]
    source = inputs[1].shape[1] if len(inputs) == 2 else length
    fill = None if mask is None else ~np.broadcast_to(mask.array, (first.shape[0], heads,
                                                                   length, source))
    scale = first.dtype.type(features ** -0.5 if scale is None else scale)
    node = node or attention.PackedAttentionGrad
    return lambda *ts: node.apply(*ts, fill=fill, scale=scale)


@settings(max_examples=FEW)
@given(operands=packed_attention_operands(), data=st.data())
def test_packed_attention_grad_node(operands, data):
    inputs, mask, scale = operands
    attend = lambda *ts: attention.packed_attention(*ts, mask=mask, scale=scale)  # noqa: E731
    (grad_out,) = data.draw(tt.grad_outputs(attend(*inputs)))
    node_inputs = inputs + [grad_out.requires_grad_()]
    assert tg.gradcheck(_packed_grad_node(inputs, mask, scale), *node_inputs,
                        atol=1e-7, rtol=1e-6)
    assert tg.gradgradcheck(attend, inputs, atol=1e-6, rtol=1e-5)  # through the node
    assert tg.gradgradcheck(_packed_grad_node(inputs, mask, scale), node_inputs,
                            atol=1e-6, rtol=1e-5)  # a third derivative: its composed twin


@settings(max_examples=FEW)
@given(data=st.data())
def test_layer_norm_second_derivatives_on_drawn_shapes(data):
    """Normalize and NormalizeBackward (the layer norms' create_graph nodes) in the three layer
    norm Functions, on drawn strided shapes (1-D too); rows spread apart, as a row of near-equal
    values has an ill-conditioned Hessian."""
    x = data.draw(tt.tensors(shape=tt.shapes(1, 3, min_side=2, max_side=3), distinct=True,
                             margin=0.2), label="x")
    width = x.shape[-1]
    w, b = (data.draw(tt.tensors(shape=(width,)), label=name) for name in ("weight", "bias"))
    s = data.draw(tt.tensors(shape=x.shape, min_value=-0.1, max_value=0.1), label="s")
    assert tg.gradgradcheck(lambda x, w, b: F.layer_norm(x, (width,), w, b), (x, w, b),
                            atol=1e-6, rtol=1e-5)
    assert tg.gradgradcheck(lambda x, s, w, b: fused.residual_dropout_layer_norm(x, s, w, b),
                            (x, s, w, b), atol=1e-6, rtol=1e-5)
    small = dict(min_value=-0.3, max_value=0.3)  # the folded linear's output stays small
    a = data.draw(tt.tensors(shape=x.shape[:-1] + (2,), **small), label="a")
    lin_w, lin_b = data.draw(tt.tensors(shape=(width, 2), **small), label="lin_weight"), \
        data.draw(tt.tensors(shape=(width,), **small), label="lin_bias")
    assert tg.gradgradcheck(lambda *ts: fused.linear_residual_layer_norm(*ts),
                            (x, a, lin_w, lin_b, w, b), atol=1e-6, rtol=1e-5)


_LogSoftmaxBackward = tg.function.LogSoftmaxBackward


class LogSoftmaxBackwardWrongTwin(_LogSoftmaxBackward):
    """LogSoftmaxBackward with its d/dy term's sign flipped."""

    @staticmethod
    def backward(ctx, up):
        d_grad, d_out = _LogSoftmaxBackward.backward(ctx, up)
        return d_grad, None if d_out is None else -d_out


def test_log_softmax_backward_wrong_twin_fails(monkeypatch):
    x = Tensor(np.array([[0.3, -1.2, 0.8], [1.5, 0.1, -0.4]])).requires_grad_()
    g = Tensor(np.array([[0.5, -0.2, 1.1], [-0.7, 0.3, 0.9]])).requires_grad_()
    twin = lambda g, x: LogSoftmaxBackwardWrongTwin.apply(g, x.log_softmax(1), axis=1)  # noqa
    with pytest.raises(tg.GradcheckError, match="input 1"):
        tg.gradcheck(twin, g, x)
    assert tg.gradgradcheck(lambda t: t.log_softmax(1), x)
    monkeypatch.setattr(tg.function, "LogSoftmaxBackward", LogSoftmaxBackwardWrongTwin)
    with pytest.raises(tg.GradcheckError, match="gradgradcheck"):
        tg.gradgradcheck(lambda t: t.log_softmax(1), x)


_PackedAttentionGrad = attention.PackedAttentionGrad


class PackedAttentionGradWrongTwin(_PackedAttentionGrad):
    """PackedAttentionGrad with one term of the second derivative left out: dO's P C."""

    @staticmethod
    def backward(ctx, upstream):
        grads = _PackedAttentionGrad.backward(ctx, upstream)
        weights, up_v = ctx.saved_tensors[3], upstream[:, :, 2].transpose(0, 2, 1, 3)
        return grads[:-1] + (grads[-1] - np.matmul(weights, up_v).transpose(0, 2, 1, 3),)


def test_packed_attention_grad_wrong_twin_fails(monkeypatch):
    rng = np.random.default_rng(3)
    qkv = Tensor(rng.uniform(-1.5, 1.5, (2, 3, 3, 2, 2))).requires_grad_()
    mask = Tensor(np.tril(np.ones((3, 3), bool)))
    grad_out = Tensor(rng.uniform(-1, 1, (2, 3, 2, 2))).requires_grad_()
    twin = _packed_grad_node([qkv], mask, None, PackedAttentionGradWrongTwin)
    with pytest.raises(tg.GradcheckError, match="input 1"):  # dO's gradient
        tg.gradcheck(twin, qkv, grad_out, atol=1e-7, rtol=1e-6)
    attend = lambda t: attention.packed_attention(t, mask=mask)  # noqa: E731
    assert tg.gradgradcheck(attend, qkv, atol=1e-6, rtol=1e-5)
    monkeypatch.setattr(attention, "PackedAttentionGrad", PackedAttentionGradWrongTwin)
    with pytest.raises(tg.GradcheckError, match="gradgradcheck"):
        tg.gradgradcheck(attend, qkv, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------- 3. a user's own ops


def _cube(base):
    class Cube(base):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * 3 * x ** 2
    return Cube


def _numpy_only(base):
    class NumpyOnly(_cube(base)):
        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return np.asarray(grad) * 3 * x ** 2
    return NumpyOnly


@pytest.mark.parametrize("base", [ArrayFunction, Function])
def test_a_users_function_written_with_operators_is_twice_differentiable(base):
    x = Tensor(np.array([0.5, -1.5])).requires_grad_()
    (g,) = grad(_cube(base).apply(x).sum(), x, create_graph=True)
    (h,) = grad(g.sum(), x)
    np.testing.assert_allclose(h.array, 6 * x.array)


@pytest.mark.parametrize("base", [ArrayFunction, Function])
def test_converting_to_numpy_inside_a_graph_backward_is_an_error(base):
    x = Tensor(np.array([0.5, -1.5])).requires_grad_()
    numpy_only = _numpy_only(base)
    (g,) = grad(numpy_only.apply(x).sum(), x)  # first order: numpy is fine
    np.testing.assert_allclose(g.array, 3 * x.array ** 2)
    with pytest.raises(RuntimeError, match="create_graph=True.*constant"):
        grad(numpy_only.apply(x).sum(), x, create_graph=True)


class SinWrongTwin(ArrayFunction):
    """sin with a right first derivative and a deliberately wrong second one."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.sin(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * np.cos(x)

    @staticmethod
    def composed(ctx, x):
        return x.sin() + 0.01 * x ** 3  # wrong: its derivative is not cos(x)


def test_gradgradcheck_names_the_worst_element_of_a_wrong_second_derivative():
    x = Tensor(np.array([0.2, -0.4, 1.3])).requires_grad_()
    assert tg.gradcheck(SinWrongTwin.apply, x)
    with pytest.raises(tg.GradcheckError, match=r"gradgradcheck.*input 0.*element \(2,\)"):
        tg.gradgradcheck(SinWrongTwin.apply, x)
    assert tg.gradgradcheck(SinWrongTwin.apply, x, raise_exception=False) is False
    assert tg.gradgradcheck(lambda t: t.sin(), x)


@settings(max_examples=4)
@given(x=tt.tensors(shape=tt.shapes(1, 2, max_side=3)), data=st.data())
def test_grad_outputs_strategy_drives_gradgradcheck(x, data):
    op = lambda t: (t * t).tanh() * t.softmax(-1)  # noqa: E731
    v = data.draw(tt.grad_outputs(op(x)))
    assert len(v) == 1 and v[0].shape == x.shape and not v[0].requires_grad
    assert tg.gradgradcheck(op, x, grad_outputs=v, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------- 4. models


def test_tiny_transformer_hvp_matches_finite_differences():
    from tinygrad_tf.models import Transformer, TransformerConfig
    tg.manual_seed(0)
    config = TransformerConfig(src_vocab_size=11, tgt_vocab_size=11, d_model=8, n_heads=2,
                               n_encoder_layers=1, n_decoder_layers=1, d_ff=12, dropout=0.0,
                               max_len=16, pad_id=0, share_embeddings=False)
    model = Transformer(config).double().eval()
    src, tgt = Tensor(np.array([[3, 4, 5, 2], [6, 7, 2, 0]])), np.array([[1, 5, 4, 3, 2],
                                                                         [1, 7, 6, 2, 0]])
    params = list(model.parameters())
    rng = np.random.default_rng(2)
    v = [rng.standard_normal(p.shape) for p in params]

    def loss():
        logits = model(src, Tensor(tgt[:, :-1]))
        return F.cross_entropy(logits.reshape(-1, 11), Tensor(tgt[:, 1:].reshape(-1)),
                               ignore_index=0, label_smoothing=0.1)

    grads = grad(loss(), params, create_graph=True)
    hv = grad(sum((g * Tensor(d)).sum() for g, d in zip(grads, v)), params, allow_unused=True)
    hv = np.concatenate([np.zeros(p.array.size) if h is None else h.array.ravel()
                         for p, h in zip(params, hv)])

    def plain_gradient(step):
        with tg.no_grad():
            for p, d in zip(params, v):
                p.array += step * d
        gs = grad(loss(), params, allow_unused=True)
        with tg.no_grad():
            for p, d in zip(params, v):
                p.array -= step * d
        return np.concatenate([np.zeros(p.array.size) if g is None else g.array.ravel()
                               for p, g in zip(params, gs)])

    eps = 1e-5
    numeric = (plain_gradient(eps) - plain_gradient(-eps)) / (2 * eps)
    assert np.linalg.norm(hv - numeric) <= 1e-6 * np.linalg.norm(numeric)


def test_logistic_regression_newton_converges_in_8_iterations():
    rng = np.random.default_rng(1)
    features = rng.standard_normal((200, 3))
    labels = (features @ np.array([1.5, -2.0, 0.5]) + rng.standard_normal(200) > 0) * 1.0
    x, y = Tensor(features), Tensor(labels)

    def loss(w):
        return F.binary_cross_entropy_with_logits(x @ w, y) + 1e-3 * (w * w).sum()

    w = np.zeros(3)
    for iteration in range(1, 9):
        leaf = Tensor(w).requires_grad_()
        (g,) = grad(loss(leaf), leaf)
        h = AF.hessian(loss, Tensor(w)).array
        w = w - np.linalg.solve(h, g.array)
        if np.abs(g.array).max() < 1e-10:
            break
    print(f"Newton: {iteration} iterations")
    leaf = Tensor(w).requires_grad_()
    (g,) = grad(loss(leaf), leaf)
    assert np.abs(g.array).max() < 1e-8, (iteration, g.array)
    # plain gradient descent at a good fixed step is far from there after 100 steps
    w_gd = np.zeros(3)
    for _ in range(100):
        leaf = Tensor(w_gd).requires_grad_()
        (g_gd,) = grad(loss(leaf), leaf)
        w_gd = w_gd - 1.0 * g_gd.array
    assert np.abs(g_gd.array).max() > 1e-4
