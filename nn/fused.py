"""Fused ops of a Transformer step: several composed ops as ONE recorded node each, running the
kernel layer's one-pass, multi-core kernels. Each docstring gives the composed formula it equals;
that formula is the readable twin (models/transformer.py keeps it beside the fused call) and the
tests' oracle, and `kernels.use("numpy")` runs each node on numpy twins of the same math.

    residual_dropout_layer_norm  layer_norm(x + dropout(sublayer_out))     "Add & Norm"
    linear_residual_layer_norm   layer_norm(x + dropout(a @ W.T + c))       the same, with the
                                 sublayer's last linear layer folded in
    linear_activation_dropout    dropout(act(input @ weight.T + bias))      a feed-forward layer
    embedding_position_dropout   dropout(weight[ids] * scale + table[t])    embedding + position

Why: composed, each is three to five nodes, each allocating a full-size temporary forward and
again backward, each a single-threaded numpy pass; fused, the inputs are read once, the output
written once, rows split across cores. Dropout masks come from the same seeded generator in the
same order as the composed ops' (nn.functional.dropout), so both forms give the same numbers.
"""
import numbers

import numpy as np

from tinygrad_tf import kernels
from tinygrad_tf.autograd import ArrayFunction
from tinygrad_tf.xp import numpy_ops

from ._common import _check_float, _check_range, _index_array, _keep_mask, _rows
from .functional import FusedLinear, gelu_slope
from .normalization import _layer_norm_graph_grads


def _dropout_args(p, training, op):
    """(p, active): p checked; active is False when dropout is the identity."""
    if not isinstance(p, numbers.Real) or not 0 <= p < 1:
        raise ValueError(f"{op}: dropout p must be a probability in [0, 1), got {p!r}")
    return float(p), bool(training and p > 0)


# ---------------------------------------------------------------------------- Add & Norm

def _linear_grads(xp, grad_out, weight, rows, shape, needs_input, needs_weight):
    """(input gradient, weight gradient) of a linear layer whose output gradient is grad_out and
    whose input, as `rows`, has `shape`; None for a gradient not needed."""
    grad_in = None
    if needs_input:
        grad_in = xp.matmul(grad_out, weight)
        if grad_in.shape != shape:  # the first-order path's rows
            grad_in = xp.reshape(grad_in, shape)
    return grad_in, (xp.weight_grad(grad_out, rows) if needs_weight else None)


class ResidualDropoutLayerNorm(ArrayFunction):
    """layer_norm(x + dropout(s)) over the last dim, one node (post-norm "Add & Norm")."""

    @staticmethod
    def forward(ctx, x, s, weight, bias, p, eps):
        width = x.shape[-1]
        rows, residual = _rows(x, width), _rows(s, width)
        mask = _keep_mask(rows.shape, p) if p else None
        scale = 1 / (1 - p)
        out, h, mean, rstd = kernels.layer_norm(rows, weight, bias, eps, residual, mask, scale)
        # x, s: the create_graph path; the bias only as torch's layer_norm saves it (the check)
        ctx.save_for_backward(h, mean, rstd, weight, mask, x, s, bias)
        ctx.scale, ctx.shape, ctx.eps = scale, x.shape, eps
        return out.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        h, mean, rstd, weight, mask, x, s, _ = ctx.saved_tensors
        if ctx.xp is not numpy_ops:  # create_graph: the same sums as a few recorded nodes
            return _residual_layer_norm_graph(ctx, grad, x, s, weight, mask, (mean, rstd))
        # without dropout grad_s is grad_x itself (the engine never writes into either)
        grad_x, grad_w, grad_b, grad_s = kernels.layer_norm_backward(
            _rows(grad, h.shape[1]), h, mean, rstd, weight, mask, ctx.scale, residual=True)
        return grad_x.reshape(ctx.shape), grad_s.reshape(ctx.shape), grad_w, grad_b


