"""nn.functional: the stateless ops layers are made of, with torch.nn.functional's names.

The ops a Transformer step spends its time in (linear, layer_norm, embedding, dropout,
cross_entropy, scaled_dot_product_attention, gelu) are each ONE recorded node: a Function with
a hand-written backward beside its forward. Composed from primitives, layer_norm alone would be
about a dozen nodes, each allocating a full-size temporary in forward and again in backward; in
eager numpy, with no compiler to fuse them, that is where the time would go. The losses live
in losses.py, layer norm and rms_norm in normalization.py and attention in attention.py; all are re-exported
here.
"""
import math
import numbers

import numpy as np

from tinygrad_tf import Tensor, kernels, where
from tinygrad_tf.autograd import ArrayFunction
from tinygrad_tf.xp import numpy_ops

from ._common import _check_float, _check_range, _index_array, _keep_mask, _rows  # noqa: F401
from .attention import FusedAttention, scaled_dot_product_attention  # noqa: F401
from .losses import FusedCrossEntropy, _softplus_neg_composed, _stable_sigmoid  # noqa: F401
from .losses import (binary_cross_entropy, binary_cross_entropy_with_logits,  # noqa: F401
                     cross_entropy, huber_loss, kl_div, l1_loss, mse_loss, nll_loss,
                     smooth_l1_loss)
from .normalization import (FusedLayerNorm, Normalize, NormalizeBackward,  # noqa: F401
                            layer_norm, rms_norm)


# ---------------------------------------------------------------------------- linear

class FusedLinear(ArrayFunction):
    """y = x @ W^T + b, as one BLAS call on the (rows, in_features) view of x."""

    @staticmethod
    def forward(ctx, x, weight, *bias):
        rows = _rows(x, x.shape[-1])
        # As torch: x only for the weight's gradient, the weight only for x's (the bias's needs
        # neither). The contiguous rows (backward needs no new copy), x for the create_graph path.
        need_x, need_w = ctx.needs_input_grad[:2]
        ctx.save_for_backward(rows if need_w else None, weight if need_x else None,
                              x if need_w else None)
        out = kernels.matmul(rows, weight.T)
        if bias:  # in place into the fresh product, one vectorized pass
            out = kernels.bias_add(out, bias[0])
        return out.reshape(x.shape[:-1] + (weight.shape[0],))

    @staticmethod
    def backward(ctx, grad):
        rows, weight, x = ctx.saved_tensors
        xp = ctx.xp
        if xp is not numpy_ops:  # under create_graph `rows` would be a constant: x itself
            rows = x
        needs = ctx.needs_input_grad
        grad_b = None
        if len(needs) == 3 and needs[2]:  # first, while grad is fresh in the cache
            lead = tuple(range(grad.ndim - 1))
            if not lead:
                grad_b = grad
            elif xp is numpy_ops:  # the column sum as one BLAS GEMV: 2-3x numpy's sum here
                flat = grad.reshape(-1, grad.shape[-1])
                grad_b = np.ones(flat.shape[0], flat.dtype) @ flat
            else:
                grad_b = xp.sum(grad, lead)
        # both products take (..., features) operands: under create_graph, three nodes in all
        grad_x = xp.matmul(grad, weight) if needs[0] else None  # one 2-D GEMM (kernels.matmul)
        grad_w = xp.weight_grad(grad, rows) if needs[1] else None
        if len(needs) == 2:
            return grad_x, grad_w
        return grad_x, grad_w, grad_b


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


def softmax(input, dim, _stacklevel=3, dtype=None):
    """exp(x) / sum(exp(x)) along dim (in `dtype` if given: the input is converted first)."""
    return input.softmax(dim, dtype=dtype)


