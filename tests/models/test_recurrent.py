"""The GRU encoder-decoder with attention (--arch gru): it trains from the CLI, decodes greedy and
beam (with and without its state cache), and loads back from its run directory."""
import json
import os

import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import Tensor
from tinygrad_tf.models import cli
from tinygrad_tf.models import train as recipe
from tinygrad_tf.models.decoding import beam_search, greedy_decode
from tinygrad_tf.models.recurrent import GRUConfig, GRUSeq2Seq
from tinygrad_tf.models.train import TrainConfig


def _losses(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as file:
        records = [json.loads(line) for line in file]
    return [r["loss"] for r in records if r["kind"] == "train"]


def test_gru_learns_a_tiny_copy_task_from_the_cli(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    argv = ["train", "--arch", "gru", "--task", "copy", "--symbols", "6", "--max-length", "6",
            "--n-train", "1000", "--n-valid", "32", "--n-test", "32", "--batch-size", "32",
            "--schedule", "constant", "--lr", "0.005", "--dropout", "0", "--steps", "120",
            "--eval-every", "120", "--eval-decode", "32", "--log-every", "20",
            "--average-last", "0", "--label-smoothing", "0", "--run-dir", run_dir]
    assert cli.main(argv) == 0
    capsys.readouterr()
    losses = _losses(run_dir)
    assert losses[-1] < 0.3 * losses[0], losses
    assert cli.main(["evaluate", run_dir, "--split", "valid", "--beam", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["exact_match"] >= 0.3, result   # chance is ~0: it has learned to copy a bit
    model, _, config, _ = recipe.load_run(run_dir)
    assert isinstance(model, GRUSeq2Seq) and config.arch == "gru"


@pytest.fixture(scope="module")
def model():
    tg.manual_seed(0)
    net = GRUSeq2Seq(GRUConfig(9, 9, d_model=16, n_encoder_layers=2, n_decoder_layers=2,
                               share_embeddings=True, max_len=32))
    net.eval()
    return net


def test_cached_decoding_equals_rerunning_the_prefix(model):
    src = Tensor(np.array([[3, 4, 5, 2, 0], [6, 7, 2, 0, 0], [3, 3, 3, 3, 2]]))
    fast, fast_logits = greedy_decode(model, src, 1, 2, max_extra_len=5, return_logits=True)
    slow, slow_logits = greedy_decode(model, src, 1, 2, max_extra_len=5, use_cache=False,
                                      return_logits=True)
    np.testing.assert_array_equal(fast.array, slow.array)
    np.testing.assert_allclose(fast_logits.array, slow_logits.array, rtol=1e-5, atol=1e-6)
    one = beam_search(model, src, 1, 2, beam_size=1, alpha=0.0, max_extra_len=5)
    np.testing.assert_array_equal(one.array, fast.array)
    beams = beam_search(model, src, 1, 2, beam_size=3, max_extra_len=5)
    no_cache = beam_search(model, src, 1, 2, beam_size=3, max_extra_len=5, use_cache=False)
    np.testing.assert_array_equal(beams.array, no_cache.array)


def test_padding_does_not_change_a_sentence(model):
    short = Tensor(np.array([[3, 4, 2]]))
    padded = Tensor(np.array([[3, 4, 2, 0, 0], [5, 6, 7, 8, 2]]))
    tgt = Tensor(np.array([[1, 3, 4]]))
    a = model(short, tgt).array
    b = model(padded, Tensor(np.array([[1, 3, 4], [1, 5, 6]]))).array[:1]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_gru_options_that_do_not_apply_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="--arch gru has no n_heads"):
        TrainConfig(arch="gru", n_heads=4, steps=1).check()
    with pytest.raises(ValueError, match="unknown arch"):
        TrainConfig(arch="lstm2", steps=1).check()
