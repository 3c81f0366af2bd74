"""The losses of nn.functional, with torch.nn.functional's signatures, layouts and weighting.

cross_entropy and nll_loss take torch's layout: input (N, C) or (N, C, d1, ...) (or (C,) with
a 0-d target), the class dim at 1. cross_entropy is one recorded node (log-softmax, the pick,
class weights, label smoothing, ignore_index and the reduction); the elementwise losses are one
node each for their elementwise part, so the numerically delicate forms (log-sigmoid, clamped
logs) are written once, beside their derivatives.
"""
import numbers

import numpy as np

from tinygrad_tf import Tensor, kernels, where
from tinygrad_tf.autograd import ArrayFunction
from tinygrad_tf.xp import numpy_ops


_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(op, reduction, allowed=_REDUCTIONS):
    if reduction not in allowed:
        listed = ", ".join(repr(r) for r in allowed)
        raise ValueError(f"{op}: reduction must be one of {listed}, not {reduction!r}")


def _reduce(loss, reduction):
    return loss if reduction == "none" else loss.sum() if reduction == "sum" else loss.mean()


def _constant(op, name, value, dtype):
    """A class weight / pos_weight as a plain array (torch gives them no gradient here either)."""
    if value is None:
        return None
    array = value.array if isinstance(value, Tensor) else np.asarray(value)
    if array.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be a float tensor, not {array.dtype}")
    return array.astype(dtype, copy=False)


def _float_input(op, input):
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, not {type(input).__name__}")
    if input.dtype.kind != "f":
        raise TypeError(f"{op}: input must be a float tensor, not {input.dtype}")


def _class_layout(op, input, target):
    """Checks torch's (N, C, d1, ...) / (N, d1, ...) pairing; returns (classes, target array)."""
    array = target.array if isinstance(target, Tensor) else np.asarray(target)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must be an integer tensor, not {array.dtype}")
    if input.ndim == 0:
        raise ValueError(f"{op}: input must have a class dim, got a 0-d input")
    class_dim = 0 if input.ndim == 1 else 1
    expected = input.shape[:class_dim] + input.shape[class_dim + 1:]
    if array.shape != expected:
        raise ValueError(f"{op}: input of shape {input.shape} (classes at dim {class_dim}, as "
                         f"torch) needs a target of shape {expected}, got {array.shape}")
    return input.shape[class_dim], array


def _check_targets(op, target, classes, ignore_index):
    bad = ((target < 0) | (target >= classes)) & (target != ignore_index)
    if bad.any():
        value = int(target[bad].flat[0])
        raise IndexError(f"{op}: target {value} is outside the valid range [0, {classes}) "
                         f"(or ignore_index={ignore_index})")


def _class_weight(op, weight, classes, dtype):
    weight = _constant(op, "weight", weight, dtype)
    if weight is not None and weight.shape != (classes,):
        raise ValueError(f"{op}: weight of shape {weight.shape} should have shape ({classes},), "
                         "one entry per class")
    return weight


def _reduce_rows(loss, reduction, denominator, target_shape):
    """Per-row losses (rows,) -> the class losses' result: 'none' in the target's shape, 'sum',
    or 'mean' over `denominator` (the summed weights of counted rows; 0 rows counted gives 0,
    torch: nan, so an all-padding batch is harmless)."""
    if reduction == "none":
        return loss.reshape(target_shape)
    total = loss.sum(dtype=loss.dtype)
    if reduction == "mean" and denominator:
        return (total / loss.dtype.type(denominator)).astype(loss.dtype)
    return total


def _row_scale(grad, reduction, denominator, rows, dtype):
    """The upstream gradient of each row's loss, (rows,), undoing _reduce_rows."""
    if reduction == "none":
        return grad.reshape(-1).astype(dtype, copy=False)
    return np.full(rows, grad / denominator if reduction == "mean" and denominator else grad,
                   dtype)


def _rows_last(array):
    """(N, C, d1, ...) -> (N * d1 * ..., C) with the class dim last (a view for 1-D and 2-D)."""
    if array.ndim <= 2:
        return np.ascontiguousarray(array).reshape(-1, array.shape[-1])
    return np.ascontiguousarray(np.moveaxis(array, 1, -1)).reshape(-1, array.shape[1])


