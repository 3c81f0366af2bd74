"""The torch functions and methods the torch-habit sweep found missing (in-place forms, shape
helpers, einsum, cumulative ops, median, index writes, scatter_reduce, pad...), checked against
torch 2.13's written-out answers and, where torch is installed, against torch directly; each
raised AttributeError or TypeError before. Gradients in float64 through gradcheck."""
import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import Tensor
from torch_answers import assert_same, both, torch  # tests/torch_answers.py


# ---------------------------------------------------------------------------- missing methods

V = [-1.5, 0.25, 2.0, 4.0]
INPLACE_CASES = [("abs_", ()), ("neg_", ()), ("exp_", ()), ("expm1_", ()), ("sigmoid_", ()),
                 ("tanh_", ()), ("relu_", ()), ("floor_", ()), ("ceil_", ()), ("round_", ()),
                 ("sign_", ()), ("reciprocal_", ()), ("square_", ()), ("pow_", (2,)),
                 ("clamp_min_", (0.5,)), ("clamp_max_", (1.0,)), ("remainder_", (1.5,)),
                 ("sin_", ()), ("erf_", ())]


@pytest.mark.parametrize("name, args", INPLACE_CASES, ids=[c[0] for c in INPLACE_CASES])
def test_inplace_forms_write_through_views_and_bump_the_version(name, args):
    # before: AttributeError (only add_, mul_, clamp_... existed)
    base = Tensor(np.array([V, V], np.float32))
    row = base[1]
    before = base._version
    assert getattr(row, name)(*args) is row
    expected = getattr(Tensor(np.array(V, np.float32)), name[:-1])(*args).array
    np.testing.assert_allclose(base.array[1], expected, rtol=1e-6)
    assert base.array[0].tolist() == Tensor(np.array(V, np.float32)).tolist()
    assert base._version == before + 1
    if torch is not None:
        theirs = getattr(torch.tensor(V), name)(*args)
        np.testing.assert_allclose(base.array[1], theirs.numpy(), rtol=1e-6)


def test_inplace_forms_keep_torchs_rules():
    leaf = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        leaf.exp_()
    with tg.no_grad():
        leaf.exp_()  # an update under no_grad is fine
    with pytest.raises(RuntimeError, match="can't be cast"):
        Tensor([1, 4]).sqrt_()  # float results do not fit an int tensor (torch refuses too)
    assert Tensor([1, -4]).abs_().tolist() == [1, 4]
    for fill in (lambda t: t.normal_(), lambda t: t.uniform_(), lambda t: t.bernoulli_()):
        with pytest.raises(RuntimeError, match="leaf"):
            fill(Tensor([1.0, 2.0], requires_grad=True))


def test_random_fills_for_hand_written_init():
    tg.manual_seed(0)
    w = tg.nn.Linear(200, 100).weight
    before = w._version
    assert w.data.normal_(mean=0.0, std=0.02) is not None and w._version == before + 1
    assert abs(float(w.std()) - 0.02) < 0.001 and abs(float(w.mean())) < 0.001
    u = tg.empty(1000, dtype=tg.float64).uniform_(2, 3)
    assert u.dtype == np.float64 and 2 <= float(u.min()) and float(u.max()) < 3
    g = tg.Generator().manual_seed(1)
    a = tg.empty(5).normal_(generator=g)
    assert tg.equal(a, tg.empty(5).normal_(generator=tg.Generator().manual_seed(1)))
    b = tg.empty(1000).bernoulli_(0.25)
    assert set(b.tolist()) == {0.0, 1.0} and 0.2 < float(b.mean()) < 0.3


