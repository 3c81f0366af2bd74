"""The two array namespaces a backward is written against: `ctx.xp`.

A Function's backward is written once, with arithmetic operators and the few calls below as
`xp.name(...)`. On the first-order path (`loss.backward()`) `ctx.xp` is `numpy_ops`: numpy
arrays in and out, today's speed (most names here are numpy's own functions). Under
`create_graph=True` the engine sets `ctx.xp = tensor_ops` for that call and hands the backward
Tensors: the same lines then run Tensor ops, which record a graph that can be differentiated
again (graph_backward.py).
"""
import threading

import numpy as np

from . import kernels


class _GraphGuard(threading.local):
    # > 0 while a backward runs on Tensors (create_graph) in this thread: turning a Tensor into
    # an array there would make a constant, and a second derivative through it silently zero.
    depth = 0


graph_guard = _GraphGuard()


class FirstOrderOnlyError(RuntimeError):
    """A second derivative was asked of a backward that can only give first ones (it turns
    Tensors into arrays, or is @once_differentiable); gradgradcheck reports it as a failure."""


def check_not_in_graph_backward(what):
    if graph_guard.depth:
        raise FirstOrderOnlyError(
            f"{what} inside a backward running with create_graph=True: the array would be a "
            "constant, so a derivative through it would silently be zero. Compute with ctx.xp "
            "(or the Tensor operators), or give the Function a composed(ctx, *inputs) twin")


def _index_add(shape, index, grad, advanced):
    if (advanced and index.__class__ is np.ndarray and index.dtype.kind in "iu"
            and len(shape) == 2 and grad.shape == index.shape + tuple(shape[1:]) and index.size
            and index.min() >= 0):  # whole rows by ids (an embedding's gradient): the kernel
        return kernels.scatter_add_rows(index.reshape(-1), grad.reshape(-1, shape[1]), shape[0])
    out = np.zeros(shape, dtype=grad.dtype)
    if advanced:
        np.add.at(out, index, grad)  # a plain `out[index] = grad` would drop repeats
    else:
        out[index] = grad
    return out


class numpy_ops:
    """numpy arrays in, numpy arrays out (the first-order path)."""
    where = staticmethod(np.where)
    zeros_like = staticmethod(np.zeros_like)
    broadcast_to = staticmethod(np.broadcast_to)
    reshape = staticmethod(np.reshape)
    transpose = staticmethod(np.transpose)
    swapaxes = staticmethod(np.swapaxes)
    expand_dims = staticmethod(np.expand_dims)
    sign = staticmethod(np.sign)
    exp = staticmethod(np.exp)
    tanh = staticmethod(np.tanh)
    erf = staticmethod(kernels.erf)
    sin = staticmethod(np.sin)
    cos = staticmethod(np.cos)
    log = staticmethod(np.log)
    flip = staticmethod(np.flip)
    cumsum = staticmethod(np.cumsum)
    split = staticmethod(np.split)
    matmul = staticmethod(kernels.matmul)
    softmax_backward = staticmethod(kernels.softmax_backward)
    log_softmax_backward = staticmethod(kernels.log_softmax_backward)
    index_add = staticmethod(_index_add)

    @staticmethod
    def sum(x, axis=None, keepdims=False):
        return x.sum(axis=axis, keepdims=keepdims)

    @staticmethod
    def getitem(x, index):
        return x[index]

    @staticmethod
    def weight_grad(grad, rows):
        """A linear layer's weight gradient: grad (..., out) over rows (R, in) -> (out, in)."""
        return kernels.matmul(grad.reshape(-1, grad.shape[-1]).T, rows)

    @staticmethod
    def zeros(shape, like):
        return np.zeros(shape, dtype=like.dtype)


class tensor_ops:
    """Tensors in, Tensors out: every call records differentiable ops (the create_graph path).
    Arrays mixed in (masks, indices, saved constants) are constants of the graph."""

    @staticmethod
    def where(cond, a, b):
        from .tensor_index import where
        return where(cond, a, b)

    @staticmethod
    def zeros_like(x):
        return x._wrap(np.zeros(x.shape, dtype=x.dtype))

    @staticmethod
    def zeros(shape, like):
        return like._wrap(np.zeros(shape, dtype=like.dtype))

    @staticmethod
    def broadcast_to(x, shape):
        return x.expand(tuple(shape))

    @staticmethod
    def reshape(x, shape):
        return x.reshape(tuple(shape))

    @staticmethod
    def transpose(x, axes):
        return x.permute(tuple(int(a) for a in axes))

    @staticmethod
    def swapaxes(x, a, b):
        return x.transpose(a, b)

    @staticmethod
    def expand_dims(x, axis):
        return x.unsqueeze(axis)

    @staticmethod
    def sign(x):
        return x.sign()

    @staticmethod
    def sin(x):
        return x.sin()

    @staticmethod
    def exp(x):
        return x.exp()

    @staticmethod
    def cos(x):
        return x.cos()

    @staticmethod
    def tanh(x):
        return x.tanh()

    @staticmethod
    def erf(x):
        return x.erf()

    @staticmethod
    def log(x):
        return x.log()

    @staticmethod
    def flip(x, axis):
        return x.flip(axis)

    @staticmethod
    def cumsum(x, axis):
        return x.cumsum(axis)

    @staticmethod
    def split(x, splits, axis):
        bounds = [0] + [int(s) for s in splits] + [x.shape[axis]]
        lead = (slice(None),) * axis
        return [x[lead + (slice(lo, hi),)] for lo, hi in zip(bounds, bounds[1:])]

    @staticmethod
    def matmul(a, b):
        return a.matmul(b)

    @staticmethod
    def softmax_backward(out, grad, axis):
        from .function import SoftmaxBackward
        return SoftmaxBackward.apply(grad, out, axis=axis)

    @staticmethod
    def log_softmax_backward(out, grad, axis):
        from .function import LogSoftmaxBackward
        return LogSoftmaxBackward.apply(grad, out, axis=axis)

    @staticmethod
    def index_add(shape, index, grad, advanced):
        from .function import AddAt
        return AddAt.apply(grad, index=index, shape=tuple(shape), advanced=advanced)

    @staticmethod
    def sum(x, axis=None, keepdims=False):
        return x.sum(axis, keepdims)

    @staticmethod
    def weight_grad(grad, x):
        from .function import LinearWeightGrad
        return LinearWeightGrad.apply(grad, x)

    @staticmethod
    def getitem(x, index):
        from .function import GetItem
        advanced = any(isinstance(i, np.ndarray) for i in
                       (index if isinstance(index, tuple) else (index,)))
        return GetItem.apply(x, index=index, advanced=advanced)
