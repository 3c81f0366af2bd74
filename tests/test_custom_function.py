"""torch-style custom autograd Functions (autograd_function.py): Tensors in and out of forward
and backward, as torch.autograd.Function. The examples are the classic ones of torch's
tutorials and notes (custom ReLU, Exp, LegendrePolynomial3, LinearFunction, MulConstant),
written once against a library module `lib` and run through both tinygrad_tf and torch."""
import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import Tensor
from tinygrad_tf.autograd import grad


def examples(lib):
    """The custom Functions, written for `lib` (tinygrad_tf or torch) by one import swap."""
    Function = lib.autograd.Function
    once_differentiable = lib.autograd.function.once_differentiable

    class MyReLU(Function):  # "Learning PyTorch with examples"
        @staticmethod
        def forward(ctx, input):
            ctx.save_for_backward(input)
            return input.clamp(min=0)

        @staticmethod
        def backward(ctx, grad_output):
            (input,) = ctx.saved_tensors
            grad_input = grad_output.clone()
            grad_input[input < 0] = 0
            return grad_input

    class Exp(Function):  # torch.autograd.Function's docstring: saves its output
        @staticmethod
        def forward(ctx, i):
            result = i.exp()
            ctx.save_for_backward(result)
            return result

        @staticmethod
        def backward(ctx, grad_output):
            (result,) = ctx.saved_tensors
            return grad_output * result

    class LegendrePolynomial3(Function):  # polynomial_custom_function.py
        @staticmethod
        def forward(ctx, input):
            ctx.save_for_backward(input)
            return 0.5 * (5 * input ** 3 - 3 * input)

        @staticmethod
        def backward(ctx, grad_output):
            (input,) = ctx.saved_tensors
            return grad_output * 1.5 * (5 * input ** 2 - 1)

    class LinearFunction(Function):  # "Extending torch.autograd": an optional bias
        @staticmethod
        def forward(ctx, input, weight, bias=None):
            ctx.save_for_backward(input, weight, bias)
            output = input.mm(weight.t())
            if bias is not None:
                output += bias.unsqueeze(0).expand_as(output)
            return output

        @staticmethod
        def backward(ctx, grad_output):
            input, weight, bias = ctx.saved_tensors
            grad_input = grad_weight = grad_bias = None
            if ctx.needs_input_grad[0]:
                grad_input = grad_output.mm(weight)
            if ctx.needs_input_grad[1]:
                grad_weight = grad_output.t().mm(input)
            if bias is not None and ctx.needs_input_grad[2]:
                grad_bias = grad_output.sum(0)
            return grad_input, grad_weight, grad_bias

    class MulConstant(Function):  # a non-tensor argument gets None
        @staticmethod
        def forward(ctx, tensor, constant):
            ctx.constant = constant
            return tensor * constant

        @staticmethod
        def backward(ctx, grad_output):
            return grad_output * ctx.constant, None

    class SortWithIndices(Function):  # two outputs, one of them not differentiable
        @staticmethod
        def forward(ctx, x):
            values, indices = x.sort(dim=-1)
            ctx.mark_non_differentiable(indices)
            ctx.save_for_backward(indices)
            ctx.size = x.shape[-1]
            return values, indices

        @staticmethod
        def backward(ctx, grad_values, grad_indices):
            (indices,) = ctx.saved_tensors
            grad = grad_values.new_zeros(grad_values.shape)
            return grad.scatter_add(-1, indices, grad_values)

    class SplitHalves(Function):  # two differentiable outputs; backward sees None for unused
        @staticmethod
        def forward(ctx, x):
            ctx.set_materialize_grads(False)
            return x[:2] * 2, x[2:] * 3

        @staticmethod
        def backward(ctx, grad_a, grad_b):
            SplitHalves.seen.append((grad_a is None, grad_b is None))
            parts = [grad_a * 2 if grad_a is not None else grad_b.new_zeros(2),
                     grad_b * 3 if grad_b is not None else grad_a.new_zeros(1)]
            return lib.cat(parts)

    SplitHalves.seen = []

    class NumpyCube(Function):  # a backward through numpy: first order only
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        @once_differentiable
        def backward(ctx, grad_output):
            (x,) = ctx.saved_tensors
            value = 3 * np.asarray(x.detach().numpy()) ** 2 * grad_output.numpy()
            return lib.from_numpy(value)

    class SetupCube(Function):  # forward without ctx plus setup_context (torch 2's form)
        @staticmethod
        def forward(x, scale):
            return scale * x ** 3

        @staticmethod
        def setup_context(ctx, inputs, output):
            x, scale = inputs
            ctx.save_for_backward(x)
            ctx.scale = scale

        @staticmethod
        def backward(ctx, grad_output):
            (x,) = ctx.saved_tensors
            return grad_output * ctx.scale * 3 * x ** 2, None

    class ScaleInPlace(Function):  # forward changes its input and says so (mark_dirty)
        @staticmethod
        def forward(ctx, x):
            x.mul_(2)
            ctx.mark_dirty(x)
            return x

        @staticmethod
        def backward(ctx, grad_output):
            return grad_output * 2

    return {cls.__name__: cls for cls in (MyReLU, Exp, LegendrePolynomial3, LinearFunction,
                                          MulConstant, SortWithIndices, SplitHalves, NumpyCube,
                                          SetupCube, ScaleInPlace)}


