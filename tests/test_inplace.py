"""In-place ops, version counters, autograd.grad and hooks, and the torch traps of issue 11,
checked without torch (test_torch_parity.py runs the same items against torch)."""
import gc
import weakref

import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import Tensor, no_grad
from tinygrad_tf import versions


def leaf(*values):
    return tg.tensor(np.array(values, dtype=np.float64), requires_grad=True)


# ---------------------------------------------------------------------------- the traps

def test_augmented_assignment_under_no_grad_updates_the_parameter_in_place():
    w = leaf(1.0, 2.0)
    before = w
    (w * w).sum().backward()
    with no_grad():
        w -= 0.5 * w.grad
    assert w is before and w.tolist() == [0.0, 0.0]


def test_max_with_dim_returns_values_and_indices():
    x = Tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    assert x.max(1)[1].tolist() == [1, 0]
    assert x.max(1).values.tolist() == [5.0, 7.0]
    assert x.min(0).indices.tolist() == [0, 1, 0]
    assert x.max().item() == 7.0


def test_tensor_copies_numpy_data_and_from_numpy_shares_it():
    array = np.zeros(3)
    copied, shared = Tensor(array), Tensor.from_numpy(array)
    array[0] = 1.0
    assert copied.tolist() == [0.0, 0.0, 0.0] and shared.tolist() == [1.0, 0.0, 0.0]


def test_sigmoid_is_precise_in_the_far_negative_tail_in_float32():
    x = Tensor(np.array([-17.0, -40.0, -80.0], dtype=np.float32))
    expected = np.exp(np.array([-17.0, -40.0, -80.0]))  # sigmoid(x) ~ exp(x) there
    np.testing.assert_allclose(x.sigmoid().numpy(), expected, rtol=1e-5)
    assert np.isfinite(x.sigmoid().log().numpy()).all()  # a hand-written BCE stays finite


def test_masked_fill_rejects_a_mask_that_would_grow_the_tensor():
    with pytest.raises(ValueError, match=r"masked_fill: mask of shape \(2, 3\) does not "
                                         r"broadcast to the tensor's shape \(3,\)"):
        Tensor.zeros(3).masked_fill(np.ones((2, 3), bool), 1.0)


def test_mean_of_an_empty_tensor_is_nan():
    assert np.isnan(Tensor.zeros(0).mean().item())
    assert np.isnan(Tensor.zeros(0, 2).mean(0).numpy()).all()


def test_tensor_to_a_tensor_power_differentiates_both():
    a, b = leaf(2.0, 3.0), leaf(3.0, 0.5)
    (a ** b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [3.0 * 4.0, 0.5 / np.sqrt(3.0)])
    np.testing.assert_allclose(b.grad.numpy(), [8.0 * np.log(2.0), np.sqrt(3.0) * np.log(3.0)])


# ---------------------------------------------------------------------------- in-place rules

def test_inplace_on_a_leaf_that_requires_grad_raises_outside_no_grad():
    w = leaf(1.0)
    for write in (lambda: w.add_(1.0), lambda: w.zero_(), lambda: w.__setitem__(0, 2.0),
                  lambda: w.masked_fill_(Tensor([True]), 0.0)):
        with pytest.raises(RuntimeError, match="leaf tensor of shape \\(1,\\) that requires grad"):
            write()
    with no_grad():
        w.add_(1.0)
    assert w.tolist() == [2.0]


def test_inplace_on_a_graph_tensor_raises_instead_of_a_wrong_gradient():
    w = leaf(1.0, 2.0)
    h = w * 3
    with pytest.raises(RuntimeError, match="part of the autograd graph .* made by Mul"):
        h += 1
    buffer = Tensor.zeros(2, dtype=np.float64)
    with pytest.raises(RuntimeError, match="writing a tensor that requires grad"):
        buffer.copy_(w)


def test_inplace_errors_name_the_op_and_shapes():
    with pytest.raises(ValueError, match=r"add_: an operand of shape \(3,\) does not broadcast "
                                         r"to the tensor's shape \(2,\)"):
        Tensor.zeros(2).add_(Tensor.ones(3))
    with pytest.raises(TypeError, match="div_: .* cannot be stored in place .* int64"):
        Tensor([1, 2]).div_(2)
    with pytest.raises(RuntimeError, match="read-only view"):
        Tensor.zeros(3).expand(2, 3).fill_(1.0)


def test_version_counter_counts_writes_and_is_shared_with_views_and_detach():
    x = Tensor.zeros(2, 3)
    view, alias = x[1], x.detach()
    assert x._version == 0
    view.fill_(1.0)
    x.add_(1.0)
    assert x._version == view._version == alias._version == 2
    assert x.numpy()[1].tolist() == [2.0, 2.0, 2.0]
    assert Tensor.zeros(2)._version == 0  # a new tensor has its own counter


def test_backward_raises_when_a_saved_array_was_written_in_place():
    w, b = leaf(1.0, 2.0), Tensor(np.array([3.0, 4.0]))
    y = (w * b).sum()
    b.mul_(2.0)
    with pytest.raises(RuntimeError, match=r"backward through Mul: an array of shape \(2,\) .* "
                                           r"version 1; backward needs version 0"):
        y.backward()