def test_add_sub_alpha_round_decimals_and_dtype_arguments():
    ours, theirs = both(lambda L: (
        L.ones(2).add(L.tensor([1.0, 2.0]), alpha=3), L.ones(2).sub(L.tensor([1.0, 2.0]), alpha=2),
        L.tensor([1.2345, -2.5551]).round(decimals=2), L.tensor([[1.0, 2.0]]).softmax(1, L.float64),
        L.nn.functional.log_softmax(L.tensor([1.0, 2.0]), -1, dtype=L.float64),
        L.tensor([1, 2]).cumsum(0, dtype=L.float32), L.tensor([2.0, 3.0]).addcmul(
            L.tensor([1.0, 2.0]), L.tensor([3.0, 4.0]), value=0.5),
        L.addcdiv(L.zeros(2), L.ones(2), L.tensor([2.0, 4.0])), L.lerp(L.zeros(2), L.ones(2), 0.25)))
    logits = np.array([1.0, 2.0])
    expected = [[4, 7], [-1, -3], [1.23, -2.56], [np.exp(logits) / np.exp(logits).sum()],
                logits - np.log(np.exp(logits).sum()), [1, 3], [3.5, 7], [0.5, 0.25], [0.25, 0.25]]
    assert_same(ours, expected, theirs)
    assert ours[3].dtype == ours[4].dtype == np.float64 and ours[5].dtype == np.float32
    assert all(x.dtype == np.float32 for x in ours[:3])


def test_addcmul_addcdiv_lerp_gradients():
    a, b, c = (Tensor(np.random.default_rng(i).uniform(0.5, 2, (2, 3)), requires_grad=True)
               for i in range(3))
    assert tg.gradcheck(lambda x, y, z: x.addcmul(y, z, value=0.5) + x.addcdiv(y, z, value=2)
                        + x.lerp(y, z), a, b, c)
    x = Tensor([0.0, 4.0])
    assert x.lerp_(Tensor([1.0, 2.0]), 0.25) is x and x.tolist() == [0.25, 3.5]


def test_shape_helpers_as_torch():
    ours, theirs = both(lambda L: (
        L.arange(24).reshape(2, 3, 4).movedim(0, -1), L.arange(24).reshape(2, 3, 4).movedim((0, 1), (2, 0)),
        L.arange(6).reshape(2, 3).tile(2), L.arange(6).reshape(2, 3).tile((2, 1, 1)),
        L.arange(24).reshape(2, 12).unflatten(1, (3, -1)), L.arange(6).reshape(2, 3).select(1, -1),
        L.arange(6).reshape_as(L.zeros(3, 2)), L.arange(6).reshape(2, 3).fliplr(),
        L.moveaxis(L.arange(6).reshape(1, 2, 3), 2, 0), L.tensor([1.7, -1.7]).int(),
        L.tensor([1.7, 300.0]).half(), L.tensor([3.0, 258.0]).byte()))
    a = np.arange(24).reshape(2, 3, 4)
    expected = [np.moveaxis(a, 0, -1), np.moveaxis(a, (0, 1), (2, 0)),
                np.tile(np.arange(6).reshape(2, 3), 2), np.tile(np.arange(6).reshape(2, 3), (2, 1, 1)),
                np.arange(24).reshape(2, 3, 4), [2, 5], np.arange(6).reshape(3, 2),
                [[2, 1, 0], [5, 4, 3]], np.moveaxis(np.arange(6).reshape(1, 2, 3), 2, 0),
                [1, -1], [1.7, 300.0], [3, 2]]
    for got, want in zip(ours, expected):
        np.testing.assert_allclose(got, want, rtol=1e-3)
    if theirs is not None:
        for got, want in zip(ours, theirs):
            assert got.dtype == want.dtype and np.array_equal(got, want)
    assert tg.nn.Linear(2, 2).half().weight.dtype == np.float16


def test_detach_in_place():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    assert y.detach_() is y and not y.requires_grad and y.is_leaf and y.grad_fn is None
    (y * x).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0]


def test_reductions_take_dtype_and_norm_takes_fro():
    # before: TypeError for mean/prod/norm(dtype=), and p='fro' reached `**` as a string
    ours, theirs = both(lambda L: (
        L.tensor([1, 2]).mean(dtype=L.float32), L.tensor([[1, 2], [3, 4]]).prod(1, dtype=L.float64),
        L.tensor([3.0, 4.0]).norm(dtype=L.float64), L.norm(L.tensor([[3.0, 4.0], [6.0, 8.0]]), p="fro"),
        L.tensor([[3.0, 4.0], [6.0, 8.0]]).norm("fro", dim=1, keepdim=True)))
    expected = [1.5, [2, 12], 5.0, np.sqrt(125.0), [[5.0], [10.0]]]
    assert_same(ours, expected, theirs)
    assert [o.dtype for o in ours] == [np.float32, np.float64, np.float64, np.float32, np.float32]
    with pytest.raises(NotImplementedError):
        Tensor([[1.0]]).norm("nuc")


