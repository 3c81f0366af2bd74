"""nn.MultiheadAttention with torch's parameters, state_dict keys, masks and outputs.

The parameters are torch's: one packed in_proj_weight (3E, E) and in_proj_bias (3E,) for the
query, key and value projections, and out_proj (a Linear), so a torch state_dict loads as is.
Attention itself is the public scaled_dot_product_attention when the weights are not asked for
(need_weights=False); torch's default need_weights=True needs the weights, so that path forms
them explicitly (softmax of the masked scores) and returns them too.
"""
import math

import numpy as np

from tinygrad_tf import Tensor
from tinygrad_tf.device import check as _check_device

from . import functional as F
from .attention import attention_weights
from . import init
from .layers import Linear, _empty
from .module import Module


def _mask_array(mask, name, dtype):
    """torch's MHA masks as an additive float array: bool True = may NOT attend -> -inf."""
    if mask is None:
        return None
    array = mask.array if isinstance(mask, Tensor) else np.asarray(mask)
    if array.dtype == np.bool_:
        return np.where(array, -np.inf, 0).astype(dtype)
    if array.dtype.kind == "f":
        return array.astype(dtype, copy=False)
    raise TypeError(f"MultiheadAttention: {name} must be bool or float, not {array.dtype}")


class MultiheadAttention(Module):
    """Multi-head attention, torch.nn.MultiheadAttention's interface (kdim = vdim = embed_dim;
    no add_bias_kv / add_zero_attn)."""

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False,
                 add_zero_attn=False, kdim=None, vdim=None, batch_first=False, device=None,
                 dtype=None):
        super().__init__()
        _check_device(device, "MultiheadAttention")
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim {embed_dim} must be divisible by "
                             f"num_heads {num_heads}")
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention: add_bias_kv and add_zero_attn are "
                                      "not implemented")
        if kdim not in (None, embed_dim) or vdim not in (None, embed_dim):
            raise NotImplementedError(f"MultiheadAttention: kdim/vdim other than embed_dim "
                                      f"({embed_dim}) are not implemented, got {kdim}, {vdim}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.dropout, self.batch_first = dropout, batch_first
        self.in_proj_weight = _empty((3 * embed_dim, embed_dim), dtype)
        if bias:
            self.in_proj_bias = _empty((3 * embed_dim,), dtype)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        self._reset_parameters()

    def _reset_parameters(self):
        # torch's: xavier on the packed projections, zero biases, out_proj keeps Linear's init
        init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def _project(self, x, index):
        rows = slice(index * self.embed_dim, (index + 1) * self.embed_dim)
        bias = None if self.in_proj_bias is None else self.in_proj_bias[rows]
        return F.linear(x, self.in_proj_weight[rows], bias)

    def _heads(self, x):
        batch, length = x.shape[0], x.shape[1]
        return x.reshape(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        """query (L, N, E) (or (N, L, E) with batch_first, or unbatched (L, E)); key/value
        likewise with S. Masks as torch: bool True = may NOT attend, float = added;
        key_padding_mask (N, S), attn_mask (L, S) or (N * num_heads, L, S). Returns
        (output, weights): weights (N, L, S) averaged over heads, (N, h, L, S) with
        average_attn_weights=False, or None when need_weights=False."""
        if is_causal and attn_mask is None:
            raise RuntimeError("MultiheadAttention: need attn_mask if specifying the is_causal "
                               "hint (as torch); pass the causal mask too, e.g. "
                               "nn.Transformer.generate_square_subsequent_mask(L)")
        unbatched = query.ndim == 2
        if unbatched:
            query, key, value = (t.unsqueeze(1 - self.batch_first) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = np.asarray(key_padding_mask.array if isinstance(
                    key_padding_mask, Tensor) else key_padding_mask)[None]
        if query.ndim != 3 or key.ndim != 3 or value.ndim != 3 or \
                query.shape[-1] != self.embed_dim:
            raise ValueError(f"MultiheadAttention: query/key/value must be 3-D (or 2-D "
                             f"unbatched) with embed_dim {self.embed_dim} last, got "
                             f"{query.shape}, {key.shape}, {value.shape}")
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        batch, length, source = query.shape[0], query.shape[1], key.shape[1]
        q, k, v = (self._heads(self._project(t, i)) for i, t in enumerate((query, key, value)))
        mask = self._merged_mask(key_padding_mask, attn_mask, batch, length, source, q.dtype)
        dropout_p = self.dropout if self.training else 0.0
        if need_weights:  # torch returns the weights after dropout
            weights = attention_weights(q, k, 1 / math.sqrt(self.head_dim),
                                        additive=None if mask is None else Tensor(mask))
            weights = F.dropout(weights, dropout_p, self.training)
            attended = weights @ v
        else:
            weights = None
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                      dropout_p=dropout_p)
        attended = attended.transpose(1, 2).reshape(batch, length, self.embed_dim)
        out = self.out_proj(attended)                       # (N, L, E)
        if not self.batch_first:
            out = out.transpose(0, 1)                       # (L, N, E)
        if weights is not None and average_attn_weights:
            weights = weights.mean(1)
        if unbatched:
            out = out.squeeze(1 - self.batch_first)
            weights = None if weights is None else weights.squeeze(0)
        return out, weights

    def _merged_mask(self, key_padding_mask, attn_mask, batch, length, source, dtype):
        """Both masks as one additive (N, h, L, S)-broadcastable array, or None."""
        padding = _mask_array(key_padding_mask, "key_padding_mask", dtype)
        pairwise = _mask_array(attn_mask, "attn_mask", dtype)
        mask = None
        if padding is not None:
            if padding.shape != (batch, source):
                raise ValueError(f"MultiheadAttention: key_padding_mask of shape "
                                 f"{padding.shape} should be (N, S) = {(batch, source)}")
            mask = padding[:, None, None, :]
        if pairwise is not None:
            if pairwise.shape == (length, source):
                pairwise = pairwise[None, None]
            elif pairwise.shape == (batch * self.num_heads, length, source):
                pairwise = pairwise.reshape(batch, self.num_heads, length, source)
            else:
                raise ValueError(f"MultiheadAttention: attn_mask of shape {pairwise.shape} "
                                 f"should be (L, S) = {(length, source)} or (N * num_heads, L, "
                                 f"S) = {(batch * self.num_heads, length, source)}")
            mask = pairwise if mask is None else mask + pairwise
        return mask

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"dropout={self.dropout}, batch_first={self.batch_first}")
