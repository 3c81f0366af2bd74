"""The Hypothesis strategies in tinygrad_tf.testing generate what they promise; its assert_close
is torch.testing's."""
import re

import numpy as np
import pytest
from hypothesis import find, given, strategies as st

from tinygrad_tf import Tensor
from tinygrad_tf import testing as tt


@given(st.data())
def test_tensors_respect_shape_dtype_and_bounds(data):
    shape = data.draw(tt.shapes(max_dims=3))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    x = data.draw(tt.tensors(shape=shape, dtype=dtype, min_value=-2.0, max_value=1.0))
    assert isinstance(x, Tensor) and x.shape == shape and x.dtype == dtype and x.requires_grad
    assert ((x.numpy() >= -2.0) & (x.numpy() <= 1.0)).all()


def test_tensors_are_sometimes_noncontiguous():
    # `find` searches for an example with the property; NoSuchExample fails the test.
    strategy = tt.tensors(shape=(3, 4, 2))
    assert not find(strategy, lambda x: not x.numpy().flags.c_contiguous).numpy().flags.c_contiguous
    assert find(strategy, lambda x: x.numpy().flags.c_contiguous).shape == (3, 4, 2)


@given(tt.tensors(shape=(3, 4), noncontiguous=False))
def test_noncontiguous_can_be_turned_off(x):
    assert x.numpy().flags.c_contiguous


@given(tt.tensors(shape=tt.shapes(max_dims=3), avoid=(0.0, 1.0), margin=0.1))
def test_avoid_keeps_elements_away_from_kinks(x):
    for kink in (0.0, 1.0):
        assert (np.abs(x.numpy() - kink) >= 0.1 - 1e-12).all()


@given(tt.tensors(shape=tt.shapes(min_dims=1, max_dims=3), distinct=True, margin=0.01))
def test_distinct_elements_are_apart_and_within_bounds(x):
    values = np.sort(x.numpy(), axis=None)
    assert (np.diff(values) >= 0.01 - 1e-12).all()
    if values.size * 0.01 <= 6.0:  # room in [-3, 3]: the spread stays inside the bounds
        assert values.min() >= -3.0 - 1e-12 and values.max() <= 3.0 + 1e-12


@given(tt.tensor_pairs(apart=True, margin=0.05))
def test_pairs_apart_never_tie_under_broadcasting(pair):
    a, b = pair
    np.broadcast_shapes(a.shape, b.shape)
    assert (np.abs(a.numpy() - b.numpy()) >= 0.05 - 1e-12).all()


@given(tt.broadcastable_shapes(num_shapes=3))
def test_broadcastable_shapes_broadcast(shapes):
    assert len(shapes) == 3
    np.broadcast_shapes(*shapes)


@given(st.data())
def test_reduction_dims_are_valid(data):
    ndim = data.draw(st.integers(0, 4))
    dim = data.draw(tt.reduction_dims(ndim))
    if ndim == 0 or dim is None:
        return
    dims = (dim,) if isinstance(dim, int) else dim
    normalized = [d % ndim for d in dims]
    assert all(-ndim <= d < ndim for d in dims) and len(set(normalized)) == len(dims)


@given(tt.index_arrays(4))
def test_index_arrays_are_in_range(index):
    assert index.dtype == np.int64 and ((index >= -4) & (index < 4)).all()


@given(st.data())
def test_attention_mask_kinds(data):
    batch, q_len, k_len = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    kinds = ["none", "padding", "fully_masked", "single_key"] + (["causal"] if q_len == k_len else [])
    kind = data.draw(st.sampled_from(kinds))
    mask = data.draw(tt.attention_masks(batch, q_len, k_len, kind=kind))
    assert mask.shape == (batch, q_len, k_len) and mask.dtype == bool
    open_keys = (~mask).sum(-1)
    if kind == "none":
        assert not mask.any()
    elif kind == "padding":  # the same trailing keys masked for every query, at least one open
        assert (open_keys >= 1).all() and (mask == mask[:, :1]).all()
        assert all((np.diff(row.astype(int)) >= 0).all() for row in mask.reshape(-1, k_len))
    elif kind == "causal":
        assert (mask == np.triu(np.ones((q_len, k_len), bool), 1)).all()
    elif kind == "fully_masked":
        assert (open_keys == 0).any()  # at least one query sees no key at all
    elif kind == "single_key":
        assert (open_keys == 1).all()


def test_attention_masks_reject_bad_kinds():
    with pytest.raises(ValueError, match="unknown kind 'diagonal'"):
        find(tt.attention_masks(1, 2, 2, kind="diagonal"), lambda mask: True)
    with pytest.raises(ValueError, match="causal mask needs q_len == k_len"):
        find(tt.attention_masks(1, 2, 3, kind="causal"), lambda mask: True)