def _rows_back(rows, shape):
    """The inverse of _rows_last: rows (M, C) back to the input's (N, C, d1, ...) layout."""
    if len(shape) <= 2:
        return rows.reshape(shape)
    moved = rows.reshape((shape[0],) + shape[2:] + (shape[1],))
    return np.moveaxis(moved, -1, 1)


def _class_rows(x):
    """_rows_last on a Tensor: (N, C, d1, ...) -> (N * d1 * ..., C), differentiable."""
    if x.ndim <= 2:
        return x.reshape(-1, x.shape[-1])
    return x.permute((0,) + tuple(range(2, x.ndim)) + (1,)).reshape(-1, x.shape[1])


def _reduce_rows_composed(loss, ctx):
    """_reduce_rows on a Tensor of per-row losses."""
    if ctx.reduction == "none":
        return loss.reshape(ctx.target_shape)
    total = loss.sum()
    return total / ctx.denominator if ctx.reduction == "mean" and ctx.denominator else total


# ---------------------------------------------------------------------------- cross-entropy

class FusedCrossEntropy(ArrayFunction):
    """Per row i with target y (w the class weights, all 1 without weight, s the smoothing):
        loss_i = (1 - s) * w[y] * -log p[i, y] + (s / C) * sum_c w[c] * -log p[i, c]
    p = softmax over classes; rows with y == ignore_index give 0. 'mean' divides the sum by
    sum_i w[y_i] over counted rows, exactly as torch (also with smoothing)."""

    @staticmethod
    def forward(ctx, logits, target, weight, ignore_index, smoothing, reduction):
        rows = _rows_last(logits)
        classes = rows.shape[1]
        flat_target = target.reshape(-1)
        keep = flat_target != ignore_index
        safe_target = np.where(keep, flat_target, 0)
        # one pass over the logits: log-sum-exp, log p[target] and sum_c w[c] log p[c] per row
        lse, picked, weighted = kernels.cross_entropy_rows(
            rows, safe_target, np.ones(classes, rows.dtype) if weight is None else weight)
        target_weight = weight[safe_target] if weight is not None else None
        loss = -(1 - smoothing) * (picked if weight is None else picked * target_weight)
        if smoothing:
            loss -= (smoothing / classes) * weighted
        # np.where, not a multiply: an ignored row whose logits hold -inf has loss nan/inf here
        loss = np.where(keep, loss, 0).astype(logits.dtype, copy=False)
        if weight is None:
            denominator = float(keep.sum())
        else:
            denominator = float(np.where(keep, target_weight, 0).sum(dtype=np.float64))
        # backward recomputes softmax from the logits and lse (one pass) rather than keeping
        # logp: the logits are alive anyway, so this saves one (rows, C) array between passes
        ctx.save_for_backward(rows, safe_target, keep, weight, target_weight, lse, logits)
        ctx.smoothing, ctx.reduction, ctx.denominator = smoothing, reduction, denominator
        ctx.input_shape, ctx.target_shape = logits.shape, target.shape
        return _reduce_rows(loss.astype(logits.dtype, copy=False), reduction, denominator,
                            target.shape)

    @staticmethod
    def backward(ctx, grad):
        rows, target, keep, w, w_target, lse, logits = ctx.saved_tensors
        if ctx.xp is not numpy_ops:  # create_graph: the formula below as a few Tensor ops
            return _cross_entropy_graph(ctx, logits, grad, target, keep, w, w_target)
        classes, s = rows.shape[1], ctx.smoothing
        dtype = rows.dtype
        scale = _row_scale(grad, ctx.reduction, ctx.denominator, len(rows), dtype)
        scale = np.where(keep, scale, 0).astype(dtype, copy=False)
        # dloss/dlogp_c = -(1 - s) w[y] [c == y] - (s / C) w[c]; through log-softmax,
        # dloss/dlogit_j = p_j * A - (1 - s) w[y] [j == y] - (s / C) w[j], A = (1 - s) w[y] +
        # (s / C) sum(w); times each row's scale (kernels.cross_entropy_grad, one pass with p).
        target_term = (1 - s) * (np.ones(len(rows), dtype) if w is None else w_target)
        total_weight = classes if w is None else float(w.sum())
        coef = ((target_term + (s / classes) * total_weight) * scale).astype(dtype, copy=False)
        off = ((s / classes) * scale).astype(dtype, copy=False)
        picked = (target_term * scale).astype(dtype, copy=False)
        weight = np.ones(classes, dtype) if w is None else w
        out = kernels.cross_entropy_grad(rows, lse, target, keep, coef, off, weight, picked)
        return _rows_back(out, ctx.input_shape)