def _residual_layer_norm_graph(ctx, grad, x, s, weight, mask, stats):
    kept = None if mask is None else mask.reshape(s.shape) * x.dtype.type(ctx.scale)
    h = x + (s if kept is None else s * kept)
    grad_h, grad_w, grad_b = _layer_norm_graph_grads(grad, h, weight, ctx.eps, stats)
    return grad_h, (grad_h if kept is None else grad_h * kept), grad_w, grad_b


def residual_dropout_layer_norm(x, sublayer_out, weight, bias, p=0.0, training=True, eps=1e-5):
    """layer_norm(x + dropout(sublayer_out, p), weight, bias) over the last dim, as one node."""
    p, active = _dropout_args(p, training, "residual_dropout_layer_norm")
    _check_float("residual_dropout_layer_norm", x=x, sublayer_out=sublayer_out, weight=weight,
                 bias=bias)
    width = x.shape[-1] if x.ndim else 0
    if x.shape != sublayer_out.shape or weight.shape != (width,) or bias.shape != (width,):
        raise ValueError(f"residual_dropout_layer_norm: x {x.shape} and sublayer_out "
                         f"{sublayer_out.shape} must match, weight {weight.shape} and bias "
                         f"{bias.shape} must be (x.shape[-1],) = ({width},)")
    return ResidualDropoutLayerNorm.apply(x, sublayer_out, weight, bias,
                                          p=p if active else 0.0, eps=float(eps))


class LinearResidualLayerNorm(ArrayFunction):
    """layer_norm(x + dropout(a @ lin_weight.T + lin_bias)) over the last dim, one node: a GEMM,
    then the Add & Norm pass with the linear's bias added as it reads the product. The product
    is a temporary: unlike a separate linear node's output, nothing keeps it until backward.
    Backward: one layer-norm pass that also sums the bias's gradient, then two GEMMs."""

    @staticmethod
    def forward(ctx, x, a, lin_weight, lin_bias, weight, bias, p, eps):
        width = x.shape[-1]
        rows, a_rows = _rows(x, width), _rows(a, a.shape[-1])
        product = kernels.matmul(a_rows, lin_weight.T)
        mask = _keep_mask(rows.shape, p) if p else None
        scale = 1 / (1 - p)
        out, h, mean, rstd = kernels.layer_norm(rows, weight, bias, eps, product, mask, scale,
                                                residual_bias=lin_bias)
        # x, a, lin_bias: the create_graph path (x and a are kept by their own producers anyway);
        # bias only as torch's layer_norm saves it (for the in-place check)
        ctx.save_for_backward(h, mean, rstd, weight, mask, a_rows, lin_weight, x, a, lin_bias,
                              bias)
        ctx.scale, ctx.shape, ctx.eps = scale, x.shape, eps
        return out.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        h, mean, rstd, weight, mask, a_rows, lin_weight, x, a, lin_bias, _ = ctx.saved_tensors
        xp, needs = ctx.xp, ctx.needs_input_grad
        if xp is not numpy_ops:  # create_graph: the product again, as one recorded node
            s = FusedLinear.apply(a, lin_weight, lin_bias)
            grad_x, grad_s, grad_w, grad_b = _residual_layer_norm_graph(
                ctx, grad, x, s, weight, mask, (mean, rstd))
            lead = tuple(range(grad_s.ndim - 1))  # none for 1-D (sum(()) sums every dim)
            grad_lin_b = grad_s.sum(lead) if lead else grad_s
            a_rows = a
        else:
            # without dropout grad_s is grad_x itself: the GEMMs below only read it
            grad_x, grad_w, grad_b, grad_s, grad_lin_b = kernels.layer_norm_backward(
                _rows(grad, h.shape[1]), h, mean, rstd, weight, mask, ctx.scale,
                residual=True, residual_bias=True)
            grad_x = grad_x.reshape(ctx.shape)
        grad_a, grad_lin_w = _linear_grads(xp, grad_s, lin_weight, a_rows, a.shape, needs[1],
                                           needs[2])
        return grad_x, grad_a, grad_lin_w, grad_lin_b, grad_w, grad_b


