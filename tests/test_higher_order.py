"""Higher-order gradients (issue 19): create_graph on Tensor.backward and autograd.grad, the
graph path of every op (gradgradcheck over the op catalogue), and torch's semantics."""
import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import Function, Tensor
from tinygrad_tf.autograd import grad

from op_catalogue import CASES, build


@pytest.mark.parametrize("name", sorted(set(CASES) - {"Cast"}))
def test_gradgradcheck_every_function(name):
    fn, inputs = build(name)
    assert tg.gradgradcheck(fn, inputs, atol=1e-6, rtol=1e-5)


def test_cast_second_derivative():
    x = Tensor(np.array([0.5, -2.0], np.float32)).requires_grad_()
    (g,) = grad((x.double() ** 3).sum(), x, create_graph=True)
    assert g.dtype == np.float32
    (h,) = grad(g.sum(), x)
    np.testing.assert_allclose(h.array, 6 * x.array, rtol=1e-6)


def test_third_derivative():
    x = Tensor(np.array([0.5, -1.5, 2.0])).requires_grad_()
    (g,) = grad((x ** 4).sum(), x, create_graph=True)
    (h,) = grad(g.sum(), x, create_graph=True)
    (t,) = grad(h.sum(), x)
    np.testing.assert_allclose(t.array, 24 * x.array)


class Cube(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x ** 2


class NumpyOnly(Cube):
    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return np.asarray(grad) * 3 * x ** 2


def test_a_users_function_written_with_operators_is_twice_differentiable():
    x = Tensor(np.array([0.5, -1.5])).requires_grad_()
    (g,) = grad(Cube.apply(x).sum(), x, create_graph=True)
    (h,) = grad(g.sum(), x)
    np.testing.assert_allclose(h.array, 6 * x.array)


def test_converting_to_numpy_inside_a_graph_backward_is_an_error():
    x = Tensor(np.array([0.5, -1.5])).requires_grad_()
    (g,) = grad(NumpyOnly.apply(x).sum(), x)  # first order: numpy is fine
    np.testing.assert_allclose(g.array, 3 * x.array ** 2)
    with pytest.raises(RuntimeError, match="create_graph=True.*constant"):
        grad(NumpyOnly.apply(x).sum(), x, create_graph=True)


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


def test_grad_create_graph_hessian_vector_product_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w_values, v_values, x_values = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), \
        rng.standard_normal((5, 3))

    def loss(lib, w, x):
        h = (x @ w).tanh()
        return (h.softmax(-1) * h).sum() + (w * w).sum() * 0.1

    w = Tensor(w_values).requires_grad_()
    (g,) = grad(loss(tg, w, Tensor(x_values)), w, create_graph=True)
    (hv,) = grad((g * Tensor(v_values)).sum(), w)
    tw = torch.tensor(w_values, requires_grad=True)
    (tg_,) = torch.autograd.grad(loss(torch, tw, torch.tensor(x_values)), tw, create_graph=True)
    (thv,) = torch.autograd.grad((tg_ * torch.tensor(v_values)).sum(), tw)
    np.testing.assert_allclose(g.array, tg_.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(hv.array, thv.numpy(), rtol=1e-10)


def test_grad_outputs_tensor_is_differentiated_through():
    x = Tensor(np.array([0.5, 1.5])).requires_grad_()
    v = Tensor(np.array([2.0, -1.0])).requires_grad_()
    (g,) = grad(x * x, x, grad_outputs=v, create_graph=True)  # 2 x v
    (dv,) = grad(g.sum(), v)
    np.testing.assert_allclose(dv.array, 2 * x.array)


def _nn_functionals():
    from tinygrad_tf.nn import attention, functional as F, fused
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
        "packed_cross_attention": (lambda q, kv: attention.packed_attention(
            q, kv, mask=Tensor(np.array([[True, False, True], [False, False, False]]))),
            [t(2, 2, 2, 2), t(2, 3, 2, 2, 2)]),  # the second query sees no key
    }


def _seeded_relu_ffn(x, w, b):
    from tinygrad_tf.nn import fused
    tg.manual_seed(0)
    return fused.linear_activation_dropout(x, w, b, activation="relu", p=0.3)


@pytest.mark.parametrize("name", sorted(_nn_functionals()))
def test_gradgradcheck_nn_functionals(name):
    fn, inputs = _nn_functionals()[name]
    assert tg.gradgradcheck(fn, inputs, atol=1e-6, rtol=1e-5)
