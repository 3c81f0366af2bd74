"""Fan-in: a tensor used by several ops gets the sum of their gradients. The engine adds in place
only into an array it made itself in the same walk (autograd.walk); each test below hands it
an array that must not be written: a grad_output returned to two parents, a saved array, a hook's
return, a read-only broadcast view. A wrong in-place add changes what the user or the graph still
holds, so each test checks those arrays as well as the gradients (torch 2.13 is the oracle where
installed, closed forms otherwise)."""
import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import Tensor
from tinygrad_tf.autograd import ArrayFunction

try:
    import torch
except ImportError:  # the closed forms still check every value
    torch = None

X = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])


def _leaf(dtype=np.float64):
    return Tensor(X.astype(dtype), requires_grad=True)


def _torch_leaf(dtype=torch.float64 if torch else None):
    return torch.tensor(X, dtype=dtype, requires_grad=True)


class AddTwice(ArrayFunction):
    """a + b; backward returns its grad_output itself to both inputs, as Add does."""

    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


class DotConstant(ArrayFunction):
    """sum(a * c) for a constant c; backward returns the saved c itself when grad is one."""

    @staticmethod
    def forward(ctx, a, c):
        ctx.save_for_backward(c)
        return (a * c).sum()

    @staticmethod
    def backward(ctx, grad):
        (c,) = ctx.saved_tensors
        return (c if grad == 1 else grad * c), None


def test_a_grad_output_returned_to_two_parents_is_not_written():
    x = _leaf()
    h = x * 1.0
    y = AddTwice.apply(h, h)  # h gets y's gradient array twice, then a third term
    seen = []
    y.register_hook(lambda g: seen.append(g))
    (y * 2.0 + h * 3.0).sum().backward()
    assert np.array_equal(seen[0].numpy(), np.full(X.shape, 2.0))  # the array the hook saw
    assert np.array_equal(x.grad.numpy(), np.full(X.shape, 7.0))
    if torch is not None:
        class TorchAddTwice(torch.autograd.Function):
            @staticmethod
            def forward(ctx, a, b):
                return a + b

            @staticmethod
            def backward(ctx, grad):
                return grad, grad

        tx = _torch_leaf()
        th = tx * 1.0
        ty = TorchAddTwice.apply(th, th)
        tseen = []
        ty.register_hook(lambda g: tseen.append(g))
        (ty * 2.0 + th * 3.0).sum().backward()
        assert np.array_equal(seen[0].numpy(), tseen[0].numpy())
        assert np.array_equal(x.grad.numpy(), tx.grad.numpy())


