"""The Transformer of "Attention Is All You Need" (Vaswani et al., 2017), box by box.

Read it beside the paper's Figure 1, bottom to top: the classes below are its boxes in that order.

    Embeddings               "Input Embedding" / "Output Embedding"   (section 3.4)
    PositionalEncoding       "Positional Encoding"                    (section 3.5)
    MultiHeadAttention       "Multi-Head Attention", masked or not    (section 3.2)
    AddNorm                  "Add & Norm"                             (sections 3.1, 5.4)
    PositionwiseFeedForward  "Feed Forward"                           (section 3.3)
    EncoderLayer, Encoder    the left stack, N = 6 times              (section 3.1)
    DecoderLayer, Decoder    the right stack, N = 6 times             (section 3.1)
    PreSoftmaxLinear         "Linear" (the "Softmax" is in the loss)  (section 3.4)
    Transformer              the whole figure

Shapes: B batch, S source length, T target length, h heads, d_k = d_model / h, V vocabulary.
Every mask is built by `make_masks` and follows torch's boolean convention: True = may attend.
"""
import dataclasses
import math

import numpy as np

import tinygrad_tf as tg
from tinygrad_tf import Tensor, nn
from tinygrad_tf.nn import functional as F
from tinygrad_tf.nn import fused
from tinygrad_tf.nn.attention import composed_attention, packed_attention


# ---------------------------------------------------------------------------- configuration

@dataclasses.dataclass
class TransformerConfig:
    """Sizes and switches of the model; defaults are the paper's base model (Table 3)."""
    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 512            # width of every sub-layer's input and output
    n_heads: int = 8              # h; each head works in d_k = d_v = d_model / h
    n_encoder_layers: int = 6     # N for the encoder stack
    n_decoder_layers: int = 6     # N for the decoder stack
    d_ff: int = 2048              # inner width of the position-wise feed-forward network
    dropout: float = 0.1          # P_drop: sub-layer outputs and embedding sums (section 5.4)
    max_len: int = 1024           # rows of the positional-encoding table: longest sequence
    pad_id: int = 0               # token id of padding; never attended to
    share_embeddings: bool = False  # one matrix: source, target and pre-softmax (one vocab)
    norm_first: bool = False      # False: the paper's LayerNorm(x + Sublayer(x)); True: pre-norm
    fused_ops: bool = True        # run Add & Norm, FFN and embedding sums as fused nodes
                                  # (nn.fused; same math as the composed lines beside them)

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"TransformerConfig: d_model={self.d_model} must be divisible by "
                             f"n_heads={self.n_heads} (each head gets d_model / n_heads dims)")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(f"TransformerConfig: share_embeddings needs one vocabulary, got "
                             f"src_vocab_size={self.src_vocab_size} and "
                             f"tgt_vocab_size={self.tgt_vocab_size}")
        if not 0 <= self.pad_id < min(self.src_vocab_size, self.tgt_vocab_size):
            raise ValueError(f"TransformerConfig: pad_id={self.pad_id} is not a token id of both "
                             f"vocabularies ({self.src_vocab_size}, {self.tgt_vocab_size})")

    @classmethod
    def base(cls, vocab_size, **overrides):
        """The paper's base model with one shared vocabulary (Table 3, row "base")."""
        return cls(vocab_size, vocab_size, share_embeddings=True, **overrides)

    @classmethod
    def big(cls, vocab_size, **overrides):
        """The paper's big model (Table 3, row "big"; P_drop 0.3 as for English-German)."""
        settings = dict(d_model=1024, n_heads=16, d_ff=4096, dropout=0.3, share_embeddings=True)
        return cls(vocab_size, vocab_size, **{**settings, **overrides})

    @classmethod
    def tiny(cls, vocab_size, **overrides):
        """A model small enough to train in seconds on a CPU, for tests and demos."""
        settings = dict(d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64,
                        max_len=256, share_embeddings=True)
        return cls(vocab_size, vocab_size, **{**settings, **overrides})


# ---------------------------------------------------------------------------- masks