def test_only_arrays_an_op_saved_matter():
    w, b = leaf(1.0, 2.0), Tensor(np.array([3.0, 4.0]))
    y = (w + b).sum()  # Add saves nothing
    b.add_(1.0)
    y.backward()
    assert w.grad.tolist() == [1.0, 1.0]


def test_a_parameter_update_between_backwards_of_a_retained_graph_is_caught():
    w = leaf(1.0, 2.0)
    loss = (w * w).sum()
    loss.backward(retain_graph=True)
    with no_grad():
        w -= 0.1 * w.grad
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        loss.backward()


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_an_optimizer_step_between_backwards_of_a_retained_graph_is_caught(name):
    """The optimizers update their flat arena in place, outside the Tensor API."""
    from tinygrad_tf import nn, optim
    layer = nn.Linear(3, 2, dtype=np.float64)
    optimizer = getattr(optim, name)(layer.parameters(), lr=0.1)
    # Linear saves its weight for the input's gradient (as torch: not if x needs none)
    loss = (layer(Tensor(np.ones((4, 3)), requires_grad=True)) ** 2).sum()
    loss.backward(retain_graph=True)
    optimizer.step()
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        loss.backward()


def test_increment_version_covers_writes_outside_the_tensor_api():
    """Optimizers and a flat parameter arena write arrays directly; one call per buffer makes
    every view of it stale for backward."""
    arena = np.ones(4)
    w = Tensor.from_numpy(arena[:2]).requires_grad_()
    loss = (w * w).sum()
    arena[:2] -= 0.5  # a direct write: invisible until reported
    tg.autograd.increment_version(arena)
    assert w._version == 1
    with pytest.raises(RuntimeError, match="Mul"):
        loss.backward()
    with pytest.raises(TypeError, match="increment_version: expected a Tensor or a numpy array"):
        tg.autograd.increment_version([1.0])


def test_the_saved_version_is_named_even_after_many_writes():
    w, b = leaf(1.0), Tensor(np.array([3.0]))
    y = (w * b).sum()
    for _ in range(3 * versions._KEPT_WRITES):
        b.add_(0.0)
    with pytest.raises(RuntimeError, match=r"needs version at most \d+"):
        y.backward()


def test_version_records_leave_with_their_array():
    x = Tensor.zeros(3)
    x.add_(1.0)
    key = id(versions._root(x.array))
    assert key in versions._records
    ref = weakref.ref(x.array)
    del x
    gc.collect()
    assert ref() is None and key not in versions._records


# ---------------------------------------------------------------------------- grad and hooks

def test_autograd_grad_returns_gradients_without_touching_grad():
    x, y = leaf(1.0, 2.0), leaf(3.0)
    out = (x * x).sum() * y
    gx, gy = tg.autograd.grad(out, (x, y), retain_graph=True)
    assert gx.tolist() == [6.0, 12.0] and gy.tolist() == [5.0]
    assert x.grad is None and y.grad is None
    (gx_only,) = tg.autograd.grad(out, [x])
    assert gx_only.tolist() == [6.0, 12.0]


def test_autograd_grad_of_an_intermediate_and_with_grad_outputs():
    x = leaf(1.0, 2.0)
    h = x * 2
    out = h * h
    gh, gx = tg.autograd.grad(out, (h, x), grad_outputs=Tensor(np.array([1.0, 0.5])))
    assert gh.tolist() == [4.0, 4.0] and gx.tolist() == [8.0, 8.0]


def test_autograd_grad_unused_inputs():
    x, unused = leaf(1.0), leaf(2.0)
    with pytest.raises(RuntimeError, match="not used by the outputs"):
        tg.autograd.grad((x * 2).sum(), (x, unused), retain_graph=True)
    gx, none = tg.autograd.grad((x * 2).sum(), (x, unused), allow_unused=True)
    assert gx.tolist() == [2.0] and none is None


def test_register_hook_observes_and_replaces_gradients():
    x = leaf(1.0, 2.0)
    seen = []
    x.register_hook(lambda g: seen.append(g.tolist()))
    h = x * 3
    handle = h.register_hook(lambda g: g * 10)
    h.sum().backward()
    assert seen == [[30.0, 30.0]] and x.grad.tolist() == [30.0, 30.0]
    handle.remove()
    x.grad = None
    (x * 3).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]
    with pytest.raises(RuntimeError, match="hook returned"):
        y = leaf(1.0)
        y.register_hook(lambda g: Tensor.zeros(5))
        (y * 1).sum().backward()


@pytest.mark.parametrize("create_graph", [False, True])
def test_a_hook_may_not_change_the_gradients_dtype_or_shape(create_graph):
    # As torch ("hook has changed the type of value"): before, the plain walk cast a float64
    # result back to float32 and the create_graph walk took any result, of any shape
    for change in (lambda g: g.float(), lambda g: g[:1]):  # (leaf() is float64)
        y = leaf(1.0, 2.0)
        z = y * 1
        z.register_hook(change)
        with pytest.raises(RuntimeError, match="hook returned"):
            z.sum().backward(create_graph=create_graph)
