"""torch's top-level names (issue 20): function forms, dtype aliases, the one device, scalar
conversions and printing, cuda/amp/backends/onnx stand-ins, and the small helpers. What needs
torch to compare with is in test_torch_names_torch.py."""
import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import nn

X = np.random.default_rng(0).standard_normal((3, 4))


# ---------------------------------------------------------------------------- without torch

def test_dtype_aliases_are_the_numpy_dtypes_tensors_have():
    assert tg.long == np.int64 and tg.float == np.float32 and tg.int == np.int32
    assert tg.half is tg.float16 == np.float16 and tg.double == np.float64
    assert tg.uint8 == np.uint8 and tg.bool == np.bool_
    assert tg.tensor([1, 2], dtype=tg.long).dtype == tg.long
    # as torch's: identity and dict keys work (before: numpy scalar types, so `is` was False)
    assert tg.ones(2).dtype is tg.float32 and (tg.ones(2) > 0).dtype is tg.bool
    assert tg.tensor([1, 2]).dtype is tg.long and tg.ones(2).double().dtype is tg.float64
    assert {tg.float32: "f32"}[tg.ones(1).dtype] == "f32"
    assert isinstance(tg.float16, tg.dtype) and str(tg.float32) == "float32"


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
    assert tg.exp(x, out=x) is x and np.allclose(x.numpy(), np.exp(X))  # out= writes into x
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