def make_masks(src, tgt, pad_id, n_queries=None):
    """The one place masks are built. True means "may attend", as in torch's boolean masks.

    src: source ids (B, S) or None -> src_mask (B, 1, 1, S): every query sees the non-pad keys.
    tgt: target ids (B, T) or None -> tgt_mask (B, 1, n_queries, T): the query at position i
        sees the non-pad target keys j <= i (the causal mask of section 3.2.3). The queries are
        the last `n_queries` positions (all T by default; 1 when decoding with a cache).
    Masks broadcast over the head dim; the (1,) dims stand for "same for every query".
    """
    src_mask = tgt_mask = None
    if src is not None:
        src_mask = Tensor._wrap((_ids(src) != pad_id)[:, None, None, :])  # (B, 1, 1, S)
    if tgt is not None:
        tgt = _ids(tgt)
        T = tgt.shape[1]
        n_queries = T if n_queries is None else n_queries
        causal = np.tril(np.ones((T, T), dtype=bool))[T - n_queries:]  # (n_queries, T)
        tgt_mask = Tensor._wrap(causal & (tgt != pad_id)[:, None, None, :])  # (B, 1, n_queries, T)
    return src_mask, tgt_mask


def _ids(tokens):
    ids = tokens.array if isinstance(tokens, Tensor) else np.asarray(tokens)
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise TypeError(f"Transformer: token ids must be an integer tensor of shape "
                        f"(batch, length), got {ids.dtype} of shape {ids.shape}")
    return ids


# ---------------------------------------------------------------------------- Figure 1's boxes

class Embeddings(nn.Module):
    """Section 3.4: learned token embeddings, multiplied by sqrt(d_model)."""

    def __init__(self, vocab_size, d_model, pad_id):
        super().__init__()
        self.scale = math.sqrt(d_model)
        self.lookup = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        # Entries ~ N(0, 1/d_model): rows of length about 1, right for the tied pre-softmax
        # projection; after the sqrt(d_model) scale the entries have unit variance, the scale of
        # the positional encodings they are added to. (The paper does not give an init.)
        nn.init.normal_(self.lookup.weight, std=d_model ** -0.5)
        with tg.no_grad():
            self.lookup.weight[pad_id] = 0

    @property
    def weight(self):
        return self.lookup.weight

    def forward(self, tokens):
        return self.lookup(tokens) * self.scale  # (B, T, d_model)


