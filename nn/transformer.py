"""torch.nn's Transformer family: Transformer, TransformerEncoder(Layer), TransformerDecoder(Layer).

Same constructor arguments, forward arguments, submodule names and parameter names as torch's
(`layers.0.self_attn.in_proj_weight`, `linear1`, `norm1`, ...), so `load_state_dict` takes a torch
model's state_dict as is. Attention is our `nn.MultiheadAttention`; where the layer's parts allow it
(a bias, ReLU or GELU), the feed-forward block and post-norm "Add & Norm" run as `nn.fused` nodes,
which give the composed formula's numbers (dropout masks drawn in the same order).

Masks follow torch's convention for these modules: a bool mask is True where a query may NOT
attend, a float mask is added to the scores.
"""
import copy

import numpy as np

from tinygrad_tf import Tensor, is_grad_enabled
from tinygrad_tf.device import check as _check_device

from . import functional as F
from . import fused, init
from .layers import GELU, Dropout, LayerNorm, Linear, ReLU
from .containers import ModuleList
from .module import Module
from .multihead import MultiheadAttention



def _activation_function(activation, op):
    """torch's legacy string names ("relu", "gelu") or any callable, as torch accepts them."""
    if isinstance(activation, str):
        if activation == "relu":
            return F.relu
        if activation == "gelu":
            return F.gelu
        raise RuntimeError(f"{op}: activation should be relu/gelu, not {activation}")
    if not callable(activation):
        raise TypeError(f"{op}: activation must be 'relu', 'gelu' or a callable, got "
                        f"{activation!r}")
    return activation


def _fused_activation_name(activation):
    """The nn.fused name of an activation it can run in one node, else None."""
    if activation is F.relu or isinstance(activation, ReLU):
        return "relu"
    if activation is F.gelu or (isinstance(activation, GELU) and activation.approximate == "none"):
        return "gelu"
    if isinstance(activation, GELU) and activation.approximate == "tanh":
        return "gelu_tanh"
    return None


def generate_square_subsequent_mask(sz, device=None, dtype=None):
    """The (sz, sz) causal mask: -inf above the diagonal, 0.0 elsewhere (float32 by default)."""
    _check_device(device, "generate_square_subsequent_mask")
    dtype = np.dtype(np.float32 if dtype is None else dtype)
    return Tensor(np.triu(np.full((sz, sz), -np.inf, dtype=dtype), k=1))


def _mask_array(mask):
    if mask is None:
        return None
    return mask.array if isinstance(mask, Tensor) else np.asarray(mask)


def _detect_is_causal_mask(mask, is_causal, size):
    """torch's rule: an explicit hint wins; with None, a mask equal to the causal mask counts."""
    if is_causal is not None:
        return bool(is_causal)
    array = _mask_array(mask)
    if array is None or array.shape != (size, size):
        return False
    causal = np.triu(np.ones((size, size), dtype=bool), k=1)
    if array.dtype == np.bool_:  # torch compares in the mask's dtype: True above the diagonal
        return bool(np.array_equal(array, causal))
    return bool(np.array_equal(array, np.where(causal, -np.inf, 0.0)))


def _sequence_length(x, batch_first):
    return x.shape[0] if x.ndim == 2 else x.shape[1 if batch_first else 0]


