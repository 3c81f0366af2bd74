"""Softmax and log-softmax, forward and backward, over one axis.

A row that is -inf everywhere (a fully masked attention row) has no defined softmax; we return
zeros for it (and -inf from log_softmax), never NaN, so one padded query cannot poison a batch.
"""
import numpy as np


def _shifted(x, axis):
    # Subtract the row max so exp never overflows; an all -inf row keeps shift 0 (not NaN).
    row_max = np.max(x, axis=axis, keepdims=True)
    return x - np.where(np.isfinite(row_max), row_max, 0)


def softmax_numpy(x, axis):
    """exp(x - max) / sum(exp(x - max)) along `axis`."""
    e = np.exp(_shifted(x, axis))
    total = e.sum(axis=axis, keepdims=True)
    return e / np.where(total == 0, 1, total)


def softmax_backward_numpy(y, grad, axis):
    """Given y = softmax(x) and dL/dy, dL/dx = y * (grad - sum(grad * y))."""
    return y * (grad - (grad * y).sum(axis=axis, keepdims=True))


def log_softmax_numpy(x, axis):
    """x - max - log(sum(exp(x - max))) along `axis`."""
    shifted = _shifted(x, axis)
    total = np.exp(shifted).sum(axis=axis, keepdims=True)
    return shifted - np.log(np.where(total == 0, 1, total))


def log_softmax_backward_numpy(y, grad, axis):
    """Given y = log_softmax(x) and dL/dy, dL/dx = grad - exp(y) * sum(grad)."""
    return grad - np.exp(y) * grad.sum(axis=axis, keepdims=True)
