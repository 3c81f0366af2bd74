"""Attention as one node each: torch's scaled_dot_product_attention (FusedAttention, at the end
of this file) and multi-head attention read straight out of packed projections (PackedAttention,
the Transformer's fast path).

`F.scaled_dot_product_attention` takes q, k, v as (B, h, T, d_k) tensors: a model must split its
projections into heads (a transpose), and the gradients of three separate q, k, v slices of one
packed QKV projection would each be scattered into a full-size zero array and summed. Here the
packed projection itself is the input:

    self-attention:  qkv (B, L, 3, h, d_k)          -> (B, L, h, d_k)
    cross-attention: q (B, L, h, d_k), kv (B, S, 2, h, d_k) -> (B, L, h, d_k)

The output's layout is (B, L, h, d_k), so merging heads is a free reshape to (B, L, h * d_k), and
backward writes each gradient once into its slot of one packed gradient array. The arithmetic is
`kernels.attention_forward` / `attention_backward` (the composed np.matmul formula, or the fused
Numba kernel under `kernels.use("numba")`); `F.scaled_dot_product_attention` stays the plain path.
"""
import math

import numpy as np

from tinygrad_tf import Tensor, cat, kernels, where
from tinygrad_tf.autograd import ArrayFunction
from tinygrad_tf.xp import numpy_ops, tensor_ops

from ._common import _check_float, _keep_mask


class PackedAttention(ArrayFunction):
    """softmax(q k^T * scale, masked) v over every head of packed projections (see the module)."""

    @staticmethod
    def forward(ctx, first, second=None, *, fill, scale):
        q, k, v = _split(first, second)
        out, weights = kernels.attention_forward(q, k, v, fill, scale)
        ctx.save_for_backward(first, second, weights, fill)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad):
        first, second, weights, fill = ctx.saved_tensors
        if ctx.xp is numpy_ops:
            grad_first, grad_second = _packed_grads(first, second, weights, grad, ctx.scale)
            return (grad_first,) if second is None else (grad_first, grad_second)
        # create_graph: the gradients as one node, whose own backward is derived by hand
        inputs = (first, grad) if second is None else (first, second, grad)
        joined = PackedAttentionGrad.apply(*inputs, fill=fill, scale=ctx.scale, weights=weights)
        if second is None:
            return (joined,)
        length = first.shape[1]
        return joined[:, :length], joined[:, length:].reshape(second.shape)


def _packed_grads(first, second, weights, grad, scale):
    """PackedAttention's input gradients, as arrays: of first, and of second (or None)."""
    q, k, v = _split(first, second)
    grad_first = np.empty_like(first)
    grad_second = None if second is None else np.empty_like(second)
    grad_q, grad_k, grad_v = _split(grad_first, grad_second)
    kernels.attention_backward(q, k, v, weights, grad, scale, grad_q, grad_k, grad_v)
    return grad_first, grad_second


class PackedAttentionGrad(ArrayFunction):
    """PackedAttention's input gradients as one node (its create_graph branch): inputs first,
    (second,) and the output's gradient dO; output the gradient of first (self-attention), or
    those of q (B, L, h, E) and kv (B, S, 2, h, E) joined as (B, L + 2 S, h, E). `weights` are
    the forward's (recomputed when not given). Its backward is attention's second derivative,
    derived by hand (_second_derivative); a third derivative differentiates `composed`."""

    @staticmethod
    def forward(ctx, *arrays, fill, scale, weights=None):
        first, second, grad = arrays if len(arrays) == 3 else (arrays[0], None, arrays[1])
        if weights is None:
            weights = kernels.attention_forward(*_split(first, second), fill, scale)[1]
        ctx.save_for_backward(first, second, grad, weights)
        ctx.fill, ctx.scale = fill, scale
        grad_first, grad_second = _packed_grads(first, second, weights, grad, scale)
        if second is None:
            return grad_first
        return np.concatenate([grad_first, _as_rows(grad_second)], 1)

    @staticmethod
    def backward(ctx, upstream):
        first, second, grad, weights = ctx.saved_tensors
        return _second_derivative(first, second, grad, weights, upstream, ctx.scale,
                                  ctx.needs_input_grad[-1])

    @staticmethod
    def composed(ctx, *inputs):
        first, second, grad = inputs if len(inputs) == 3 else (inputs[0], None, inputs[1])
        grad_first, grad_second = _packed_attention_graph(first, second, grad, ctx.fill,
                                                          ctx.scale, ctx._saved[3])
        return grad_first if second is None else cat([grad_first, _as_rows(grad_second)], 1)


