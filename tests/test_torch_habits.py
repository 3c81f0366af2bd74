"""Differences from torch found by running torch idioms on both libraries (the torch-habit
sweeps), one regression test each: argument forms, grad mode, dtypes, factories and autograd
here; the functions and methods the sweep added in test_torch_habits_functions.py; nn's in
tests/nn/test_nn_torch_habits.py. torch 2.13's answers are written out, so the tests run
without torch; where torch is installed they are also compared with it directly. Each failed
before its fix (we returned a silently different value or dtype, or accepted what torch
refuses)."""
import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import Tensor
from torch_answers import X, assert_same, both, torch  # tests/torch_answers.py


# ---------------------------------------------------------------------------- var and std

def test_the_second_positional_argument_of_var_and_std_is_unbiased():
    # before: x.var(1, False) read False as keepdim and gave the unbiased variance
    ours, theirs = both(lambda L: (
        L.tensor(X).var(1, False), L.tensor(X).std(0, False), L.tensor(X).var(1, True),
        L.tensor(X).var(1, False, True), L.std(L.tensor(X), 1, False),
        L.var(L.tensor(X), 0, True, True)))
    biased_rows = np.var(X, axis=1)
    expected = [biased_rows, np.std(X, axis=0), np.var(X, axis=1, ddof=1),
                biased_rows[:, None], np.std(X, axis=1), np.var(X, axis=0, ddof=1)[None]]
    assert_same(ours, expected, theirs)


def test_var_and_std_take_unbiased_alone_by_position_and_by_name():
    # before: x.var(False) reduced dim 0 (False == 0); unbiased= was a TypeError
    ours, theirs = both(lambda L: (
        L.tensor(X).var(False), L.tensor(X).std(True), L.tensor(X).std(unbiased=False),
        L.tensor(X).var(dim=1, unbiased=False, keepdim=True), L.tensor(X).var(1, correction=0)))
    expected = [np.var(X), np.std(X, ddof=1), np.std(X), np.var(X, axis=1, keepdims=True),
                np.var(X, axis=1)]
    assert_same(ours, expected, theirs)


def test_var_mean_and_std_mean():
    ours, theirs = both(lambda L: (*L.var_mean(L.tensor(X), 1), *L.std_mean(L.tensor(X), False),
                                   *L.var_mean(L.tensor(X), 0, keepdim=True, correction=0)))
    expected = [np.var(X, axis=1, ddof=1), np.mean(X, axis=1), np.std(X), np.mean(X),
                np.var(X, axis=0, keepdims=True), np.mean(X, axis=0, keepdims=True)]
    assert_same(ours, expected, theirs)


def test_var_refuses_unbiased_with_correction_or_a_non_bool_unbiased():
    for call in (lambda x: x.var(0, True, correction=0), lambda x: x.var(0, 2),
                 lambda x: x.std(True, unbiased=False)):
        with pytest.raises(TypeError):
            call(Tensor(X))
        if torch is not None:
            with pytest.raises((TypeError, RuntimeError)):
                call(torch.tensor(X))


def test_biased_variance_gradient():
    x = Tensor(np.array(X), requires_grad=True)
    assert tg.gradcheck(lambda t: t.var(1, False) * Tensor([1.0, 3.0], dtype=np.float64), x)
    assert tg.gradcheck(lambda t: t.std(False), x)


# ---------------------------------------------------------------------------- grad-mode decorators

def _grad_mode_story(L):
    """What torch users see of the grad mode around decorated functions and generators."""
    x = L.ones(1, requires_grad=True)
    seen = []

    @L.set_grad_enabled(False)
    def switched_off():
        return (x * 2).requires_grad
    seen.append(L.is_grad_enabled())  # decorating changes nothing yet
    seen.append(switched_off())

    @L.no_grad()
    def generator():
        sent = yield (x * 2).requires_grad
        yield sent, L.is_grad_enabled()
    steps = generator()
    seen.append(next(steps))
    seen.append((x * 2).requires_grad)  # between two resumes the caller's mode holds
    seen.append(steps.send("sent"))

    @L.inference_mode
    def bare():
        return L.is_grad_enabled(), L.is_inference_mode_enabled()
    seen.append(bare())
    with L.no_grad():
        with L.inference_mode(False):  # torch: grad on
            seen.append(L.is_grad_enabled())
    seen.append(L.is_grad_enabled())
    return seen


def test_grad_mode_decorators_on_functions_and_generators():
    # before: @set_grad_enabled(False) switched grad off for the whole program at decoration and
    # left it on inside; @no_grad on a generator function did nothing (its body ran outside);
    # inference_mode(False) and is_inference_mode_enabled were errors
    expected = [True, False, False, True, ("sent", False), (False, True), True, True]
    assert _grad_mode_story(tg) == expected
    if torch is not None:
        assert _grad_mode_story(torch) == expected


