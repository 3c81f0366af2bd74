"""Every primitive op: forward and backward side by side, on numpy arrays.

Everything else in `tensor.py` is composed from these. An op is primitive only where composing
it would cost real time or memory in eager numpy (matmul, softmax, indexing), or where it is
the atom others are built from (add, mul, exp, sum, reshape, ...). The elementwise ones live in
function_elementwise.py and are re-exported here; reductions, views, indexing, matmul and
softmax follow below.

Each backward is written once against `ctx.xp` (xp.py): numpy on the first-order path, Tensor
ops under create_graph, so the same lines give second derivatives. A backward that only numpy
can run (a scatter in place) has instead a `composed(ctx, *inputs)` twin: the forward again,
from differentiable Tensor ops, which the create_graph path differentiates (graph_backward.py).
"""
import numpy as np

from . import kernels
from .autograd import ArrayFunction, unbroadcast
from .function_elementwise import (  # noqa: F401  (re-exported: the elementwise primitives)
    Add, Sub, Mul, Div, Maximum, Minimum, Neg, Pow, Exp, Log, Sqrt, Reciprocal, Tanh, Sigmoid, Relu,
    Abs, Clip, PowTensor, Erf, Log1p, Expm1, Sin, Cos, Step, RoundedQuotient, Cast)
from .xp import _index_add


# ---------------------------------------------------------------------------- reductions

def _keepdim_shape(shape, axes):
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


class Sum(ArrayFunction):
    """Sum over `axes` (a tuple of non-negative dims, or None for all)."""
    @staticmethod
    def forward(ctx, x, axes, keepdim):
        ctx.input_shape, ctx.axes = x.shape, axes
        return x.sum(axis=axes, keepdims=keepdim)

    @staticmethod
    def backward(ctx, grad):
        axes = range(len(ctx.input_shape)) if ctx.axes is None else ctx.axes
        grad = grad.reshape(_keepdim_shape(ctx.input_shape, axes))
        return ctx.xp.broadcast_to(grad, ctx.input_shape)


class Max(ArrayFunction):
    """Max (min if not `largest`) over `axes`; the gradient goes to one arg-max per reduced
    slice (as torch.max(dim)). No negation for min: it would wrap unsigned ints and INT64_MIN."""
    @staticmethod
    def forward(ctx, x, axes, keepdim, largest=True):
        axes = tuple(range(x.ndim)) if axes is None else axes
        kept = tuple(i for i in range(x.ndim) if i not in axes)
        # Reduced dims last and flattened, so one argmax finds each slice's winner (the first
        # NaN if any: NaN propagates, as in torch). The size is explicit: -1 fails when empty.
        reduced = int(np.prod([x.shape[i] for i in axes]))
        folded = x.transpose(kept + axes).reshape([x.shape[i] for i in kept] + [reduced])
        winner = (folded.argmax if largest else folded.argmin)(axis=-1)[..., None]
        ctx.save_for_backward(winner)
        ctx.input_shape, ctx.kept, ctx.axes = x.shape, kept, axes
        out = np.take_along_axis(folded, winner, axis=-1)[..., 0]
        out = out.reshape(_keepdim_shape(x.shape, axes)) if keepdim else out
        ctx.out_shape = out.shape
        return out

    @staticmethod
    def backward(ctx, grad):
        (winner,) = ctx.saved_tensors
        shape, kept, axes = ctx.input_shape, ctx.kept, ctx.axes
        folded = np.zeros([shape[i] for i in kept] + [int(np.prod([shape[i] for i in axes]))],
                          dtype=grad.dtype)
        np.put_along_axis(folded, winner, grad.reshape(folded.shape[:-1] + (1,)), axis=-1)
        unfolded = folded.reshape([shape[i] for i in kept + axes])
        return unfolded.transpose(np.argsort(kept + axes))

    @staticmethod
    def composed(ctx, x):
        # the winners picked by gather (whose backward is an index-add)
        (winner,) = ctx.saved_tensors
        kept, axes = ctx.kept, ctx.axes
        folded = x.permute(kept + axes).reshape([x.shape[i] for i in kept] + [-1])
        out = folded.gather(-1, winner)[..., 0]
        return out.reshape(ctx.out_shape)


