"""tinygrad_tf.models: the Transformer of "Attention Is All You Need" and its decoding."""
from .decoding import beam_search, greedy_decode
from .transformer import Transformer, TransformerConfig

__all__ = ["Transformer", "TransformerConfig", "greedy_decode", "beam_search"]

# The seq2seq recipe (data, tokenizers, training; the `tinygrad-tf` command is models/cli.py).
from .data import load_tsv, make_task
from .train import TrainConfig, load_run  # not `train`: that name is the module models/train.py

__all__ += ["make_task", "load_tsv", "TrainConfig", "load_run"]
