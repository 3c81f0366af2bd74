"""Every array a backward needs goes through save_for_backward (issue 18): for every Function of
the catalogue, writing any of its inputs in place after the forward either makes backward raise
the in-place error or leaves the gradient as a fresh computation gives it. Same for random op
chains (a property test), and for load_state_dict / nn.init on a saved parameter."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinygrad_tf as tg
from tinygrad_tf import Tensor, no_grad

from op_catalogue import CASES, all_functions, build, case_name

INPLACE_ERROR = "modified by an in-place operation"


def _grads(fn, inputs):
    out = fn(*inputs)
    weight = np.linspace(0.5, 1.5, out.array.size).reshape(out.shape)
    (out * Tensor(weight)).sum().backward()
    return [None if t.grad is None else t.grad.array.copy() for t in inputs if t.requires_grad]


def _mutate(t):
    """Change t's values in place through the Tensor API (which bumps its version)."""
    with no_grad():
        if t.dtype == np.bool_:
            t[...] = ~t.array
        elif t.dtype.kind in "iu":
            t[...] = t.array.reshape(-1)[::-1].reshape(t.shape).copy()
        else:
            t.mul_(1.5).add_(0.25)


def test_every_function_has_a_case():
    missing = sorted(case_name(cls) for cls in all_functions())
    missing = [name for name in missing if name not in CASES]
    assert not missing, f"add these Functions to tests/op_catalogue.py: {missing}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_mutating_an_input_after_forward(name):
    fn, inputs = build(name)
    expected = _grads(fn, build(name)[1])
    for k in range(len(inputs)):
        fn, inputs = build(name)
        out = fn(*inputs)
        weight = np.linspace(0.5, 1.5, out.array.size).reshape(out.shape)
        loss = (out * Tensor(weight)).sum()
        _mutate(inputs[k])
        try:
            loss.backward()
        except RuntimeError as error:
            assert INPLACE_ERROR in str(error), error
            continue
        got = [None if t.grad is None else t.grad.array for t in inputs if t.requires_grad]
        for g, e in zip(got, expected):
            assert (g is None) == (e is None)
            if g is not None:
                np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12,
                                           err_msg=f"{name}: input {k} written after forward")


_UNARY = [lambda x: x.exp(), lambda x: x.tanh(), lambda x: x * x, lambda x: x.sigmoid(),
          lambda x: x.sin(), lambda x: x.softmax(-1), lambda x: x.relu(),
          lambda x: x[np.array([1, 0, 1])], lambda x: x.masked_fill(x.array > 0.5, 0.0)]
_BINARY = [lambda x, y: x + y, lambda x, y: x * y, lambda x, y: x @ y.T,
           lambda x, y: x / (y * y + 1),
           lambda x, y: tg.where(y.array > 0, x, y)]


@settings(max_examples=12)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 99), st.integers(0, 99)), min_size=1,
                max_size=5), st.integers(0, 99), st.integers(0, 2))
def test_random_chains_raise_or_stay_right(steps, pick, seed):
    def run(mutate_at=None):
        rng = np.random.default_rng(seed)
        a = Tensor(rng.uniform(-1, 1, (3, 3))).requires_grad_()
        b = Tensor(rng.uniform(-1, 1, (3, 3))).requires_grad_()
        made = [a, b]
        x = a
        for binary, i, j in steps:
            x = _BINARY[i % len(_BINARY)](x, made[j % len(made)]) if binary \
                else _UNARY[i % len(_UNARY)](x)
            made.append(x)
        loss = (x * x).sum()
        if mutate_at is not None:
            _mutate(made[mutate_at % len(made)])
        loss.backward()
        return a.grad.array, None if b.grad is None else b.grad.array

    expected = run()
    try:
        got = run(pick)
    except RuntimeError as error:
        assert INPLACE_ERROR in str(error), error
        return
    for g, e in zip(got, expected):
        if e is not None:
            np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)


def test_load_state_dict_on_a_saved_parameter_raises():
    # the input requires grad, so its gradient needs the weight: saved (as torch; with an
    # input that needs no gradient the weight is not saved, test_saved_torch.py)
    from tinygrad_tf.nn import Linear
    layer = Linear(3, 2)
    state = {k: v.array.copy() + 1 for k, v in layer.state_dict().items()}
    loss = (layer(Tensor(np.ones((4, 3), np.float32), requires_grad=True)) ** 2).sum()
    layer.load_state_dict(state)
    with pytest.raises(RuntimeError, match=INPLACE_ERROR):
        loss.backward()


def test_nn_init_on_a_saved_parameter_raises():
    from tinygrad_tf.nn import Linear, init
    layer = Linear(3, 2)
    loss = (layer(Tensor(np.ones((4, 3), np.float32), requires_grad=True)) ** 2).sum()
    init.normal_(layer.weight)
    with pytest.raises(RuntimeError, match=INPLACE_ERROR):
        loss.backward()