OURS = examples(tg)
X = np.array([[0.5, -1.25, 2.0], [-0.75, 1.5, 0.25]])
W = np.array([[0.3, -0.2, 0.1], [0.7, 0.4, -0.5], [-0.6, 0.2, 0.9], [0.1, 0.1, 0.1]])
B = np.array([0.05, -0.1, 0.2, 0.3])


def programs(lib, fns):
    """name -> (inputs, program): each program maps the inputs to a scalar loss."""
    def t(a):
        return lib.tensor(a.copy(), requires_grad=True)
    w = lib.tensor(np.linspace(0.5, 1.5, 6).reshape(2, 3))
    return {
        "relu": ([t(X)], lambda x: (fns["MyReLU"].apply(x) * w).sum()),
        "exp": ([t(X)], lambda x: (fns["Exp"].apply(x) * w).sum()),
        "legendre": ([t(X)], lambda x: (fns["LegendrePolynomial3"].apply(x) * w).sum()),
        "linear": ([t(X), t(W), t(B)],
                   lambda x, a, b: (fns["LinearFunction"].apply(x, a, b) ** 2).sum()),
        "linear_no_bias": ([t(X), t(W)],
                           lambda x, a: (fns["LinearFunction"].apply(x, a) ** 2).sum()),
        "mul_constant": ([t(X)], lambda x: (fns["MulConstant"].apply(x, 2.5) * w).sum()),
        "sort": ([t(X)], lambda x: (fns["SortWithIndices"].apply(x)[0] * w).sum()),
        "halves_one_used": ([t(X[0])], lambda x: fns["SplitHalves"].apply(x)[1].sum()),
        "halves_both": ([t(X[0])],
                        lambda x: sum(o.sum() * (i + 1)
                                      for i, o in enumerate(fns["SplitHalves"].apply(x)))),
        "numpy_cube": ([t(X)], lambda x: (fns["NumpyCube"].apply(x) * w).sum()),
        "setup_cube": ([t(X)], lambda x: (fns["SetupCube"].apply(x, 0.5) * w).sum()),
        "in_place": ([t(X)], lambda x: (fns["ScaleInPlace"].apply(x * 1) * w).sum()),
    }


EXPECTED_GRADS = {  # by hand, for the tests that run without torch
    "relu": lambda x: [(x > 0) * np.linspace(0.5, 1.5, 6).reshape(2, 3)],
    "exp": lambda x: [np.exp(x) * np.linspace(0.5, 1.5, 6).reshape(2, 3)],
    "legendre": lambda x: [1.5 * (5 * x ** 2 - 1) * np.linspace(0.5, 1.5, 6).reshape(2, 3)],
    "mul_constant": lambda x: [2.5 * np.linspace(0.5, 1.5, 6).reshape(2, 3)],
    "numpy_cube": lambda x: [3 * x ** 2 * np.linspace(0.5, 1.5, 6).reshape(2, 3)],
    "setup_cube": lambda x: [1.5 * x ** 2 * np.linspace(0.5, 1.5, 6).reshape(2, 3)],
    "in_place": lambda x: [2 * np.linspace(0.5, 1.5, 6).reshape(2, 3)],
}