def _as_rows(kv):
    return kv.reshape((kv.shape[0], -1) + kv.shape[3:])  # (B, S, 2, h, E) -> (B, 2 S, h, E)


def _second_derivative(first, second, grad, weights, upstream, scale, grad_of_grad=True):
    """PackedAttentionGrad's backward. Per (batch, head) block, with P the weights, c the scale,
    and sb(P, X) = P * (X - rowsum(P * X)) softmax's backward, the node computes
    dV = P^T dO, dP = dO V^T, dS = sb(P, dP), dQ = c dS K, dK = c dS^T Q. Given the upstream
    gradients A, B, C of dQ, dK, dV:
        G = c (A K^T + Q B^T)                                    (of dS)
        G_dP = sb(P, G)                                          (of dP, through dS)
        G_P = G * (dP - rowsum(P * dP)) - rowsum(P * G) * dP + dO C^T   (of P)
        G_S = sb(P, G_P)                                         (of the scaled scores)
        of Q: c (dS B + G_S K)   of K: c (dS^T A + G_S^T Q)   of V: G_dP^T dO
        of dO: P C + G_dP V
    Masked scores have P = 0, so every term through them vanishes."""
    mm, sb = kernels.matmul, kernels.softmax_backward
    t = lambda x: np.swapaxes(x, -1, -2)  # noqa: E731
    heads = lambda x: x.transpose(0, 2, 1, 3)  # noqa: E731 (B, T, h, E) -> (B, h, T, E), a view
    # a kernel may hand the weights over as a strided view: one copy, not one per softmax pass
    weights = np.ascontiguousarray(weights)
    q, k, v = (heads(x) for x in _split(first, second))
    if second is None:
        up_q, up_k, up_v = (heads(x) for x in _split(upstream, None))
    else:
        length = first.shape[1]
        up_kv = upstream[:, length:].reshape(second.shape)
        up_q, up_k, up_v = (heads(x) for x in _split(upstream[:, :length], up_kv))
    d_out = heads(grad)
    d_p = mm(d_out, t(v))
    d_s = sb(weights, d_p, -1)
    g = mm(up_q, t(k))
    g += mm(q, t(up_k))
    g *= scale
    g_dp = sb(weights, g, -1)
    # G_P = (G - rowsum(P * G)) * dP - G * rowsum(P * dP) + dO C^T, in place where it can be
    g_p = mm(d_out, t(up_v))
    part = g - _rowsum(weights, g)
    part *= d_p
    g_p += part
    g_p -= np.multiply(g, _rowsum(weights, d_p), out=part)
    g_s = sb(weights, g_p, -1)
    grad_first = np.empty_like(first)
    grad_second = None if second is None else np.empty_like(second)
    grad_q, grad_k, grad_v = (heads(x) for x in _split(grad_first, grad_second))
    grad_q[...] = (mm(d_s, up_k) + mm(g_s, k)) * scale
    grad_k[...] = (mm(t(d_s), up_q) + mm(t(g_s), q)) * scale
    grad_v[...] = mm(t(g_dp), d_out)
    grad_grad = heads(mm(weights, up_v) + mm(g_dp, v)) if grad_of_grad else None
    if second is None:
        return grad_first, grad_grad
    return grad_first, grad_second, grad_grad


def _rowsum(a, b):
    return np.einsum("...ij,...ij->...i", a, b)[..., None]  # sum(a * b, -1), no temporary


def _packed_attention_graph(first, second, grad, fill, scale, saved_weights):
    """PackedAttention's gradients (of first, and of second or None) as recorded Tensor ops,
    heads first: the weights as one AttentionWeights node (whose backward gives q's and k's
    gradients), v's by one product. PackedAttentionGrad's composed twin."""
    # (B, L, n, h, E) -> (n, B, h, L, E); slices 0:1, 1:2, ... keep that leading dim, so the
    # products broadcast over it and the gradients join back with one cat, no reshape nodes
    if second is None:
        heads = first.permute(2, 0, 3, 1, 4)
        q, k, v = heads[0:1], heads[1:2], heads[2:3]
    else:
        heads = second.permute(2, 0, 3, 1, 4)
        q, k, v = first.permute(0, 2, 1, 3), heads[0:1], heads[1:2]
    weights = AttentionWeights.apply(q, k, fill=fill, scale=scale,
                                     weights=saved_weights)  # (1, B, h, L, S)
    grad = grad.permute(0, 2, 1, 3)
    grad_v = weights.transpose(-1, -2).matmul(grad)
    grad_q, grad_k = _weights_grads(
        tensor_ops, q, k, weights, grad.matmul(v.transpose(-1, -2)), scale)
    if second is None:
        return cat([grad_q, grad_k, grad_v]).permute(1, 3, 0, 2, 4), None
    return grad_q[0].permute(0, 2, 1, 3), cat([grad_k, grad_v]).permute(1, 3, 0, 2, 4)


