"""torch's top-level names (issue 20): function forms, dtype aliases, the one device, scalar
conversions and printing, cuda/amp/backends/onnx stand-ins, and the small helpers. Each is
compared with torch when it is installed; the rest runs without it."""
import warnings

import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import nn

X = np.random.default_rng(0).standard_normal((3, 4))


# ---------------------------------------------------------------------------- without torch

def test_dtype_aliases_are_numpy_types():
    assert tg.long is np.int64 and tg.float is np.float32 and tg.int is np.int32
    assert tg.half is tg.float16 is np.float16 and tg.double is np.float64
    assert tg.uint8 is np.uint8 and tg.bool is np.bool_
    assert tg.tensor([1, 2], dtype=tg.long).dtype == tg.long


def test_bfloat16_and_complex_are_clear_errors():
    choices = {"float32": tg.float32, "bfloat16": tg.bfloat16}  # nanoGPT's table: mentioning is fine
    for use in (lambda: tg.zeros(2, dtype=choices["bfloat16"]), lambda: tg.ones(2).to(tg.bfloat16),
                lambda: tg.tensor([1.0], dtype=tg.bfloat16), lambda: nn.Linear(2, 2).to(tg.bfloat16)):
        with pytest.raises(TypeError, match="bfloat16 is not supported: numpy has no bfloat16"):
            use()
    with pytest.raises(TypeError, match="complex"):
        tg.ones(2).to(tg.complex64)
    with pytest.raises(AttributeError):
        tg.no_such_name


def test_device_model():
    assert tg.device("cpu") == "cpu" and str(tg.device("cpu:0")) == "cpu:0"
    x = tg.tensor([1.0, 2.0])
    assert x.device == tg.device("cpu") and x.device.type == "cpu"
    assert x.to("cpu") is x and x.cpu() is x and x.to(tg.device("cpu")) is x
    assert x.to("cpu", tg.float64).dtype == np.float64
    assert x.to(device="cpu", dtype=tg.long).dtype == np.int64
    assert x.to(tg.tensor([1])).dtype == np.int64
    assert x.to("cpu", copy=True) is not x
    assert tg.zeros(2, 3, device="cpu").shape == (2, 3)
    assert tg.randn(2, device=tg.device("cpu")).shape == (2,)
    assert tg.tensor([1], device="cpu").device.type == "cpu"
    for bad in ("cuda", "cuda:0", "mps"):
        with pytest.raises(RuntimeError, match="CPU only"):
            x.to(bad)
        with pytest.raises(RuntimeError, match="CPU only"):
            tg.zeros(2, device=bad)
    with pytest.raises(RuntimeError, match="CPU only"):
        x.cuda()
    with pytest.raises(TypeError, match="could not understand"):
        x.to("cpu", "float32")


def test_module_to_device_and_dtype():
    model = nn.Linear(2, 3)
    weight = model.weight
    assert model.to("cpu") is model and model.cpu() is model
    assert model.to(tg.device("cpu"), tg.float64).weight.dtype == np.float64
    assert model.weight is weight  # converted in place, as before
    with pytest.raises(RuntimeError, match="CPU only"):
        model.to("cuda")
    with pytest.raises(RuntimeError, match="CPU only"):
        model.cuda()


def test_layers_take_device_as_torch():
    for make in (lambda d: nn.Linear(2, 3, device=d), lambda d: nn.Embedding(4, 2, device=d),
                 lambda d: nn.LayerNorm(3, device=d), lambda d: nn.RMSNorm(3, device=d),
                 lambda d: nn.MultiheadAttention(4, 2, device=d)):
        make("cpu")
        make(tg.device("cpu"))
        with pytest.raises(RuntimeError, match="CPU only"):
            make("cuda")


def test_cuda_backends_amp_onnx_stand_ins():
    assert tg.cuda.is_available() is False and tg.cuda.device_count() == 0
    tg.cuda.manual_seed_all(0)
    tg.cuda.manual_seed(0)
    with pytest.raises(RuntimeError, match="no CUDA"):
        tg.cuda.current_device()
    tg.backends.cudnn.benchmark = True
    assert tg.backends.mps.is_available() is False
    scaler = tg.amp.GradScaler("cuda", enabled=False)
    loss = tg.tensor(2.0, requires_grad=True) * 3
    assert scaler.scale(loss) is loss and not scaler.is_enabled()
    assert tg.cuda.amp.GradScaler is tg.amp.GradScaler
    with tg.amp.autocast("cpu", enabled=False):
        pass
    import tinygrad_tf.onnx
    with pytest.raises(NotImplementedError, match="ONNX"):
        tinygrad_tf.onnx.export(nn.Linear(2, 2), tg.zeros(1, 2), "m.onnx")
    import tinygrad_tf.multiprocessing as mp
    assert mp.cpu_count() >= 1 and callable(mp.spawn)