def _cross_entropy_graph(ctx, logits, grad, target, keep, w, w_target):
    """FusedCrossEntropy's backward on Tensors: (p * coef - fixed) * the rows' upstream
    gradient, p = softmax(logits) the only differentiable part (coef and fixed are constants:
    backward's A and its target and smoothing terms, zero on ignored rows)."""
    dtype = logits.dtype
    s, classes, count = ctx.smoothing, ctx.input_shape[1 if len(ctx.input_shape) > 1 else 0], \
        len(target)
    weight = np.ones(classes, dtype) if w is None else w
    target_term = (1 - s) * (np.ones(count, dtype) if w is None else w_target)
    kept = keep.astype(dtype)
    coef = ((target_term + (s / classes) * float(weight.sum())) * kept).astype(dtype)[:, None]
    fixed = np.broadcast_to((s / classes) * weight, (count, classes)).astype(dtype)
    fixed[np.arange(count), target] += target_term
    fixed *= kept[:, None]
    out = _class_rows(logits).softmax(1) * coef - fixed
    if ctx.reduction == "none":
        out = out * grad.reshape(-1, 1)
    else:
        out = out * (grad / ctx.denominator if ctx.reduction == "mean" and ctx.denominator
                     else grad)
    shape = ctx.input_shape
    if len(shape) <= 2:
        return out.reshape(shape) if out.shape != shape else out
    moved = out.reshape((shape[0],) + shape[2:] + (shape[1],))
    return moved.permute((0, moved.ndim - 1) + tuple(range(1, moved.ndim - 1)))


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """Softmax cross-entropy between logits `input` and class targets, as torch.

    input (N, C) with target (N,), (N, C, d1, ...) with target (N, d1, ...), or (C,) with a
    0-d target: the class dim is 1 (0 for 1-D input). weight: one float per class. Targets equal
    to ignore_index count neither in the loss nor in the 'mean' denominator (sum of the
    targets' weights). If every target is ignored, 'mean' gives 0 (torch: nan).
    A float target of the input's shape holds class probabilities instead (soft labels).
    """
    op = "cross_entropy"
    _check_reduction(op, reduction)
    if not isinstance(label_smoothing, numbers.Real) or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    _float_input(op, input)
    if _array(target).dtype.kind == "f":
        return _cross_entropy_with_probabilities(input, target, weight, ignore_index, reduction,
                                                 label_smoothing)
    classes, target = _class_layout(op, input, target)
    _check_targets(op, target, classes, ignore_index)
    weight = _class_weight(op, weight, classes, input.dtype)
    return FusedCrossEntropy.apply(input, target=target, weight=weight,
                                   ignore_index=ignore_index, smoothing=float(label_smoothing),
                                   reduction=reduction)


def _array(value):
    return value.array if isinstance(value, Tensor) else np.asarray(value)