class AttentionWeights(ArrayFunction):
    """softmax(q k^T * scale, masked where `fill`) for heads-first q (..., L, E), k (..., S, E):
    one node for the create_graph path of PackedAttention (its backward needs only q, k and
    this output, so nothing is recomputed; written once against ctx.xp)."""

    @staticmethod
    def forward(ctx, q, k, fill, scale, weights=None):
        if weights is None:
            scores = kernels.matmul(q, np.swapaxes(k, -1, -2))
            scores *= scale
            if fill is not None:
                scores[np.broadcast_to(fill, scores.shape)] = -np.inf
            weights = kernels.softmax(scores, -1)
        else:  # the caller's forward computed them (PackedAttention): not again
            weights = weights.reshape(np.broadcast_shapes(q.shape[:-2], k.shape[:-2])
                                      + (q.shape[-2], k.shape[-2]))
        ctx.save_for_backward(q, k, weights)
        ctx.scale = scale
        return weights

    @staticmethod
    def backward(ctx, grad):
        q, k, weights = ctx.saved_tensors
        return _weights_grads(ctx.xp, q, k, weights, grad, ctx.scale)


def _weights_grads(xp, q, k, weights, grad, scale):
    # masked scores have weight 0, so the softmax's backward gives them no gradient
    grad_scores = xp.softmax_backward(weights, grad, -1) * scale
    return (xp.matmul(grad_scores, k),
            xp.matmul(xp.swapaxes(grad_scores, -1, -2), q))


def attention_weights(q, k, scale, fill=None, additive=None):
    """softmax(q k^T * scale + additive, masked where `fill`) in Tensor ops: q (..., L, E),
    k (..., S, E) -> (..., L, S). A fully masked row gives zeros (softmax's rule), not NaN."""
    scores = q.matmul(k.transpose(-1, -2)) * scale  # (..., L, S)
    if additive is not None:
        scores = scores + additive
    if fill is not None:
        scores = where(fill, -np.inf, scores)
    return scores.softmax(-1)


def composed_attention(q, k, v, scale, fill=None, additive=None, keep=None, drop_scale=1.0):
    """(out, weights): scaled dot-product attention written out in Tensor ops, on heads-first
    tensors q (..., L, E), k (..., S, E), v (..., S, Ev), the masks as kernels/attention.py
    takes them (fill: True = masked out; additive: added to the scaled scores; keep and
    drop_scale: dropout on the weights). The readable definition the fused kernels compute, the
    path that exposes the weights, and the create_graph twin (it records differentiable ops)."""
    weights = attention_weights(q, k, scale, fill, additive)
    dropped = weights if keep is None else weights * keep * drop_scale
    return dropped.matmul(v), weights


def _split(first, second):
    if second is None:  # one (B, L, 3, h, E) self-attention projection
        return first[:, :, 0], first[:, :, 1], first[:, :, 2]
    return first, second[:, :, 0], second[:, :, 1]