def test_a_generator_under_no_grad_passes_on_throw_close_and_its_return_value():
    @tg.no_grad()
    def inner():
        try:
            yield tg.is_grad_enabled()
        except ValueError:
            yield "caught"
        return 5

    def outer():
        result = yield from inner()
        return result
    steps = outer()
    assert next(steps) is False and steps.throw(ValueError()) == "caught"
    with pytest.raises(StopIteration) as stop:
        next(steps)
    assert stop.value.value == 5 and tg.is_grad_enabled()
    closing = inner()
    next(closing)
    closing.close()
    assert tg.is_grad_enabled()


# ---------------------------------------------------------------------------- tensor(list)

@pytest.mark.filterwarnings("ignore:Creating a tensor from a list of numpy")
@pytest.mark.parametrize("data, dtype", [
    ([np.float64(1.0), 2.0], np.float64),     # numpy float64 scalars (np.mean's results)
    ([[np.float64(1.0)], [2.0]], np.float64),
    ([np.float32(1.0), 2.0], np.float32),
    ([np.int32(1), np.int32(2)], np.int32),
    ([np.int32(1), 2], np.int64),             # a Python int counts as int64
    ([np.int32(1), 2.5], np.float32),         # a Python float as float32
    ([np.float16(1.0)], np.float16),
    ([np.array([1.0, 2.0]), np.array([3.0, 4.0])], np.float64),
    ([1, 2.5], np.float32), ([True, 2], np.int64), ([], np.float32)])
def test_a_list_takes_the_promoted_dtype_of_its_leaves(data, dtype):
    # before: every float list was float32 and every int list int64, whatever its leaves were
    assert tg.tensor(data).dtype == dtype
    if torch is not None:
        assert str(torch.tensor(data).dtype) == f"torch.{np.dtype(dtype).name}"


def test_a_list_of_float64_tensors_is_float64():
    assert tg.tensor([tg.tensor(1.0, dtype=tg.float64), 2.0]).dtype == np.float64
    assert tg.tensor([tg.tensor(1.0), tg.tensor(2.0)]).tolist() == [1.0, 2.0]


# ---------------------------------------------------------------------------- writes and joins

def test_setitem_takes_a_value_with_extra_leading_ones_as_torch():
    # before: ValueError from numpy for x[0] = a (1,)-shaped tensor (a model's one output)
    def story(L):
        x = L.zeros(2, 3)
        x[0] = L.ones(1)
        x[1, 2] = L.full((1, 1), 5.0)
        x[1, :2] = L.full((1, 1, 2), 7.0)
        return x.tolist()
    expected = [[1.0, 1.0, 1.0], [7.0, 7.0, 5.0]]
    assert story(tg) == expected
    if torch is not None:
        assert story(torch) == expected
    with pytest.raises(ValueError):
        tg.zeros(2, 3)[0] = tg.ones(2, 3)  # a real mismatch still raises


def test_cat_and_stack_of_a_tensor_raise_as_torch():
    # before: the tensor was read as the list of its rows and joined silently
    for join in (tg.cat, tg.stack):
        with pytest.raises(TypeError, match="list or tuple"):
            join(tg.ones(2, 2))


# ---------------------------------------------------------------------------- factories, autograd.grad

def test_rand_and_randn_refuse_integer_dtypes_as_torch():
    # before: randn(3, dtype=long) cast normal draws to mostly 0, -1 and 1, silently;
    # randn_like of an int tensor did the same
    for make in (lambda L: L.randn(3, dtype=L.long), lambda L: L.rand(3, dtype=L.int32),
                 lambda L: L.randn_like(L.tensor([1, 2])), lambda L: L.rand_like(L.tensor([True]))):
        with pytest.raises((TypeError, RuntimeError, NotImplementedError)):
            make(tg)
        if torch is not None:
            with pytest.raises((TypeError, RuntimeError, NotImplementedError)):
                make(torch)
    assert tg.randn(2, dtype=tg.float64).dtype == np.float64
    assert tg.rand_like(tg.ones(2, dtype=tg.float16)).dtype == np.float16


