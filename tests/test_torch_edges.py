"""Edge cases against torch 2.13, table-driven: every dtype at its extremes (unsigned ints, INT64_MIN,
NaN, inf, -0.0), empty and 0-dim shapes. Each row runs one op through both libraries on the same
array: both must raise, or both return the same values, shapes and dtypes. Skipped without torch.
"""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinygrad_tf as tg
from tinygrad_tf import testing as tt

torch = pytest.importorskip("torch")

DTYPES = ["float32", "float64", "int64", "int32", "int16", "int8", "uint8", "bool"]


def _pool(dtype):
    """Values worth trying for a dtype: its extremes, zero, and a few ordinary ones with ties."""
    if dtype == "bool":
        return [False, True]
    if np.dtype(dtype).kind == "f":
        return [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.5, -2.0, 3.0, 1.5]
    info = np.iinfo(dtype)
    return [info.min, info.max, 0, 1, 2, 2, 7] + ([-1, -3] if info.min < 0 else [])


@st.composite
def arrays(draw, min_side=0, dtypes=DTYPES):
    dtype = draw(st.sampled_from(dtypes))
    shape = draw(tt.shapes(min_dims=0, max_dims=3, min_side=min_side, max_side=4))
    pool = _pool(dtype)
    picks = draw(st.lists(st.integers(0, len(pool) - 1), min_size=int(np.prod(shape)),
                          max_size=int(np.prod(shape))))
    return np.array([pool[i] for i in picks], dtype=dtype).reshape(shape)


def _run(lib, fn, array, *args):
    """fn(lib, tensor, *args) -> ("raise", type name) or ("ok", nested numpy values)."""
    tensor = tg.tensor(array) if lib is tg else torch.from_numpy(np.array(array))
    try:
        return "ok", _plain(fn(lib, tensor, *args))
    except Exception as error:  # the row compares *whether* both raise
        return "raise", type(error).__name__


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.detach().numpy()
    if isinstance(value, tg.Tensor):
        return np.asarray(value.numpy())
    return value


def _same(ours, theirs, where, exact=True):
    if isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), where
        for a, b in zip(ours, theirs):
            _same(a, b, where, exact)
        return
    if not isinstance(theirs, np.ndarray):  # a number or a size
        assert ours == theirs, where
        return
    assert isinstance(ours, np.ndarray), (where, ours)
    assert (ours.shape, ours.dtype) == (theirs.shape, theirs.dtype), (where, ours, theirs)
    if exact or theirs.dtype.kind != "f":
        np.testing.assert_array_equal(ours, theirs, err_msg=where)
    else:
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6, err_msg=where)


def check(fn, array, *args, exact=True):
    ours, theirs = _run(tg, fn, array, *args), _run(torch, fn, array, *args)
    where = f"{array.dtype} {array.shape} {array.tolist()} args {args}: ours {ours} torch {theirs}"
    assert ours[0] == theirs[0], where
    if ours[0] == "ok":
        _same(ours[1], theirs[1], where, exact)


def dims(array):
    """A dim in range (as torch counts it: a 0-d tensor has dims 0 and -1)."""
    n = max(array.ndim, 1)
    return st.integers(-n, n - 1)


# ---------------------------------------------------------------------------- defect 5: extremes

EXTREMES = {
    "max": lambda lib, t: t.max(),
    "min": lambda lib, t: t.min(),
    "argmax": lambda lib, t: t.argmax(),
    "argmin": lambda lib, t: t.argmin(),
    "max_dim": lambda lib, t, d: t.max(d),
    "min_dim": lambda lib, t, d: t.min(d),
    "min_dim_keepdim": lambda lib, t, d: t.min(d, keepdim=True),
    "amax_dim": lambda lib, t, d: t.amax(d),
    "amin_dim": lambda lib, t, d: t.amin(d),
    "argmax_dim": lambda lib, t, d: t.argmax(d),
    "argmin_dim": lambda lib, t, d: t.argmin(d),
    "sort": lambda lib, t, d: t.sort(dim=d, stable=True),
    "sort_descending": lambda lib, t, d: t.sort(dim=d, descending=True, stable=True),
    "argsort_descending": lambda lib, t, d: t.argsort(dim=d, descending=True, stable=True),
    "minimum": lambda lib, t: t.minimum(t.flip(0) if t.ndim else t),
    "maximum": lambda lib, t: t.maximum(t.flip(0) if t.ndim else t),
}