def _cross_entropy_with_probabilities(input, target, weight, ignore_index, reduction, smoothing):
    """-sum_c w_c t_c log_softmax(input)_c per row, for a target of class probabilities shaped
    like the input (soft labels, distillation). Composed of Tensor ops, so it differentiates in
    the target too; 'mean' divides by the number of rows, as torch."""
    op = "cross_entropy"
    if ignore_index != -100:
        raise ValueError(f"{op}: ignore_index={ignore_index} needs class-index targets; this "
                         "target holds class probabilities")
    target = target if isinstance(target, Tensor) else Tensor(target)
    if target.shape != input.shape:
        raise ValueError(f"{op}: a target of class probabilities must have the input's shape "
                         f"{input.shape}, got {target.shape}")
    class_dim = 0 if input.ndim == 1 else 1
    classes = input.shape[class_dim]
    if smoothing:
        target = target * (1.0 - smoothing) + smoothing / classes
    picked = input.log_softmax(class_dim) * target
    weight = _class_weight(op, weight, classes, input.dtype)
    if weight is not None:  # one weight per class, broadcast along the class dim
        picked = picked * weight.reshape((classes,) + (1,) * (input.ndim - class_dim - 1))
    return _reduce(-picked.sum(class_dim), reduction)


class NllLoss(ArrayFunction):
    """-w[y] * input[i, y] per row (input holds log-probabilities); ignored rows give 0."""

    @staticmethod
    def forward(ctx, logp, target, weight, ignore_index, reduction):
        rows = _rows_last(logp)
        flat_target = target.reshape(-1)
        keep = flat_target != ignore_index
        safe_target = np.where(keep, flat_target, 0)
        row_weight = np.ones(len(rows), logp.dtype) if weight is None else weight[safe_target]
        row_weight = np.where(keep, row_weight, 0).astype(logp.dtype, copy=False)
        picked = np.take_along_axis(rows, safe_target[:, None], axis=1)[:, 0]
        loss = np.where(keep, -row_weight * picked, 0).astype(logp.dtype, copy=False)
        denominator = float(row_weight.sum(dtype=np.float64))
        # logp only as torch saves it (for the in-place check)
        ctx.save_for_backward(safe_target, row_weight, keep, logp)
        ctx.reduction = reduction
        ctx.denominator, ctx.input_shape, ctx.rows_shape = denominator, logp.shape, rows.shape
        ctx.target_shape = target.shape
        return _reduce_rows(loss, reduction, denominator, target.shape)

    @staticmethod
    def backward(ctx, grad):
        target, row_weight = ctx.saved_tensors[:2]
        dtype = row_weight.dtype
        scale = _row_scale(grad, ctx.reduction, ctx.denominator, ctx.rows_shape[0], dtype)
        out = np.zeros(ctx.rows_shape, dtype)
        out[np.arange(len(out)), target] = -row_weight * scale
        return _rows_back(out, ctx.input_shape)

    @staticmethod
    def composed(ctx, logp):
        target, row_weight, keep, _ = ctx.saved_tensors
        picked = _class_rows(logp)[np.arange(len(target)), target]
        return _reduce_rows_composed(where(keep, picked * -row_weight, 0.0), ctx)


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood: -weight[y] * input[n, y], input holding log-probabilities in
    torch's layout ((N, C), (N, C, d1, ...) or (C,)); 'mean' divides by the summed weights of
    the counted targets (0 if every target is ignored; torch: nan)."""
    op = "nll_loss"
    _check_reduction(op, reduction)
    _float_input(op, input)
    classes, target = _class_layout(op, input, target)
    _check_targets(op, target, classes, ignore_index)
    weight = _class_weight(op, weight, classes, input.dtype)
    return NllLoss.apply(input, target=target, weight=weight, ignore_index=ignore_index,
                         reduction=reduction)


# ---------------------------------------------------------------------------- regression losses

def _float_target(op, target):
    # torch's binary cross-entropies refuse integer and bool targets (the 0/1 labels a data
    # pipeline gives): write target.float()
    if isinstance(target, Tensor) and target.dtype.kind != "f":
        raise TypeError(f"{op}: target must be a float tensor, not {target.dtype} (as torch); "
                        "use target.float()")
    return target


def _same_shape(op, input, target):
    if not isinstance(target, Tensor):
        target = Tensor(np.asarray(target, dtype=input.dtype))
    if input.shape != target.shape:
        raise ValueError(f"{op}: input {input.shape} and target {target.shape} must have the "
                         "same shape")
    return target


def mse_loss(input, target, reduction="mean"):
    """Mean (or sum, or none) of (input - target)^2."""
    _check_reduction("mse_loss", reduction)
    target = _same_shape("mse_loss", input, target)
    diff = input - target
    return _reduce(diff * diff, reduction)


def l1_loss(input, target, reduction="mean"):
    """Mean (or sum, or none) of |input - target|."""
    _check_reduction("l1_loss", reduction)
    target = _same_shape("l1_loss", input, target)
    return _reduce((input - target).abs(), reduction)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (d = input - target); beta = 0 is
    l1_loss, as torch."""
    _check_reduction("smooth_l1_loss", reduction)
    if not isinstance(beta, numbers.Real) or beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be >= 0, got {beta!r}")
    target = _same_shape("smooth_l1_loss", input, target)
    diff = input - target
    if beta == 0:
        return _reduce(diff.abs(), reduction)
    size = diff.abs()
    loss = where(size < beta, diff * diff * (0.5 / beta), size - 0.5 * beta)
    return _reduce(loss, reduction)


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta): delta * smooth_l1_loss with
    beta = delta (d = input - target)."""
    if weight is not None:
        raise NotImplementedError("huber_loss: weight= is not supported")
    if not isinstance(delta, numbers.Real) or delta <= 0:
        raise ValueError(f"huber_loss: delta must be > 0, got {delta!r}")
    return smooth_l1_loss(input, target, reduction, beta=delta) * delta


def kl_div(input, target, reduction="mean", log_target=False):
    """KL(target || exp(input)) pointwise: target * (log target - input) (0 where target is 0),
    or exp(target) * (target - input) with log_target. input holds log-probabilities.
    reduction 'batchmean' divides the sum by the batch size (the true KL per sample); 'mean'
    averages over every element, as torch (which warns it is rarely what you want)."""
    op = "kl_div"
    _check_reduction(op, reduction, _REDUCTIONS + ("batchmean",))
    target = _same_shape(op, input, target)
    if log_target:
        loss = target.exp() * (target - input)
    else:
        positive = target > 0
        safe = where(positive, target, 1.0)  # log(0) never evaluated: xlogy's 0 * log 0 = 0
        loss = where(positive, target * safe.log(), 0.0) - target * input
    if reduction == "batchmean":
        return loss.sum() / (input.shape[0] if input.ndim else 1)
    return _reduce(loss, reduction)


# ---------------------------------------------------------------------------- binary losses

def _stable_sigmoid(x):
    """1 / (1 + exp(-x)) without overflow, and accurate far below 0 (exp(x) / (1 + exp(x)))."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _softplus_neg(x):
    """log(1 + exp(-x)), stable for every x: log1p(exp(-|x|)) + max(-x, 0)."""
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0)