def test_masked_fill_value_tensor_gets_its_gradient():
    x = Tensor(np.arange(6.0).reshape(2, 3)).requires_grad_()
    value = Tensor(2.0).requires_grad_()
    mask = Tensor(np.array([[True, False, True], [False, False, True]]))
    out = x.masked_fill(mask, value)
    (out * Tensor(np.arange(1.0, 7.0).reshape(2, 3))).sum().backward()
    assert value.grad.shape == () and value.grad.item() == 1 + 3 + 6
    np.testing.assert_array_equal(x.grad.array, [[0, 2, 0], [4, 5, 0]])
    with pytest.raises(ValueError, match="0-d"):
        x.masked_fill(mask, Tensor([1.0]))


def test_masked_fill_value_tensor_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    xs, ms = rng.standard_normal((3, 4)), rng.uniform(size=(4,)) > 0.5
    x, v = Tensor(xs).requires_grad_(), Tensor(np.float64(0.3)).requires_grad_()
    (x.masked_fill(Tensor(ms), v).sin().sum()).backward()
    tx = torch.tensor(xs, requires_grad=True)
    tv = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    tx.masked_fill(torch.tensor(ms), tv).sin().sum().backward()
    np.testing.assert_allclose(v.grad.array, tv.grad.numpy())
    np.testing.assert_allclose(x.grad.array, tx.grad.numpy())


# ---------------------------------------------------------------------------- saved only if needed
# As torch, a binary op saves an input only if a gradient that reads it is needed: in x @ W
# with x a constant, W's gradient (x^T g) reads x alone, so W may change in place (an optimizer
# step, say) between forward and backward. (tests/test_saved_torch.py: every op against torch.)

def _x_and_w(x_shape, w_shape):
    rng = np.random.default_rng(3)
    return Tensor(rng.uniform(-1, 1, x_shape)), Tensor(rng.uniform(0.5, 1.5, w_shape),
                                                       requires_grad=True)


@pytest.mark.parametrize("op, x_shape, w_shape", [
    ("matmul", (2, 3), (3, 4)), ("matmul", (5, 2, 3), (3, 4)), ("matmul", (3,), (3, 4)),
    ("matmul", (2, 3), (3,)), ("matmul", (3,), (3,)), ("mul", (2, 3), (3,)),
    ("linear", (5, 2, 3), (4, 3))])
def test_writing_an_input_whose_gradient_is_not_needed(op, x_shape, w_shape):
    # before: backward raised "modified by an in-place operation" (every input was saved)
    fn = {"matmul": lambda x, w: x @ w, "mul": lambda x, w: x * w,
          "linear": lambda x, w: tg.nn.functional.linear(x, w)}[op]
    x, w = _x_and_w(x_shape, w_shape)
    out = fn(x, w)
    seed = np.linspace(0.5, 1.5, out.array.size).reshape(out.shape)
    with no_grad():
        w.add_(1.0)  # W's gradient reads only x and the upstream gradient
    out.backward(Tensor(seed))
    expected = Tensor(w.array.copy()).requires_grad_()
    fn(x, expected).backward(Tensor(seed))
    np.testing.assert_allclose(w.grad.array, expected.grad.array, rtol=1e-12)
    # x is saved for W's gradient: writing it is caught
    x, w = _x_and_w(x_shape, w_shape)
    out = fn(x, w)
    x.add_(1.0)
    with pytest.raises(RuntimeError, match=INPLACE_ERROR):
        out.backward(Tensor(seed))


def test_an_optimizer_step_between_forward_and_backward_of_a_first_layer():
    # before: raised; torch allows it (the constant input is saved, not the weight, and the
    # weight's gradient does not depend on the weight)
    from tinygrad_tf import nn, optim
    layer = nn.Linear(3, 2, dtype=np.float64)
    x = Tensor(np.linspace(-1, 1, 12).reshape(4, 3))
    optimizer = optim.SGD(layer.parameters(), lr=0.1)
    layer(x).sum().backward()
    loss = layer(x).sum()
    optimizer.step()  # the first loss's step, in place, after the second forward
    optimizer.zero_grad()
    loss.backward()
    np.testing.assert_allclose(layer.weight.grad.array, np.tile(x.array.sum(0), (2, 1)))


def test_div_saves_the_divisor_always_and_the_dividend_for_the_divisor():
    # before: writing the dividend raised even when only it needed a gradient; torch saves it
    # only for the divisor's gradient
    x, w = _x_and_w((2, 3), (3,))
    x.requires_grad_()
    w.requires_grad_(False)
    out = x / w
    with no_grad():
        x.add_(1.0)
    out.sum().backward()
    np.testing.assert_allclose(x.grad.array, np.broadcast_to(1 / w.array, (2, 3)))
    x, w = _x_and_w((2, 3), (3,))
    out = x / w
    x.add_(1.0)  # read by the divisor's gradient
    with pytest.raises(RuntimeError, match=INPLACE_ERROR):
        out.sum().backward()