@pytest.mark.parametrize("op", sorted(EXTREMES))
@settings(max_examples=20)
@given(data=st.data(), array=arrays())
def test_extremes_and_sorting_match_torch(op, data, array):
    fn = EXTREMES[op]
    args = (data.draw(dims(array)),) if fn.__code__.co_argcount == 3 else ()
    check(fn, array, *args)


@settings(max_examples=25)
@given(data=st.data(), array=arrays(dtypes=DTYPES[:-1]), largest=st.booleans())
def test_topk_takes_torchs_values_with_nan_largest(data, array, largest):
    dim = data.draw(dims(array))
    size = array.shape[dim] if array.ndim else 1
    k = data.draw(st.integers(0, size))
    check(lambda lib, t: t.topk(k, dim, largest=largest)[0], array)
    # Which of equal values topk takes is torch's choice; ours must point at the values it gives.
    values, indices = tg.tensor(array).topk(k, dim, largest=largest)
    if array.ndim:
        np.testing.assert_array_equal(np.take_along_axis(array, indices.numpy(), dim),
                                      values.numpy())


def test_topk_of_bool_raises_as_torch():
    check(lambda lib, t: t.topk(1), np.array([True, False]))


def test_min_and_descending_sort_are_right_at_the_ends_of_the_integer_range():
    # Regression (issue 18, defect 5): min and descending sort negated their input, so uint8 0
    # became 0 and 1 became 255, and -INT64_MIN is INT64_MIN: min of [INT64_MIN, 0] gave 0.
    low = np.iinfo(np.int64).min
    assert tg.tensor(np.array([low, 0])).min().item() == low
    assert tg.tensor(np.array([3, 0, 255], dtype=np.uint8)).min().item() == 0
    assert tg.tensor(np.array([3, 0, 255], dtype=np.uint8)).minimum(
        tg.tensor(np.array([1, 1, 1], dtype=np.uint8))).tolist() == [1, 0, 1]
    values, indices = tg.tensor(np.array([0, 255, 3], dtype=np.uint8)).sort(descending=True)
    assert values.tolist() == [255, 3, 0] and indices.tolist() == [1, 2, 0]
    nan = float("nan")
    values, _ = tg.tensor([1.0, nan, 3.0]).topk(2)
    np.testing.assert_array_equal(values.numpy(), [nan, 3.0])
    assert tg.tensor([1.0, nan, 3.0]).argsort(descending=True).tolist() == [1, 2, 0]


def test_min_gradient_goes_to_the_first_smallest():
    x = tg.tensor([[3.0, 1.0, 1.0], [0.5, 2.0, -4.0]], requires_grad=True)
    values, indices = x.min(1)
    (values * tg.tensor([1.0, 2.0])).sum().backward()
    assert indices.tolist() == [1, 2]
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 1, 0], [0, 0, 2]])
    assert tg.gradcheck(lambda t: t.amin(0), tg.tensor(np.array([[1.0, 2.0], [3.0, -1.0]]),
                                                          requires_grad=True))


# ---------------------------------------------------------------------------- defect 9: reductions