# ---------------------------------------------------------------------------- more of torch's functions

def test_einsum_against_numpy_and_torch():
    # before: AttributeError
    rng = np.random.default_rng(0)
    cases = [("ij,jk->ik", [(2, 3), (3, 4)]), ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),
             ("ii", [(3, 3)]), ("iij->j", [(3, 3, 2)]), ("bi,bj->bij", [(2, 3), (2, 4)]),
             ("...ij,...jk", [(2, 1, 2, 3), (4, 3, 2)]), ("abc,cd,de->abe", [(2, 3, 4), (4, 5), (5, 2)]),
             ("ij,j", [(2, 3), (3,)]), ("Ab,bC->AC", [(2, 3), (3, 4)]), ("i...->...", [(2, 3, 4)])]
    for equation, shapes in cases:
        arrays = [rng.standard_normal(shape) for shape in shapes]
        inputs = [Tensor(a, requires_grad=True) for a in arrays]
        out = tg.einsum(equation, *inputs)
        np.testing.assert_allclose(out.array, np.einsum(equation, *arrays), rtol=1e-12, atol=1e-12)
        assert tg.gradcheck(lambda *xs: tg.einsum(equation, *xs), *inputs)
        if torch is not None:
            theirs = torch.einsum(equation, *[torch.tensor(a) for a in arrays])
            assert out.shape == tuple(theirs.shape)
    a, b = (Tensor(rng.standard_normal((2, 3)), requires_grad=True) for _ in range(2))
    assert tg.gradgradcheck(lambda x, y: tg.einsum("ij,kj->ik", [x, y]), (a, b))


def test_cumprod_values_and_gradients_at_zeros():
    # before: AttributeError; the gradient past a zero is the product rule's, as torch's
    x = Tensor([2.0, 0.0, 3.0, 4.0, 5.0], dtype=np.float64, requires_grad=True)
    out = x.cumprod(0)
    assert out.tolist() == [2.0, 0.0, 0.0, 0.0, 0.0]
    (out * Tensor(np.arange(1.0, 6.0))).sum().backward()
    assert x.grad.tolist() == [1.0, 2 * (2 + 3 * 3 + 12 * 4 + 60 * 5), 0.0, 0.0, 0.0]
    rng = np.random.default_rng(1)
    values = rng.standard_normal((3, 5))
    values[1, 2] = values[2, 1] = values[2, 3] = 0.0
    assert tg.gradcheck(lambda t: t.cumprod(1), Tensor(values, requires_grad=True))
    assert tg.gradgradcheck(lambda t: t.cumprod(0), (Tensor(values, requires_grad=True),))
    assert Tensor([2, 3]).cumprod(0).tolist() == [2, 6] and Tensor([2, 3]).cumprod(0).dtype == np.int64
    assert tg.cumprod(Tensor([1.0, 2.0]), 0, dtype=tg.float64).dtype == np.float64


def test_shape_and_reduction_helpers_gradients():
    rng = np.random.default_rng(2)
    x = Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    v = Tensor(rng.standard_normal(3), requires_grad=True)
    index = Tensor([[2], [0], [3]])
    for fn, arg in [(lambda t: t.tensor_split(3, dim=1)[1], x), (lambda t: t.diagonal(1), x),
                    (lambda t: tg.take_along_dim(t, index, 1), x), (lambda t: t.diff(dim=1), x),
                    (lambda t: tg.diag(t, 1), v), (lambda t: tg.diag(t, -2), v), (lambda t: t.trace(), x),
                    (lambda t: t.masked_fill(t > 0.5, float("nan")).nansum(1), x)]:
        assert tg.gradcheck(fn, arg)
    assert [t.tolist() for t in tg.arange(7).tensor_split(3)] == [[0, 1, 2], [3, 4], [5, 6]]
    assert [t.tolist() for t in tg.arange(7).tensor_split([1, 5])] == [[0], [1, 2, 3, 4], [5, 6]]
    assert tg.diag(Tensor([1, 2]), -1).tolist() == [[0, 0, 0], [1, 0, 0], [0, 2, 0]]
    grid_i, grid_j = tg.meshgrid(tg.arange(2), tg.arange(3), indexing="xy")
    assert grid_i.tolist() == [[0, 1], [0, 1], [0, 1]] and grid_j.tolist() == [[0, 0], [1, 1], [2, 2]]
    values, inverse, counts = tg.unique(Tensor([[3, 1], [3, 2]]), return_inverse=True,
                                        return_counts=True)
    assert values.tolist() == [1, 2, 3] and inverse.tolist() == [[2, 0], [2, 1]]
    assert counts.tolist() == [1, 1, 2]
    assert Tensor([[0, 1], [2, 0]]).count_nonzero(0).tolist() == [1, 1]
    assert Tensor([[1.0, float("nan")], [3.0, 4.0]]).nanmean(0).tolist() == [2.0, 4.0]
    low, high = Tensor([[1, 5], [3, 2]]).aminmax(dim=1)
    assert low.tolist() == [1, 2] and high.tolist() == [5, 3]