def _run(lib, fns, name):
    inputs, program = programs(lib, fns)[name]
    loss = program(*inputs)
    loss.backward()
    return float(loss.detach()), [np.asarray(x.grad.detach().numpy()) for x in inputs]


@pytest.mark.parametrize("name", sorted(EXPECTED_GRADS))
def test_tutorial_functions_give_the_right_gradients(name):
    _, grads = _run(tg, OURS, name)
    for got, want in zip(grads, EXPECTED_GRADS[name](X)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_linear_function_gradients():
    _, (gx, gw, gb) = _run(tg, OURS, "linear")
    g = 2 * (X @ W.T + B)
    np.testing.assert_allclose(gx, g @ W, rtol=1e-12)
    np.testing.assert_allclose(gw, g.T @ X, rtol=1e-12)
    np.testing.assert_allclose(gb, g.sum(0), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(programs(tg, OURS)))
def test_same_losses_and_gradients_as_torch(name):
    torch = pytest.importorskip("torch")
    loss, grads = _run(tg, OURS, name)
    torch_loss, torch_grads = _run(torch, examples(torch), name)
    assert loss == pytest.approx(torch_loss, rel=1e-12)
    for got, want in zip(grads, torch_grads):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_forward_and_backward_see_the_callers_tensors_with_grad_off():
    seen = {}

    class Probe(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x, k):
            seen["forward"] = (x, tg.is_grad_enabled(), ctx.needs_input_grad)
            ctx.save_for_backward(x)
            return x * k

        @staticmethod
        def backward(ctx, g):
            (saved,) = ctx.saved_tensors
            seen["backward"] = (type(g), saved, tg.is_grad_enabled())
            return g * 2, None

    x = Tensor(X.copy(), requires_grad=True)
    y = Probe.apply(x, 2)
    assert seen["forward"] == (x, False, (True, False))
    assert type(y.grad_fn).__name__ == "ProbeBackward" and y.requires_grad
    y.sum().backward()
    g_type, saved, enabled = seen["backward"]
    assert g_type is Tensor and saved is x and not enabled
    with tg.no_grad():
        assert not Probe.apply(x, 2).requires_grad
    assert not Probe.apply(Tensor(X), 2).requires_grad


def test_double_backward_through_a_backward_written_with_tensor_ops():
    legendre = OURS["LegendrePolynomial3"]
    x = Tensor(X.copy(), requires_grad=True)
    (g,) = grad(legendre.apply(x).sum(), x, create_graph=True)
    np.testing.assert_allclose(g.array, 1.5 * (5 * X ** 2 - 1), rtol=1e-12)
    (h,) = grad(g.sum(), x)
    np.testing.assert_allclose(h.array, 15 * X, rtol=1e-12)
    for fn in (OURS["Exp"].apply, legendre.apply, lambda t: OURS["SetupCube"].apply(t, 0.5)):
        assert tg.gradgradcheck(fn, Tensor(X.copy(), requires_grad=True))
    assert tg.gradgradcheck(lambda a, b: OURS["LinearFunction"].apply(a, b),
                            (Tensor(X.copy(), requires_grad=True),
                             Tensor(W.copy(), requires_grad=True)))


def test_double_backward_matches_torch():
    torch = pytest.importorskip("torch")
    results = []
    for lib, fns in ((tg, OURS), (torch, examples(torch))):
        x = lib.tensor(X.copy(), requires_grad=True)
        w = lib.tensor(W.copy(), requires_grad=True)
        loss = (fns["LinearFunction"].apply(fns["Exp"].apply(x), w) ** 2).sum()
        gx, gw = lib.autograd.grad(loss, (x, w), create_graph=True)
        (gx * gx).sum().backward()
        results.append([x.grad.detach().numpy(), w.grad.detach().numpy()])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10)


def test_once_differentiable_refuses_a_second_derivative():
    x = Tensor(X.copy(), requires_grad=True)
    y = OURS["NumpyCube"].apply(x)
    (g,) = grad((y * y).sum(), x, create_graph=True)  # the upstream gradient is on the graph
    with pytest.raises(RuntimeError, match="differentiate twice.*once_differentiable"):
        g.sum().backward()