def test_a_saved_array_returned_by_backward_is_not_written():
    x = _leaf()
    c = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    h = x * 1.0
    loss = DotConstant.apply(h, Tensor(c)) + DotConstant.apply(h, Tensor(c)) + h.sum()
    loss.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    assert np.array_equal(first, 2 * c + 1)
    assert np.array_equal(c, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    loss.backward()  # the retained graph reads the saved c again
    assert np.array_equal(x.grad.numpy(), 2 * first)


def test_a_hooks_return_value_is_not_written():
    x = _leaf()
    h = x * 1.0
    y = h + h  # Add returns its grad_output, the hook's array, to h twice
    kept = Tensor(np.full(X.shape, 0.5))
    y.register_hook(lambda g: kept)
    (y.sum() + (h * h).sum()).backward()
    assert np.array_equal(kept.numpy(), np.full(X.shape, 0.5))
    assert np.array_equal(x.grad.numpy(), 1.0 + 2 * X)
    if torch is not None:
        tx = _torch_leaf()
        th = tx * 1.0
        ty = th + th
        tkept = torch.full(X.shape, 0.5, dtype=torch.float64)
        ty.register_hook(lambda g: tkept)
        (ty.sum() + (th * th).sum()).backward()
        assert np.array_equal(x.grad.numpy(), tx.grad.numpy())


def test_read_only_broadcast_views_are_summed():
    x = _leaf()
    h = x * 1.0
    (h.sum() + h.sum() * 2.0 + h.sum() * 3.0 + h.mean()).backward()  # Sum returns stride-0 views
    assert np.allclose(x.grad.numpy(), np.full(X.shape, 6.0 + 1.0 / X.size))


def test_unbroadcast_and_cast_gradients_sum_in_the_input_dtype():
    b = Tensor(np.array([1.0, -2.0, 0.5], np.float32), requires_grad=True)
    wide, narrow = Tensor(X), Tensor(X.astype(np.float32))
    h = b * 1.0
    loss = ((wide * h).sum() + (narrow + h).sum() + (h * h).sum() + (wide - h).sum())
    loss.backward()
    assert b.grad.dtype == tg.float32
    expected = X.sum(0) + 2 + 2 * b.numpy() - 2
    assert np.allclose(b.grad.numpy(), expected, rtol=1e-6)
    if torch is not None:
        tb = torch.tensor(b.numpy(), requires_grad=True)
        twide, tnarrow = torch.tensor(X), torch.tensor(X, dtype=torch.float32)
        th = tb * 1.0
        ((twide * th).sum() + (tnarrow + th).sum() + (th * th).sum() + (twide - th).sum()).backward()
        assert tb.grad.dtype == torch.float32
        assert np.allclose(b.grad.numpy(), tb.grad.numpy(), rtol=1e-6)


def test_retain_grad_of_a_fan_in_tensor_is_kept_across_backwards():
    x = _leaf()
    h = (x * 1.0).retain_grad()
    loss = (h * h).sum() + h.sum() + h.exp().sum()
    loss.backward(retain_graph=True)
    first_grad = h.grad
    first = first_grad.numpy().copy()
    assert np.allclose(first, 2 * X + 1 + np.exp(X))
    loss.backward()
    assert np.array_equal(first_grad.numpy(), first)  # replaced, not written (as torch)
    assert np.allclose(h.grad.numpy(), 2 * first)
    if torch is not None:
        tx = _torch_leaf()
        th = tx * 1.0
        th.retain_grad()
        tloss = (th * th).sum() + th.sum() + th.exp().sum()
        tloss.backward(retain_graph=True)
        tfirst = th.grad
        tloss.backward()
        assert np.allclose(first_grad.numpy(), tfirst.numpy())
        assert np.allclose(h.grad.numpy(), th.grad.numpy())


def test_autograd_grad_returns_the_sum_of_a_fan_in():
    x = _leaf()
    h = x * 1.0
    (g,) = tg.autograd.grad((h * h).sum() + h.sum() + (h * 3.0).sum(), [h])
    assert np.allclose(g.numpy(), 2 * X + 4)
    assert x.grad is None


def test_create_graph_fan_in_stays_on_the_graph():
    x = _leaf()
    h = x * x
    loss = (h * h).sum() + h.sum() + h.sin().sum()
    (g,) = tg.autograd.grad(loss, [x], create_graph=True)
    (gg,) = tg.autograd.grad(g.sum(), [x])
    # loss = sum(x^4 + x^2 + sin(x^2)): first and second derivatives in closed form
    assert np.allclose(g.numpy(), 4 * X ** 3 + 2 * X + 2 * X * np.cos(X ** 2))
    assert np.allclose(gg.numpy(), 12 * X ** 2 + 2 + 2 * np.cos(X ** 2) - 4 * X ** 2 * np.sin(X ** 2))
    if torch is not None:
        tx = _torch_leaf()
        th = tx * tx
        tg_, = torch.autograd.grad((th * th).sum() + th.sum() + th.sin().sum(), [tx],
                                   create_graph=True)
        tgg, = torch.autograd.grad(tg_.sum(), [tx])
        assert np.allclose(g.numpy(), tg_.detach().numpy())
        assert np.allclose(gg.numpy(), tgg.numpy())


@pytest.mark.parametrize("uses", [2, 3, 5])
def test_leaf_fan_in_accumulates_into_grad(uses):
    x = _leaf()
    loss = sum(((x * float(k)).sum() for k in range(1, uses + 1)), Tensor(0.0))
    loss.backward()
    kept = x.grad
    loss2 = sum(((x * float(k)).sum() for k in range(1, uses + 1)), Tensor(0.0))
    loss2.backward()
    total = uses * (uses + 1) / 2
    assert x.grad is kept and np.array_equal(kept.numpy(), np.full(X.shape, 2 * total))


def test_a_captured_gradient_is_not_written_when_passed_on():
    x = _leaf()
    u, v = x * 1.0, x * 2.0
    h = u + v  # h's gradient (a sum the walk made) is captured, then Add hands it to u and v
    loss = (h * h).sum() + h.sum() + (u * 3.0).sum() + (u * u).sum()
    g_h, g_u = tg.autograd.grad(loss, [h, u])
    assert np.allclose(g_h.numpy(), 2 * 3 * X + 1)
    assert np.allclose(g_u.numpy(), 2 * 3 * X + 1 + 3 + 2 * X)