def test_median_and_kthvalue():
    # before: AttributeError
    ours, theirs = both(lambda L: (
        L.tensor([1.0, 2.0, 3.0, 4.0]).median(), *L.tensor([[2.0, 1, 5, 3], [5, 7, 1, 0]]).median(1),
        *L.tensor([[3.0, 1, 2], [5, 4, 6]]).kthvalue(2, 1, keepdim=True),
        L.tensor([1.0, float("nan"), 0.0]).median(), L.tensor([4, 1, 3]).median()))
    expected = [2.0, [2.0, 1.0], [0, 2], [[2.0], [5.0]], [[2], [0]], np.nan, 3]
    for got, want in zip(ours, expected):
        np.testing.assert_array_equal(got, want)
    if theirs is not None:
        for got, want in zip(ours, theirs):
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
    x = Tensor([2.0, 1.0, 2.0, 2.0, 3.0], dtype=np.float64, requires_grad=True)
    x.median().backward()  # the median's gradient is shared by the elements equal to it (torch)
    np.testing.assert_allclose(x.grad.array, [1 / 3, 0, 1 / 3, 1 / 3, 0])
    distinct = Tensor(np.random.default_rng(3).standard_normal((3, 5)), requires_grad=True)
    assert tg.gradcheck(lambda t: t.median(1).values + t.kthvalue(4, 1).values, distinct)
    with pytest.raises(IndexError):
        Tensor([1.0, 2.0]).kthvalue(3)


def test_index_writes_take_and_where_alone():
    # before: AttributeError for each (and where(condition) needed three arguments)
    def story(L):
        out = []
        base = L.zeros(3, 2)
        out.append(base.index_add(0, L.tensor([0, 2, 0]), L.ones(3, 2), alpha=2))
        out.append(L.zeros(3, 2).index_add_(0, L.tensor([0, 2, 0]), L.ones(3, 2)))
        out.append(L.zeros(3, 2).index_copy_(0, L.tensor([2, 0]), L.tensor([[1.0, 2.0], [3.0, 4.0]])))
        out.append(L.zeros(3).index_put_((L.tensor([0, 0, 2]),), L.tensor([1.0, 2.0, 3.0]),
                                         accumulate=True))
        out.append(L.zeros(2, 2).index_put_((L.tensor([0, 1]), L.tensor([1, 0])), L.tensor(5.0)))
        out.append(L.zeros(4).masked_scatter_(L.tensor([True, False, True, False]),
                                              L.tensor([5.0, 6.0, 7.0])))
        out.append(L.zeros(2, 2).put_(L.tensor([1, 3]), L.tensor([7.0, 8.0])))
        out.append(L.arange(6).reshape(2, 3).take(L.tensor([[0, 5], [4, 4]])))
        out.extend(L.where(L.tensor([[0, 1], [1, 0]])))
        return [t.tolist() for t in out]
    expected = [[[4.0, 4.0], [0.0, 0.0], [2.0, 2.0]], [[2.0, 2.0], [0.0, 0.0], [1.0, 1.0]],
                [[3.0, 4.0], [0.0, 0.0], [1.0, 2.0]], [3.0, 0.0, 3.0], [[0.0, 5.0], [5.0, 0.0]],
                [5.0, 0.0, 6.0, 0.0], [[0.0, 7.0], [0.0, 8.0]], [[0, 5], [4, 4]], [0, 1], [1, 0]]
    assert story(tg) == expected
    if torch is not None:
        assert story(torch) == expected
    x = Tensor(np.random.default_rng(4).standard_normal((3, 2)), requires_grad=True)
    s = Tensor(np.random.default_rng(5).standard_normal((4, 2)), requires_grad=True)
    index = Tensor([2, 0, 2, 1])
    assert tg.gradcheck(lambda a, b: a.index_add(0, index, b, alpha=0.5), x, s)
    assert tg.gradcheck(lambda a, b: a.index_copy(0, Tensor([2, 0]), b[:2]), x, s)
    assert tg.gradcheck(lambda a: a.take(Tensor([[5, 0], [5, 3]])), x)
    with pytest.raises(RuntimeError, match="leaf"):
        x.index_add_(0, index, s.detach())


