"""nn.state: safetensors round trips, nested checkpoints, atomic writes, clear errors."""
import os

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import tinygrad_tf as tg
from tinygrad_tf import Tensor, nn


def make_model():
    return nn.Sequential(nn.Embedding(7, 4, padding_idx=0), nn.LayerNorm(4), nn.Linear(4, 3))


def test_state_dict_round_trip_through_a_file(tmp_path):
    tg.manual_seed(0)
    model = make_model()
    path = tmp_path / "model.safetensors"
    nn.state.save(path, model.state_dict(), metadata={"note": "xor run 3"})
    tg.manual_seed(1)
    other = make_model()
    other.load_state_dict(nn.state.load(path))
    for (name, a), (_, b) in zip(model.named_parameters(), other.named_parameters()):
        assert a.dtype == b.dtype == np.float32, name
        np.testing.assert_array_equal(a.array, b.array)
    assert nn.state.load_metadata(path) == {"note": "xor run 3"}
    # A plain safetensors file: other tools read the same names.
    assert sorted(load_file(str(path))) == sorted(model.state_dict())


def test_nested_checkpoint_keeps_structure_and_plain_values(tmp_path):
    tree = {"model": {"w": Tensor(np.arange(6.0).reshape(2, 3))},
            "optimizer": {"state": {0: {"step": 3, "exp_avg": np.ones(2, np.float32)}},
                          "param_groups": [{"lr": 0.1, "betas": (0.9, 0.98), "params": [0]}]},
            "step": 12, "name": "run", "flag": True, "nothing": None,
            "ids": np.array([1, 2], dtype=np.int64)}
    path = tmp_path / "tree.safetensors"
    nn.state.save(path, tree)
    back = nn.state.load(path)
    assert back["step"] == 12 and back["name"] == "run" and back["flag"] is True
    assert back["nothing"] is None
    assert back["optimizer"]["state"][0]["step"] == 3  # int keys stay ints
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.98)
    np.testing.assert_array_equal(back["model"]["w"].array, tree["model"]["w"].array)
    assert back["ids"].dtype == np.int64
    assert back["optimizer"]["state"][0]["exp_avg"].dtype == np.float32


def test_foreign_safetensors_file_loads_flat(tmp_path):
    path = str(tmp_path / "foreign.safetensors")
    save_file({"a.b": np.ones((2, 2), np.float32)}, path)
    loaded = nn.state.load(path)
    assert list(loaded) == ["a.b"] and isinstance(loaded["a.b"], Tensor)


def test_truncated_and_foreign_files_are_refused_clearly(tmp_path):
    path = tmp_path / "model.safetensors"
    nn.state.save(path, make_model().state_dict())
    blob = path.read_bytes()
    for size in (0, 5, 20, len(blob) - 1):
        cut = tmp_path / f"cut{size}.safetensors"
        cut.write_bytes(blob[:size])
        with pytest.raises(nn.state.CheckpointError, match=f"load: {cut}.*"
                                                           "(truncated|not a safetensors)"):
            nn.state.load(cut)
    pickle_like = tmp_path / "model.pt"
    pickle_like.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    with pytest.raises(nn.state.CheckpointError, match=f"load: {pickle_like}"):
        nn.state.load(pickle_like)
    text = tmp_path / "notes.txt"
    text.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00hello, world!!!!")
    with pytest.raises(nn.state.CheckpointError, match="its header is not JSON"):
        nn.state.load(text)


def test_interrupted_save_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    nn.state.save(path, {"w": np.zeros(3, np.float32)})
    before = path.read_bytes()

    def failing_fsync(fd):
        raise OSError("disk full (simulated)")
    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        nn.state.save(path, {"w": np.ones(1000, np.float32)})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.safetensors"]  # no temporary file left behind
    np.testing.assert_array_equal(nn.state.load(path)["w"].array, 0)


def test_save_rejects_what_it_cannot_store(tmp_path):
    with pytest.raises(TypeError, match="cannot store a object at x"):
        nn.state.save(tmp_path / "a.safetensors", {"x": object()})
    with pytest.raises(ValueError, match="both named 'a.b'"):
        nn.state.save(tmp_path / "a.safetensors", {"a.b": np.zeros(1), "a": {"b": np.zeros(1)}})
    with pytest.raises(TypeError, match="metadata must map str to str"):
        nn.state.save(tmp_path / "a.safetensors", {}, metadata={"step": 3})


