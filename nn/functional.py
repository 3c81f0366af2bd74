"""nn.functional: the stateless ops layers are made of, with torch.nn.functional's names.

The ops a Transformer step spends its time in (linear, layer_norm, embedding, dropout,
cross_entropy, scaled_dot_product_attention, gelu) are each ONE recorded node: a Function with
a hand-written backward beside its forward. Composed from primitives, layer_norm alone would be
about a dozen nodes, each allocating a full-size temporary in forward and again in backward; in
eager numpy, with no compiler to fuse them, that is where the time would go. The losses live
in losses.py and are re-exported here.
"""
import math
import numbers

import numpy as np

from tinygrad_tf import Tensor, kernels, where
from tinygrad_tf.autograd import ArrayFunction
from tinygrad_tf.random import generator
from tinygrad_tf.xp import numpy_ops

from .attention import composed_attention
from .losses import FusedCrossEntropy, _softplus_neg_composed, _stable_sigmoid  # noqa: F401
from .losses import (binary_cross_entropy, binary_cross_entropy_with_logits,  # noqa: F401
                     cross_entropy, kl_div, l1_loss, mse_loss, nll_loss, smooth_l1_loss)


def _rows(array, width):
    """`array` as a C-contiguous (rows, width) matrix (a view when it already is one)."""
    return np.ascontiguousarray(array).reshape(-1, width)


def _check_float(op, **tensors):
    dtypes = {name: t.dtype for name, t in tensors.items() if t is not None}
    for name, dtype in dtypes.items():
        if dtype.kind != "f":
            raise TypeError(f"{op}: {name} must be a float tensor, not {dtype}")
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{name} {dtype}" for name, dtype in dtypes.items())
        raise TypeError(f"{op}: dtypes differ ({listed}); convert with .to(dtype) or "
                        "model.double()/.float()")


# ---------------------------------------------------------------------------- linear

class FusedLinear(ArrayFunction):
    """y = x @ W^T + b, as one BLAS call on the (rows, in_features) view of x."""

    @staticmethod
    def forward(ctx, x, weight, *bias):
        rows = _rows(x, x.shape[-1])
        # the contiguous rows (backward needs no new copy), and x for the create_graph path
        ctx.save_for_backward(rows, weight, x)
        out = kernels.matmul(rows, weight.T)
        if bias:
            out += bias[0]
        return out.reshape(x.shape[:-1] + (weight.shape[0],))

    @staticmethod
    def backward(ctx, grad):
        rows, weight, x = ctx.saved_tensors
        xp = ctx.xp
        if xp is not numpy_ops:  # under create_graph `rows` would be a constant: x itself
            rows = x
        needs = ctx.needs_input_grad
        # both products take (..., features) operands: under create_graph, three nodes in all
        grad_x = xp.matmul(grad, weight) if needs[0] else None  # one 2-D GEMM (kernels.matmul)
        grad_w = xp.weight_grad(grad, rows) if needs[1] else None
        if len(needs) == 2:
            return grad_x, grad_w
        lead = tuple(range(grad.ndim - 1))
        return grad_x, grad_w, ((xp.sum(grad, lead) if lead else grad) if needs[2] else None)


def linear(input, weight, bias=None):
    """input @ weight.T + bias, for input of shape (..., in_features)."""
    _check_float("linear", input=input, weight=weight, bias=bias)
    if input.ndim == 0 or input.shape[-1] != weight.shape[-1]:
        raise ValueError(f"linear: input of shape {input.shape} does not fit weight of shape "
                         f"{weight.shape}: the last dim must be in_features={weight.shape[-1]}")
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"linear: bias of shape {bias.shape} should be ({weight.shape[0]},)")
    if bias is None:
        return FusedLinear.apply(input, weight)
    return FusedLinear.apply(input, weight, bias)


# ---------------------------------------------------------------------------- activations

def relu(input):
    """max(x, 0)."""
    return input.relu()


