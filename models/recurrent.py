"""The classic baseline the Transformer replaced: a GRU encoder-decoder with attention.

    encoder   a bidirectional GRU over the source embeddings; its outputs, projected to
              d_model, are the memory the decoder attends to (Bahdanau et al., 2015)
    decoder   a GRU over the target embeddings, its first state tanh(W mean(memory));
              at each position the output attends to the memory (dot-product attention,
              `F.scaled_dot_product_attention`) and tanh(W_c [output; context]) gives the
              "attentional hidden state" the logits come from (Luong et al., 2015)
    logits    that state times the target embedding matrix (tied, as the Transformer's)

It has the Transformer's interface for training and decoding (`forward`, `source_mask`, `encode`,
`decode`, `config.pad_id` / `max_len`), so `tinygrad-tf train --arch gru` runs the same recipe,
and greedy decoding and beam search work on it; its `decoder_cache` keeps the decoder's GRU state
so each decoding step runs one position.
"""
import dataclasses
import math

import numpy as np

from tinygrad_tf import Tensor, cat, nn
from tinygrad_tf.nn import functional as F


@dataclasses.dataclass
class GRUConfig:
    """Sizes of the GRU encoder-decoder. d_model is the embedding and every hidden width."""
    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 256
    n_encoder_layers: int = 1
    n_decoder_layers: int = 1
    dropout: float = 0.1
    max_len: int = 1024           # longest output decoding may produce (no positional table)
    pad_id: int = 0
    share_embeddings: bool = False

    def __post_init__(self):
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(f"GRUConfig: share_embeddings needs one vocabulary, got "
                             f"{self.src_vocab_size} and {self.tgt_vocab_size}")
        if self.n_encoder_layers < 1 or self.n_decoder_layers < 1:
            raise ValueError("GRUConfig: n_encoder_layers and n_decoder_layers must be >= 1")

    @classmethod
    def tiny(cls, vocab_size, **overrides):
        settings = dict(d_model=64, max_len=256, share_embeddings=True)
        return cls(vocab_size, vocab_size, **{**settings, **overrides})

    @classmethod
    def base(cls, vocab_size, **overrides):
        settings = dict(d_model=512, n_encoder_layers=2, n_decoder_layers=2,
                        share_embeddings=True)
        return cls(vocab_size, vocab_size, **{**settings, **overrides})

    @classmethod
    def big(cls, vocab_size, **overrides):
        settings = dict(d_model=1024, n_encoder_layers=2, n_decoder_layers=2, dropout=0.3,
                        share_embeddings=True)
        return cls(vocab_size, vocab_size, **{**settings, **overrides})


class RecurrentDecoderCache:
    """The decoder's GRU state (layers, N, d_model) after the positions decoded so far."""

    def __init__(self, max_len):
        self.state, self.length, self.max_len = None, 0, max_len

    def record(self, tgt_in, state):
        self.length += tgt_in.shape[1]
        if self.length > self.max_len:
            raise ValueError(f"RecurrentDecoderCache: {self.length} positions exceed max_len "
                             f"{self.max_len}")
        self.state = state

    def reorder(self, rows):
        """Row i takes the state of row rows[i] (beam search reshuffling beams)."""
        if self.state is not None:
            self.state = self.state[:, rows]


class GRUSeq2Seq(nn.Module):
    """Source ids (B, S), shifted target ids (B, T) -> logits (B, T, tgt_vocab_size)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        d, p = config.d_model, config.dropout
        self.scale = math.sqrt(d)
        self.tgt_embed = self._embedding(config.tgt_vocab_size)
        self.src_embed = (self.tgt_embed if config.share_embeddings
                          else self._embedding(config.src_vocab_size))
        self.dropout = nn.Dropout(p)
        self.encoder = nn.GRU(d, d, config.n_encoder_layers, batch_first=True,
                              bidirectional=True, dropout=p if config.n_encoder_layers > 1 else 0)
        self.memory_proj = nn.Linear(2 * d, d)       # both directions -> the memory
        self.init_state = nn.Linear(d, config.n_decoder_layers * d)
        self.decoder = nn.GRU(d, d, config.n_decoder_layers, batch_first=True,
                              dropout=p if config.n_decoder_layers > 1 else 0)
        self.combine = nn.Linear(2 * d, d)           # [output; context] -> attentional state

    def _embedding(self, vocab_size):
        table = nn.Embedding(vocab_size, self.config.d_model, padding_idx=self.config.pad_id)
        # rows of length about 1 for the tied output projection; times sqrt(d) on input
        nn.init.normal_(table.weight, std=self.config.d_model ** -0.5)
        table.weight.array[self.config.pad_id] = 0
        return table

    def _embed(self, table, tokens):
        return self.dropout(table(tokens) * self.scale)

    def source_mask(self, src):
        """(B, 1, 1, S) bool, True where the key is a real token (torch's SDPA convention)."""
        ids = src.array if isinstance(src, Tensor) else np.asarray(src)
        return Tensor._wrap((ids != self.config.pad_id)[:, None, None, :])

    def encode(self, src, src_mask=None):
        """Source ids (B, S) -> memory (B, S, d_model); padded positions are zeros before the
        projection and masked out of attention."""
        if src_mask is None:
            src_mask = self.source_mask(src)
        lengths = np.maximum(src_mask.array.reshape(src.shape[0], -1).sum(axis=1), 1)
        out, _ = self.encoder(self._embed(self.src_embed, src), lengths=lengths)  # (B, S, 2d)
        return self.memory_proj(out)

    def initial_state(self, memory, src_mask):
        """tanh(W mean of the real positions' memory) -> (layers, B, d_model)."""
        batch, source = memory.shape[0], memory.shape[1]
        keep = src_mask.array.reshape(batch, source, 1).astype(memory.dtype)
        mean = (memory * Tensor._wrap(keep)).sum(1) / Tensor._wrap(np.maximum(keep.sum(1), 1))
        state = self.init_state(mean).tanh()                         # (B, layers * d)
        layers = self.config.n_decoder_layers
        return state.reshape(batch, layers, self.config.d_model).transpose(0, 1)

    def decode(self, memory, src_mask, tgt_in, cache=None):
        """Target ids so far (B, T) -> next-token logits (B, T, V). With a cache, tgt_in holds
        only the new positions and the GRU starts from the cached state."""
        if cache is None or cache.state is None:
            state = self.initial_state(memory, src_mask)
        else:
            state = Tensor._wrap(cache.state)
        out, last = self.decoder(self._embed(self.tgt_embed, tgt_in), state)   # (B, T, d)
        if cache is not None:
            cache.record(tgt_in, last.array)
        context = F.scaled_dot_product_attention(out.unsqueeze(1), memory.unsqueeze(1),
                                                 memory.unsqueeze(1), attn_mask=src_mask)
        hidden = self.combine(cat([out, context.squeeze(1)], dim=-1)).tanh()
        return F.linear(self.dropout(hidden), self.tgt_embed.weight)

    def decoder_cache(self, memory, max_len, keep_attention=False):
        """What decoding.py keeps between steps (see RecurrentDecoderCache)."""
        if keep_attention:
            raise ValueError("attention maps are drawn for the Transformer (--arch transformer) "
                             "only")
        return RecurrentDecoderCache(max_len)

    def forward(self, src, tgt_in):
        src_mask = self.source_mask(src)
        return self.decode(self.encode(src, src_mask), src_mask, tgt_in)