class _Layer(Module):
    """What encoder and decoder layers share: attention blocks, feed-forward, norms, dropouts."""

    def _init_common(self, d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps,
                     batch_first, norm_first, bias, device, dtype, n_norms):
        _check_device(device, type(self).__name__)
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                            batch_first=batch_first, dtype=dtype)
        if n_norms == 3:
            self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                                     batch_first=batch_first, dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = norm_first
        for i in range(1, n_norms + 1):
            setattr(self, f"norm{i}", LayerNorm(d_model, eps=layer_norm_eps, bias=bias,
                                                dtype=dtype))
        for i in range(1, n_norms + 1):
            setattr(self, f"dropout{i}", Dropout(dropout))
        self.activation = _activation_function(activation, type(self).__name__)

    def _attention(self, attn, x, memory, attn_mask, key_padding_mask, is_causal, dropout):
        out = attn(x, memory, memory, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                   need_weights=False, is_causal=is_causal)[0]
        return dropout(out)

    def _feed_forward(self, x, dropout):
        """linear2(dropout(activation(linear1(x)))), then the block's dropout."""
        name = _fused_activation_name(self.activation)
        if name is not None and self.linear1.bias is not None:
            hidden = fused.linear_activation_dropout(x, self.linear1.weight, self.linear1.bias,
                                                     name, self.dropout.p, self.training)
        else:
            hidden = self.dropout(self.activation(self.linear1(x)))
        return dropout(self.linear2(hidden))

    def _add_norm(self, x, sublayer, norm, dropout):
        """Post-norm: norm(x + dropout(sublayer_out)); one fused node when the norm has a bias."""
        if norm.bias is not None and norm.weight is not None:
            return fused.residual_dropout_layer_norm(x, sublayer, norm.weight, norm.bias,
                                                     dropout.p, self.training, norm.eps)
        return norm(x + dropout(sublayer))


class TransformerEncoderLayer(_Layer):
    """Self-attention and feed-forward, each with a residual and a LayerNorm (torch's layer)."""

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation=F.relu,
                 layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True,
                 device=None, dtype=None):
        super().__init__()
        self._init_common(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps,
                          batch_first, norm_first, bias, device, dtype, n_norms=2)

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src
        if self.norm_first:
            h = self.norm1(x)
            x = x + self._attention(self.self_attn, h, h, src_mask, src_key_padding_mask,
                                    is_causal, self.dropout1)
            return x + self._feed_forward(self.norm2(x), self.dropout2)
        attended = self._attention(self.self_attn, x, x, src_mask, src_key_padding_mask,
                                   is_causal, _identity)
        x = self._add_norm(x, attended, self.norm1, self.dropout1)
        return self._add_norm(x, self._feed_forward(x, _identity), self.norm2, self.dropout2)


class TransformerDecoderLayer(_Layer):
    """Masked self-attention, attention over the encoder's memory, feed-forward (torch's layer)."""

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation=F.relu,
                 layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True,
                 device=None, dtype=None):
        super().__init__()
        self._init_common(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps,
                          batch_first, norm_first, bias, device, dtype, n_norms=3)

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False):
        x = tgt
        if self.norm_first:
            h = self.norm1(x)
            x = x + self._attention(self.self_attn, h, h, tgt_mask, tgt_key_padding_mask,
                                    tgt_is_causal, self.dropout1)
            x = x + self._attention(self.multihead_attn, self.norm2(x), memory, memory_mask,
                                    memory_key_padding_mask, memory_is_causal, self.dropout2)
            return x + self._feed_forward(self.norm3(x), self.dropout3)
        attended = self._attention(self.self_attn, x, x, tgt_mask, tgt_key_padding_mask,
                                   tgt_is_causal, _identity)
        x = self._add_norm(x, attended, self.norm1, self.dropout1)
        attended = self._attention(self.multihead_attn, x, memory, memory_mask,
                                   memory_key_padding_mask, memory_is_causal, _identity)
        x = self._add_norm(x, attended, self.norm2, self.dropout2)
        return self._add_norm(x, self._feed_forward(x, _identity), self.norm3, self.dropout3)


def _identity(x):
    return x


