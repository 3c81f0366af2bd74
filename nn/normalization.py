"""Layer norm as one recorded node (FusedLayerNorm), and the two nodes its create_graph path
records instead of the composed formula's eight (Normalize, NormalizeBackward). The loops are the
kernel layer's layer_norm / layer_norm_backward; nn/fused.py reuses them for the fused residual
+ dropout + layer norm of a Transformer sublayer. rms_norm (composed) shares the argument checks.
"""
import math
import numbers

import numpy as np

from tinygrad_tf import kernels
from tinygrad_tf.autograd import ArrayFunction
from tinygrad_tf.xp import numpy_ops

from ._common import _check_float, _rows


class FusedLayerNorm(ArrayFunction):
    """(x - mean) / sqrt(var + eps) * weight + bias over the trailing `normalized_shape` dims.
    The loops are the kernel layer's layer_norm (one pass per row with Numba, a numpy twin beside
    it), which also serves the fused residual + dropout + layer norm of nn.fused."""

    @staticmethod
    def forward(ctx, x, *affine, normalized_shape, eps, has_weight):
        width = math.prod(normalized_shape)
        rows = _rows(x, width)
        has_bias = len(affine) > has_weight
        weight = np.ascontiguousarray(affine[0]).reshape(width) if has_weight \
            else np.ones(width, x.dtype)
        bias = np.ascontiguousarray(affine[-1]).reshape(width) if has_bias \
            else np.zeros(width, x.dtype)
        out, _, mean, rstd = kernels.layer_norm(rows, weight, bias, eps)
        # the rows (x's own memory when x is C-order) and their mean and rstd, as torch keeps:
        # backward recomputes the normalised rows, so forward writes only its output. x and
        # the weight as given: the create_graph path differentiates through them; the bias
        # only as torch saves it (for the in-place check).
        ctx.save_for_backward(rows, mean, rstd, weight, x, affine[0] if has_weight else None,
                              affine[-1] if has_bias else None)
        ctx.input_shape, ctx.normalized_shape = x.shape, normalized_shape
        ctx.has_weight, ctx.eps = has_weight, eps
        return out.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        rows, mean, rstd, weight, x, given_weight, _ = ctx.saved_tensors
        width = rows.shape[1]
        if ctx.xp is numpy_ops:
            grad_x, grad_w, grad_b, _ = kernels.layer_norm_backward(_rows(grad, width), rows,
                                                                    mean, rstd, weight)
            grad_x = grad_x.reshape(ctx.input_shape)
        elif len(ctx.normalized_shape) == 1:  # create_graph: Tensors in, a graph out
            grad_x, grad_w, grad_b = _layer_norm_graph_grads(
                grad, x, given_weight if ctx.has_weight else None, ctx.eps, (mean, rstd))
        else:  # over several dims: the same on the (rows, width) view
            grad_x, grad_w, grad_b = _layer_norm_graph_grads(
                grad.reshape(-1, width), x.reshape(-1, width),
                given_weight.reshape(width) if ctx.has_weight else None, ctx.eps,
                (mean, rstd))
            grad_x = grad_x.reshape(ctx.input_shape)
        grads = [grad_x]
        if ctx.has_weight:
            grads.append(grad_w.reshape(ctx.normalized_shape))
        if len(ctx.needs_input_grad) > 1 + ctx.has_weight:
            grads.append(grad_b.reshape(ctx.normalized_shape))
        return tuple(grads)


class Normalize(ArrayFunction):
    """(y - mean) * rstd over the last dim, rstd = 1 / sqrt(var + eps): layer norm without its
    affine part. The create_graph path's node for the normalised rows (one node, not the eight
    of the composed formula); its backward records NormalizeBackward."""

    @staticmethod
    def forward(ctx, y, eps, stats=None):
        # stats: (mean, rstd) of y's rows when the caller has them (a layer norm's forward)
        rows = _rows(y, y.shape[-1])
        mean, rstd = stats if stats is not None else _standardize(rows, eps)
        ctx.save_for_backward(y, rows, mean, rstd)
        ctx.eps = eps
        return _normalized(rows, mean, rstd).reshape(y.shape)

    @staticmethod
    def backward(ctx, grad):
        y, rows, mean, rstd = ctx.saved_tensors
        if ctx.xp is not numpy_ops:
            return NormalizeBackward.apply(grad, y, eps=ctx.eps)
        return kernels.layer_norm_backward(_rows(grad, rows.shape[1]), rows, mean, rstd,
                                           _unit_affine(rows)[0])[0].reshape(y.shape)