def test_random_generator_state_round_trips_for_exact_resume(tmp_path):
    tg.manual_seed(5)
    tg.random.generator().random(4)
    path = tmp_path / "rng.safetensors"
    nn.state.save(path, {"rng": tg.random.get_state()})  # 128-bit ints survive the JSON
    expected = tg.random.generator().random(3)
    tg.random.set_state(nn.state.load(path)["rng"])
    np.testing.assert_array_equal(tg.random.generator().random(3), expected)


# ---------------------------------------------------------------------------- issue 11 fixes

def test_checkpoints_honour_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        nn.state.save(tmp_path / "a.safetensors", {"w": np.zeros(2, np.float32)})
        nn.state.atomic_write(tmp_path / "b.json", "{}")
        os.umask(0o077)
        nn.state.atomic_write(tmp_path / "c.json", "{}")
    finally:
        os.umask(previous)
    assert os.stat(tmp_path / "a.safetensors").st_mode & 0o777 == 0o644  # mkstemp gave 0600
    assert os.stat(tmp_path / "b.json").st_mode & 0o777 == 0o644
    assert os.stat(tmp_path / "c.json").st_mode & 0o777 == 0o600


def test_atomic_write_takes_bytes_and_text_and_fsyncs_file_and_directory(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    nn.state.atomic_write(tmp_path / "t.txt", "héllo")
    nn.state.atomic_write(str(tmp_path / "b.bin"), b"\x00\x01")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert len(synced) == 4  # file and directory, twice
    assert sorted(os.listdir(tmp_path)) == ["b.bin", "t.txt"]


def test_metadata_that_is_not_a_dict_is_a_checkpoint_error(tmp_path):
    import json
    import struct
    header = json.dumps({"__metadata__": ["not", "a", "dict"],
                         "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 4)
    for read in (nn.state.load, nn.state.load_metadata):
        with pytest.raises(nn.state.CheckpointError, match=r"odd.safetensors: its __metadata__ "
                                                           r"must be a JSON object of strings"):
            read(path)


def test_a_checkpoint_is_read_once_on_load(tmp_path, monkeypatch):
    from models import checkpoint
    path = str(tmp_path / "step.safetensors")
    checkpoint.save(path, {"w": np.ones(3, np.float32)}, None, {"step": 1})
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda file, *a, **k: (
        opened.append(os.fspath(file)), real_open(file, *a, **k))[1])
    model, optimizer, info = checkpoint.load(path)
    assert opened.count(path) == 1
    assert info == {"step": 1} and optimizer is None
    np.testing.assert_array_equal(model["w"], 1)


def test_tied_tensors_are_stored_once_and_the_tie_comes_back(tmp_path):
    from safetensors import safe_open

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(5, 3)
            self.out = nn.Linear(3, 5, bias=False)
            self.out.weight = self.embed.weight  # weight tying, as torch users write it
    model = Tied()
    state = model.state_dict()
    assert list(state) == ["embed.weight", "out.weight"]
    assert state["embed.weight"] is state["out.weight"]  # one snapshot for both names
    path = tmp_path / "tied.safetensors"
    nn.state.save(path, state)
    with safe_open(str(path), "np") as f:
        assert list(f.keys()) == ["embed.weight"]  # the matrix is in the file once
        assert f.metadata()["tinygrad_tf.aliases"] == '{"out.weight": "embed.weight"}'
    back = nn.state.load(path)
    assert back["embed.weight"] is back["out.weight"]
    fresh = Tied()
    fresh.load_state_dict(back)
    assert fresh.out.weight is fresh.embed.weight
    np.testing.assert_array_equal(fresh.out.weight.array, model.embed.weight.array)


def test_transformer_shared_embeddings_stored_once(tmp_path):
    from models.transformer import Transformer, TransformerConfig
    model = Transformer(TransformerConfig.tiny(11))
    state = model.state_dict()
    tied = [name for name, t in state.items() if t is state["tgt_embed.lookup.weight"]]
    assert len(tied) == 3  # source embedding, target embedding, pre-softmax projection
    path = tmp_path / "m.safetensors"
    nn.state.save(path, state)
    from safetensors import safe_open
    with safe_open(str(path), "np") as f:
        stored = list(f.keys())
    assert len(stored) == len(state) - 2
    back = nn.state.load(path)
    assert all(back[name] is back[tied[0]] for name in tied)
    Transformer(TransformerConfig.tiny(11)).load_state_dict(back)
