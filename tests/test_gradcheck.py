"""gradcheck itself: it passes right gradients, catches wrong ones with a useful message, tells
kinks apart, and checks every element."""
import numpy as np
import pytest

from tinygrad_tf import GradcheckError, GradcheckKinkError, Tensor, gradcheck
from tinygrad_tf.autograd import ArrayFunction


def make_op(backward):
    """A Function computing x * y whose backward is the given (possibly wrong) formula."""
    class Op(ArrayFunction):
        @staticmethod
        def forward(ctx, x, y):
            ctx.save_for_backward(x, y)
            return x * y

        @staticmethod
        def backward(ctx, grad):
            x, y = ctx.saved_tensors
            return backward(x, y, grad)
    return Op


def inputs(shape=(3, 4)):
    rng = np.random.default_rng(1)
    return (Tensor(rng.uniform(0.5, 2, shape), requires_grad=True),
            Tensor(rng.uniform(0.5, 2, shape), requires_grad=True))


def test_right_gradient_passes():
    op = make_op(lambda x, y, g: (g * y, g * x))
    assert gradcheck(lambda a, b: op.apply(a, b), *inputs()) is True


def test_wrong_backward_is_caught_with_input_index_values_and_count():
    op = make_op(lambda x, y, g: (g * y, g * y))  # grad of y wrong everywhere
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda a, b: op.apply(a, b), *inputs())
    message = str(info.value)
    assert "wrong gradient for input 1 (shape (3, 4), float64)" in message
    assert "analytic" in message and "numeric" in message
    assert "of 12 elements disagree" in message and "atol" in message
    assert not isinstance(info.value, GradcheckKinkError)


def test_a_single_wrong_element_is_found():
    def backward(x, y, g):
        gy = g * x
        gy[2, 3] *= 1.01  # one element of 12, a 1% error
        return g * y, gy

    op = make_op(backward)
    with pytest.raises(GradcheckError, match=r"input 1 .* element \(2, 3\) .* 1 of 12 elements"):
        gradcheck(lambda a, b: op.apply(a, b), *inputs())


def test_an_error_mixing_up_elements_fails_under_the_non_uniform_upstream_grad():
    # With an all-ones upstream gradient, a backward that permutes its output could pass for
    # symmetric functions; gradcheck's random weights expose it.
    op = make_op(lambda x, y, g: (g[::-1] * y, g * x))
    with pytest.raises(GradcheckError, match="input 0"):
        gradcheck(lambda a, b: op.apply(a, b).sum(1), *inputs())


def test_nan_gradient_fails():
    op = make_op(lambda x, y, g: (g * y * np.nan, g * x))
    with pytest.raises(GradcheckError, match="analytic nan"):
        gradcheck(lambda a, b: op.apply(a, b), *inputs())


def test_kink_is_reported_as_a_kink():
    x = Tensor(np.array([1.0, 0.0, -2.0]), requires_grad=True)
    with pytest.raises(GradcheckKinkError, match=r"element \(1,\) = 0 sits on a kink.*from the left"):
        gradcheck(lambda t: t.relu(), x)
    # max(dim) gives a tie's gradient to one index (as torch), which central differences see as a
    # kink; the full max() splits it evenly, which matches them, so it passes (as in torch)
    tie = Tensor(np.array([3.0, 3.0, 1.0]), requires_grad=True)
    with pytest.raises(GradcheckKinkError, match="kink"):
        gradcheck(lambda t: t.max(0).values, tie)
    assert gradcheck(lambda t: t.max(), tie)


def test_float32_function_is_checked_against_float64_numerics():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((4, 5)).astype(np.float32), requires_grad=True)
    w = Tensor(rng.standard_normal((5, 3)).astype(np.float32), requires_grad=True)
    assert gradcheck(lambda a, b: (a @ b).tanh().softmax(-1), x, w)


def test_only_inputs_that_require_grad_are_checked():
    x, y = inputs()
    constant = Tensor(y.numpy())
    op = make_op(lambda a, b, g: (g * b, None))
    assert gradcheck(lambda a, b: op.apply(a, b), x, constant)
    with pytest.raises(ValueError, match="no input requires grad"):
        gradcheck(lambda a: a * 2, constant)


def test_multiple_outputs_and_large_constants():
    x = Tensor(np.array([0.5, -0.25]), requires_grad=True)
    assert gradcheck(lambda t: (t.exp(), t * 3), x)
    # 1e9 in the output would swamp a difference of summed outputs; per-element differences
    # keep it exact.
    assert gradcheck(lambda t: t.masked_fill(np.array([True, False]), 1e9), x)
    with pytest.raises(TypeError, match="must return a Tensor"):
        gradcheck(lambda t: t.numpy(), x)