def sinusoid_table(max_len, d_model):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(same), section 3.5."""
    position = np.arange(max_len)[:, None]                  # (max_len, 1)
    inv_freq = 10000.0 ** (-np.arange(0, d_model, 2) / d_model)  # (d_model / 2,)
    table = np.zeros((max_len, d_model))
    table[:, 0::2] = np.sin(position * inv_freq)
    table[:, 1::2] = np.cos(position * inv_freq[: d_model // 2])
    return table


class PositionalEncoding(nn.Module):
    """Section 3.5: add the fixed sinusoid of each position, then dropout (section 5.4)."""

    def __init__(self, d_model, max_len, dropout):
        super().__init__()
        # A fixed float64 array, not a parameter: cast to the input's dtype when used, so a
        # float64 model gets the exact sines; rebuilt by the constructor, never checkpointed.
        self.table = sinusoid_table(max_len, d_model)  # (max_len, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, start=0):
        """x (B, T, d_model) holds positions start .. start + T - 1."""
        end = start + x.shape[1]
        if end > self.table.shape[0]:
            raise ValueError(f"PositionalEncoding: position {end - 1} is past the table's "
                             f"{self.table.shape[0]} rows; raise TransformerConfig.max_len")
        rows = Tensor._wrap(self.table[start:end].astype(x.dtype))  # (T, d_model)
        return self.dropout(x + rows)  # (B, T, d_model)


class MultiHeadAttention(nn.Module):
    """Section 3.2.2: h scaled dot-product attentions (3.2.1) over learned projections."""

    def __init__(self, d_model, n_heads):
        super().__init__()
        self.n_heads, self.d_k = n_heads, d_model // n_heads
        # W^Q, W^K and W^V (each the h matrices W_i side by side) stacked as the rows of one
        # (3 d_model, d_model) matrix, torch's in_proj_weight layout: self-attention projects
        # q, k and v in one GEMM, cross-attention k and v in one.
        self.in_proj = nn.Linear(d_model, 3 * d_model)
        self.w_o = nn.Linear(d_model, d_model)  # W^O

    def _project(self, x, first, count):
        """x @ W^T + b for `count` of the stacked projections from `first` (0 q, 1 k, 2 v):
        (B, T, count, h, d_k), or (B, T, h, d_k) for one."""
        d = self.n_heads * self.d_k
        weight, bias = self.in_proj.weight, self.in_proj.bias
        if (first, count) != (0, 3):
            rows = slice(first * d, (first + count) * d)
            weight, bias = weight[rows], bias[rows]
        B, T, _ = x.shape
        heads = (count, self.n_heads, self.d_k) if count > 1 else (self.n_heads, self.d_k)
        return F.linear(x, weight, bias).reshape((B, T) + heads)

    def project_kv(self, key, value):
        """The keys and values of every head, (B, h, S, d_k) each; a cache keeps these."""
        if key is value:
            kv = self._project(key, 1, 2)  # (B, S, 2, h, d_k)
            return kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
        return self._project(key, 1, 1).transpose(1, 2), self._project(value, 2, 1).transpose(1, 2)

    def attention(self, query, key, value, mask=None, kv=None, need_weights=False):
        """The plain path: split heads, `F.scaled_dot_product_attention`, merge heads.

        Any mask it takes (boolean or float); kv: already projected (B, h, S, d_k) keys and
        values (from a cache). Returns the merged heads (B, T, d_model), before W^O, and with
        need_weights also the softmax weights (B, h, T, S) from the written-out formula."""
        q = self._project(query, 0, 1).transpose(1, 2)  # (B, h, T, d_k)
        k, v = self.project_kv(key, value) if kv is None else kv  # (B, h, S, d_k)
        weights = None
        if need_weights:  # the composed formula, which exposes the weights
            boolean = mask is not None and mask.dtype == np.bool_
            heads, weights = composed_attention(  # (B, h, T, d_k), (B, h, T, S)
                q, k, v, 1 / math.sqrt(self.d_k), fill=~mask.array if boolean else None,
                additive=None if boolean else mask)
        else:  # softmax(q k^T / sqrt(d_k)) v: the 1/sqrt(d_k) scale is the function's default.
            heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, T, d_k)
        B, _, T, _ = heads.shape
        merged = heads.transpose(1, 2).reshape(B, T, self.n_heads * self.d_k)  # (B, T, d_model)
        return merged if weights is None else (merged, weights)

    def forward(self, query, key, value, mask=None, kv=None, need_weights=False):
        """query (B, T, d_model), key/value (B, S, d_model) -> (B, T, d_model).

        kv: the heads' keys and values when they are already projected (from a cache).
        need_weights: also return the softmax weights (B, h, T, S), for looking inside.
        """
        if need_weights:  # for looking inside: the plain path, which exposes the weights
            merged, weights = self.attention(query, key, value, mask, kv, need_weights=True)
            return self.w_o(merged), weights
        return self.w_o(self.merged_heads(query, key, value, mask, kv))  # (B, T, d_model)

    def merged_heads(self, query, key, value, mask=None, kv=None):
        """The heads' outputs side by side, (B, T, d_model): forward's result before W^O (so
        Add & Norm can fold W^O into its own node)."""
        B, T, _ = query.shape
        boolean_mask = mask is None or mask.dtype == np.bool_
        if kv is not None or key is not value or not boolean_mask:
            return self.attention(query, key, value, mask, kv)
        # The fast path: heads read from the packed projections, no transposes (nn/attention.py).
        if query is key:
            heads = packed_attention(self._project(query, 0, 3), mask=mask)  # (B, T, h, d_k)
        else:
            heads = packed_attention(self._project(query, 0, 1), self._project(key, 1, 2),
                                     mask=mask)
        return heads.reshape(B, T, self.n_heads * self.d_k)


def upgrade_state_dict(state_dict):
    """A state dict from before the fused projection (separate `w_q`, `w_k`, `w_v` Linears per
    attention) with those keys stacked into `in_proj`; other dicts come back unchanged."""
    state = dict(state_dict)
    for key in [k for k in state if k == "w_q.weight" or k.endswith(".w_q.weight")]:
        prefix = key[:-len("w_q.weight")]
        for part in ("weight", "bias"):
            names = [f"{prefix}{w}.{part}" for w in ("w_q", "w_k", "w_v")]
            if all(name in state for name in names):
                arrays = [_array(state.pop(name)) for name in names]
                state[f"{prefix}in_proj.{part}"] = Tensor(np.concatenate(arrays))
    return state


def _array(value):
    return value.array if isinstance(value, Tensor) else np.asarray(value)


class AddNorm(nn.Module):
    """Sections 3.1 and 5.4: LayerNorm(x + Dropout(Sublayer(x))), or pre-norm if norm_first."""

    def __init__(self, d_model, dropout, norm_first, fused_ops=False):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.norm_first, self.fused_ops = norm_first, fused_ops

    def forward(self, x, sublayer, output=None):
        """`sublayer` maps (B, T, d_model) to the same shape; or, with `output` (the sublayer's
        last nn.Linear), to that Linear's input: Sublayer(x) = output(sublayer(x))."""
        if self.norm_first:  # x + Dropout(Sublayer(LayerNorm(x))): the residual path stays clean
            y = sublayer(self.norm(x))
            return x + self.dropout(y if output is None else output(y))
        y = sublayer(x)
        if self.fused_ops and output is not None and output.bias is not None:
            # the line at the end as one node, with the Linear folded in: its output is never a
            # tensor of its own, and its bias is added (and summed in backward) by this pass
            return fused.linear_residual_layer_norm(x, y, output.weight, output.bias,
                                                    self.norm.weight, self.norm.bias,
                                                    self.dropout.p, self.training, self.norm.eps)
        if output is not None:
            y = output(y)
        if self.fused_ops:  # the line below as one node: one pass per row, rows across cores
            return fused.residual_dropout_layer_norm(x, y, self.norm.weight, self.norm.bias,
                                                     self.dropout.p, self.training, self.norm.eps)
        return self.norm(x + self.dropout(y))


