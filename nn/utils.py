"""Gradient utilities; `nn.utils.rnn` is torch.nn.utils.rnn (packed sequences, nn/packing.py)."""
import math
import sys

import numpy as np

from tinygrad_tf import Tensor, cat, kernels
from tinygrad_tf.autograd import increment_version
from tinygrad_tf.optim.arena import merged_flat


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients together, in place, so their joint norm is at most max_norm.

    Returns the total norm before clipping (a 0-d Tensor, as torch). norm_type may be any p >= 1
    or float('inf'). Gradients in an optimizer's arena sit end to end: they are read in one pass
    (one parallel kernel for the 2-norm) and scaled in one more.
    """
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = [p.grad.array for p in parameters if p.grad is not None]
    if not grads:
        return Tensor(np.asarray(0.0, dtype=np.float32))
    flats = merged_flat(grads)
    total = _total_norm(flats, norm_type, error_if_nonfinite, "clip_grad_norm_")
    coefficient = max_norm / (total + 1e-6)
    if not coefficient >= 1:  # a NaN or inf total scales too (torch: the grads become NaN)
        with np.errstate(invalid="ignore"):
            for g in flats:
                g *= coefficient
        increment_version(*flats)  # (one bump per run of memory covers each grad in it)
    return Tensor(np.asarray(total, dtype=grads[0].dtype))


def _total_norm(flats, norm_type, error_if_nonfinite, op):
    norm_type = float(norm_type)
    if norm_type == math.inf:
        # np.max, not Python's max: a NaN anywhere makes the norm NaN, whatever the order
        total = float(np.max([np.abs(g).max() if g.size else 0.0 for g in flats]))
    elif norm_type == 2.0:
        total = math.sqrt(sum(_sum_of_squares(g) for g in flats))
    else:
        total = sum(float((np.abs(g) ** norm_type).sum()) for g in flats) ** (1 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"{op}: the total norm of order {norm_type} of the gradients is "
                           f"{total}; set error_if_nonfinite=False to go on anyway")
    return total


def get_total_norm(tensors, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """The norm of the norms of `tensors` (e.g. [p.grad for p in model.parameters()]), as one
    0-d Tensor: clip_grad_norm_'s total, without clipping (torch.nn.utils.get_total_norm)."""
    tensors = [tensors] if isinstance(tensors, Tensor) else [t for t in tensors if t is not None]
    if not tensors:
        return Tensor(np.asarray(0.0, dtype=np.float32))
    arrays = [t.array.reshape(-1) for t in tensors]
    total = _total_norm(arrays, norm_type, error_if_nonfinite, "get_total_norm")
    return Tensor(np.asarray(total, dtype=tensors[0].dtype))


def clip_grads_with_norm_(parameters, max_norm, total_norm, foreach=None):
    """Scale the gradients by max_norm / (total_norm + 1e-6) when that is below 1, in place
    (the second half of clip_grad_norm_, torch.nn.utils.clip_grads_with_norm_)."""
    parameters = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    coefficient = max_norm / (float(total_norm) + 1e-6)
    if not coefficient >= 1:
        grads = [p.grad.array for p in parameters if p.grad is not None]
        with np.errstate(invalid="ignore"):
            for g in grads:
                g *= coefficient
        increment_version(*grads)


_FUSED = (np.dtype(np.float32), np.dtype(np.float64))


def _sum_of_squares(g):
    if g.ndim == 1 and g.flags.c_contiguous and g.dtype in _FUSED:
        return kernels.sum_of_squares(g)  # one parallel pass, float64 accumulator
    return float(np.vdot(g, g))


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every gradient, in place, to [-clip_value, clip_value]. Returns None, as torch."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    clip_value = float(clip_value)
    for p in parameters:
        if p.grad is not None:
            np.clip(p.grad.array, -clip_value, clip_value, out=p.grad.array)
            increment_version(p.grad)


def parameters_to_vector(parameters):
    """Every parameter's values end to end in one 1-D Tensor, on the graph (torch's cat)."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return cat([p.reshape(-1) for p in parameters])


def vector_to_parameters(vec, parameters):
    """Set each parameter's .data to its stretch of the 1-D Tensor `vec`, in order. As torch,
    the parameters then share vec's memory (and dtype), and elements past the last are unused."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"vector_to_parameters: expected a Tensor, got {type(vec).__name__}")
    if vec.ndim != 1:
        raise RuntimeError(f"vector_to_parameters: expected a 1-D vector, got shape {vec.shape}")
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    start = 0
    for p in parameters:
        stop = start + p.numel()
        if stop > vec.shape[0]:
            raise RuntimeError(f"vector_to_parameters: a vector of {vec.shape[0]} elements is too "
                               f"short: the parameters so far need {stop}")
        p.data = vec.detach()[start:stop].reshape(p.shape)
        start = stop


# torch's path: `nn.utils.rnn.pad_sequence`, `from tinygrad_tf.nn.utils.rnn import ...`
from . import packing as rnn  # noqa: E402
sys.modules[__name__ + ".rnn"] = rnn
