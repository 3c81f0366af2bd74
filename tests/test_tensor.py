"""The Tensor object: construction, dtypes and promotion, factories and seeding, conversions,
comparisons, and the fully-masked softmax row."""
import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import Tensor, gradcheck

F32, F64, I64, BOOL = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64), np.dtype(bool)


# ---------------------------------------------------------------------------- construction

@pytest.mark.parametrize("data, dtype", [
    (1.5, F32), ([1.0, 2.0], F32), ([[1, 2]], I64), (3, I64), (True, BOOL), ([], F32),
    (np.array([1.0]), F64), (np.array([1.0], np.float32), F32), (np.float64(2.0), F64),
    (np.array([1, 2], np.int32), np.dtype(np.int32)), (np.array([True]), BOOL),
])
def test_construction_keeps_numpy_dtypes_and_makes_python_floats_float32(data, dtype):
    assert Tensor(data).dtype == dtype


def test_dtype_argument_converts_tensor_copies_and_from_numpy_shares():
    array = np.array([1.0, 2.0])
    assert Tensor(array, dtype=np.float32).dtype == F32
    assert Tensor([1, 2], dtype="float64").dtype == F64
    copied, shared = Tensor(array), Tensor.from_numpy(array)
    array[0] = 5.0
    assert copied.tolist() == [1.0, 2.0]  # like torch.tensor
    assert shared.numpy() is array  # like torch.from_numpy
    with pytest.raises(TypeError, match="unsupported dtype"):
        Tensor(np.array(["a"]))


# ---------------------------------------------------------------------------- promotion

def _torch_dtype(torch, dtype):
    return {F32: torch.float32, F64: torch.float64, I64: torch.int64, BOOL: torch.bool}[dtype]


@pytest.mark.parametrize("left", [F32, F64, I64, BOOL])
@pytest.mark.parametrize("right", [F32, F64, I64, BOOL])
@pytest.mark.parametrize("right_ndim", [0, 1])
def test_tensor_promotion_matches_torch(left, right, right_ndim):
    torch = pytest.importorskip("torch")
    shape = (2,) if right_ndim else ()
    a, b = Tensor(np.ones(2, left)), Tensor(np.ones(shape, right))
    ta, tb = torch.ones(2, dtype=_torch_dtype(torch, left)), torch.ones(shape, dtype=_torch_dtype(torch, right))
    for ours, theirs in [(a * b, ta * tb), (b * a, tb * ta), (a / b, ta / tb),
                         (tg.where(np.ones(2, bool), a, b), torch.where(torch.ones(2, dtype=torch.bool), ta, tb))]:
        assert ours.dtype == np.dtype(str(theirs.dtype).removeprefix("torch.")), (ours, theirs)


@pytest.mark.parametrize("dtype", [F32, F64, I64, BOOL])
@pytest.mark.parametrize("scalar", [2, 2.5, True])
def test_scalar_promotion_matches_torch(dtype, scalar):
    torch = pytest.importorskip("torch")
    x, tx = Tensor(np.ones(2, dtype)), torch.ones(2, dtype=_torch_dtype(torch, dtype))
    for ours, theirs in [(x * scalar, tx * scalar), (scalar * x, scalar * tx), (x / scalar, tx / scalar),
                         (x + scalar, tx + scalar)]:
        assert ours.dtype == np.dtype(str(theirs.dtype).removeprefix("torch.")), (ours, theirs)


def test_promotion_examples_from_the_issue():
    f32, f64 = Tensor([1.0, 2.0]), Tensor(np.array([1.0, 2.0]))
    ints = Tensor([1, 2])
    assert (f32 * 0.1).dtype == F32 and (f64 * 0.1).dtype == F64   # a scalar never widens
    assert (f32 + f64).dtype == F64
    assert (ints + 0.5).dtype == F32 and (ints / ints).dtype == F32 and (ints * 2).dtype == I64
    assert (f32 + np.array([1.0])).dtype == F64   # a float64 array is a dimensioned tensor
    assert (f32 * Tensor(np.float64(2.0))).dtype == F32  # a 0-d tensor does not widen
    assert tg.cat([ints, f32]).dtype == F32 and tg.cat([f64, f32]).dtype == F64
    assert (2 ** ints).dtype == I64 and (ints ** 2).dtype == I64 and (ints ** 0.5).dtype == F32