REDUCTIONS = {
    "sum": lambda lib, t: t.sum(),
    "sum_dim": lambda lib, t, d: t.sum(d),
    "prod": lambda lib, t: t.prod(),
    "prod_dim": lambda lib, t, d: t.prod(d),
    "cumsum": lambda lib, t, d: t.cumsum(d),
    "mean": lambda lib, t: t.mean(),
    "mean_dim": lambda lib, t, d: t.mean(d, keepdim=True),
    "var_dim": lambda lib, t, d: t.var(d),
    "std": lambda lib, t: t.std(),
    "norm_dim": lambda lib, t, d: t.norm(dim=d),
    "norm_p": lambda lib, t, d: [t.norm(p, dim=d) for p in (0, 1, 3, 0.5, -1, float("inf"), -float("inf"))],
    "any_dim": lambda lib, t, d: t.any(d),
    "all": lambda lib, t: t.all(),
    "logsumexp": lambda lib, t, d: t.logsumexp(d),
    "softmax": lambda lib, t, d: t.softmax(d),
    "log_softmax": lambda lib, t, d: t.log_softmax(d),
    "amax_all": lambda lib, t: t.amax(tuple(range(t.ndim))),
    # dim=() reduces every dim in torch (numpy: none), except for any/all
    "sum_no_dims": lambda lib, t: t.sum(dim=()),
    "mean_no_dims": lambda lib, t: t.mean(dim=(), keepdim=True),
    "amin_no_dims": lambda lib, t: t.amin(dim=()),
    "std_no_dims": lambda lib, t: t.std(dim=()),
    "norm_no_dims": lambda lib, t: t.norm(dim=()),
    "any_no_dims": lambda lib, t: t.any(dim=()),
}
FLOAT_ONLY = {"softmax", "log_softmax", "logsumexp"}  # torch: int softmax raises, unless empty


@pytest.mark.parametrize("op", sorted(REDUCTIONS))
@settings(max_examples=20)
@given(data=st.data(), array=arrays())
def test_reductions_match_torch_on_every_dtype_and_empty_shapes(op, data, array):
    # Regression (issue 18, defect 9): x.max(1), softmax and logsumexp of an empty batch raised;
    # uint8 sums were uint64 (torch: int64); means and norms of ints returned floats (torch
    # raises); uint8 any/all gave bool (torch: uint8).
    if op in FLOAT_ONLY and array.dtype.kind != "f":
        return
    fn = REDUCTIONS[op]
    args = (data.draw(dims(array)),) if fn.__code__.co_argcount == 3 else ()
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "degrees of freedom <= 0"
        check(fn, array, *args, exact=False)


def test_an_empty_batch_reduces_to_empty_results():
    empty = tg.zeros(0, 3)
    values, indices = empty.max(1)
    assert values.shape == indices.shape == (0,)
    assert empty.argmax(1).shape == (0,) and empty.softmax(1).shape == (0, 3)
    assert empty.sum(1).shape == (0,) and empty.logsumexp(1).shape == (0,)
    np.testing.assert_array_equal(empty.logsumexp(0).numpy(), [-np.inf] * 3)
    with pytest.raises(IndexError, match="dim 0 of size 0"):
        empty.max(0)
    with pytest.raises(IndexError, match="size 0"):
        empty.argmax()


# ---------------------------------------------------------------------------- integer division

DIVISIONS = {
    "floor_divide": lambda lib, a, b: a // b,
    "remainder": lambda lib, a, b: a % b,
    "floor_divide_scalar": lambda lib, a, b: a // 0,
    "remainder_scalar": lambda lib, a, b: a % 0,
    "rfloordiv": lambda lib, a, b: 7 // b,
    "rmod": lambda lib, a, b: 7 % b,
}


@pytest.mark.parametrize("op", sorted(DIVISIONS))
@settings(max_examples=15)
@given(array=arrays(dtypes=["int64", "int32", "int8", "uint8", "float32"]))
def test_integer_division_by_zero_raises_as_torch(op, array):
    # Regression (issue 18, defect 9): numpy's integer division by zero gave 0 silently.
    divisor = np.array(np.flip(array))
    with np.errstate(all="ignore"):
        check(lambda lib, t: DIVISIONS[op](lib, t, lib.tensor(divisor) if lib is tg
                                           else torch.from_numpy(divisor)), array)