# ---------------------------------------------------------------- torch.testing.assert_close
def close_cases(torch):
    """assert_close calls as users write them; each returns "ok" or the exception's type and
    first line. Run on tinygrad_tf and, where installed, on torch."""
    A = torch.testing.assert_close
    t = torch.tensor
    cases = {
        "float32 off by 0.1": lambda: A(t([1., 2., 3.]), t([1., 2.1, 3.])),
        "float32 within rtol": lambda: A(t([1., 2., 3.]), t([1., 2.000001, 3.])),
        "dtypes differ": lambda: A(t([1., 2.]), t([1., 2.], dtype=torch.float64)),
        "dtypes differ, unchecked": lambda: A(t([1., 2.]), t([1., 2.], dtype=torch.float64),
                                              check_dtype=False),
        "shapes differ": lambda: A(t([1., 2.]), t([1., 2., 3.])),
        "Tensor and float": lambda: A(t(1.), 1.0),
        "floats": lambda: A(1.0, 1.1),
        "int and float": lambda: A(1, 1.0),
        "ints": lambda: A(t([1, 2]), t([1, 3])),
        "nan": lambda: A(t([float("nan")]), t([float("nan")])),
        "nan, equal_nan": lambda: A(t([float("nan")]), t([float("nan")]), equal_nan=True),
        "inf and -inf": lambda: A(t([float("inf")]), t([-float("inf")])),
        "given tolerances": lambda: A(t([1., 2.]), t([1., 2.5]), rtol=0.3, atol=0),
        "one tolerance": lambda: A(t([1., 2.]), t([1., 2.5]), rtol=0.3),
        "lists": lambda: A([t([1.]), t([2.])], [t([1.]), t([2.2])]),
        "msg": lambda: A(t([1., 2.]), t([1., 2.1]), msg="custom"),
        "float64 gradients": lambda: A(t([1., 2.], dtype=torch.float64),
                                       t([1., 2. + 1e-8], dtype=torch.float64)),
        "0-d": lambda: A(t(1.0), t(1.5)),
    }
    out = {}
    for name, case in cases.items():
        try:
            case()
            out[name] = "ok"
        except Exception as error:  # noqa: BLE001 (the verdict is the point)
            out[name] = f"{type(error).__name__}: {str(error).splitlines()[0]}"
    return out


def test_assert_close_as_torch():
    # torch.testing.assert_close: AttributeError before (tinygrad_tf.testing held only the
    # strategies)
    import tinygrad_tf as tg
    ours = close_cases(tg)
    assert ours["float32 within rtol"] == ours["nan, equal_nan"] == "ok"
    assert ours["float32 off by 0.1"] == "AssertionError: Tensor-likes are not close!"
    assert ours["inf and -inf"] == "AssertionError: Tensor-likes are not close!"
    assert ours["dtypes differ"].startswith("AssertionError: The values for attribute 'dtype'")
    assert ours["one tolerance"].startswith("ValueError: Both 'rtol' and 'atol'")
    with pytest.raises(AssertionError, match=r"Mismatched elements: 1 / 3 \(33.3%\)\n"
                                             r"Greatest absolute difference: 0.5 at index \(1,\)"):
        tg.testing.assert_close(tg.tensor([1., 2., 3.]), tg.tensor([1., 2.5, 3.]))


def test_assert_close_verdicts_match_torch():
    torch = pytest.importorskip("torch")
    import tinygrad_tf as tg
    ours, theirs = close_cases(tg), close_cases(torch)
    for name in ours:  # the type names in "No comparison pair ..." are each library's own
        if ours[name].startswith("TypeError"):
            assert theirs[name].startswith("TypeError: No comparison pair"), name
        else:
            # torch prints a shape as torch.Size([2]), ours as (2,)
            theirs_shape = re.sub(r"torch\.Size\(\[(\d+)\]\)", r"(\1,)", theirs[name])
            assert ours[name] == theirs_shape.replace("torch.", ""), name


def test_assert_close_needs_no_hypothesis(monkeypatch):
    import importlib.util
    import sys
    import tinygrad_tf
    monkeypatch.setitem(sys.modules, "hypothesis", None)  # as if not installed
    path = tinygrad_tf.__path__[0] + "/testing.py"
    spec = importlib.util.spec_from_file_location("tinygrad_tf._testing_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.assert_close(tinygrad_tf.tensor([1.0]), tinygrad_tf.tensor([1.0]))
    with pytest.raises(ImportError, match="need Hypothesis"):
        module.tensors()
