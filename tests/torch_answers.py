"""The torch-habit regressions' shared checks (tests/test_torch_habits*.py): run a story on
tinygrad_tf and, where it is installed, on torch, and compare with torch 2.13's written-out answers."""
import numpy as np

import tinygrad_tf as tg

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
