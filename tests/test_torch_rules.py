"""Silent differences from torch that the differential fuzz (tests/test_torch_fuzz.py) found, one
regression test each, with torch 2.13's answers written out so they run without torch. Each
failed before its fix (we returned a value, a dtype or a gradient torch does not)."""
import warnings

import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import Tensor

B = Tensor(np.array([True, False]))
F = Tensor(np.array([1.5, 2.0], np.float32))
I = Tensor(np.array([-2, -1, 0, 1, 2]))


@pytest.mark.parametrize("op", [
    lambda: B.abs(), lambda: B.relu(), lambda: B.floor(), lambda: B.ceil(), lambda: B.round(),
    lambda: B.clamp(min=0), lambda: B.clone().clamp_(min=True), lambda: B ** B,
    lambda: True ** B, lambda: B // B, lambda: B % B, lambda: B // True, lambda: B % True,
    lambda: B @ B, lambda: I.softmax(-1),
    lambda: B.log_softmax(-1), lambda: -B])
def test_ops_torch_has_no_bool_kernel_for_raise(op):
    # before: abs/floor/ceil kept bool, relu gave int64, round float16, pow/floordiv/mod int8
    with pytest.raises((RuntimeError, TypeError)):
        op()


@pytest.mark.parametrize("op", [lambda: B - B, lambda: F - True, lambda: True - F,
                                lambda: B - 1, lambda: I - B, lambda: F.clone().sub_(False)])
def test_subtraction_with_a_bool_raises_as_torch(op):
    with pytest.raises(RuntimeError, match="bool"):
        op()


def test_bool_to_a_bool_power_stays_bool():
    assert (B ** True).dtype == np.bool_ and (B ** True).tolist() == [True, False]
    assert (B ** False).tolist() == [True, True]
    assert (B ** 2).dtype == np.int64  # an int exponent lifts to int64, as before


@pytest.mark.parametrize("op", [lambda: F.maximum(2), lambda: F.minimum(1.5),
                                lambda: tg.maximum(F, 2), lambda: F.logical_and(True),
                                lambda: tg.logical_or(F, 1.5)])
def test_two_tensor_functions_refuse_numbers(op):
    with pytest.raises(TypeError, match="must be Tensor"):
        op()


def test_integer_powers_with_negative_exponents_as_torch():
    # numpy raised "Integers to negative integer powers are not allowed"
    assert (3 ** I).tolist() == [0, 0, 1, 3, 9]
    assert (I ** I).tolist() == [0, -1, 1, 1, 4]
    assert ((-1) ** I).tolist() == [1, -1, 1, -1, 1]
    assert (0 ** I).tolist() == [0, 0, 1, 0, 0]


def test_a_negative_or_zero_base_to_a_tensor_power():
    # before: ValueError "needs a positive base"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = (-1.5) ** F
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.array, [np.nan, 2.25], equal_nan=True)
    np.testing.assert_array_equal(((-2.0) ** Tensor([2.0, 3.0])).array, [4.0, -8.0])
    np.testing.assert_array_equal((0.0 ** F).array, [0.0, 0.0])
    assert ((-1.5) ** I).dtype == np.float32


def test_matmul_needs_one_dtype_as_torch():
    # before: promoted silently (float32 @ float64 gave float64; bool @ bool a bool)
    with pytest.raises(RuntimeError, match="same dtype"):
        Tensor.ones(2, 3) @ Tensor(np.ones((3, 2)))
    with pytest.raises(RuntimeError, match="same dtype"):
        Tensor.ones(3) @ Tensor(np.ones(3, np.int64))
    assert (Tensor(np.ones((2, 3), np.int64)) @ Tensor(np.ones((3, 2), np.int64))).dtype == np.int64


def test_T_reverses_the_dims_of_any_tensor():
    # before: ValueError for other than 2-D
    assert Tensor.ones(2, 3, 4).T.shape == (4, 3, 2)
    assert F.T.tolist() == F.tolist() and Tensor(1.0).T.shape == ()