def log_softmax(input, dim, _stacklevel=3, dtype=None):
    """x - logsumexp(x) along dim (in `dtype` if given: the input is converted first)."""
    return input.log_softmax(dim, dtype=dtype)


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
        ctx.save_for_backward(scaled, linear, x)  # x only as torch saves it (the in-place check)
        ctx.beta = beta
        return np.where(linear, x, soft).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        scaled, linear, _ = ctx.saved_tensors
        return grad * np.where(linear, 1, _stable_sigmoid(scaled)).astype(grad.dtype, copy=False)

    @staticmethod
    def composed(ctx, x):
        linear = ctx.saved_tensors[1]
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
    as torch; a negative width crops that side, as torch's. Only mode='constant'."""
    if mode != "constant":
        raise NotImplementedError(f"pad: mode {mode!r} is not implemented; only 'constant'")
    pad = tuple(pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(f"pad: pad {pad} must hold a (left, right) pair for each of at most "
                         f"{input.ndim} trailing dims of the input of shape {input.shape}")
    if any(not isinstance(p, numbers.Integral) for p in pad):
        raise ValueError(f"pad: widths must be integers, got {pad}")
    widths = [(0, 0)] * input.ndim
    for i in range(len(pad) // 2):
        dim = input.ndim - 1 - i
        before, after = int(pad[2 * i]), int(pad[2 * i + 1])
        if before < 0 or after < 0:  # crop first (a narrow: its gradient is a slice's)
            start, stop = max(-before, 0), input.shape[dim] - max(-after, 0)
            if stop < start:
                raise ValueError(f"pad: widths {pad} crop dim {dim} of size {input.shape[dim]} "
                                 "below zero")
            input = input.narrow(dim, start, stop - start)
        widths[dim] = (max(before, 0), max(after, 0))
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


# ---------------------------------------------------------------------------- dropout

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


def _renorm_rows(weight, rows, max_norm, norm_type):
    """Scale weight's `rows` whose norm exceeds max_norm down to it, in place (torch's
    embedding_renorm_: scale max_norm / (norm + 1e-7))."""
    from tinygrad_tf import no_grad
    picked = weight.array[rows]
    norms = np.linalg.norm(picked, ord=norm_type, axis=1)
    over = norms > max_norm
    if over.any():
        scale = (max_norm / (norms[over] + 1e-7)).astype(weight.dtype)
        with no_grad():
            weight[Tensor(rows[over])] = Tensor(picked[over] * scale[:, None])


def _pick_rows(weight, ids, padding_idx):
    """weight[ids] from differentiable ops; rows at padding_idx pass no gradient."""
    rows = weight[ids]
    if padding_idx is None:
        return rows
    return where((ids == padding_idx)[..., None], rows.detach(), rows)


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
              scale_grad_by_freq=False, sparse=False):
    """Rows of `weight` (num_embeddings, dim) picked by the integer ids in `input`; the output
    has shape input.shape + (dim,). Rows at padding_idx get no gradient. With max_norm, the
    rows looked up whose norm_type-norm exceeds it are first rescaled to it, in weight itself
    (in place, outside the graph), as torch's."""
    if scale_grad_by_freq or sparse:
        raise NotImplementedError("embedding: scale_grad_by_freq and sparse are not supported")
    ids = _index_array(input, "embedding")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (num_embeddings, dim), got {weight.shape}")
    num = weight.shape[0]
    _check_range("embedding", "token id", ids, 0, num)
    if max_norm is not None:
        _renorm_rows(weight, np.unique(ids), max_norm, norm_type)
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise ValueError(f"embedding: padding_idx {padding_idx} is outside [-{num}, {num})")
        padding_idx %= num
    return Gather.apply(weight, ids=ids, padding_idx=padding_idx)


def tanh(input):
    """torch.nn.functional.tanh: the same as input.tanh()."""
    return input.tanh()


def sigmoid(input):
    """torch.nn.functional.sigmoid: the same as input.sigmoid()."""
    return input.sigmoid()


# More activations and similarities, composed of Tensor ops: activations.py.
from .activations import (celu, cosine_similarity, elu, glu, hardsigmoid, hardswish,  # noqa: E402
                          hardtanh, logsigmoid, mish, pairwise_distance, prelu, relu6, selu,
                          softmin, softsign, tanhshrink)
from .batchnorm import batch_norm  # noqa: E402,F401