def packed_attention(qkv_or_q, kv=None, mask=None, scale=None):
    """Attention of every head, from packed projections (shapes in the module docstring).

    mask: boolean, broadcastable to (B, h, L, S), True where a query MAY attend (torch's
    convention, as `make_masks` builds it). scale defaults to 1/sqrt(d_k). A query with every
    key masked gets a zero output, never NaN.
    """
    self_attention = kv is None
    expected = 5 if self_attention else 4
    if qkv_or_q.ndim != expected or (self_attention and qkv_or_q.shape[2] != 3):
        wanted = "qkv (B, L, 3, h, d_k)" if self_attention else "q (B, L, h, d_k)"
        raise ValueError(f"packed_attention: expected {wanted}, got shape {qkv_or_q.shape}")
    q_shape = qkv_or_q.shape[:2] + qkv_or_q.shape[-2:]  # (B, L, h, d_k)
    if not self_attention and (kv.ndim != 5 or kv.shape[2] != 2 or kv.shape[0] != q_shape[0]
                               or kv.shape[-2:] != q_shape[-2:]):
        raise ValueError(f"packed_attention: kv must be (B, S, 2, h, d_k) matching q "
                         f"{q_shape}, got {kv.shape}")
    if qkv_or_q.dtype.kind != "f" or (kv is not None and kv.dtype != qkv_or_q.dtype):
        raise TypeError(f"packed_attention: q/kv must share one float dtype, got "
                        f"{qkv_or_q.dtype}" + ("" if kv is None else f" and {kv.dtype}"))
    batch, length, heads, features = q_shape
    source = length if self_attention else kv.shape[1]
    fill = None
    if mask is not None:
        allowed = mask.array if isinstance(mask, Tensor) else np.asarray(mask)
        if allowed.dtype != np.bool_:
            raise TypeError(f"packed_attention: mask must be boolean (True = may attend), not "
                            f"{allowed.dtype}; use F.scaled_dot_product_attention for a float "
                            "mask")
        try:
            fill = np.broadcast_to(~allowed, (batch, heads, length, source))
        except ValueError:
            raise ValueError(f"packed_attention: mask of shape {allowed.shape} does not "
                             f"broadcast to the scores' shape {(batch, heads, length, source)}"
                             ) from None
    if scale is None:
        scale = 1 / math.sqrt(features)
    scale = qkv_or_q.dtype.type(scale)
    if self_attention:
        return PackedAttention.apply(qkv_or_q, fill=fill, scale=scale)
    return PackedAttention.apply(qkv_or_q, kv, fill=fill, scale=scale)


# ---------------------------------------------------------------------------- torch's sdpa

class FusedAttention(ArrayFunction):
    """softmax(q @ k^T * scale + mask) @ v (with dropout on the weights), and its backward, on
    kernels.attention_forward / attention_backward (kernels/attention.py: the arithmetic and the
    mask convention, once).

    `fill` is a boolean array, True where a score is masked out; `additive` a float array added
    to the scores, an input with a gradient (a learned bias trains). A query row with every key
    masked gets zero weights, so a zero output and zero gradients (never NaN). The kernels take
    (B, L, h, E) blocks: here every batch item is one block of one head, (B', L, 1, E).
    """

    @staticmethod
    def forward(ctx, q, k, v, additive=None, *, scale, fill, dropout_p):
        batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
        blocks = [_attention_blocks(x, batch) for x in (q, k, v)]
        scores = batch + (q.shape[-2], k.shape[-2])
        keep = _keep_mask(scores, dropout_p) if dropout_p else None
        drop_scale = 1 / (1 - dropout_p)
        masks = [None if m is None else _mask_blocks(m, scores) for m in (fill, additive, keep)]
        out, weights = kernels.attention_forward(*blocks, masks[0], scale, masks[1], masks[2],
                                                 drop_scale)
        # out only for the in-place check: torch's CPU kernel (4-D inputs) saves it too
        ctx.save_for_backward(q, k, v, weights, keep, additive, fill, out)
        ctx.scale, ctx.drop_scale = scale, drop_scale
        return out.reshape(batch + out.shape[1:2] + out.shape[3:])

    @staticmethod
    def backward(ctx, grad):
        q, k, v, weights, keep, additive, fill, _ = ctx.saved_tensors
        batch = grad.shape[:-2]
        blocks = [_attention_blocks(x, batch) for x in (q, k, v, grad)]
        grads = [np.empty(x.shape, x.dtype) for x in blocks[:3]]
        grad_mask = None
        if additive is not None and ctx.needs_input_grad[3]:
            grad_mask = np.empty(weights.shape, weights.dtype)  # dL/dscores (B', 1, L, S)
        keep = None if keep is None else _mask_blocks(keep, keep.shape)
        kernels.attention_backward(*blocks[:3], weights, blocks[3], ctx.scale, *grads, keep,
                                   ctx.drop_scale, grad_mask)
        out = [g.reshape(batch + g.shape[1:2] + g.shape[3:]) for g in grads]
        if additive is not None:  # the engine sums each gradient to its input's shape
            out.append(None if grad_mask is None else grad_mask.reshape(batch + weights.shape[2:]))
        return tuple(out)

    @staticmethod
    def composed(ctx, q, k, v, *additive):
        keep, _, fill = ctx.saved_tensors[4:7]
        out, _ = composed_attention(q, k, v, ctx.scale, fill, additive[0] if additive else None,
                                    keep, ctx.drop_scale)
        return out