def _index_put_story(L):
    weights = L.tensor([1.0, 2.0, 3.0, 4.0])
    story = []
    for accumulate in (False, True):
        for index in (L.tensor([0, 2, 0]), L.tensor([True, False, True, False])):
            x = L.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
            v = L.tensor([10.0, 20.0, 30.0][:3 if index.dtype != L.bool else 2], requires_grad=True)
            y = x.index_put((index,), v, accumulate=accumulate)
            (y * weights).sum().backward()
            story.append([y.tolist(), x.grad.tolist(), v.grad.tolist()])
    return story


def test_index_put_out_of_place_is_differentiable():
    # before: index_put was clone().index_put_(), which refused values that require grad
    # ("use the out-of-place op"); with a repeated position torch keeps the last value and
    # gives every value grad[indices]
    expected = [[[30.0, 2.0, 20.0, 4.0], [0.0, 2.0, 0.0, 4.0], [1.0, 3.0, 1.0]],
                [[10.0, 2.0, 20.0, 4.0], [0.0, 2.0, 0.0, 4.0], [1.0, 3.0]],
                [[41.0, 2.0, 23.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 1.0]],
                [[11.0, 2.0, 23.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 3.0]]]
    assert _index_put_story(tg) == expected
    if torch is not None:
        assert _index_put_story(torch) == expected
    x = Tensor(np.random.default_rng(6).standard_normal((3, 2)), requires_grad=True)
    v = Tensor(np.random.default_rng(7).standard_normal((2, 2)), requires_grad=True)
    rows = Tensor([2, 0])
    assert tg.gradcheck(lambda a, b: a.index_put((rows,), b), x, v)
    assert tg.gradcheck(lambda a, b: a.index_put((rows,), b, accumulate=True), x, v)
    assert tg.gradcheck(lambda a, b: a.index_put((rows, Tensor([1, 1])), b[0]), x, v)


def test_trunc_frac_fmod():
    ours, theirs = both(lambda L: (
        L.tensor([-2.5, 2.5, -0.5]).trunc(), L.tensor([-2.5, 2.5, -0.5]).frac(),
        L.fmod(L.tensor([-3.0, 3.0, 5.5]), 2), L.tensor([-7, 7]).fmod(3), L.tensor([-7, 7]) % 3,
        L.tensor([-3.0, 3.0]).fmod(L.tensor([-2.0, 2.0]))))
    expected = [[-2.0, 2.0, -0.0], [-0.5, 0.5, -0.5], [-1.0, 1.0, 1.5], [-1, 1], [2, 1], [-1.0, 1.0]]
    assert_same(ours, expected, theirs)
    a = Tensor(np.array([-3.3, 2.7, 5.1]), requires_grad=True)
    b = Tensor(np.array([2.0, -1.3, 1.6]), requires_grad=True)
    assert tg.gradcheck(lambda x, y: x.fmod(y) + x.frac(), a, b)
    with pytest.raises(ZeroDivisionError):
        Tensor([1, 2]).fmod(0)


