"""tinygrad_tf.models: the Transformer of "Attention Is All You Need" and its decoding."""
from .decoding import beam_search, greedy_decode
from .transformer import Transformer, TransformerConfig

__all__ = ["Transformer", "TransformerConfig", "greedy_decode", "beam_search"]