class PositionwiseFeedForward(nn.Module):
    """Section 3.3: FFN(x) = max(0, x W_1 + b_1) W_2 + b_2, the same at every position."""

    def __init__(self, d_model, d_ff, fused_ops=False):
        super().__init__()
        self.linear_1 = nn.Linear(d_model, d_ff)
        self.linear_2 = nn.Linear(d_ff, d_model)
        self.fused_ops = fused_ops

    def forward(self, x):
        return self.linear_2(self.hidden(x))  # (B, T, d_model)

    def hidden(self, x):
        """max(0, x W_1 + b_1), (B, T, d_ff): the input of linear_2."""
        if self.fused_ops:  # as one node: the GEMM, then one fused pass
            return fused.linear_activation_dropout(x, self.linear_1.weight, self.linear_1.bias,
                                                   "relu")
        return F.relu(self.linear_1(x))


class EncoderLayer(nn.Module):
    """Section 3.1: self-attention, then feed-forward, each wrapped in Add & Norm."""

    def __init__(self, config):
        super().__init__()
        d, p, first, fuse = config.d_model, config.dropout, config.norm_first, config.fused_ops
        self.self_attn = MultiHeadAttention(d, config.n_heads)
        self.add_norm_1 = AddNorm(d, p, first, fuse)
        self.feed_forward = PositionwiseFeedForward(d, config.d_ff, fuse)
        self.add_norm_2 = AddNorm(d, p, first, fuse)

    def forward(self, x, src_mask):
        attn, ff = self.self_attn, self.feed_forward
        x = self.add_norm_1(x, lambda y: attn.merged_heads(y, y, y, src_mask), attn.w_o)
        return self.add_norm_2(x, ff.hidden, ff.linear_2)


class Encoder(nn.Module):
    """Section 3.1: a stack of N identical encoder layers over the embedded source."""

    def __init__(self, config):
        super().__init__()
        self.layers = nn.ModuleList([EncoderLayer(config) for _ in range(config.n_encoder_layers)])
        # Pre-norm leaves the last residual sum un-normalised; one final LayerNorm fixes that.
        self.final_norm = nn.LayerNorm(config.d_model) if config.norm_first else None

    def forward(self, x, src_mask):
        """x (B, S, d_model) -> memory (B, S, d_model)."""
        for layer in self.layers:
            x = layer(x, src_mask)
        return x if self.final_norm is None else self.final_norm(x)


class DecoderLayer(nn.Module):
    """Section 3.1: masked self-attention, attention over the encoder output, feed-forward."""

    def __init__(self, config):
        super().__init__()
        d, p, first, fuse = config.d_model, config.dropout, config.norm_first, config.fused_ops
        self.self_attn = MultiHeadAttention(d, config.n_heads)  # "Masked Multi-Head Attention"
        self.add_norm_1 = AddNorm(d, p, first, fuse)
        self.cross_attn = MultiHeadAttention(d, config.n_heads)  # queries here, K and V: memory
        self.add_norm_2 = AddNorm(d, p, first, fuse)
        self.feed_forward = PositionwiseFeedForward(d, config.d_ff, fuse)
        self.add_norm_3 = AddNorm(d, p, first, fuse)

    def forward(self, x, memory, src_mask, tgt_mask, cache=None):
        """x (B, T, d_model), memory (B, S, d_model) -> (B, T, d_model).

        cache: a `decoding.LayerCache` when decoding step by step; x holds only the new
        positions, their keys and values are appended to the cache and the memory's are reused.
        """
        def self_attention(y):  # the heads before W^O (add_norm_1 applies it)
            kv = None if cache is None else cache.append(*self.self_attn.project_kv(y, y))
            return self.self_attn.merged_heads(y, y, y, tgt_mask, kv=kv)

        def cross_attention(y):  # the heads before W^O, or with a cache the whole output
            if cache is not None:  # the memory's keys and values, and maybe the weights, kept
                return cache.cross_attend(self.cross_attn, y, src_mask)
            return self.cross_attn.merged_heads(y, memory, memory, src_mask)

        x = self.add_norm_1(x, self_attention, self.self_attn.w_o)
        x = self.add_norm_2(x, cross_attention, self.cross_attn.w_o if cache is None else None)
        return self.add_norm_3(x, self.feed_forward.hidden, self.feed_forward.linear_2)