# ---------------------------------------------------------------------------- factories, seeding

def test_factories():
    assert Tensor.zeros(2, 3).shape == (2, 3) and Tensor.zeros((2, 3)).dtype == F32
    assert Tensor.ones(2, dtype=np.float64).dtype == F64
    assert Tensor.full((2,), 7).dtype == I64 and Tensor.full(2, 0.5).tolist() == [0.5, 0.5]
    assert Tensor.full((1,), True).dtype == BOOL
    assert Tensor.arange(3).tolist() == [0, 1, 2] and Tensor.arange(3).dtype == I64
    assert Tensor.arange(0, 1, 0.5).dtype == F32
    np.testing.assert_array_equal(Tensor.eye(2, 3).numpy(), np.eye(2, 3))
    assert Tensor.randn(2, 3, requires_grad=True).requires_grad
    assert tg.zeros_like(Tensor([1, 2])).dtype == I64
    assert tg.ones_like(Tensor([1.0]), dtype=np.float64).dtype == F64
    with pytest.raises(TypeError, match="every size must be an int"):
        Tensor.zeros(2.5)


def test_manual_seed_makes_random_ops_reproducible():
    def draw():
        return Tensor.randn(3).tolist(), Tensor.rand(2).tolist(), tg.random.generator().integers(100)

    tg.manual_seed(123)
    first = draw()
    tg.manual_seed(123)
    assert draw() == first
    tg.manual_seed(124)
    assert draw() != first
    state = tg.random.get_state()
    after = draw()
    tg.random.set_state(state)
    assert draw() == after


# ---------------------------------------------------------------------------- conversions

def test_repr_is_readable():
    assert repr(Tensor([1.0, 2.0])) == "Tensor([1., 2.])"
    assert repr(Tensor([1, 2])) == "Tensor([1, 2], dtype=int64)"
    x = Tensor([1.0], requires_grad=True)
    assert repr(x) == "Tensor([1.], requires_grad=True)"
    assert repr(x * 2) == "Tensor([2.], grad_fn=Mul)"


def test_item_tolist_array_len():
    x = Tensor([[1.0, 2.0]])
    assert Tensor([[3.5]]).item() == 3.5 and x.tolist() == [[1.0, 2.0]]
    assert len(x) == 1 and x.size() == (1, 2) and x.size(1) == 2 and x.numel() == 2
    assert np.asarray(x).dtype == F32 and np.asarray(x, dtype=np.float64).dtype == F64
    copied = np.array(x)
    copied[0, 0] = 9
    assert x.tolist() == [[1.0, 2.0]]  # np.array copies; np.asarray shares
    assert np.asarray(x) is x.array
    assert [t.tolist() for t in Tensor([1, 2])] == [1, 2]
    with pytest.raises(ValueError, match="one-element"):
        x.item()
    with pytest.raises(TypeError, match="len\\(\\) of a 0-d tensor"):
        len(Tensor(1.0))


def test_bool_of_a_tensor():
    assert bool(Tensor([1.0])) and not bool(Tensor(0.0))
    with pytest.raises(RuntimeError, match=r"bool\(\) of a tensor of shape \(2,\) is ambiguous"):
        bool(Tensor([1.0, 2.0]))


def test_tensors_hash_by_identity():
    a, b = Tensor([1.0]), Tensor([1.0])
    assert len({a, b}) == 2 and a in {a}


def test_cast_keeps_the_graph_only_for_floats():
    x = Tensor(np.array([1.5, -2.5], np.float32), requires_grad=True)
    assert x.to(np.float32) is x and x.float() is x
    y = x.double()
    assert y.dtype == F64 and y.requires_grad
    (y * np.array([2.0, 3.0])).sum().backward()
    assert x.grad.dtype == F32 and x.grad.tolist() == [2.0, 3.0]
    assert x.long().tolist() == [1, -2] and x.bool().dtype == BOOL and not x.long().requires_grad


# ---------------------------------------------------------------------------- comparisons