def test_cummax_cummin_linalg_and_stacking_helpers():
    # before: AttributeError for each
    ours, theirs = both(lambda L: (
        *L.tensor([1.0, 3, 2, 3, 5]).cummax(0), *L.tensor([[3.0, 1, 2, 1], [0, 4, -1, -1]]).cummin(1),
        L.linalg.vector_norm(L.tensor([[3.0, -4], [0, 1]]), ord=1),
        L.linalg.norm(L.tensor([[3.0, -4], [0, 1]]), "fro"),
        L.hstack([L.tensor([1.0, 2]), L.tensor([3.0])]), L.vstack([L.tensor([1.0, 2]), L.tensor([3.0, 4])]),
        L.column_stack([L.tensor([1.0, 2]), L.tensor([3.0, 4])]), L.atleast_3d(L.tensor([1.0, 2])),
        L.searchsorted(L.tensor([1, 3, 5, 7]), L.tensor([3, 6, 9])),
        L.bucketize(L.tensor([3, 6]), L.tensor([1, 3, 5, 7]), right=True),
        L.cdist(L.tensor([[0.0, 0], [1, 1]]), L.tensor([[3.0, 4], [1, 0]])),
        L.dist(L.tensor([0.0, 0]), L.tensor([3.0, 4]))))
    expected = [[1.0, 3, 3, 3, 5], [0, 1, 1, 3, 4], [[3.0, 1, 1, 1], [0, 0, -1, -1]],
                [[0, 1, 1, 3], [0, 0, 2, 3]], 8.0, np.sqrt(26.0), [1.0, 2, 3], [[1.0, 2], [3, 4]],
                [[1.0, 3], [2, 4]], [[[1.0], [2.0]]], [1, 3, 4], [2, 3],
                [[5.0, 1.0], [np.sqrt(13.0), 1.0]], 5.0]
    for got, want in zip(ours, expected):
        np.testing.assert_allclose(got, want, rtol=1e-6)
        assert got.shape == np.shape(want)
    if theirs is not None:
        for got, want in zip(ours, theirs):
            assert got.dtype == want.dtype
            np.testing.assert_allclose(got, want, rtol=1e-6)
    x = Tensor(np.array([1.0, 3.0, 2.0, 3.0, 5.0]), requires_grad=True)
    (x.cummax(0).values * Tensor(np.arange(1.0, 6.0))).sum().backward()
    assert x.grad.tolist() == [1.0, 5.0, 0.0, 4.0, 5.0]  # ties: the later index, as torch's
    a = Tensor(np.array([[0.0, 1.0], [1.0, 1.5]]), requires_grad=True)
    b = Tensor(np.array([[3.0, 4.0], [1.0, 0.2]]), requires_grad=True)
    assert tg.gradcheck(lambda p, q: tg.cdist(p, q) + tg.linalg.vector_norm(p, 3), a, b)


def test_huber_unflatten_strides_checkpoint_and_anomaly_names():
    F = tg.nn.functional
    assert F.huber_loss(Tensor([0.0, 0.0, 1.0]), Tensor([0.5, 3.0, -1.0]), delta=2.0).item() == \
        pytest.approx((0.125 + 4.0 + 2.0) / 3)
    assert tg.nn.HuberLoss(delta=0.5)(Tensor([0.0]), Tensor([3.0])).item() == pytest.approx(1.375)
    assert tg.nn.Unflatten(1, (2, 3))(tg.zeros(4, 6)).shape == (4, 2, 3)
    x = tg.zeros(2, 3, 4)
    assert x.stride() == (12, 4, 1) and x.transpose(0, 2).stride() == (1, 4, 12)
    assert x[1].storage_offset() == 12 and x[:, 1].storage_offset() == 4
    from tinygrad_tf.utils.checkpoint import checkpoint
    w = Tensor([1.0, 2.0], requires_grad=True)
    checkpoint(lambda t: t.exp() * 2, w, use_reentrant=False).sum().backward()
    np.testing.assert_allclose(w.grad.array, 2 * np.exp([1.0, 2.0]), rtol=1e-6)
    v = tg.autograd.Variable(tg.ones(2), requires_grad=True)
    with pytest.warns(UserWarning, match="anomaly"):
        with tg.autograd.set_detect_anomaly(True):
            (v * 2).sum().backward()
    assert v.grad.tolist() == [2.0, 2.0]