class Gelu(ArrayFunction):
    """x * Phi(x), Phi the standard normal CDF; 'tanh' uses the tanh approximation of Phi."""

    @staticmethod
    def forward(ctx, x, approximate):
        if approximate == "tanh":
            inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
            cdf = 0.5 * (1 + np.tanh(inner))
        else:
            cdf = 0.5 * (1 + kernels.erf(x * x.dtype.type(1 / math.sqrt(2))))
        ctx.save_for_backward(x, cdf)
        ctx.approximate = approximate
        return x * cdf

    @staticmethod
    def backward(ctx, grad):
        x, cdf = ctx.saved_tensors
        xp = ctx.xp  # under create_graph the saved cdf is a constant: recomputed from x
        return grad * gelu_slope(xp, x, ctx.approximate, cdf if xp is numpy_ops else None)


def gelu_slope(xp, x, approximate, cdf=None):
    """d gelu(x) / dx against the namespace xp; cdf is Phi(x) (or its tanh form) if known."""
    if approximate == "tanh":
        if cdf is None:
            cdf = (xp.tanh((x + x * x * x * 0.044715) * math.sqrt(2 / math.pi)) + 1) * 0.5
        tanh = cdf * 2 - 1
        d_inner = (x * x * (3 * 0.044715) + 1) * math.sqrt(2 / math.pi)
        return cdf + x * 0.5 * (1 - tanh * tanh) * d_inner
    if cdf is None:
        cdf = (xp.erf(x * (1 / math.sqrt(2))) + 1) * 0.5
    return cdf + x * xp.exp(x * x * -0.5) * (1 / math.sqrt(2 * math.pi))


def gelu(input, approximate="none"):
    """x * Phi(x) (Gaussian error linear unit); approximate='tanh' for the tanh form."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', not {approximate!r}")
    _check_float("gelu", input=input)
    return Gelu.apply(input, approximate=approximate)


def softmax(input, dim):
    """exp(x) / sum(exp(x)) along dim."""
    return input.softmax(dim)


def log_softmax(input, dim):
    """x - logsumexp(x) along dim."""
    return input.log_softmax(dim)


class Silu(ArrayFunction):
    """x * sigmoid(x), the sigmoid in its stable two-sided form."""

    @staticmethod
    def forward(ctx, x):
        sig = _stable_sigmoid(x)
        ctx.save_for_backward(x, sig)
        return x * sig

    @staticmethod
    def backward(ctx, grad):
        x, sig = ctx.saved_tensors
        return grad * (sig * (1 + x * (1 - sig)))

    @staticmethod
    def composed(ctx, x):
        return x * x.sigmoid()


def silu(input):
    """x * sigmoid(x) (also called swish)."""
    _check_float("silu", input=input)
    return Silu.apply(input)


class Softplus(ArrayFunction):
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (as torch)."""

    @staticmethod
    def forward(ctx, x, beta, threshold):
        scaled = x * beta
        linear = scaled > threshold
        soft = (np.log1p(np.exp(-np.abs(scaled))) + np.maximum(scaled, 0)) / beta
        ctx.save_for_backward(scaled, linear)
        ctx.beta = beta
        return np.where(linear, x, soft).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        scaled, linear = ctx.saved_tensors
        return grad * np.where(linear, 1, _stable_sigmoid(scaled)).astype(grad.dtype, copy=False)

    @staticmethod
    def composed(ctx, x):
        _, linear = ctx.saved_tensors
        soft = _softplus_neg_composed(x * -ctx.beta) / float(ctx.beta)
        return where(linear, x, soft)


def softplus(input, beta=1.0, threshold=20.0):
    """log(1 + exp(beta * x)) / beta, reverting to x where beta * x > threshold."""
    _check_float("softplus", input=input)
    if not isinstance(beta, numbers.Real) or beta == 0:
        raise ValueError(f"softplus: beta must be a non-zero number, got {beta!r}")
    return Softplus.apply(input, beta=input.dtype.type(beta), threshold=float(threshold))


def leaky_relu(input, negative_slope=0.01):
    """x where x > 0, else negative_slope * x."""
    _check_float("leaky_relu", input=input)
    return where(input > 0, input, input * negative_slope)


# ---------------------------------------------------------------------------- shape helpers

def one_hot(tensor, num_classes=-1):
    """Integer class ids (...) -> an int64 tensor (..., num_classes) with a 1 at each id;
    num_classes=-1 takes max(id) + 1, as torch."""
    ids = _index_array(tensor, "one_hot")
    if num_classes == -1:
        if not ids.size:  # as torch: no ids, no maximum to count classes from
            raise ValueError("one_hot: cannot infer num_classes from an empty tensor; pass it")
        num_classes = int(ids.max()) + 1
    if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
        bad = ids[(ids < 0) | (ids >= num_classes)].flat[0]
        raise IndexError(f"one_hot: class id {int(bad)} is outside [0, {num_classes})")
    out = np.zeros(ids.shape + (num_classes,), dtype=np.int64)
    np.put_along_axis(out, ids[..., None].astype(np.intp), 1, axis=-1)
    return Tensor(out)