def test_materialize_grads_and_non_differentiable_outputs():
    values, indices = OURS["SortWithIndices"].apply(Tensor(X.copy(), requires_grad=True))
    assert values.requires_grad and not indices.requires_grad and indices.dtype == np.int64
    x = Tensor(X[0].copy(), requires_grad=True)
    split = OURS["SplitHalves"]
    split.seen.clear()
    a, b = split.apply(x)
    b.sum().backward()
    assert split.seen == [(True, False)]  # set_materialize_grads(False): None for unused `a`
    np.testing.assert_array_equal(x.grad.array, [0, 0, 3])
    values, _ = OURS["SortWithIndices"].apply(x)  # materialized: zeros for the indices
    values.sum().backward()
    np.testing.assert_array_equal(x.grad.array, [1, 1, 4])


def test_errors_as_torch():
    class Few(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x, y):
            return x + y

        @staticmethod
        def backward(ctx, g):
            return g

    class GradForNumber(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x, k):
            return x * k

        @staticmethod
        def backward(ctx, g):
            return g, g

    class ArrayGrad(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1

        @staticmethod
        def backward(ctx, g):
            return np.ones(2)

    x = Tensor(X[0].copy(), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"FewBackward returned an incorrect number of "
                                           r"gradients \(expected 2, got 1\)"):
        Few.apply(x, x).sum().backward()
    with pytest.raises(RuntimeError, match="position 1, but the corresponding forward input "
                                           "was not a Tensor"):
        GradForNumber.apply(x, 2.0).sum().backward()
    with pytest.raises(TypeError, match="ArrayGradBackward returned a gradient of type ndarray"):
        ArrayGrad.apply(x).sum().backward()
    with pytest.raises(TypeError, match="save_for_backward can only save tensors"):
        class SavesNumber(tg.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x, 3)
                return x * 1
        SavesNumber.apply(x)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        OURS["ScaleInPlace"].apply(Tensor(X.copy(), requires_grad=True))


def test_a_saved_input_changed_in_place_makes_backward_raise():
    x = Tensor(X.copy(), requires_grad=True)
    h = x * 1
    y = OURS["LegendrePolynomial3"].apply(h)
    with tg.no_grad():
        h.add_(1)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.sum().backward()


def test_engine_ops_stay_array_level():
    # the primitives keep their numpy forward/backward: no Tensor wrapping per op
    from tinygrad_tf import function
    from tinygrad_tf.autograd import ArrayFunction
    assert issubclass(function.Mul, ArrayFunction)
    assert not issubclass(function.Mul, tg.autograd.Function)
    x = Tensor(X.copy(), requires_grad=True)
    assert type((x * x).grad_fn) is function.Mul


def test_a_custom_functions_0d_output_prints_its_node_once():
    class Square(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return 2 * x * grad

    y = Square.apply(tg.tensor(3.0, requires_grad=True))
    assert str(y) == "tensor(9., grad_fn=<SquareBackward>)"



def test_vjp_saved_tensors_after_backward_and_wrong_shape_message_as_torch():
    class Double(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * 2

        @staticmethod
        def vjp(ctx, g):  # torch's other name for backward (NotImplementedError before)
            return g * 2

    x = Tensor(X[0].copy(), requires_grad=True)
    y = Double.apply(x)
    ctx = y.grad_fn
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.array, [2, 2, 2])
    # saved tensors freed by that backward: torch raises; an empty tuple came back before
    with pytest.raises(RuntimeError, match="DoubleBackward: its saved tensors were freed"):
        ctx.saved_tensors
    assert hasattr(tg.autograd.Function, "jvp")  # torch's forward-mode hook (AttributeError before)
    with pytest.raises(NotImplementedError, match="jvp"):
        Double.jvp(None, x)
    with pytest.raises(TypeError, match="both 'backward' and 'vjp'"):
        class Both(tg.autograd.Function):
            backward = vjp = staticmethod(lambda ctx, g: g)

    class Column(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return (g * 2)[:, None]  # (3, 1) for an input of shape (3,)

    # the message names the shape backward returned ((1,), after summing a dim, before)
    with pytest.raises(RuntimeError, match=r"ColumnBackward.backward returned a gradient of shape "
                                           r"\(3, 1\) for an input of shape \(3,\)"):
        Column.apply(Tensor(X[0].copy(), requires_grad=True)).sum().backward()