def _attention_blocks(x, batch):
    """x (..., T, E) broadcast to batch dims `batch`, as the kernels' (B', T, 1, E) blocks (a
    view when x is contiguous and needs no broadcasting)."""
    if x.shape[:-2] != batch:  # broadcast_to's views are read-only: the kernels would copy them
        x = np.broadcast_to(x, batch + x.shape[-2:])
    return x.reshape((-1,) + x.shape[-2:])[:, :, None, :]


def _mask_blocks(mask, scores):
    """A mask broadcast to the scores' shape (..., L, S) as the kernels' (B', 1, L, S). One the
    same for every query (a key padding mask, (..., 1, S)) stays a stride-0 view over L, which
    the kernel keeps as one bias per key, not a full (L, S) block per batch item."""
    rows = scores[-2] if np.ndim(mask) >= 2 and np.shape(mask)[-2] > 1 else 1
    flat = np.broadcast_to(mask, scores[:-2] + (rows, scores[-1])).reshape(
        (-1, 1, rows, scores[-1]))
    return np.broadcast_to(flat, flat.shape[:2] + scores[-2:])


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None):
    """softmax(query @ key^T * scale + mask) @ value, with torch's semantics.

    query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev). scale defaults to
    1/sqrt(E). attn_mask broadcasts to (..., L, S) and is either
      - boolean: True means the position TAKES PART in attention (torch's convention; note it
        is the opposite of masked_fill's), False positions are masked out; or
      - float: added to the scores (use -inf to mask).
    is_causal=True masks every key after the query's position (needs no attn_mask).
    Rows where every key is masked give zeros, not NaN. dropout_p applies to the attention
    weights; pass 0.0 in eval mode, as torch requires the caller to.
    """
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise ValueError(f"scaled_dot_product_attention: query, key and value need at least 2 "
                         f"dims, got {query.shape}, {key.shape}, {value.shape}")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ValueError(f"scaled_dot_product_attention: shapes do not fit: query {query.shape}, "
                         f"key {key.shape}, value {value.shape} (query/key share E, key/value "
                         "share S)")
    _check_float("scaled_dot_product_attention", query=query, key=key, value=value)
    if not 0 <= dropout_p < 1:
        raise ValueError(f"scaled_dot_product_attention: dropout_p must be in [0, 1), got "
                         f"{dropout_p}")
    length, source = query.shape[-2], key.shape[-2]
    try:
        batch = np.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    except ValueError:
        raise ValueError(f"scaled_dot_product_attention: batch dims of query {query.shape}, "
                         f"key {key.shape} and value {value.shape} do not broadcast") from None
    fill = additive = None
    if is_causal:
        if attn_mask is not None:
            raise ValueError("scaled_dot_product_attention: pass either attn_mask or "
                             "is_causal=True, not both (as torch)")
        fill = np.triu(np.ones((length, source), dtype=bool), k=1)
    elif attn_mask is not None:
        mask = attn_mask.array if isinstance(attn_mask, Tensor) else np.asarray(attn_mask)
        try:
            np.broadcast_shapes(mask.shape, batch + (length, source))
        except ValueError:
            raise ValueError(f"scaled_dot_product_attention: attn_mask of shape {mask.shape} "
                             f"does not broadcast to the scores' shape "
                             f"{batch + (length, source)}") from None
        if mask.dtype == np.bool_:
            fill = ~mask
        elif mask.dtype.kind == "f":
            if isinstance(attn_mask, Tensor) and mask.dtype == query.dtype:
                additive = attn_mask  # a graph input: a learned bias gets its gradient
            elif isinstance(attn_mask, Tensor) and attn_mask.requires_grad:
                raise TypeError(f"scaled_dot_product_attention: a float attn_mask that requires "
                                f"grad must have the query's dtype {query.dtype}, not "
                                f"{mask.dtype}")
            else:
                additive = Tensor._wrap(mask.astype(query.dtype, copy=False))
        else:
            raise TypeError(f"scaled_dot_product_attention: attn_mask must be bool or float, "
                            f"not {mask.dtype}")
    if scale is None:
        scale = 1 / math.sqrt(query.shape[-1])
    inputs = (query, key, value) + (() if additive is None else (additive,))
    return FusedAttention.apply(*inputs, scale=query.dtype.type(scale), fill=fill,
                                dropout_p=float(dropout_p))