def _softplus_neg_composed(x):
    """_softplus_neg from differentiable ops. |x| and max(-x, 0) are taken as one-sided at 0
    (where, not abs/relu), so the slope there is the true -1/2, not the kinks' 0."""
    right = x >= 0
    return (-where(right, x, -x)).exp().log1p() + where(right, 0.0, -x)


_BCE_EPS = float(np.float32(1e-12))


class BinaryCrossEntropy(ArrayFunction):
    """-w (t log x + (1 - t) log(1 - x)), each log clamped at -100 as torch."""

    @staticmethod
    def forward(ctx, x, t, weight):
        with np.errstate(divide="ignore"):
            log_x = np.maximum(np.log(x), -100)
            log_1mx = np.maximum(np.log1p(-x), -100)
        loss = -(t * log_x + (1 - t) * log_1mx)
        if weight is not None:
            loss = loss * weight
        ctx.save_for_backward(x, t, weight)
        return loss.astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        x, t, weight = ctx.saved_tensors
        scale = grad if weight is None else grad * weight
        need_x, need_t = ctx.needs_input_grad
        # torch's derivative: (x - t) / max(x (1 - x), eps), finite at 0 and 1; torch's eps is
        # the float literal 1e-12f, also in float64
        grad_x = scale * (x - t) / np.maximum(x * (1 - x), _BCE_EPS) if need_x else None
        grad_t = None
        if need_t:  # torch leaves these logs unclamped: +-inf at x = 0 or 1
            with np.errstate(divide="ignore"):
                grad_t = scale * (np.log1p(-x) - np.log(x))
        return grad_x, grad_t

    @staticmethod
    def composed(ctx, x, t):  # the create_graph path (graph_backward.py)
        weight = ctx.saved_tensors[2]
        loss = -(t * x.log().clip(min=-100) + (1 - t) * (-x).log1p().clip(min=-100))
        return loss if weight is None else loss * weight