class Pad(ArrayFunction):
    """Constant padding; backward slices the padded border off."""

    @staticmethod
    def forward(ctx, x, widths, value):
        ctx.inner = tuple(slice(before, before + n) for (before, _), n in zip(widths, x.shape))
        return np.pad(x, widths, mode="constant", constant_values=value)

    @staticmethod
    def backward(ctx, grad):
        return ctx.xp.getitem(grad, ctx.inner)


def pad(input, pad, mode="constant", value=None):
    """Pad the last len(pad) // 2 dims; pad = (last_left, last_right, prev_left, prev_right, ...)
    as torch. Only mode='constant' with non-negative widths (torch also crops on negative)."""
    if mode != "constant":
        raise NotImplementedError(f"pad: mode {mode!r} is not implemented; only 'constant'")
    pad = tuple(pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(f"pad: pad {pad} must hold a (left, right) pair for each of at most "
                         f"{input.ndim} trailing dims of the input of shape {input.shape}")
    if any(not isinstance(p, numbers.Integral) or p < 0 for p in pad):
        raise ValueError(f"pad: widths must be non-negative integers, got {pad}")
    widths = [(0, 0)] * input.ndim
    for i in range(len(pad) // 2):
        widths[input.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    return Pad.apply(input, widths=tuple(widths), value=0 if value is None else value)


class VectorNorm(ArrayFunction):
    """(sum |x|^p)^(1/p) along dim (kept); its gradient is 0 where the norm is 0, as torch's
    (composed from sqrt it would be 0 * inf = nan there)."""

    @staticmethod
    def forward(ctx, x, p, dim):
        norm = (np.abs(x) ** p).sum(axis=dim, keepdims=True) ** (1 / p)
        ctx.save_for_backward(x, norm)
        ctx.p, ctx.dim = p, dim
        return norm

    @staticmethod
    def backward(ctx, grad):
        x, norm = ctx.saved_tensors
        safe = np.where(norm == 0, 1, norm)
        scale = np.where(norm == 0, 0, grad / safe ** (ctx.p - 1))
        return scale * np.sign(x) * np.abs(x) ** (ctx.p - 1)

    @staticmethod
    def composed(ctx, x):
        _, norm = ctx.saved_tensors
        zero = norm == 0  # the gradient is 0 there, as in backward
        total = (x.abs() ** ctx.p).sum(ctx.dim, keepdim=True)
        return where(zero, 0.0, where(zero, 1.0, total) ** (1 / ctx.p))


def normalize(input, p=2.0, dim=1, eps=1e-12):
    """x / max(||x||_p, eps) along dim."""
    _check_float("normalize", input=input)
    if not p >= 1:
        raise ValueError(f"normalize: p must be >= 1, got {p!r}")
    dim = dim + input.ndim if dim < 0 else dim
    if not 0 <= dim < input.ndim:
        raise ValueError(f"normalize: dim {dim} is out of range for shape {input.shape}")
    norm = VectorNorm.apply(input, p=float(p), dim=dim)
    return input / norm.clip(min=eps)


def rms_norm(input, normalized_shape, weight=None, eps=None):
    """x / sqrt(mean(x^2) + eps) * weight over the trailing dims `normalized_shape`; eps
    defaults to the dtype's machine epsilon, as torch. Composed: a few nodes, no kernel yet."""
    if isinstance(normalized_shape, numbers.Integral):
        normalized_shape = (normalized_shape,)
    normalized_shape = tuple(int(n) for n in normalized_shape)
    n = len(normalized_shape)
    if n == 0 or input.ndim < n or input.shape[input.ndim - n:] != normalized_shape:
        raise ValueError(f"rms_norm: normalized_shape {normalized_shape} must be the trailing "
                         f"dims of the input's shape {input.shape}")
    if weight is not None and weight.shape != normalized_shape:
        raise ValueError(f"rms_norm: weight of shape {weight.shape} should have shape "
                         f"{normalized_shape}")
    _check_float("rms_norm", input=input, weight=weight)
    if eps is None:
        eps = float(np.finfo(input.dtype).eps)
    dims = tuple(range(input.ndim - n, input.ndim))
    out = input / ((input * input).mean(dims, keepdim=True) + eps).sqrt()
    return out if weight is None else out * weight


# ---------------------------------------------------------------------------- dropout

def _keep_mask(shape, p):
    """A boolean mask, True with probability 1 - p, drawn from the seeded generator.

    Raw 32-bit draws compared with p * 2^32 measured about 40% cheaper here than
    `random(dtype=float32)` (which spends time turning bits into floats), and they resolve p to
    2^-32 rather than float32's 2^-24.
    """
    size = math.prod(shape)
    bits = generator().bit_generator.random_raw((size + 1) // 2).view(np.uint32)[:size]
    threshold = np.uint32(min(round(p * 2.0 ** 32), 2 ** 32 - 1))
    return (bits >= threshold).reshape(shape)


class FusedDropout(ArrayFunction):
    """x * mask / (1 - p), mask ~ Bernoulli(1 - p), drawn once and reused by backward."""

    @staticmethod
    def forward(ctx, x, p):
        mask = _keep_mask(x.shape, p)
        ctx.save_for_backward(mask)
        ctx.scale = x.dtype.type(1 / (1 - p))
        out = x * mask
        out *= ctx.scale
        return out

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        out = grad * mask
        out *= ctx.scale
        return out

    @staticmethod
    def composed(ctx, x):
        (mask,) = ctx.saved_tensors
        return x * mask * ctx.scale


def dropout(input, p=0.5, training=True):
    """Zero each element with probability p and scale the rest by 1/(1-p); identity when
    training is False or p == 0."""
    if not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise ValueError(f"dropout: p must be a probability in [0, 1], got {p!r}")
    if not training or p == 0:
        return input
    if p == 1:
        return input * 0.0
    _check_float("dropout", input=input)
    return FusedDropout.apply(input, p=float(p))


# ---------------------------------------------------------------------------- layer norm

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
        out, normed, rstd = kernels.layer_norm(rows, weight, bias, eps)
        # x and the weight as given: the create_graph path differentiates through them
        ctx.save_for_backward(normed, rstd, weight, x, affine[0] if has_weight else None)
        ctx.input_shape, ctx.normalized_shape = x.shape, normalized_shape
        ctx.has_weight, ctx.eps = has_weight, eps
        return out.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        normed, rstd, weight, x, given_weight = ctx.saved_tensors
        width = normed.shape[1]
        if ctx.xp is numpy_ops:
            grad_rows = _rows(grad, width)
            grad_x, grad_w, grad_b, _ = kernels.layer_norm_backward(grad_rows, normed, rstd,
                                                                    weight)
            grad_x = grad_x.reshape(ctx.input_shape)
        elif len(ctx.normalized_shape) == 1:  # create_graph: Tensors in, a graph out
            grad_x, grad_w, grad_b = _layer_norm_graph_grads(
                grad, x, given_weight if ctx.has_weight else None, ctx.eps, (normed, rstd))
        else:  # over several dims: the same on the (rows, width) view
            grad_x, grad_w, grad_b = _layer_norm_graph_grads(
                grad.reshape(-1, width), x.reshape(-1, width),
                given_weight.reshape(width) if ctx.has_weight else None, ctx.eps,
                (normed, rstd))
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
        # stats: (normed rows, rstd) of y when the caller has them (a layer norm's forward)
        normed, rstd = stats if stats is not None else _standardize(y, eps)
        normed = normed.reshape(y.shape)
        ctx.save_for_backward(y, normed, rstd)
        ctx.eps = eps
        return normed

    @staticmethod
    def backward(ctx, grad):
        y, normed, rstd = ctx.saved_tensors
        if ctx.xp is not numpy_ops:
            return NormalizeBackward.apply(grad, y, eps=ctx.eps)
        width = y.shape[-1]
        return kernels.layer_norm_backward(_rows(grad, width), normed.reshape(-1, width), rstd,
                                           _unit_affine(normed)[0])[0].reshape(y.shape)


class NormalizeBackward(ArrayFunction):
    """Normalize's input gradient as a node: rstd * P g, P g = g - mean(g) - x * mean(g x) over
    the last dim, x the normalised y. Its own backward (layer norm's second derivative):
        d/dg = rstd * P u
        d/dy = -(rstd^2 / n) * (x <u, P g> + <g, x> P u + <u, x> P g)   (<,> per row)
    with u the upstream gradient; third order goes through `composed`."""

    @staticmethod
    def forward(ctx, grad, y, eps, stats=None):
        width = y.shape[-1]
        normed, rstd = stats if stats is not None else _standardize(y, eps)
        normed = normed.reshape(-1, width)
        ctx.save_for_backward(grad, normed, rstd)
        ctx.eps, ctx.shape = eps, y.shape
        return kernels.layer_norm_backward(_rows(grad, width), normed, rstd,
                                           _unit_affine(normed)[0])[0].reshape(y.shape)

    @staticmethod
    def backward(ctx, up):
        grad, normed, rstd = ctx.saved_tensors
        width = normed.shape[1]
        grad, up = _rows(grad, width), _rows(up, width)
        r = rstd[:, None]
        # per-row sums first, then each output is one combination of full-size arrays
        mean_u, u_x = up.mean(1, keepdims=True), _row_dot(up, normed) / width
        pu = up - mean_u - normed * u_x  # P u
        grad_y = None
        if ctx.needs_input_grad[1]:
            # the formula above, with P g = g - mean_g - x * g_x and <u, P g> expanded:
            # -(rstd^2 / n) * (x <u, P g> + n g_x P u + n u_x P g)
            mean_g, g_x = grad.mean(1, keepdims=True), _row_dot(grad, normed) / width
            u_pg = _row_dot(up, grad) / width - mean_u * mean_g - u_x * g_x
            scale = -r * r
            grad_y = (normed * ((u_pg - 2 * u_x * g_x) * scale) + up * (g_x * scale)
                      + grad * (u_x * scale) - (g_x * mean_u + u_x * mean_g) * scale)
            grad_y = grad_y.reshape(ctx.shape)
        return (r * pu).reshape(ctx.shape), grad_y

    @staticmethod
    def composed(ctx, grad, y):
        centered = y - y.mean(-1, keepdim=True)
        rstd = ((centered * centered).mean(-1, keepdim=True) + ctx.eps) ** -0.5
        normed = centered * rstd
        return rstd * (grad - grad.mean(-1, keepdim=True)
                       - normed * (grad * normed).mean(-1, keepdim=True))


def _standardize(y, eps):
    rows = _rows(y, y.shape[-1])
    _, normed, rstd = kernels.layer_norm(rows, *_unit_affine(rows), eps)
    return normed, rstd


def _row_dot(a, b):
    return np.einsum("ij,ij->i", a, b)[:, None]


def _unit_affine(rows):
    width = rows.shape[-1]
    return np.ones(width, rows.dtype), np.zeros(width, rows.dtype)


def _layer_norm_graph_grads(grad, y, weight, eps, stats):
    """(grad of y, of weight, of bias) of layer_norm(y) * weight + bias over y's last dim, on
    Tensors: the create_graph path of the layer norm Functions, as five nodes. stats: the
    forward's (normed rows, rstd) of y, so no node computes them again."""
    normed = Normalize.apply(y, eps=eps, stats=stats)
    leading = tuple(range(y.ndim - 1))
    grad_w = (grad * normed).sum(leading) if weight is not None else None
    scaled = grad if weight is None else grad * weight
    return NormalizeBackward.apply(scaled, y, eps=eps, stats=stats), grad_w, grad.sum(leading)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the trailing dims `normalized_shape` to zero mean and unit variance (biased
    variance, as torch), then scale by weight and shift by bias."""
    if isinstance(normalized_shape, numbers.Integral):
        normalized_shape = (normalized_shape,)
    normalized_shape = tuple(int(n) for n in normalized_shape)
    n = len(normalized_shape)
    if n == 0 or input.ndim < n or input.shape[input.ndim - n:] != normalized_shape:
        raise ValueError(f"layer_norm: normalized_shape {normalized_shape} must be the trailing "
                         f"dims of the input's shape {input.shape}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.shape != normalized_shape:
            raise ValueError(f"layer_norm: {name} of shape {t.shape} should have shape "
                             f"{normalized_shape}")
    _check_float("layer_norm", input=input, weight=weight, bias=bias)
    affine = [t for t in (weight, bias) if t is not None]
    return FusedLayerNorm.apply(input, *affine, normalized_shape=normalized_shape,
                                eps=float(eps), has_weight=weight is not None)


# ---------------------------------------------------------------------------- embedding

class Gather(ArrayFunction):
    """weight[ids]: forward is a row gather; backward scatters-adds rows of the gradient."""

    @staticmethod
    def forward(ctx, weight, ids, padding_idx):
        ctx.save_for_backward(ids)  # the caller's id tensor's memory: version-checked
        ctx.padding_idx, ctx.num_embeddings = padding_idx, weight.shape[0]
        return np.take(weight, ids, axis=0)

    @staticmethod
    def backward(ctx, grad):
        (ids,) = ctx.saved_tensors
        width = grad.shape[-1]
        flat_ids = ids.reshape(-1)
        grad_weight = kernels.scatter_add_rows(flat_ids, _rows(grad, width),
                                               ctx.num_embeddings)  # repeats add up
        if ctx.padding_idx is not None:
            grad_weight[ctx.padding_idx] = 0  # the padding row is never trained
        return grad_weight

    @staticmethod
    def composed(ctx, weight):
        (ids,) = ctx.saved_tensors
        return _pick_rows(weight, ids, ctx.padding_idx)


def _pick_rows(weight, ids, padding_idx):
    """weight[ids] from differentiable ops; rows at padding_idx pass no gradient."""
    rows = weight[ids]
    if padding_idx is None:
        return rows
    return where((ids == padding_idx)[..., None], rows.detach(), rows)


def _index_array(ids, op):
    array = ids.array if isinstance(ids, Tensor) else np.asarray(ids)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{op}: indices must be an integer tensor, not {array.dtype}")
    return array


def _check_range(op, what, values, low, high, allowed=None):
    bad = (values < low) | (values >= high)
    if allowed is not None:
        bad &= values != allowed
    if bad.any():
        value = int(values[bad].flat[0])
        extra = f" (or ignore_index={allowed})" if allowed is not None else ""
        raise IndexError(f"{op}: {what} {value} is outside the valid range [{low}, {high}){extra}")


def embedding(input, weight, padding_idx=None):
    """Rows of `weight` (num_embeddings, dim) picked by the integer ids in `input`; the output
    has shape input.shape + (dim,). Rows at padding_idx get no gradient."""
    ids = _index_array(input, "embedding")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (num_embeddings, dim), got {weight.shape}")
    num = weight.shape[0]
    _check_range("embedding", "token id", ids, 0, num)
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise ValueError(f"embedding: padding_idx {padding_idx} is outside [-{num}, {num})")
        padding_idx %= num
    return Gather.apply(weight, ids=ids, padding_idx=padding_idx)


# ---------------------------------------------------------------------------- attention

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
        ctx.save_for_backward(q, k, v, weights, keep, additive, fill)
        ctx.scale, ctx.drop_scale = scale, drop_scale
        return out.reshape(batch + out.shape[1:2] + out.shape[3:])

    @staticmethod
    def backward(ctx, grad):
        q, k, v, weights, keep, additive, fill = ctx.saved_tensors
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
        keep, _, fill = ctx.saved_tensors[4:]
        out, _ = composed_attention(q, k, v, ctx.scale, fill, additive[0] if additive else None,
                                    keep, ctx.drop_scale)
        return out


def _attention_blocks(x, batch):
    """x (..., T, E) broadcast to batch dims `batch`, as the kernels' (B', T, 1, E) blocks (a
    view when x is contiguous and needs no broadcasting)."""
    x = np.broadcast_to(x, batch + x.shape[-2:]).reshape((-1,) + x.shape[-2:])
    return x[:, :, None, :]


def _mask_blocks(mask, scores):
    """A mask broadcast to the scores' shape (..., L, S) as the kernels' (B', 1, L, S)."""
    return np.broadcast_to(mask, scores).reshape((-1, 1) + scores[-2:])


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


def tanh(input):
    """torch.nn.functional.tanh: the same as input.tanh()."""
    return input.tanh()


def sigmoid(input):
    """torch.nn.functional.sigmoid: the same as input.sigmoid()."""
    return input.sigmoid()
