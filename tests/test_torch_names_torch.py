"""torch's top-level names (issue 20) compared with torch itself (the checks that need no torch:
test_torch_names.py)."""
import warnings

import numpy as np
import pytest

import tinygrad_tf as tg

X = np.random.default_rng(0).standard_normal((3, 4))

torch = pytest.importorskip("torch")  # a module of its own: skipping it skips nothing else


def both(fn):
    """fn(lib) through both libraries, as numpy arrays / Python values."""
    def plain(v):
        if isinstance(v, (tuple, list)):
            return [plain(i) for i in v]
        if isinstance(v, torch.Tensor):
            return v.detach().numpy()
        if isinstance(v, tg.Tensor):
            return v.numpy()
        return v
    return plain(fn(tg)), plain(fn(torch))


def check(fn):
    ours, theirs = both(fn)
    if isinstance(theirs, list):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
            assert np.asarray(a).dtype == np.asarray(b).dtype
    elif isinstance(theirs, np.ndarray):
        assert ours.dtype == theirs.dtype, (ours.dtype, theirs.dtype)
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)
    else:
        assert ours == theirs


def test_function_forms_are_torchs_functions():
    """Every Tensor method torch has as a function, that we have as a method, we have as a
    function too (the systematic check behind FUNCTION_NAMES)."""
    ours = set(dir(tg.Tensor))
    wanted = {n for n in dir(torch) if not n.startswith("_") and n in dir(torch.Tensor)
              and callable(getattr(torch, n)) and n in ours} - {"device", "dtype", "get_device"}
    missing = sorted(n for n in wanted if not callable(getattr(tg, n, None)))
    assert not missing, missing


@pytest.mark.parametrize("code", [
    "lib.sin(x)", "lib.cos(x)", "lib.exp(x)", "lib.log(lib.abs(x))", "lib.tanh(x)",
    "lib.pow(x, 2)", "lib.pow(2, x)", "lib.tril(x)", "lib.triu(x, 1)", "lib.topk(x, 2)",
    "lib.roll(x, 1, 0)", "lib.matmul(x, x.t())", "lib.max(x, 1)", "lib.max(x)",
    "lib.max(x, lib.zeros(3, 4, dtype=lib.float64))", "lib.min(x, dim=0)", "lib.sum(x, dim=1)",
    "lib.mean(x, 0, keepdim=True)", "lib.softmax(x, dim=-1)", "lib.argmax(x, dim=1)",
    "lib.cat([x, x], 1)", "lib.split(x, 2, dim=1)", "lib.transpose(x, 0, 1)",
    "lib.clamp(x, min=0)", "lib.add(x, x, alpha=2)", "lib.sub(x, 1, alpha=3)",
    "lib.mm(x, x.t())", "lib.bmm(x[None], x.t()[None])", "lib.narrow(x, 1, 1, 2)",
    "x.narrow(0, -2, 2)", "lib.nonzero(x > 0)", "lib.nonzero(x > 0, as_tuple=True)",
    "lib.t(x)", "lib.square(x)", "lib.rsqrt(lib.abs(x))", "lib.outer(x[0], x[1])",
    "lib.masked_select(x, x > 0)", "lib.repeat_interleave(x, 2, dim=0)",
    "lib.log2(lib.abs(x))", "lib.eq(x, x)", "lib.logical_not(x > 0)", "lib.numel(x)",
    "x.dim()", "x.nelement()", "x.type()", "x.type(lib.int64)", "x.type('torch.FloatTensor')",
    "x.type_as(lib.tensor([1]))", "x.new_zeros(2, 3)", "x.new_full((2,), 3.0)",
    "lib.nonzero(lib.tensor(3.0))", "x.is_floating_point()", "lib.empty(2, 3).shape",
    "lib.zeros(2, dtype=lib.long)", "lib.ones(2, dtype=lib.half)", "lib.arange(3, dtype=lib.int)",
    "lib.tensor([1, 2], dtype=lib.uint8)", "lib.tensor([1, 0], dtype=lib.bool)",
    "lib.tensor([1.0], dtype=lib.double)", "lib.LongTensor([1, 2])", "x.long()",
    "lib.equal(x, x.clone())", "lib.allclose(x, x + 1e-9)",
])
def test_against_torch(code):
    check(lambda lib: eval(code, {"lib": lib, "x": lib.tensor(X)}))


def test_inplace_index_ops_against_torch():
    def run(lib):
        a = lib.zeros(3, 4)
        a.scatter_(1, lib.tensor([[0, 1], [2, 3], [1, 1]]), lib.ones(3, 2))
        b = lib.zeros(3, 4)
        b.scatter_(0, lib.tensor([[2, 0, 1, 0]]), 5.0)
        c = lib.ones(3, 4).index_fill_(1, lib.tensor([0, 2]), -1.0)
        d = lib.tensor(X).index_fill(0, lib.tensor([1]), 0.0)
        return [a, b, c, d]
    check(run)


@pytest.mark.parametrize("value,dtype", [
    (2.30258509, "float32"), (1.0, "float32"), (100.0, "float32"), (1e9, "float32"),
    (1e-5, "float32"), (0.0, "float32"), (-0.5, "float32"), (float("nan"), "float32"),
    (float("-inf"), "float32"), (-3.0, "float32"), (0.5, "float64"), (1.5, "float16"),
    (3, "int64"), (5, "int32"), (True, "bool"),
])
def test_str_of_0d_tensor_as_torch_prints_it(value, dtype):
    assert str(tg.tensor(value, dtype=getattr(np, dtype if dtype != "bool" else "bool_"))) == \
        str(torch.tensor(value, dtype=getattr(torch, dtype)))


def test_str_with_grad():
    assert str(tg.tensor(2.0, requires_grad=True)) == str(torch.tensor(2.0, requires_grad=True))
    assert str(tg.tensor(2.0, requires_grad=True) * 2).startswith("tensor(4., grad_fn=<Mul")


def test_conversions_against_torch():
    for lib in (tg, torch):
        assert int(lib.tensor([2.7])) == 2 and float(lib.tensor([[3]])) == 3.0
        assert f"{lib.tensor(2.5):.3f}" == "2.500"
        with pytest.raises(TypeError):
            [1, 2][lib.tensor(1.0)]
        with pytest.raises(TypeError):
            f"{lib.tensor([2.5]):.3f}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.tensor([1.0]).device.type == tg.tensor([1.0]).device.type == "cpu"