class Decoder(nn.Module):
    """Section 3.1: a stack of N identical decoder layers over the embedded target."""

    def __init__(self, config):
        super().__init__()
        self.layers = nn.ModuleList([DecoderLayer(config) for _ in range(config.n_decoder_layers)])
        self.final_norm = nn.LayerNorm(config.d_model) if config.norm_first else None

    def forward(self, x, memory, src_mask, tgt_mask, cache=None):
        """x (B, T, d_model) -> (B, T, d_model); cache: a `decoding.DecoderCache` or None."""
        for i, layer in enumerate(self.layers):
            x = layer(x, memory, src_mask, tgt_mask, None if cache is None else cache.layers[i])
        return x if self.final_norm is None else self.final_norm(x)


class PreSoftmaxLinear(nn.Module):
    """Section 3.4: the output projection to vocabulary logits, tied to the target embedding."""

    def __init__(self, embeddings):
        super().__init__()
        # The same Parameter object as the embedding's: both uses add into one .grad, and
        # parameters() lists it once.
        self.weight = embeddings.weight

    def forward(self, x):
        return F.linear(x, self.weight)  # (B, T, V); softmax is applied by the loss / decoder


class Transformer(nn.Module):
    """Figure 1: encoder-decoder with attention, from source ids to target-vocabulary logits."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        d = config.d_model
        self.tgt_embed = Embeddings(config.tgt_vocab_size, d, config.pad_id)
        self.src_embed = (self.tgt_embed if config.share_embeddings
                          else Embeddings(config.src_vocab_size, d, config.pad_id))
        self.positional_encoding = PositionalEncoding(d, config.max_len, config.dropout)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.generator = PreSoftmaxLinear(self.tgt_embed)
        self._init_weights()

    def _init_weights(self):
        # Glorot-uniform matrices and zero biases (the paper gives no init; this is the common
        # choice of its reference code). Embeddings initialise themselves.
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def embed(self, embeddings, tokens, start=0):
        """Token ids (B, T) at positions start.. -> Dropout(Embedding * sqrt(d) + PE), (B, T, d)."""
        pe = self.positional_encoding
        if self.config.fused_ops:
            # The line below as one node: gather, scale, add, dropout in one pass.
            end = start + tokens.shape[1]
            if end <= pe.table.shape[0]:  # else the composed path raises the clear error
                return fused.embedding_position_dropout(
                    tokens, embeddings.weight, pe.table[start:end], embeddings.scale,
                    pe.dropout.p, self.training, embeddings.lookup.padding_idx)
        return pe(embeddings(tokens), start)

    def load_state_dict(self, state_dict, strict=True):
        """As Module.load_state_dict; checkpoints with separate w_q/w_k/w_v load too."""
        return super().load_state_dict(upgrade_state_dict(state_dict), strict)

    def source_mask(self, src):
        return make_masks(src, None, self.config.pad_id)[0]

    def encode(self, src, src_mask=None):
        """Source ids (B, S) -> memory (B, S, d_model), the encoder's output."""
        if src_mask is None:
            src_mask = self.source_mask(src)
        return self.encoder(self.embed(self.src_embed, src), src_mask)

    def decode(self, memory, src_mask, tgt_in, cache=None):
        """Target ids so far (B, T) -> next-token logits (B, T, V), attending to `memory`.

        With a `decoding.DecoderCache`, tgt_in holds only the new positions (usually one).
        """
        if cache is None:
            start = 0
            _, tgt_mask = make_masks(None, tgt_in, self.config.pad_id)
        else:
            start, seen = cache.record(tgt_in)  # seen: every target id so far, (B, start + T)
            _, tgt_mask = make_masks(None, seen, self.config.pad_id, n_queries=tgt_in.shape[1])
        x = self.embed(self.tgt_embed, tgt_in, start)
        return self.generator(self.decoder(x, memory, src_mask, tgt_mask, cache))

    def forward(self, src, tgt_in):
        """Source ids (B, S), shifted target ids (B, T) -> logits (B, T, tgt_vocab_size)."""
        src_mask = self.source_mask(src)
        return self.decode(self.encode(src, src_mask), src_mask, tgt_in)