class AMax(ArrayFunction):
    """Max (min if not `largest`) over `axes`, the gradient split evenly between tied
    elements, as torch.amax/amin and max()/min() of a whole tensor (Max gives one winner)."""
    @staticmethod
    def forward(ctx, x, axes, keepdim, largest=True):
        kept = (np.max if largest else np.min)(x, axis=axes, keepdims=True)
        if ctx.needs_input_grad[0]:
            ties = x == kept  # NaN ties nothing: its slice's gradient is NaN, as torch's
            with np.errstate(invalid="ignore", divide="ignore"):
                share = (ties / ties.sum(axis=axes, keepdims=True)).astype(x.dtype)
            # x and the result as torch saves them (only share is read here): writing either
            # in place before backward raises, as there
            ctx.save_for_backward(share, x, kept)
            ctx.kept_shape = kept.shape
        if keepdim:
            return kept
        return kept.reshape([n for i, n in enumerate(kept.shape)
                             if axes is not None and i not in axes])

    @staticmethod
    def backward(ctx, grad):
        share = ctx.saved_tensors[0]
        return grad.reshape(ctx.kept_shape) * share


# ---------------------------------------------------------------------------- movement (views)

class Reshape(ArrayFunction):
    @staticmethod
    def forward(ctx, x, shape):
        ctx.input_shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.input_shape)


class Permute(ArrayFunction):
    @staticmethod
    def forward(ctx, x, dims):
        ctx.dims = dims
        return x.transpose(dims)

    @staticmethod
    def backward(ctx, grad):
        return ctx.xp.transpose(grad, np.argsort(ctx.dims))


class Expand(ArrayFunction):
    @staticmethod
    def forward(ctx, x, shape):
        return np.broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, grad):
        return grad  # the engine sums it back to the input's shape


class Contiguous(ArrayFunction):
    """A C-contiguous copy (`contiguous()` on a strided view, and `clone()`)."""
    @staticmethod
    def forward(ctx, x):
        return np.array(x, order="C")

    @staticmethod
    def backward(ctx, grad):
        return grad


# ---------------------------------------------------------------------------- indexing and joining

class GetItem(ArrayFunction):
    """x[index]; the gradient adds up over repeated integer-array indices."""
    @staticmethod
    def forward(ctx, x, index, advanced):
        ctx.save_for_backward(index)  # index arrays may be a tensor's memory: version-checked
        ctx.input_shape, ctx.advanced = x.shape, advanced
        return x[index]

    @staticmethod
    def backward(ctx, grad):
        (index,) = ctx.saved_tensors
        return ctx.xp.index_add(ctx.input_shape, index, grad, ctx.advanced)


class AddAt(ArrayFunction):
    """zeros(shape) with x added at `index` (repeats add up): GetItem's backward as an op, so
    that backward has a backward too (GetItem again)."""
    @staticmethod
    def forward(ctx, x, index, shape, advanced):
        ctx.save_for_backward(index)
        return _index_add(shape, index, x, advanced)

    @staticmethod
    def backward(ctx, grad):
        (index,) = ctx.saved_tensors
        return ctx.xp.getitem(grad, index)


