"""tinygrad_tf.save / tinygrad_tf.load (torch's argument order; safetensors + a JSON manifest,
never pickle): state dicts, a GPT-style checkpoint, optimizer state, file objects, and the
clear errors (a whole Module, a torch pickle, a GPU map_location)."""
import io
import os

import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import nn


def _trained():
    tg.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = tg.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95))
    for _ in range(2):
        opt.zero_grad()
        model(tg.randn(5, 3)).pow(2).mean().backward()
        opt.step()
    return model, opt


def test_state_dict_round_trip(tmp_path):
    model, _ = _trained()
    path = tmp_path / "model.pt"
    tg.save(model.state_dict(), path)
    loaded = tg.load(path)
    assert list(loaded) == list(model.state_dict())
    fresh = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    fresh.load_state_dict(loaded)
    x = tg.randn(2, 3)
    np.testing.assert_array_equal(fresh(x).numpy(), model(x).numpy())


def test_gpt_style_checkpoint_and_optimizer_round_trip(tmp_path):
    model, opt = _trained()
    checkpoint = {"model": model.state_dict(), "optimizer": opt.state_dict(), "iter_num": 2,
                  "best_val_loss": 1.25, "config": {"n_layer": 2, "bias": False, "name": "gpt",
                                                    "dropout": 0.0, "betas": (0.9, 0.95),
                                                    "init_from": None, "sizes": [1, 2]}}
    tg.save(checkpoint, os.fspath(tmp_path / "ckpt.pt"))
    back = tg.load(tmp_path / "ckpt.pt", map_location="cpu", weights_only=True)
    assert back["iter_num"] == 2 and back["best_val_loss"] == 1.25
    assert back["config"] == checkpoint["config"]  # tuples stay tuples, None stays None
    assert back["optimizer"]["param_groups"] == opt.state_dict()["param_groups"]
    # the resumed optimizer continues exactly as the original one
    model2 = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    model2.load_state_dict(back["model"])
    opt2 = tg.optim.AdamW(model2.parameters(), lr=1e-2, betas=(0.9, 0.95))
    opt2.load_state_dict(back["optimizer"])
    x = tg.randn(5, 3)
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(x).pow(2).mean().backward()
        o.step()
    for a, b in zip(model.parameters(), model2.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_file_objects_and_other_top_levels():
    buffer = io.BytesIO()
    tg.save([tg.ones(2), 3, "x", None, (1.5, True)], buffer)
    buffer.seek(0)
    back = tg.load(buffer)
    assert back[1:] == [3, "x", None, (1.5, True)] and back[0].tolist() == [1.0, 1.0]
    buffer = io.BytesIO()
    tg.save(tg.arange(3), buffer)
    assert tg.load(io.BytesIO(buffer.getvalue())).tolist() == [0, 1, 2]


def test_clear_errors(tmp_path):
    model, opt = _trained()
    with pytest.raises(TypeError, match="state_dict"):
        tg.save(model, tmp_path / "m.pt")
    with pytest.raises(TypeError, match="state_dict"):
        tg.save({"opt": opt}, tmp_path / "m.pt")
    with pytest.raises(TypeError, match="cannot store a object"):
        tg.save({"x": object()}, tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()  # nothing half-written
    tg.save({"a": tg.ones(1)}, tmp_path / "ok.pt")
    with pytest.raises(RuntimeError, match="CPU only"):
        tg.load(tmp_path / "ok.pt", map_location="cuda:0")
    tg.load(tmp_path / "ok.pt", map_location=lambda storage, loc: storage)
    (tmp_path / "torch.pt").write_bytes(b"PK\x03\x04 torch zip")
    with pytest.raises(tg.serialization.CheckpointError, match="safetensors"):
        tg.load(tmp_path / "torch.pt")


def test_files_open_in_torch_and_safetensors():
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file
    import tempfile
    model, _ = _trained()
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.pt")
        tg.save(model.state_dict(), path)
        reference = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(),
                                        torch.nn.Linear(4, 2))
        reference.load_state_dict(load_file(path))
        torch.save(reference.state_dict(), os.path.join(directory, "torch.pt"))
        with pytest.raises(tg.serialization.CheckpointError, match="torch pickle"):
            tg.load(os.path.join(directory, "torch.pt"))
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_allclose(reference(torch.tensor(x)).detach().numpy(),
                               model(tg.tensor(x)).numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(), (0,), (0, 3), (3, 0), (1,), (2, 3), (1, 1, 1)])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int64", "int32", "int8",
                                   "uint8", "bool"])
def test_every_shape_and_dtype_round_trips(tmp_path, shape, dtype):
    # Regression (issue 18, defect 9): a 0-d tensor came back with shape (1,), so a model with
    # a 0-d parameter or buffer could not load its own checkpoint.
    array = (np.arange(int(np.prod(shape))).reshape(shape) % 3).astype(dtype)
    tensors = {"x": tg.tensor(array), "view": tg.tensor(array).permute(*reversed(range(len(shape))))}
    for save, load in ((tg.save, tg.load), (lambda obj, p: nn.state.save(p, obj), nn.state.load)):
        save(tensors, tmp_path / "f.safetensors")
        back = load(tmp_path / "f.safetensors")
        for name, tensor in tensors.items():
            assert back[name].shape == tensor.shape and back[name].dtype == tensor.dtype
            np.testing.assert_array_equal(back[name].numpy(), tensor.numpy())


def test_a_module_with_0d_parameters_and_buffers_loads_its_own_checkpoint(tmp_path):
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(tg.tensor(2.0))
            self.register_buffer("count", tg.tensor(np.int64(7)))

    nn.state.save(tmp_path / "m.safetensors", Scaled().state_dict())
    model = Scaled()
    model.load_state_dict(nn.state.load(tmp_path / "m.safetensors"))
    assert model.scale.shape == () and model.count.item() == 7
