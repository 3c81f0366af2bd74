"""Differences from torch found by running torch idioms on both libraries (the torch-habit
sweeps), one regression test each. torch 2.13's answers are written out, so the tests run
without torch; where torch is installed they are also compared with it directly. Each failed
before its fix (we returned a silently different value or dtype, or accepted what torch refuses)."""
import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import Tensor

try:
    import torch
except ImportError:  # the written-out answers still run
    torch = None

X = [[1.0, 2.0, 3.0], [4.0, 5.0, 7.0]]


def both(fn):
    """fn(lib) on tinygrad_tf, and on torch when it is installed: the results as numpy arrays
    (a tuple of results gives a list of arrays)."""
    def arrays(out):
        if isinstance(out, (tuple, list)):
            return [arrays(o) for o in out]
        return np.asarray(out.detach().numpy())
    ours = arrays(fn(tg))
    theirs = None if torch is None else arrays(fn(torch))
    return ours, theirs


def assert_same(ours, expected, theirs=None):
    for got, want in zip(ours, expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        assert np.shape(got) == np.shape(want)
    if theirs is not None:
        for got, want in zip(ours, theirs):
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


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