def linear_residual_layer_norm(x, a, lin_weight, lin_bias, weight, bias, p=0.0, training=True,
                               eps=1e-5):
    """layer_norm(x + dropout(a @ lin_weight.T + lin_bias, p), weight, bias) over the last dim,
    as one node: a post-norm "Add & Norm" whose sublayer ends in a linear layer (a (..., in),
    lin_weight (d, in), lin_bias (d,); x (..., d))."""
    p, active = _dropout_args(p, training, "linear_residual_layer_norm")
    _check_float("linear_residual_layer_norm", x=x, a=a, lin_weight=lin_weight,
                 lin_bias=lin_bias, weight=weight, bias=bias)
    width = x.shape[-1] if x.ndim else 0
    if (a.ndim == 0 or x.shape[:-1] != a.shape[:-1] or lin_weight.shape != (width, a.shape[-1])
            or lin_bias.shape != (width,) or weight.shape != (width,)
            or bias.shape != (width,)):
        raise ValueError(f"linear_residual_layer_norm: x {x.shape}, a {a.shape}, lin_weight "
                         f"{lin_weight.shape}, lin_bias {lin_bias.shape}, weight {weight.shape} "
                         f"and bias {bias.shape} do not fit: expected (..., d), (..., in), "
                         "(d, in), (d,), (d,), (d,)")
    return LinearResidualLayerNorm.apply(x, a, lin_weight, lin_bias, weight, bias,
                                         p=p if active else 0.0, eps=float(eps))


# ---------------------------------------------------------------------------- feed-forward

class LinearActivationDropout(ArrayFunction):
    """dropout(act(input @ weight.T + bias)), one node: a GEMM, then one fused pass."""

    @staticmethod
    def forward(ctx, x, weight, bias, activation, p):
        rows = _rows(x, x.shape[-1])
        pre = kernels.matmul(rows, weight.T)  # a fresh array: the fused pass writes into it
        mask = _keep_mask(pre.shape, p) if p else None
        scale = 1 / (1 - p)
        out, saved = kernels.bias_activation(pre, bias, activation, mask, scale)
        # As torch's linear, relu and dropout: x (rows) only for the weight's gradient, the
        # weight only for x's, never the bias. GELU's create_graph path recomputes the
        # pre-activation from x, weight and bias, so it keeps all three.
        need_x, need_w = ctx.needs_input_grad[:2]
        gelu = activation != "relu"
        ctx.save_for_backward(rows if need_w else None, weight if need_x or gelu else None,
                              saved, mask, x if need_w or gelu else None, bias if gelu else None)
        ctx.scale, ctx.activation, ctx.shape = scale, activation, x.shape
        return out.reshape(x.shape[:-1] + (weight.shape[0],))

    @staticmethod
    def backward(ctx, grad):
        rows, weight, saved, mask, x, bias = ctx.saved_tensors
        xp = ctx.xp
        if xp is numpy_ops:
            grad_pre, grad_b = kernels.bias_activation_backward(
                _rows(grad, grad.shape[-1]), saved, ctx.activation, mask, ctx.scale)
        else:  # create_graph: Tensors of x's (..., features) shape, no reshape nodes; only
            rows, dtype = x, grad.dtype.type  # GELU's slope needs the pre-activation again
            if ctx.activation == "relu":  # the slope and the dropout mask: one constant
                grad_pre = grad * np.where(saved > 0, dtype(ctx.scale),
                                           dtype(0)).reshape(grad.shape)
            else:
                grad_pre = grad if mask is None else grad * (mask * dtype(ctx.scale)).reshape(
                    grad.shape)
                approximate = "tanh" if ctx.activation == "gelu_tanh" else "none"
                grad_pre = grad_pre * gelu_slope(xp, x.matmul(weight.T) + bias, approximate)
            grad_b = grad_pre.sum(tuple(range(grad.ndim - 1))) if grad.ndim > 1 else grad_pre
        needs = ctx.needs_input_grad
        grad_x, grad_w = _linear_grads(xp, grad_pre, weight, rows, ctx.shape, needs[0], needs[1])
        return grad_x, grad_w, grad_b