def test_comparisons_return_bool_without_grad():
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    for result, expected in [(x == 2, [False, True, False]), (x != 2, [True, False, True]),
                             (x < 2, [True, False, False]), (x <= 2, [True, True, False]),
                             (x > Tensor([0.0, 5.0, 3.0]), [True, False, False]),
                             (x >= np.array([1.0, 3.0, 3.0]), [True, False, True]),
                             ((x > 1) & (x < 3), [False, True, False]),
                             (~(x > 1) | (x > 2), [True, False, True])]:
        assert result.dtype == BOOL and not result.requires_grad and result._ctx is None
        assert result.tolist() == expected
    assert (x == None) is False  # noqa: E711 -- falls back to identity, no elementwise junk
    with pytest.raises(TypeError):
        x < "a"


def test_reductions_without_grad():
    x = Tensor([[1.0, 5.0], [7.0, 2.0]])
    assert x.argmax().item() == 2 and x.argmax(-1).tolist() == [1, 0]
    assert x.argmax(0, keepdim=True).shape == (1, 2)
    assert (x > 6).any().item() and not (x > 6).all().item()


# ---------------------------------------------------------------------------- masked softmax

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fully_masked_softmax_row_gives_zeros_and_zero_grads(dtype):
    scores = Tensor(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype), requires_grad=True)
    masked = scores.masked_fill(np.array([[True, True, True], [False, True, False]]), -np.inf)
    probs = masked.softmax(-1)
    np.testing.assert_array_equal(probs.numpy()[0], 0.0)
    np.testing.assert_allclose(probs.numpy()[1].sum(), 1.0, rtol=1e-6)
    (probs * np.array([[1.0, 2.0, 3.0], [1.0, -1.0, 2.0]])).sum().backward()
    assert np.isfinite(scores.grad.numpy()).all()
    np.testing.assert_array_equal(scores.grad.numpy()[0], 0.0)


def test_fully_masked_log_softmax_row_is_minus_inf_with_finite_grads():
    scores = Tensor(np.zeros((2, 3)), requires_grad=True)
    masked = scores.masked_fill(np.array([[True] * 3, [False, True, False]]), -np.inf)
    logp = masked.log_softmax(1)
    assert np.isneginf(logp.numpy()[0]).all() and not np.isnan(logp.numpy()).any()
    np.testing.assert_allclose(logp.numpy()[1], [np.log(0.5), -np.inf, np.log(0.5)])
    logp.backward(np.ones((2, 3)))
    assert np.isfinite(scores.grad.numpy()).all()
    np.testing.assert_array_equal(scores.grad.numpy()[0], 0.0)  # masked_fill stops it


def test_softmax_is_stable_for_large_inputs():
    x = Tensor(np.array([1000.0, 1001.0, -1000.0]), requires_grad=True)
    np.testing.assert_allclose(x.softmax(0).numpy(), [1 / (1 + np.e), np.e / (1 + np.e), 0.0])
    assert gradcheck(lambda t: t.log_softmax(0), x)


def test_var_of_a_single_element_is_nan_like_torch():
    assert np.isnan(Tensor([2.0]).var().item())
    assert Tensor([2.0]).var(correction=0).item() == 0.0


def test_data_is_a_tensor_sharing_memory_without_grad_as_torch():
    p = Tensor(np.arange(3.0), requires_grad=True)
    d = p.data
    assert isinstance(d, Tensor) and not d.requires_grad and d.is_leaf
    assert np.shares_memory(d.array, p.array)
    d.add_(1.0)  # the ported idiom `p.data.add_(...)` writes through
    np.testing.assert_array_equal(p.numpy(), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(p.data.clone().numpy(), p.numpy())


def test_a_write_through_data_is_caught_by_backward():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x * x).sum()  # Mul saved x
    x.data.mul_(10.0)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()


def test_setting_data_rebinds_the_memory_and_refuses_non_tensors():
    p = Tensor(np.zeros(2), requires_grad=True)
    new = Tensor(np.ones((3, 2), dtype=np.float32))
    p.data = new
    assert p.shape == (3, 2) and p.dtype == np.float32 and np.shares_memory(p.array, new.array)
    assert p.requires_grad
    with pytest.raises(TypeError, match=r"\.data can only be set to a Tensor"):
        p.data = np.zeros(2)