def test_amax_amin_and_whole_max_split_the_gradient_between_ties():
    # before: all of it went to one of the tied elements (torch's amax/amin and max() split it)
    data = np.array([[1.0, 1.0, 0.5], [1.0, 2.0, 2.0]])
    cases = {lambda x: x.amax(): [[0, 0, 0], [0, 0.5, 0.5]],
             lambda x: x.max(): [[0, 0, 0], [0, 0.5, 0.5]],
             lambda x: x.amax(0): [[0.5, 0, 0], [0.5, 1, 1]],
             lambda x: x.amin(1, keepdim=True): [[0, 0, 1], [1, 0, 0]],
             lambda x: x.amax(dim=(0, 1)): [[0, 0, 0], [0, 0.5, 0.5]],
             lambda x: x.max(1)[0]: [[1, 0, 0], [0, 1, 0]]}  # max(dim): the index it returns
    for fn, expected in cases.items():
        x = Tensor(data.copy(), requires_grad=True)
        fn(x).sum().backward()
        np.testing.assert_array_equal(x.grad.array, expected)
    distinct = Tensor(np.array([[0.3, -0.7, 1.1], [-0.2, 0.9, -1.4]]), requires_grad=True)
    assert tg.gradgradcheck(lambda t: t.amax(1), distinct)


def test_results_of_0d_ops_are_writable_arrays():
    # before: numpy's scalar (read-only) became the tensor's memory: mul_ raised "read-only view"
    x = Tensor(True).logical_not()
    assert type(x.array) is np.ndarray
    x.mul_(False)
    assert x.item() is False
    y = Tensor(2.5).isnan()
    y[...] = True
    assert y.item() is True


def test_view_never_copies():
    # before: view of an expanded tensor returned a copy (writes to it reached nothing)
    with pytest.raises(RuntimeError, match="cannot be viewed"):
        Tensor.ones(3).expand(2, 3).view(-1)
    with pytest.raises(RuntimeError, match="cannot be viewed"):
        Tensor.ones(2, 3).t().view(6)
    x = Tensor.zeros(2, 3)
    x.view(6)[0] = 1.0
    assert x.array[0, 0] == 1.0
    assert Tensor.ones(3).expand(2, 3).reshape(-1).shape == (6,)


def test_cat_takes_legacy_empty_1d_tensors():
    # before: ValueError; torch skips a (0,) tensor (it still counts for the dtype)
    out = tg.cat([Tensor.ones(2, 1), Tensor.zeros(0)], -2)
    assert out.shape == (2, 1)
    out = tg.cat([Tensor(np.zeros(0, np.int64)), Tensor(np.ones((2, 1), np.float64))], 0)
    assert out.dtype == np.float64 and out.shape == (2, 1)


def test_flip_is_a_copy_and_negative_steps_are_refused():
    # before: flip returned numpy's reversed view (writing the result changed its input) and
    # x[::-1] worked (torch: "step must be greater than zero")
    x = Tensor([1.0, 2.0, 3.0])
    y = x.flip(0)
    y[0] = 9.0
    assert x.tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="step must be positive"):
        x[::-1]