def linear_activation_dropout(input, weight, bias, activation="relu", p=0.0, training=True):
    """dropout(act(input @ weight.T + bias), p), act "relu", "gelu" (erf) or "gelu_tanh", as
    one node."""
    if activation not in kernels.ACTIVATIONS:
        raise ValueError(f"linear_activation_dropout: activation must be one of "
                         f"{kernels.ACTIVATIONS}, not {activation!r}")
    p, active = _dropout_args(p, training, "linear_activation_dropout")
    _check_float("linear_activation_dropout", input=input, weight=weight, bias=bias)
    if (input.ndim == 0 or weight.ndim != 2 or input.shape[-1] != weight.shape[1]
            or bias.shape != weight.shape[:1]):
        raise ValueError(f"linear_activation_dropout: input {input.shape}, weight {weight.shape} "
                         f"and bias {bias.shape} do not fit: expected (..., in), (out, in), "
                         "(out,)")
    return LinearActivationDropout.apply(input, weight, bias, activation=activation,
                                         p=p if active else 0.0)


# ---------------------------------------------------------------------------- embeddings

class EmbeddingPositionDropout(ArrayFunction):
    """dropout(weight[ids] * scale + table[t]) for ids (B, T), table (T, D), one node."""

    @staticmethod
    def forward(ctx, weight, ids, table, scale, p, padding_idx):
        flat = ids.reshape(-1)
        mask = _keep_mask((flat.size, weight.shape[1]), p) if p else None
        drop_scale = 1 / (1 - p)
        out = kernels.embedding_position(weight, flat, table, scale, mask, drop_scale)
        ctx.save_for_backward(flat, mask, table)
        ctx.scale, ctx.emb_scale, ctx.drop_scale = scale * drop_scale, scale, drop_scale
        ctx.padding_idx, ctx.num_embeddings = padding_idx, weight.shape[0]
        ctx.ids_shape = ids.shape
        return out.reshape(ids.shape + (weight.shape[1],))

    @staticmethod
    def backward(ctx, grad):
        flat, mask, _ = ctx.saved_tensors
        width = grad.shape[-1]
        if ctx.xp is not numpy_ops:  # create_graph: one constant factor per row, an index-add
            factor = np.full((flat.size, 1), ctx.scale, grad.dtype)
            if ctx.padding_idx is not None:
                factor[flat == ctx.padding_idx] = 0
            if mask is not None:
                factor = factor * mask
            return ctx.xp.index_add((ctx.num_embeddings, width), flat,
                                    grad.reshape(-1, width) * factor, True)
        grad_weight = kernels.scatter_add_rows(flat, _rows(grad, width), ctx.num_embeddings,
                                               mask, ctx.scale)
        if ctx.padding_idx is not None:
            grad_weight[ctx.padding_idx] = 0  # the padding row is never trained
        return grad_weight


def embedding_position_dropout(ids, weight, table, scale=1.0, p=0.0, training=True,
                               padding_idx=None):
    """dropout(embedding(ids, weight) * scale + table, p) as one node: ids (B, T) integers,
    weight (V, D), table (T, D) a constant array (no gradient), e.g. positional encodings."""
    ids = _index_array(ids, "embedding_position_dropout")
    p, active = _dropout_args(p, training, "embedding_position_dropout")
    _check_float("embedding_position_dropout", weight=weight)
    table = np.asarray(table.array if hasattr(table, "array") else table, dtype=weight.dtype)
    if (ids.ndim != 2 or weight.ndim != 2 or table.shape != (ids.shape[1], weight.shape[1])):
        raise ValueError(f"embedding_position_dropout: ids {ids.shape}, weight {weight.shape} and "
                         f"table {table.shape} do not fit: expected (B, T), (V, D), (T, D)")
    _check_range("embedding_position_dropout", "token id", ids, 0, weight.shape[0])
    if padding_idx is not None:
        padding_idx %= weight.shape[0]
    return EmbeddingPositionDropout.apply(weight, ids=ids, table=table, scale=float(scale),
                                          p=p if active else 0.0, padding_idx=padding_idx)


__all__ = ["residual_dropout_layer_norm", "linear_residual_layer_norm",
           "linear_activation_dropout",
           "embedding_position_dropout"]