def test_autograd_grad_materialize_grads():
    # before: TypeError for materialize_grads=
    def story(L):
        a, b = L.ones(2, requires_grad=True), L.ones(2, requires_grad=True)
        grads = L.autograd.grad((a * 3).sum(), [a, b], materialize_grads=True)
        return [g.tolist() for g in grads]
    assert story(tg) == [[3.0, 3.0], [0.0, 0.0]]
    if torch is not None:
        assert story(torch) == [[3.0, 3.0], [0.0, 0.0]]
    a, b = tg.ones(2, requires_grad=True), tg.ones(2, requires_grad=True)
    with pytest.raises(ValueError):
        tg.autograd.grad((a * 3).sum(), [a, b], allow_unused=False, materialize_grads=True)


def test_retains_grad_and_mT():
    def story(L):
        x = L.ones(2, 3, requires_grad=True)
        y = x * 2
        before = y.retains_grad
        y.retain_grad()
        x.retain_grad()  # a leaf: nothing to do
        return [before, y.retains_grad, x.retains_grad, tuple(L.zeros(4, 2, 3).mT.shape)]
    assert story(tg) == [False, True, False, (4, 3, 2)]
    if torch is not None:
        assert story(torch) == [False, True, False, (4, 3, 2)]


def test_out_arguments_write_into_the_given_tensor():
    # before: NotImplementedError for every out=
    def story(L):
        results = []
        target = L.empty(2)
        results.append(L.add(L.ones(2), L.ones(2), out=target) is target)
        results.append(target.tolist())
        results.append(L.cat([L.ones(2), L.zeros(1)], out=L.empty(3)).tolist())
        results.append(L.sum(L.ones(2, 2), 0, out=L.empty(2)).tolist())
        weight = L.ones(2, requires_grad=True)
        with L.no_grad():
            L.mul(weight, 2, out=weight)
        results.append(weight.tolist())
        for refused in (lambda: L.exp(L.zeros(2), out=L.empty(2, dtype=L.long)),
                        lambda: L.add(L.ones(2, requires_grad=True), 1, out=L.empty(2))):
            try:
                refused()
                results.append("returned")
            except RuntimeError:
                results.append("raised")
        return results
    expected = [True, [2.0, 2.0], [1.0, 1.0, 0.0], [2.0, 2.0], [2.0, 2.0], "raised", "raised"]
    assert story(tg) == expected
    if torch is not None:
        assert story(torch) == expected


def test_numpy_spellings_axis_and_keepdims_as_torch():
    # before: TypeError (torch takes axis= for dim= and keepdims= for keepdim=)
    ours, theirs = both(lambda L: (
        L.arange(6.0).reshape(2, 3).sum(axis=1), L.arange(6.0).reshape(2, 3).mean(0, keepdims=True),
        L.arange(6.0).reshape(2, 3).max(axis=1, keepdims=True).values,
        L.arange(6.0).reshape(2, 3).softmax(axis=0), L.arange(6.0).reshape(2, 3).cumsum(axis=1),
        L.sum(L.arange(6.0).reshape(2, 3), axis=0), L.arange(6.0).reshape(1, 6).squeeze(axis=0),
        L.arange(6.0).reshape(2, 3).std(axis=1, keepdims=True)))
    a = np.arange(6.0).reshape(2, 3)
    expected = [a.sum(1), a.mean(0, keepdims=True), a.max(1, keepdims=True),
                np.exp(a) / np.exp(a).sum(0), a.cumsum(1), a.sum(0), a.reshape(6),
                a.std(1, ddof=1, keepdims=True)]
    assert_same(ours, expected, theirs)


def test_deepcopy_of_a_non_leaf_and_integer_bce_targets_raise_as_torch():
    # before: deepcopy copied the graph; the binary cross-entropies took integer targets
    import copy
    layer = tg.nn.Linear(2, 2)
    layer(tg.ones(1, 2)).sum().backward()
    twin = copy.deepcopy(layer)
    assert type(twin.weight).__name__ == "Parameter" and twin.weight.requires_grad
    assert not np.shares_memory(twin.weight.array, layer.weight.array)
    np.testing.assert_array_equal(twin.weight.grad.array, layer.weight.grad.array)
    F = tg.nn.functional
    for refused in (lambda L: copy.deepcopy(L.ones(2, requires_grad=True) * 2),
                    lambda L: L.nn.functional.binary_cross_entropy(L.tensor([0.2, 0.7]), L.tensor([0, 1])),
                    lambda L: L.nn.functional.binary_cross_entropy_with_logits(L.tensor([0.2, -1.0]),
                                                                               L.tensor([0, 1]))):
        with pytest.raises((RuntimeError, TypeError)):
            refused(tg)
        if torch is not None:
            with pytest.raises((RuntimeError, TypeError)):
                refused(torch)
    assert F.binary_cross_entropy(Tensor([0.5]), Tensor([1.0])).item() == pytest.approx(np.log(2))