@pytest.mark.parametrize("reduce", ["sum", "mean", "amax", "amin", "prod"])
@pytest.mark.parametrize("include_self", [True, False])
def test_scatter_reduce(reduce, include_self):
    # before: AttributeError
    base = np.array([[2.0, 0.0, 1.0], [5.0, 3.0, 3.0]])
    src = np.array([[1.0, 5.0, 2.0], [3.0, 3.0, 4.0]])
    index = [[0, 0, 2], [1, 1, 1]]
    expected = {("sum", True): [[8, 0, 3], [5, 13, 3]], ("sum", False): [[6, 0, 2], [5, 10, 3]],
                ("mean", True): [[8 / 3, 0, 1.5], [5, 13 / 4, 3]],
                ("mean", False): [[3, 0, 2], [5, 10 / 3, 3]],
                ("amax", True): [[5, 0, 2], [5, 4, 3]], ("amax", False): [[5, 0, 2], [5, 4, 3]],
                ("amin", True): [[1, 0, 1], [5, 3, 3]], ("amin", False): [[1, 0, 2], [5, 3, 3]],
                ("prod", True): [[10, 0, 2], [5, 108, 3]], ("prod", False): [[5, 0, 2], [5, 36, 3]]}
    out = Tensor(base).scatter_reduce(1, Tensor(index), Tensor(src), reduce, include_self=include_self)
    np.testing.assert_allclose(out.array, expected[reduce, include_self])
    if reduce == "prod":
        return
    b, s = Tensor(base, requires_grad=True), Tensor(src, requires_grad=True)
    weights = Tensor(np.arange(1.0, 7.0).reshape(2, 3))
    (b.scatter_reduce(1, Tensor(index), s, reduce, include_self=include_self) * weights).sum().backward()
    if torch is not None:
        tb, ts = (torch.tensor(a, requires_grad=True) for a in (base, src))
        (tb.scatter_reduce(1, torch.tensor(index), ts, reduce, include_self=include_self)
         * torch.tensor(weights.array)).sum().backward()
        np.testing.assert_allclose(b.grad.array, tb.grad.numpy(), rtol=1e-12)
        np.testing.assert_allclose(s.grad.array, ts.grad.numpy(), rtol=1e-12)
    if reduce in ("sum", "mean"):  # smooth: check the gradient numerically too
        assert tg.gradcheck(lambda x, y: x.scatter_reduce(1, Tensor(index), y, reduce,
                                                          include_self=include_self), b, s)


def test_pad_crops_on_negative_widths_and_layer_norm_repr():
    # before: ValueError for any negative width (torch crops); LayerNorm's repr lacked bias=
    x = np.arange(12.0).reshape(3, 4)
    for widths in [(-1, 0), (-1, 2), (1, -2, -1, 0), (0, 0, -1, -1)]:
        out = tg.nn.functional.pad(Tensor(x), widths)
        if torch is not None:
            np.testing.assert_array_equal(out.array, torch.nn.functional.pad(torch.tensor(x), widths).numpy())
    assert tg.nn.functional.pad(Tensor(x), (1, -2, -1, 0)).tolist() == \
        [[0.0, 4.0, 5.0], [0.0, 8.0, 9.0]]
    assert tg.gradcheck(lambda v: tg.nn.functional.pad(v, (1, -2, -1, 0)), Tensor(x, requires_grad=True))
    assert repr(tg.nn.LayerNorm(4, bias=False)) == \
        "LayerNorm((4,), eps=1e-05, elementwise_affine=True, bias=False)"


def test_diag_embed():
    # before: AttributeError
    x = np.arange(6.0).reshape(2, 3)
    for options in [{}, {"offset": 1}, {"offset": -2}, {"dim1": 0, "dim2": 2}]:
        out = tg.diag_embed(Tensor(x), **options)
        if torch is not None:
            np.testing.assert_array_equal(out.array, torch.diag_embed(torch.tensor(x), **options).numpy())
    assert tg.diag_embed(Tensor([1, 2])).tolist() == [[1, 0], [0, 2]]
    assert tg.gradcheck(lambda v: tg.diag_embed(v, -1), Tensor(x, requires_grad=True))