class TransformerEncoder(Module):
    """num_layers deep copies of encoder_layer, then an optional norm (torch's stack)."""

    def __init__(self, encoder_layer, num_layers, norm=None, enable_nested_tensor=True,
                 mask_check=True):
        super().__init__()
        self.layers = ModuleList([copy.deepcopy(encoder_layer) for _ in range(num_layers)])
        self.num_layers, self.norm = num_layers, norm
        self.enable_nested_tensor, self.mask_check = enable_nested_tensor, mask_check

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        first = self.layers[0]
        is_causal = _detect_is_causal_mask(mask, is_causal,
                                           _sequence_length(src, first.self_attn.batch_first))
        output = src
        for layer in self.layers:
            output = layer(output, src_mask=mask, src_key_padding_mask=src_key_padding_mask,
                           is_causal=is_causal)
        if self._torch_zeroes_padding(src, mask, src_key_padding_mask):
            keep = ~_mask_array(src_key_padding_mask).astype(bool)
            output = output * Tensor(keep[..., None].astype(output.dtype))
        if self.norm is not None:
            output = self.norm(output)
        return output

    def _torch_zeroes_padding(self, src, mask, padding):
        """torch's inference fast path (eval, no grad, batch-first post-norm ReLU/GELU layers,
        a key padding mask with padding at the ends) packs the batch into a nested tensor and
        unpacks it with zeros at the padded positions; we give the same values there."""
        first = self.layers[0]
        if (not self.enable_nested_tensor or self.training or padding is None or mask is not None
                or src.ndim != 3):
            return False
        if is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            return False
        attn = first.self_attn
        if (first.norm_first or not attn.batch_first or attn.in_proj_bias is None
                or _fused_activation_name(first.activation) not in ("relu", "gelu")
                or first.norm1.eps != first.norm2.eps or attn.num_heads % 2):
            return False
        pads = _mask_array(padding)
        if pads.dtype != np.bool_:
            return False
        # left-aligned: once a row's padding starts it never stops
        return bool(np.all(pads[:, 1:] >= pads[:, :-1]))


class TransformerDecoder(Module):
    """num_layers deep copies of decoder_layer, then an optional norm (torch's stack)."""

    def __init__(self, decoder_layer, num_layers, norm=None):
        super().__init__()
        self.layers = ModuleList([copy.deepcopy(decoder_layer) for _ in range(num_layers)])
        self.num_layers, self.norm = num_layers, norm

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False):
        first = self.layers[0]
        tgt_is_causal = _detect_is_causal_mask(
            tgt_mask, tgt_is_causal, _sequence_length(tgt, first.self_attn.batch_first))
        output = tgt
        for layer in self.layers:
            output = layer(output, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                           tgt_key_padding_mask=tgt_key_padding_mask,
                           memory_key_padding_mask=memory_key_padding_mask,
                           tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)
        if self.norm is not None:
            output = self.norm(output)
        return output


class Transformer(Module):
    """torch.nn.Transformer: an encoder stack and a decoder stack, each ending in a LayerNorm.

    No embeddings, positions or output projection (as torch): src (S, N, E) and tgt (T, N, E)
    (batch-first (N, S, E) with batch_first=True, or unbatched (S, E)) go in, (T, N, E) comes out.
    """

    def __init__(self, d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6,
                 dim_feedforward=2048, dropout=0.1, activation=F.relu, custom_encoder=None,
                 custom_decoder=None, layer_norm_eps=1e-5, batch_first=False, norm_first=False,
                 bias=True, device=None, dtype=None):
        super().__init__()
        _check_device(device, "Transformer")
        layer_args = (d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps,
                      batch_first, norm_first, bias)
        if custom_encoder is not None:
            self.encoder = custom_encoder
        else:
            self.encoder = TransformerEncoder(
                TransformerEncoderLayer(*layer_args, dtype=dtype), num_encoder_layers,
                LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype))
        if custom_decoder is not None:
            self.decoder = custom_decoder
        else:
            self.decoder = TransformerDecoder(
                TransformerDecoderLayer(*layer_args, dtype=dtype), num_decoder_layers,
                LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype))
        for p in self.parameters():
            if p.ndim > 1:
                init.xavier_uniform_(p)
        self.d_model, self.nhead, self.batch_first = d_model, nhead, batch_first

    def forward(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None,
                src_key_padding_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, src_is_causal=None, tgt_is_causal=None,
                memory_is_causal=False):
        batch_dim = 0 if self.batch_first else 1
        if src.ndim == 3 and src.shape[batch_dim] != tgt.shape[batch_dim]:
            raise RuntimeError(f"Transformer: the batch number of src and tgt must be equal, "
                               f"got src {src.shape} and tgt {tgt.shape} "
                               f"(batch_first={self.batch_first})")
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise RuntimeError(f"Transformer: the feature number of src and tgt must be equal "
                               f"to d_model {self.d_model}, got {src.shape} and {tgt.shape}")
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                              is_causal=src_is_causal)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask,
                            tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)

    generate_square_subsequent_mask = staticmethod(generate_square_subsequent_mask)