def test_remainder_gradient_for_the_divisor_at_zero_is_minus_inf():
    # before: NaN (floor's zero gradient times inf); torch: -floor(a / b)
    a = Tensor([1.0, 1.25, 2.0, -3.0], requires_grad=True)
    b = Tensor([0.0, 0.5, -1.5, 2.0], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        (a % b).sum().backward()
    np.testing.assert_array_equal(a.grad.array, [1, 1, 1, 1])
    np.testing.assert_array_equal(b.grad.array, [-np.inf, -2, 2, 2])


def test_maximum_and_minimum_give_both_inputs_the_gradient_where_one_is_nan():
    # before: all of it went to the NaN side (neither is larger, so torch gives both all of it)
    nan = float("nan")
    for name, a_want, b_want in (("maximum", [1, 1, 0.5, 1, 1], [1, 1, 0.5, 0, 1]),
                                 ("minimum", [1, 1, 0.5, 0, 1], [1, 1, 0.5, 1, 1])):
        a = Tensor([1.0, nan, 2.0, 3.0, nan], requires_grad=True)
        b = Tensor([nan, 1.0, 2.0, 1.0, nan], requires_grad=True)
        getattr(a, name)(b).sum().backward()
        assert a.grad.tolist() == a_want and b.grad.tolist() == b_want


def test_sum_with_a_dtype():
    # before: TypeError (no dtype argument)
    assert Tensor([1.5, 2.0]).sum(dtype=tg.float64).dtype == np.float64
    out = Tensor([True, False]).sum(dtype=tg.bool)
    assert out.dtype == np.bool_ and out.item() is True
    assert Tensor([True, True]).sum(dtype=tg.float32).item() == 2.0


def test_clamp_with_tensor_bounds():
    # before: TypeError (numbers only); torch: ties keep self, each bound gets its gradient
    x = Tensor([1.0, 2.0, 3.0, 0.5], requires_grad=True)
    low = Tensor([1.0, 2.5, 0.0, 1.0], requires_grad=True)
    high = Tensor(2.0, requires_grad=True)
    out = x.clamp(min=low, max=high)
    (out * Tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert out.tolist() == [1.0, 2.0, 2.0, 1.0]
    assert x.grad.tolist() == [1, 0, 0, 0] and low.grad.tolist() == [0, 0, 0, 4]
    assert high.item() == 2.0 and high.grad.item() == 5.0


def test_div_rounding_modes():
    # before: TypeError (no rounding_mode)
    ints = tg.div(Tensor([-7, 7]), Tensor([2, -2]), rounding_mode="trunc")
    assert ints.dtype == np.int64 and ints.tolist() == [-3, -3]
    assert tg.div(Tensor([-7, 7]), 2, rounding_mode="floor").tolist() == [-4, 3]
    x = Tensor([-7.0, 7.0], requires_grad=True)
    out = x.div(2, rounding_mode="trunc")
    out.sum().backward()
    assert out.tolist() == [-3.0, 3.0] and x.grad.tolist() == [0.0, 0.0]
    with pytest.raises(ZeroDivisionError):
        tg.div(Tensor([1]), Tensor([0]), rounding_mode="trunc")
    with pytest.raises(RuntimeError, match="rounding_mode"):
        x.div(2, rounding_mode="round")


def test_index_select_of_a_0d_tensor():
    # before: IndexError; torch keeps it 0-d
    out = Tensor(2.0).index_select(0, Tensor([0]))
    assert out.shape == () and out.item() == 2.0


def test_rounded_division_has_a_zero_gradient_even_at_a_zero_or_nan_divisor():
    # before: NaN (floor's zero times Div's 0 / b)
    a = Tensor([-2.0, 3.0, 1.0], requires_grad=True)
    b = Tensor([float("nan"), 0.0, 2.0], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        (a // b + tg.div(a, b, rounding_mode="trunc")).sum().backward()
    assert a.grad.tolist() == [0, 0, 0] and b.grad.tolist() == [0, 0, 0]


def test_an_integer_sum_of_a_tensor_that_requires_grad_raises():
    x = Tensor([1.5, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="gradient"):
        x.sum(dtype=tg.int64)
    with tg.no_grad():
        assert x.sum(dtype=tg.int64).item() == 3


def test_std_of_a_constant_slice_has_a_zero_gradient():
    # before: NaN (sqrt's infinite slope at 0 times var's zero gradient); torch: 0
    x = Tensor([[-2.0, 1.0], [-2.0, 3.0]], requires_grad=True)
    x.std(0).sum().backward()
    assert np.isfinite(x.grad.array).all() and x.grad.array[:, 0].tolist() == [0.0, 0.0]


def test_remainder_by_an_infinite_divisor():
    # before: NaN (a - floor(a / b) * b is 0 * inf there); torch: 5 % inf is 5, 0 % -inf is -0
    out = Tensor([5.0, 0.0, -5.0]) % Tensor([float("inf"), float("-inf"), float("inf")])
    assert out.tolist() == [5.0, -0.0, float("inf")]


def test_rounded_division_saves_its_inputs_as_torch():
    # before: no error (nothing saved); torch's div(rounding_mode=) saves both inputs
    x = Tensor([3.0, -2.0], requires_grad=True)
    y = Tensor([2.0, 2.0])
    out = tg.div(x, y, rounding_mode="floor")
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        out.sum().backward()