class CumSum(ArrayFunction):
    @staticmethod
    def forward(ctx, x, axis):
        ctx.axis = axis
        return np.cumsum(x, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        # Each input adds into every later output: the gradient is a reversed cumulative sum.
        xp = ctx.xp
        return xp.flip(xp.cumsum(xp.flip(grad, ctx.axis), ctx.axis), ctx.axis)


class Prod(ArrayFunction):
    """Product along one axis. The gradient is the product of all the other elements, taken as
    (product of those before) * (product of those after), so zeros need no division."""
    @staticmethod
    def forward(ctx, x, axis, keepdim):
        out = np.prod(x, axis=axis, keepdims=keepdim)
        ctx.save_for_backward(x, out)  # the result only as torch saves it (for the in-place check)
        ctx.axis, ctx.keepdim = axis, keepdim
        return out

    @staticmethod
    def backward(ctx, grad):
        x = ctx.saved_tensors[0]
        axis = ctx.axis
        if grad.ndim < x.ndim:
            grad = np.expand_dims(grad, axis)
        if x.shape[axis] == 0:
            return np.zeros_like(x)
        before = _exclusive_cumprod(x, axis)
        after = np.flip(_exclusive_cumprod(np.flip(x, axis), axis), axis)
        return grad * before * after

    @staticmethod
    def composed(ctx, x):
        out = None
        for piece in x.unbind(ctx.axis):  # a chain of products: differentiable at zeros too
            out = piece if out is None else out * piece
        if out is None:
            out = x.sum(ctx.axis) * 0 + 1
        return out.unsqueeze(ctx.axis) if ctx.keepdim else out


def _exclusive_cumprod(x, axis):
    """[1, x0, x0 x1, ...] along axis: the product of the elements before each one."""
    first = np.ones_like(np.take(x, [0], axis=axis))
    return np.cumprod(np.concatenate([first, np.delete(x, -1, axis=axis)], axis=axis), axis=axis)


class Gather(ArrayFunction):
    """x[index] along `axis` (torch.gather): out[i][j][k] = x[i][index[i][j][k]][k] for axis 1.
    `index` may be smaller than x in the other dims; repeats add up in the gradient."""
    @staticmethod
    def forward(ctx, x, index, axis):
        where = _along(index, axis)
        # only the index: torch's gather also saves x (for its shape) and refuses a write to
        # it, but its sort and topk (gather here) do not
        ctx.save_for_backward(where)
        ctx.input_shape = x.shape
        return x[where]

    @staticmethod
    def backward(ctx, grad):
        (where,) = ctx.saved_tensors
        return ctx.xp.index_add(ctx.input_shape, where, grad, True)


class Scatter(ArrayFunction):
    """A copy of x with src written (add=False) or added (add=True) at `index` along `axis`
    (torch.scatter / scatter_add). With repeated indices and add=False one write wins."""
    @staticmethod
    def forward(ctx, x, src, index, axis, add):
        where = _along(index, axis)
        ctx.save_for_backward(where)
        ctx.add = add
        out = x.copy()
        if add:
            np.add.at(out, where, src)
        else:
            out[where] = src
        return out

    @staticmethod
    def backward(ctx, grad):
        (where,) = ctx.saved_tensors
        grad_x = grad
        if not ctx.add:  # overwritten elements do not reach the output
            hit = np.zeros(grad.shape, dtype=bool)
            hit[where] = True
            grad_x = ctx.xp.where(hit, np.zeros((), grad.dtype), grad)
        return grad_x, ctx.xp.getitem(grad, where)


def _along(index, axis):
    """The numpy index tuple that picks index[i, j, k] along `axis` and i, j, k elsewhere."""
    where = list(np.ogrid[tuple(slice(n) for n in index.shape)])
    where[axis] = index
    return tuple(where)


class MaskedFill(ArrayFunction):
    """Where the boolean `mask` (broadcast against x) is True, take `value`; else x. `value` is a
    number, or a 0-d tensor given as a second input (it gets the filled positions' gradient)."""
    @staticmethod
    def forward(ctx, x, *value_tensor, mask, value=None):
        ctx.save_for_backward(mask)
        fill = value_tensor[0] if value_tensor else value
        return np.where(mask, np.asarray(fill, dtype=x.dtype), x)

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        zero = np.zeros((), dtype=grad.dtype)
        grad_x = ctx.xp.where(mask, zero, grad)
        if len(ctx.needs_input_grad) == 1:
            return grad_x
        # the engine sums this to the value's 0-d shape: the total over the filled positions
        return grad_x, (ctx.xp.where(mask, grad, zero) if ctx.needs_input_grad[1] else None)


class Where(ArrayFunction):
    """cond ? a : b elementwise, `cond` a boolean array."""
    @staticmethod
    def forward(ctx, a, b, cond):
        ctx.save_for_backward(cond)
        return np.where(cond, a, b)

    @staticmethod
    def backward(ctx, grad):
        (cond,) = ctx.saved_tensors
        zero = np.zeros((), dtype=grad.dtype)
        return ctx.xp.where(cond, grad, zero), ctx.xp.where(cond, zero, grad)


class Cat(ArrayFunction):
    @staticmethod
    def forward(ctx, *xs, axis):
        ctx.axis = axis
        ctx.splits = np.cumsum([x.shape[axis] for x in xs])[:-1]
        return np.concatenate(xs, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        return tuple(ctx.xp.split(grad, ctx.splits, ctx.axis))


# ---------------------------------------------------------------------------- matmul and softmax

class MatMul(ArrayFunction):
    """a @ b with numpy's rules: batch dims broadcast; a 1-D operand is a row (a) or column (b)."""
    @staticmethod
    def forward(ctx, a, b):
        need_a, need_b = ctx.needs_input_grad
        # a's gradient reads only b and b's only a: as torch, save each only if the other's
        # gradient is needed (a weight may then change in place before backward in `x @ W`
        # when x needs no gradient)
        ctx.save_for_backward(a if need_b else None, b if need_a else None)
        ctx.ndims = a.ndim, b.ndim
        return kernels.matmul(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors  # (None where the other input needs no gradient)
        need_a, need_b = ctx.needs_input_grad
        a_ndim, b_ndim = ctx.ndims
        xp = ctx.xp
        # Give 1-D operands (and the grad) their matrix shape back, so one formula serves all.
        if a_ndim == 1 and need_b:
            a = xp.expand_dims(a, 0)
        if b_ndim == 1 and need_a:
            b = xp.expand_dims(b, 1)
        if b_ndim == 1:  # b first: for vector @ vector the grad is 0-d
            grad = xp.expand_dims(grad, -1)
        if a_ndim == 1:
            grad = xp.expand_dims(grad, -2)
        # Batch dims that were broadcast are summed by the engine; the 1-D row/column dims below.
        grad_a = xp.matmul(grad, xp.swapaxes(b, -1, -2)) if need_a else None
        if need_b and b_ndim <= 2 and a.ndim > 2:
            # A linear layer: sum over a's batch inside one 2-D GEMM, not per item and then
            # by the engine. (a's batch dims are grad's: b has none.)
            rows_a = xp.reshape(a, (-1, a.shape[-1]))
            rows_grad = xp.reshape(grad, (-1, grad.shape[-1]))
            grad_b = xp.matmul(rows_a.T, rows_grad)
        else:
            grad_b = xp.matmul(xp.swapaxes(a, -1, -2), grad) if need_b else None
        if grad_b is not None and b_ndim == 1:
            grad_b = grad_b[..., 0]
        if grad_a is not None and a_ndim == 1:
            grad_a = grad_a[..., 0, :]
        return grad_a, grad_b


class LinearWeightGrad(ArrayFunction):
    """A linear layer's weight gradient as one node: grad (..., out), x (..., in) -> (out, in),
    the sum over rows of grad^T x (the create_graph path of the linear layers; xp.weight_grad).
    Its backward, written once against ctx.xp, with u (out, in) the upstream gradient:
        d/dgrad = x @ u^T,  d/dx = grad @ u"""
    @staticmethod
    def forward(ctx, grad, x):
        need_grad, need_x = ctx.needs_input_grad
        ctx.save_for_backward(grad if need_x else None, x if need_grad else None)  # as MatMul
        return kernels.matmul(grad.reshape(-1, grad.shape[-1]).T, x.reshape(-1, x.shape[-1]))

    @staticmethod
    def backward(ctx, up):
        grad, x = ctx.saved_tensors
        xp = ctx.xp
        need_grad, need_x = ctx.needs_input_grad
        return (xp.matmul(x, xp.swapaxes(up, 0, 1)) if need_grad else None,
                xp.matmul(grad, up) if need_x else None)


class Softmax(ArrayFunction):
    @staticmethod
    def forward(ctx, x, axis):
        out = kernels.softmax(x, axis)
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return ctx.xp.softmax_backward(out, grad, ctx.axis)


class SoftmaxBackward(ArrayFunction):
    """Softmax's input gradient y * (g - sum(g * y)) (y the softmax's output, sums along `axis`)
    as one node: the create_graph path of Softmax (and of attention's weights) records this
    instead of four. Its backward, written once against ctx.xp, with u the upstream gradient:
        d/dg = y * (u - sum(u * y))                   (Softmax's backward again)
        d/dy = u * (g - sum(g * y)) - g * sum(u * y)"""
    @staticmethod
    def forward(ctx, grad, out, axis):
        ctx.save_for_backward(grad if ctx.needs_input_grad[1] else None, out)  # grad: for d/dy
        ctx.axis = axis
        return kernels.softmax_backward(out, grad, axis)

    @staticmethod
    def backward(ctx, up):
        grad, out = ctx.saved_tensors
        xp, axis = ctx.xp, ctx.axis
        need_grad, need_out = ctx.needs_input_grad
        d_grad = xp.softmax_backward(out, up, axis) if need_grad else None
        d_out = None
        if need_out:
            d_out = (up * (grad - xp.sum(grad * out, axis, True))
                     - grad * xp.sum(up * out, axis, True))
        return d_grad, d_out


class LogSoftmaxBackward(ArrayFunction):
    """LogSoftmax's input gradient g - exp(y) * sum(g) (y the log-softmax's output, sums along
    `axis`) as one node: the create_graph path of LogSoftmax records this instead of four. Its
    backward, written once against ctx.xp, with u the upstream gradient and p = exp(y):
        d/dg = u - sum(u * p)
        d/dy = -u * p * sum(g)"""
    @staticmethod
    def forward(ctx, grad, out, axis):
        ctx.save_for_backward(grad if ctx.needs_input_grad[1] else None, out)  # grad: for d/dy
        ctx.axis = axis
        return kernels.log_softmax_backward(out, grad, axis)

    @staticmethod
    def backward(ctx, up):
        grad, out = ctx.saved_tensors
        xp, axis = ctx.xp, ctx.axis
        need_grad, need_out = ctx.needs_input_grad
        up_p = up * xp.exp(out)
        d_grad = up - xp.sum(up_p, axis, True) if need_grad else None
        d_out = -up_p * xp.sum(grad, axis, True) if need_out else None
        return d_grad, d_out


class LogSoftmax(ArrayFunction):
    @staticmethod
    def forward(ctx, x, axis):
        out = kernels.log_softmax(x, axis)
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return ctx.xp.log_softmax_backward(out, grad, ctx.axis)


__all__ = ["ArrayFunction", "unbroadcast"]
