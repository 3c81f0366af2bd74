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
    with pytest.raises(GradcheckKinkError, match=r"element \(1,\) = 0, output 0 .* sits on a kink.*from the left"):
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


# ---------------------------------------------------------------- torch's gradcheck, as users call it
def wrong_backward_cases(torch):
    """Custom Functions with wrong (or odd) backwards, checked the torch way; each returns the
    verdict. Run on tinygrad_tf and, where installed, on torch: the verdicts must agree."""
    gradcheck = torch.autograd.gradcheck

    def op(forward, backward):
        class Op(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return forward(x)

            @staticmethod
            def backward(ctx, g):
                return backward(ctx.saved_tensors[0], g)
        return Op.apply

    def x():
        return torch.tensor([0.6, 1.3, 1.9], dtype=torch.float64, requires_grad=True)

    off = op(lambda t: t * t, lambda t, g: 2 * t * g + 0.05)  # wrong by 0.05 everywhere
    noisy = op(lambda t: t * 3, lambda t, g: g * 3 + torch.rand(t.shape, dtype=t.dtype) * 1e-9)
    square = op(lambda t: t * t, lambda t, g: 2 * t * g)
    return {
        "right": lambda: gradcheck(square, (x(),)),
        "right, fast_mode": lambda: gradcheck(square, x(), fast_mode=True),
        # an error of 0.05 beside a Jacobian entry of 1000 (in the same output, or another)
        "beside a large entry": lambda: gradcheck(
            lambda t: torch.stack([t.sum() * 1e3, off(t).sum()]), (x(),), raise_exception=False),
        "beside a large output": lambda: gradcheck(
            lambda t: (t * 1e3, off(t)), (x(),), raise_exception=False),
        "non-deterministic": lambda: gradcheck(noisy, (x(),), raise_exception=False),
        "wrong by a factor": lambda: gradcheck(op(lambda t: t * t, lambda t, g: 3 * t * g),
                                               [x()], raise_exception=False),
    }


def test_gradcheck_fails_wrong_backwards_the_old_check_passed():
    # The old check compared one vector-Jacobian product (random weights w) with tolerance
    # rtol * |w . J|: an error beside a large entry hid under it, and a backward adding noise
    # passed. Those three passed before; now each fails, as in torch.
    import tinygrad_tf as tg
    verdicts = {name: case() for name, case in wrong_backward_cases(tg).items()}
    assert verdicts == {"right": True, "right, fast_mode": True, "beside a large entry": False,
                        "beside a large output": False, "non-deterministic": False,
                        "wrong by a factor": False}


def test_gradcheck_verdicts_match_torch():
    torch = pytest.importorskip("torch")
    import tinygrad_tf as tg
    ours = {name: case() for name, case in wrong_backward_cases(tg).items()}
    theirs = {name: case() for name, case in wrong_backward_cases(torch).items()}
    assert ours == theirs


def test_torch_calling_convention_and_options():
    import tinygrad_tf as tg
    x, y = inputs()
    right = make_op(lambda a, b, g: (g * b, g * a))
    wrong = make_op(lambda a, b, g: (2 * g * b, g * a))
    # inputs as one tuple or list (torch's form), every torch keyword accepted
    assert tg.autograd.gradcheck(lambda a, b: right.apply(a, b), (x, y))
    assert tg.autograd.gradcheck(lambda a, b: right.apply(a, b), [x, y], eps=1e-6, atol=1e-5,
                                 rtol=1e-3, nondet_tol=0.0, check_undefined_grad=True,
                                 check_grad_dtypes=True, check_batched_grad=True,
                                 fast_mode=True, masked=None)
    assert tg.autograd.gradcheck(lambda a, b: wrong.apply(a, b), (x, y),
                                 raise_exception=False) is False
    with pytest.raises(RuntimeError, match="input 0"):  # torch's GradcheckError is one
        tg.autograd.gradcheck(lambda a, b: wrong.apply(a, b), (x, y))
    # non-Tensor inputs are passed as they are
    assert tg.autograd.gradcheck(lambda a, n, s: a * len(range(n)) * s[0], (x, 3, [2.0]))
    with pytest.raises(NotImplementedError, match="no forward-mode AD"):
        tg.autograd.gradcheck(lambda a: a * 2, (x,), check_forward_ad=True)
    assert tg.autograd.gradgradcheck(lambda a: a * a * a, (x,), gen_non_contig_grad_outputs=True,
                                     check_batched_grad=True, fast_mode=True)


def test_backward_ignoring_or_misusing_grad_output_fails():
    import tinygrad_tf as tg

    def op(backward):
        class Op(tg.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * x

            @staticmethod
            def backward(ctx, g):
                return backward(ctx.saved_tensors[0], g)
        return Op.apply

    x = tg.tensor([0.6, 1.3, 1.9], dtype=tg.float64, requires_grad=True)
    # a constant added to the gradient: nonzero for a zero upstream gradient (torch's check)
    with pytest.raises(GradcheckError, match="backward not multiplied by grad_output.*input 0"):
        tg.autograd.gradcheck(op(lambda t, g: 2 * t * g + 1e-3), (x,))
    # right for the one-hot upstream gradients of the Jacobian's rows, wrong for others
    assert not tg.autograd.gradcheck(op(lambda t, g: 2 * t * g.abs()), (x,),
                                     raise_exception=False)


def test_undefined_output_gradients_reach_backward_as_in_torch():
    import tinygrad_tf as tg

    class Two(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.set_materialize_grads(False)
            return x * 2, x * 3

        @staticmethod
        def backward(ctx, g1, g2):  # forgets that either may be None
            return g1 * 2 + g2 * 3

    x = tg.tensor([0.6, 1.3], dtype=tg.float64, requires_grad=True)
    with pytest.raises(TypeError, match="NoneType"):  # torch raises the same TypeError
        tg.autograd.gradcheck(Two.apply, (x,))


def test_gradgradcheck_of_a_once_differentiable_backward_returns_false():
    import tinygrad_tf as tg
    from tinygrad_tf.autograd.function import once_differentiable

    class Cube(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        @once_differentiable
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return tg.from_numpy(3 * x.numpy() ** 2 * g.numpy())

    x = tg.tensor([0.6, 1.3], dtype=tg.float64, requires_grad=True)
    assert tg.autograd.gradcheck(Cube.apply, (x,))
    assert tg.autograd.gradgradcheck(Cube.apply, (x,), raise_exception=False) is False
    with pytest.raises(GradcheckError, match="once_differentiable"):
        tg.autograd.gradgradcheck(Cube.apply, (x,))


def test_first_order_only_backwards_and_a_backward_writing_its_grad_output():
    import tinygrad_tf as tg

    class Cube(tg.autograd.Function):  # backward through numpy, not marked once_differentiable
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return tg.from_numpy(3 * x.detach().numpy() ** 2) * g

    class Twice(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g.mul_(2)  # writes the upstream gradient gradcheck handed in: still right

    x = tg.tensor([0.6, 1.3], dtype=tg.float64, requires_grad=True)
    assert tg.autograd.gradcheck(Cube.apply, (x,))
    assert tg.autograd.gradgradcheck(Cube.apply, (x,), raise_exception=False) is False  # as torch
    assert tg.autograd.gradcheck(Twice.apply, (x,))
    assert tg.autograd.gradcheck(Twice.apply, (x,), fast_mode=True)


def test_a_function_rounding_to_float32_is_named_as_the_cause():
    # A right gradient fails when fn computes in float32 whatever it is given: the numeric side
    # (float64 copies of the inputs) is then rounding noise. The message said "wrong gradient"
    # (or "kink") and nothing more before.
    import tinygrad_tf as tg
    x32 = tg.tensor([0.6, 1.3, 1.9], requires_grad=True)
    with pytest.raises(GradcheckError, match="fn returned float32 from float64 inputs"):
        tg.autograd.gradcheck(lambda a: a.float() ** 2, (x32,))
    x = tg.tensor([0.6, 1.3, 1.9], dtype=tg.float64, requires_grad=True)
    with pytest.raises(GradcheckError, match="fn may round inside"):
        tg.autograd.gradcheck(lambda a: (a.float() ** 2).double(), (x,))
    assert tg.autograd.gradcheck(lambda a: a * a, (x32,))  # float32 inputs, computed in kind


def test_grad_outputs_for_some_outputs_only_and_positional_options_raise():
    import tinygrad_tf as tg
    x = tg.tensor([0.6, 1.3], dtype=tg.float64, requires_grad=True)
    y = tg.tensor([0.9, 1.1], dtype=tg.float64, requires_grad=True)
    # one grad_output for two outputs: only the first output was checked (True) before
    with pytest.raises(RuntimeError, match="2 float output.*1 grad_output"):
        tg.autograd.gradgradcheck(lambda a, b: (a * b, a * a * b), (x, y),
                                  (tg.ones(2, dtype=tg.float64),))
    # torch's form with eps, atol, rtol positional: they were taken for inputs before
    with pytest.raises(TypeError, match="by keyword"):
        tg.autograd.gradcheck(lambda a: a * a, (x,), 1e-6, 1e-5, 1e-3)