def _weights_for(op, input, weight, pos_weight=None):
    weight = _constant(op, "weight", weight, input.dtype)
    if weight is not None:
        try:
            np.broadcast_shapes(weight.shape, input.shape)
        except ValueError:
            raise ValueError(f"{op}: weight of shape {weight.shape} does not broadcast to the "
                             f"input's shape {input.shape}") from None
    return weight


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """-weight * (t log x + (1 - t) log(1 - x)) for probabilities x in [0, 1] (logs clamped at
    -100, as torch). Prefer binary_cross_entropy_with_logits: it takes logits and is stable."""
    op = "binary_cross_entropy"
    _check_reduction(op, reduction)
    _float_input(op, input)
    target = _same_shape(op, input, _float_target(op, target))
    if ((input.array < 0) | (input.array > 1) | np.isnan(input.array)).any():
        raise ValueError(f"{op}: every element of input must be a probability in [0, 1]; got "
                         f"values in [{np.nanmin(input.array)}, {np.nanmax(input.array)}]")
    weight = _weights_for(op, input, weight)
    return _reduce(BinaryCrossEntropy.apply(input, target, weight=weight), reduction)


class BinaryCrossEntropyWithLogits(ArrayFunction):
    """w ((1 - t) x + (1 + (pw - 1) t) log(1 + exp(-x))), the stable form of
    -w (pw t log sigmoid(x) + (1 - t) log(1 - sigmoid(x)))."""

    @staticmethod
    def forward(ctx, x, t, weight, pos_weight):
        softplus = _softplus_neg(x)
        log_weight = 1 if pos_weight is None else 1 + (pos_weight - 1) * t
        loss = (1 - t) * x + log_weight * softplus
        if weight is not None:
            loss = loss * weight
        ctx.save_for_backward(x, t, softplus, weight, pos_weight, log_weight)
        return loss.astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        x, t, softplus, weight, pos_weight, log_weight = ctx.saved_tensors
        scale = grad if weight is None else grad * weight
        need_x, need_t = ctx.needs_input_grad
        grad_x = grad_t = None
        if need_x:  # d/dx log(1 + exp(-x)) = -sigmoid(-x)
            grad_x = scale * ((1 - t) - log_weight * _stable_sigmoid(-x))
        if need_t:
            d_log_weight = 0 if pos_weight is None else (pos_weight - 1) * softplus
            grad_t = scale * (d_log_weight - x)
        return grad_x, grad_t

    @staticmethod
    def composed(ctx, x, t):
        _, _, _, weight, pos_weight, _ = ctx.saved_tensors
        softplus = _softplus_neg_composed(x)
        log_weight = 1 if pos_weight is None else t * (pos_weight - 1) + 1
        loss = (1 - t) * x + softplus * log_weight
        return loss if weight is None else loss * weight


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",
                                     pos_weight=None):
    """Binary cross-entropy of sigmoid(input) against target, computed from the logits without
    overflow or log(0). pos_weight (broadcast along the last dim, one per class) weighs the
    positive term, as torch."""
    op = "binary_cross_entropy_with_logits"
    _check_reduction(op, reduction)
    _float_input(op, input)
    target = _same_shape(op, input, _float_target(op, target))
    weight = _weights_for(op, input, weight)
    pos_weight = _constant(op, "pos_weight", pos_weight, input.dtype)
    if pos_weight is not None:
        try:
            np.broadcast_shapes(pos_weight.shape, input.shape)
        except ValueError:
            raise ValueError(f"{op}: pos_weight of shape {pos_weight.shape} does not broadcast "
                             f"to the input's shape {input.shape}") from None
    loss = BinaryCrossEntropyWithLogits.apply(input, target, weight=weight,
                                              pos_weight=pos_weight)
    return _reduce(loss, reduction)