def test_integer_division_by_zero_is_both_errors_torch_code_catches():
    with pytest.raises(ZeroDivisionError, match="floor_divide: integer division by zero"):
        tg.tensor([4, 2]) // tg.tensor([1, 0])
    with pytest.raises(RuntimeError, match="remainder"):
        tg.tensor([4, 2]) % 0
    assert (tg.zeros(0, dtype=tg.int64) // 0).shape == (0,)  # an empty result divides nothing


# ---------------------------------------------------------------------------- bitwise, indices

BITWISE = {
    "and": lambda lib, t: t & t.flip(0) if t.ndim else t & t,
    "or": lambda lib, t: t | 3 if t.dtype not in (torch.bool, np.bool_) else t | True,
    "xor": lambda lib, t: t ^ t,
    "invert": lambda lib, t: ~t,
}


@pytest.mark.parametrize("op", sorted(BITWISE))
@settings(max_examples=15)
@given(array=arrays(min_side=1))
def test_bitwise_ops_are_bitwise_on_ints_logical_on_bools_refused_on_floats(op, array):
    # Regression: `&` and `|` were logical on every dtype (5 & 6 gave True, torch 4).
    check(BITWISE[op], array)


def test_negative_indices_and_sizes_are_refused_where_torch_refuses_them():
    x = np.arange(12.0).reshape(3, 4)
    check(lambda lib, t: t.index_select(0, lib.tensor([-1])), x)  # torch: out of range
    check(lambda lib, t: t.index_select(1, lib.tensor([3, 0])), x)
    check(lambda lib, t: t.reshape(-2, 6), x)  # numpy would read any negative size as -1
    check(lambda lib, t: t.reshape(-1, 6), x)
    check(lambda lib, t: t[lib.tensor([-1, 0])], x)  # advanced indexing takes negatives
    check(lambda lib, t: t.gather(1, lib.tensor([[-1], [0], [1]])), x)
    check(lambda lib, t: t.flatten(1, 0), x)  # numpy's reshape made a (3, 1, 4) of it
    check(lambda lib, t: t.flatten(-2, -1), x)


@settings(max_examples=20)
@given(array=arrays())
def test_sign_matches_torch_nan_and_bool_included(array):
    check(lambda lib, t: t.sign(), array)  # numpy's sign(NaN) is NaN, torch's 0


def test_chunks_of_an_empty_dim_are_as_many_as_asked():
    for chunks in (1, 3):
        check(lambda lib, t: list(t.chunk(chunks)), np.zeros((0, 3)))
        check(lambda lib, t: len(t.chunk(chunks, 1)), np.zeros((2, 5)))


def test_powers_of_bools_are_int64_as_torch():
    check(lambda lib, t: t ** 2, np.array([True, False]))  # numpy's would be int8
    check(lambda lib, t: t.square(), np.array([True, False]))


def test_one_hot_of_no_ids_needs_num_classes_as_torch():
    def fn(lib, ids):
        functional = tg.nn.functional if lib is tg else torch.nn.functional
        return functional.one_hot(ids)
    check(fn, np.zeros(0, dtype=np.int64))
    check(fn, np.array([2, 0]))


GRADIENTS = {
    "min_dim": lambda t, d: t.min(d)[0],
    "amin": lambda t, d: t.amin(d),
    "sort_descending": lambda t, d: t.sort(dim=d, descending=True)[0],
    "topk_smallest": lambda t, d: t.topk(min(2, t.shape[d]), d, largest=False)[0],
    "minimum": lambda t, d: t.minimum(t.flip(d) * 0.5),
}


@pytest.mark.parametrize("op", sorted(GRADIENTS))
@settings(max_examples=10)
@given(data=st.data(), shape=tt.shapes(min_dims=1, max_dims=3, max_side=4))
def test_gradients_of_min_sort_topk_match_torch(op, data, shape):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    values = np.random.default_rng(len(shape)).permutation(int(np.prod(shape))).reshape(shape)
    values = values.astype(np.float64) - 3.0  # distinct values: no ties to split
    weights = None
    grads = []
    for lib in (tg, torch):
        x = lib.tensor(values, requires_grad=True)
        out = GRADIENTS[op](x, dim)
        if weights is None:
            weights = np.random.default_rng(1).standard_normal(tuple(out.shape))
        (out * lib.tensor(weights)).sum().backward()
        grads.append(_plain(x.grad))
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12)