class NormalizeBackward(ArrayFunction):
    """Normalize's input gradient as a node: rstd * P g, P g = g - mean(g) - x * mean(g x) over
    the last dim, x the normalised y. Its own backward (layer norm's second derivative):
        d/dg = rstd * P u
        d/dy = -(rstd^2 / n) * (x <u, P g> + <g, x> P u + <u, x> P g)   (<,> per row)
    with u the upstream gradient; third order goes through `composed`."""

    @staticmethod
    def forward(ctx, grad, y, eps, stats=None):
        width = y.shape[-1]
        rows = _rows(y, width)
        mean, rstd = stats if stats is not None else _standardize(rows, eps)
        ctx.save_for_backward(grad, rows, mean, rstd)
        ctx.eps, ctx.shape = eps, y.shape
        return kernels.layer_norm_backward(_rows(grad, width), rows, mean, rstd,
                                           _unit_affine(rows)[0])[0].reshape(y.shape)

    @staticmethod
    def backward(ctx, up):
        grad, rows, mean, rstd = ctx.saved_tensors
        normed = _normalized(rows, mean, rstd)
        width = normed.shape[1]
        grad, up = _rows(grad, width), _rows(up, width)
        r = rstd[:, None]
        # per-row sums first, then each output is one combination of full-size arrays
        mean_u, u_x = _row_mean(up), _row_dot(up, normed) / width
        grad_grad = up * r  # r P u = r u - r mean_u - x (r u_x), in place
        grad_grad -= normed * (r * u_x)
        grad_grad -= r * mean_u
        grad_y = None
        if ctx.needs_input_grad[1]:
            # the formula above, with P g = g - mean_g - x * g_x and <u, P g> expanded:
            # -(rstd^2 / n) * (x <u, P g> + n g_x P u + n u_x P g)
            mean_g, g_x = _row_mean(grad), _row_dot(grad, normed) / width
            u_pg = _row_dot(up, grad) / width - mean_u * mean_g - u_x * g_x
            scale = -r * r
            grad_y = normed * ((u_pg - 2 * u_x * g_x) * scale)
            grad_y += up * (g_x * scale)
            grad_y += grad * (u_x * scale)
            grad_y -= (g_x * mean_u + u_x * mean_g) * scale
            grad_y = grad_y.reshape(ctx.shape)
        return grad_grad.reshape(ctx.shape), grad_y

    @staticmethod
    def composed(ctx, grad, y):
        centered = y - y.mean(-1, keepdim=True)
        rstd = ((centered * centered).mean(-1, keepdim=True) + ctx.eps) ** -0.5
        normed = centered * rstd
        return rstd * (grad - grad.mean(-1, keepdim=True)
                       - normed * (grad * normed).mean(-1, keepdim=True))


def _standardize(rows, eps):
    """(mean, rstd) of each row, from the layer norm kernel."""
    return kernels.layer_norm(rows, *_unit_affine(rows), eps)[2:]


def _normalized(rows, mean, rstd):
    """(rows - mean) * rstd, per row: the layer norm's normalised rows, from what it keeps."""
    normed = rows - mean[:, None]
    normed *= rstd[:, None]
    return normed


def _row_dot(a, b):
    return np.einsum("ij,ij->i", a, b)[:, None]


def _row_mean(rows):
    # a BLAS product: numpy's mean over short rows is several times slower
    return (rows @ np.full(rows.shape[1], 1 / rows.shape[1], rows.dtype))[:, None]


def _unit_affine(rows):
    width = rows.shape[-1]
    return np.ones(width, rows.dtype), np.zeros(width, rows.dtype)


def _layer_norm_graph_grads(grad, y, weight, eps, stats):
    """(grad of y, of weight, of bias) of layer_norm(y) * weight + bias over y's last dim, on
    Tensors: the create_graph path of the layer norm Functions, as five nodes. stats: the
    forward's (mean, rstd) of y's rows, so no node computes them again."""
    normed = Normalize.apply(y, eps=eps, stats=stats)
    leading = tuple(range(y.ndim - 1))  # none for a 1-D y (and sum(()) would sum every dim)
    over_rows = (lambda t: t.sum(leading)) if leading else (lambda t: t)
    grad_w = over_rows(grad * normed) if weight is not None else None
    scaled = grad if weight is None else grad * weight
    return NormalizeBackward.apply(scaled, y, eps=eps, stats=stats), grad_w, over_rows(grad)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the trailing dims `normalized_shape` to zero mean and unit variance (biased
    variance, as torch), then scale by weight and shift by bias."""
    normalized_shape = _check_norm_args("layer_norm", input, normalized_shape, weight=weight,
                                        bias=bias)
    affine = [t for t in (weight, bias) if t is not None]
    return FusedLayerNorm.apply(input, *affine, normalized_shape=normalized_shape,
                                eps=float(eps), has_weight=weight is not None)


def rms_norm(input, normalized_shape, weight=None, eps=None):
    """x / sqrt(mean(x^2) + eps) * weight over the trailing dims `normalized_shape`; eps
    defaults to the dtype's machine epsilon, as torch. Composed: a few nodes, no kernel yet."""
    normalized_shape = _check_norm_args("rms_norm", input, normalized_shape, weight=weight)
    n = len(normalized_shape)
    if eps is None:
        eps = float(np.finfo(input.dtype).eps)
    dims = tuple(range(input.ndim - n, input.ndim))
    out = input / ((input * input).mean(dims, keepdim=True) + eps).sqrt()
    return out if weight is None else out * weight


def _check_norm_args(op, input, normalized_shape, **affine):
    """normalized_shape as a tuple, after checking that it is the input's trailing dims, that each
    affine tensor has that shape and that all are float of one dtype."""
    if isinstance(normalized_shape, numbers.Integral):
        normalized_shape = (normalized_shape,)
    normalized_shape = tuple(int(n) for n in normalized_shape)
    n = len(normalized_shape)
    if n == 0 or input.ndim < n or input.shape[input.ndim - n:] != normalized_shape:
        raise ValueError(f"{op}: normalized_shape {normalized_shape} must be the trailing "
                         f"dims of the input's shape {input.shape}")
    for name, t in affine.items():
        if t is not None and t.shape != normalized_shape:
            raise ValueError(f"{op}: {name} of shape {t.shape} should have shape "
                             f"{normalized_shape}")
    _check_float(op, input=input, **affine)
    return normalized_shape