def test_nn_modules_paths_and_parallel():
    from tinygrad_tf.nn.modules.loss import _Loss, CrossEntropyLoss
    from tinygrad_tf.nn.modules.linear import Linear
    from tinygrad_tf.nn.modules.module import Module
    from tinygrad_tf.nn.parallel import DistributedDataParallel
    assert Linear is nn.Linear and Module is nn.Module and CrossEntropyLoss is nn.CrossEntropyLoss
    assert issubclass(_Loss, nn.Module)
    model = DistributedDataParallel(nn.Linear(2, 1))  # one rank: a wrapper
    assert list(model.state_dict()) == ["module.weight", "module.bias"]
    out = model(tg.ones(4, 2)).sum()
    out.backward()
    assert model.module.weight.grad is not None


def test_generator_streams():
    a = tg.randperm(10, generator=tg.Generator().manual_seed(3))
    b = tg.randperm(10, generator=tg.Generator().manual_seed(3))
    assert a.tolist() == b.tolist() and sorted(a.tolist()) == list(range(10))
    assert a.dtype == np.int64
    g = tg.Generator().manual_seed(1)
    assert g.initial_seed() == 1
    state = g.get_state()
    first = tg.rand(3, generator=g).tolist()
    g.set_state(state)
    assert tg.rand(3, generator=g).tolist() == first


def test_multinomial_draws_and_errors():
    g = tg.Generator().manual_seed(0)
    draws = tg.multinomial(tg.tensor([0.0, 1.0, 3.0]), 2000, replacement=True, generator=g)
    assert draws.dtype == np.int64 and draws.shape == (2000,)
    counts = np.bincount(draws.numpy(), minlength=3)
    assert counts[0] == 0 and 0.65 < counts[2] / 2000 < 0.85
    rows = tg.multinomial(tg.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), 1)
    assert rows.shape == (2, 1) and rows[1, 0].item() == 2
    perm = tg.tensor([1.0, 1, 1, 1]).multinomial(4)
    assert sorted(perm.tolist()) == [0, 1, 2, 3]
    with pytest.raises(RuntimeError, match="without replacement"):
        tg.multinomial(tg.tensor([1.0, 0.0]), 2)
    with pytest.raises(RuntimeError, match="non-negative"):
        tg.multinomial(tg.tensor([1.0, -1.0]), 1)


def test_grad_mode_names():
    with tg.inference_mode():
        assert not tg.is_grad_enabled()
    tg.set_grad_enabled(False)
    assert not tg.is_grad_enabled()
    tg.set_grad_enabled(True)
    with tg.set_grad_enabled(False):
        assert not tg.is_grad_enabled()
    assert tg.is_grad_enabled()


def test_legacy_constructors_and_empty():
    assert tg.LongTensor([1, 2]).dtype == np.int64
    assert tg.FloatTensor([1, 2]).dtype == np.float32
    assert tg.LongTensor(2, 3).shape == (2, 3)
    assert tg.empty(2, 3).shape == (2, 3) and tg.empty(2, dtype=tg.long).dtype == np.int64
    assert tg.is_tensor(tg.zeros(1)) and not tg.is_tensor(np.zeros(1))


def test_every_function_form_calls_the_method():
    x = tg.tensor(X)
    for name in tg.torch_names.FUNCTION_NAMES:
        assert callable(getattr(tg, name)), name
        assert hasattr(tg.Tensor, name), name
    assert np.array_equal(tg.sin(x).numpy(), x.sin().numpy())
    with pytest.raises(NotImplementedError, match="out="):
        tg.exp(x, out=x)
    with pytest.raises(TypeError, match="must be a Tensor"):
        tg.exp("a")


def test_scalar_conversions():
    assert int(tg.tensor([2.7])) == 2 and float(tg.tensor([[3]])) == 3.0
    assert [10, 20, 30][tg.tensor(1)] == 20
    assert f"{tg.tensor(2.5):.3f}" == "2.500" and f"{tg.tensor(7):03d}" == "007"
    with pytest.raises(TypeError, match="integer tensors"):
        [1, 2][tg.tensor(1.0)]
    with pytest.raises(RuntimeError, match="one-element"):
        int(tg.tensor([1, 2]))
    with pytest.raises(TypeError, match="0-d"):
        f"{tg.tensor([2.5]):.3f}"


# ---------------------------------------------------------------------------- against torch

torch = pytest.importorskip("torch")


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
