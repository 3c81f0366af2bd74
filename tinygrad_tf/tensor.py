"""The Tensor: a numpy array, an optional gradient, and the op that made it.

Ops with PyTorch's names and semantics are methods here, each either one primitive from
`function.py` or a short composition of them.
"""
import numbers

import numpy as np

from . import autograd as _autograd
from . import dtypes as _dtypes
from . import function as F
from . import random as _random
from .autograd import backward as _run_backward

from .dtypes import BOOL as _BOOL, DEFAULT_FLOAT as _DEFAULT_FLOAT, INDEX as _INDEX
from .dtypes import category as _category, promote_dtypes as _promote_dtypes
from .dtypes import scalar_category as _scalar_category


def _as_array(data, dtype=None):
    return _dtypes.as_array(data.data if isinstance(data, Tensor) else data, dtype)


def _normalize_dim(dim, ndim, op):
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor with {ndim} dims "
                         f"(expected {-max(ndim, 1)} to {max(ndim, 1) - 1})")
    return dim % ndim if ndim else 0


def _normalize_dims(dim, ndim, op):
    """dim as an int, a tuple/list of ints or None -> a sorted tuple of non-negative dims, or None."""
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, numbers.Integral) else tuple(dim)
    axes = tuple(sorted({_normalize_dim(d, ndim, op) for d in dims}))
    if len(axes) != len(dims):
        raise ValueError(f"{op}: dim {dim} names the same dim twice")
    return axes if ndim else None


def _binary_op(fn, op, reflected=False):
    """The Tensor method `self <op> other` (`other <op> self` if reflected) for a two-input
    primitive `fn`: promote dtypes as PyTorch does, then one `fn.apply`. A factory, so the common
    case (two Tensors of one dtype) costs a single Python call on top of the primitive."""
    def method(self, other):
        if isinstance(other, Tensor) and other.data.dtype is self.data.dtype:
            a, b = self, other
        else:
            a, b = self._operands(other, op)
        if reflected:
            a, b = b, a
        try:
            return fn.apply(a, b)
        except ValueError as error:  # numpy's broadcast message does not name our op
            raise ValueError(f"{op}: shapes {a.shape} and {b.shape} do not broadcast") from error
    method.__name__ = method.__qualname__ = op
    return method


class Tensor:
    """An n-dimensional array that can record the ops applied to it and differentiate them."""

    __slots__ = ("data", "grad", "requires_grad", "_ctx", "_retains_grad", "__weakref__")
    __array_ufunc__ = None  # so `numpy_array + tensor` calls Tensor.__radd__ instead of looping

    def __init__(self, data, dtype=None, requires_grad=False):
        self.data = _as_array(data, dtype)
        self.grad = None
        self._ctx = None
        self._retains_grad = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # The ops' fast path: the array is already a valid ndarray, so skip __init__'s checks.
    _wrap = staticmethod(_autograd._wrap_array)

    # ------------------------------------------------------------------ factories

    @staticmethod
    def zeros(*shape, dtype=_DEFAULT_FLOAT, requires_grad=False):
        return Tensor(np.zeros(_shape_arg(shape), dtype), requires_grad=requires_grad)

    @staticmethod
    def ones(*shape, dtype=_DEFAULT_FLOAT, requires_grad=False):
        return Tensor(np.ones(_shape_arg(shape), dtype), requires_grad=requires_grad)

    @staticmethod
    def full(shape, fill_value, dtype=None, requires_grad=False):
        if dtype is None:
            dtype = [_BOOL, _INDEX, _DEFAULT_FLOAT][_scalar_category(fill_value)]
        return Tensor(np.full(_shape_arg((shape,)), fill_value, dtype), requires_grad=requires_grad)

    @staticmethod
    def randn(*shape, dtype=_DEFAULT_FLOAT, requires_grad=False):
        array = _random.generator().standard_normal(_shape_arg(shape)).astype(dtype)
        return Tensor(array, requires_grad=requires_grad)

    @staticmethod
    def rand(*shape, dtype=_DEFAULT_FLOAT, requires_grad=False):
        array = _random.generator().random(_shape_arg(shape)).astype(dtype)
        return Tensor(array, requires_grad=requires_grad)

    @staticmethod
    def arange(start, stop=None, step=1, dtype=None, requires_grad=False):
        if stop is None:
            start, stop = 0, start
        if dtype is None:
            floats = any(_scalar_category(v) == 2 for v in (start, stop, step))
            dtype = _DEFAULT_FLOAT if floats else _INDEX
        return Tensor(np.arange(start, stop, step, dtype=dtype), requires_grad=requires_grad)

    @staticmethod
    def eye(n, m=None, dtype=_DEFAULT_FLOAT, requires_grad=False):
        return Tensor(np.eye(n, m, dtype=dtype), requires_grad=requires_grad)

    # ------------------------------------------------------------------ basic properties

    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def is_leaf(self):
        return self._ctx is None

    def size(self, dim=None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self):
        return self.data.size

    def numpy(self):
        return self.data

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item: only a one-element tensor has an item; this one has shape "
                             f"{self.shape}")
        return self.data.item()

    def tolist(self):
        return self.data.tolist()

    def __array__(self, dtype=None, copy=None):
        if dtype is not None and np.dtype(dtype) != self.dtype:
            return self.data.astype(dtype)
        return self.data.copy() if copy else self.data

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(f"bool() of a tensor of shape {self.shape} is ambiguous; "
                               "use .any() or .all()")
        return bool(self.data)

    __hash__ = object.__hash__  # identity: `==` is elementwise, so it cannot define equality

    def __repr__(self):
        body = np.array2string(self.data, separator=", ", precision=4, prefix="Tensor(")
        extras = "" if self.dtype == _DEFAULT_FLOAT else f", dtype={self.dtype}"
        if self._ctx is not None:
            extras += f", grad_fn={type(self._ctx).__name__}"
        elif self.requires_grad:
            extras += ", requires_grad=True"
        return f"Tensor({body}{extras})"

    # ------------------------------------------------------------------ autograd

    def requires_grad_(self, requires_grad=True):
        if requires_grad and self.dtype.kind != "f":
            raise TypeError(f"requires_grad_: only float tensors can require grad, not {self.dtype}")
        if not requires_grad and self._ctx is not None:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor; use detach()")
        self.requires_grad = requires_grad
        return self

    def retain_grad(self):
        """Keep this non-leaf tensor's gradient in `.grad` during backward."""
        self._retains_grad = True
        return self

    def detach(self):
        """The same data (shared, not copied), cut from the graph."""
        return Tensor._wrap(self.data)

    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into the `.grad` of every leaf that requires grad."""
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad (no input of its graph "
                               "has requires_grad=True, or it was computed under no_grad)")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward: a tensor of shape {self.shape} needs an explicit "
                                   "grad of the same shape; only a scalar's defaults to 1")
            grad = np.ones_like(self.data)
        else:
            grad = _as_array(grad, self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward: grad has shape {grad.shape} but the tensor has "
                                 f"shape {self.shape}")
        _run_backward(self, grad, retain_graph)

    # ------------------------------------------------------------------ dtype

    def to(self, dtype):
        """This tensor as `dtype` (itself if it already is). Only a float result keeps the graph:
        an int or bool tensor has no gradient."""
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self
        if dtype.kind != "f":
            return Tensor._wrap(self.data.astype(dtype))
        return F.Cast.apply(self, dtype=dtype)

    astype = to

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def long(self):
        return self.to(np.int64)

    def bool(self):
        return self.to(np.bool_)

    # ------------------------------------------------------------------ arithmetic

    def _operands(self, other, op):
        """Both sides as Tensors of one dtype, promoted as PyTorch does."""
        if isinstance(other, Tensor):
            if other.data.dtype == self.data.dtype:
                return self, other
        elif isinstance(other, np.ndarray):
            other = Tensor(other)
        elif isinstance(other, (numbers.Real, np.bool_)):
            # A Python scalar never changes a tensor's dtype, unless it is of a higher category.
            dtype = self.dtype
            if _scalar_category(other) > _category(dtype):
                dtype = _DEFAULT_FLOAT if _scalar_category(other) == 2 else _INDEX
            return self.to(dtype), Tensor._wrap(np.asarray(other, dtype=dtype))
        else:
            raise TypeError(f"{op}: unsupported operand of type {type(other).__name__}; "
                            "expected a Tensor, a numpy array or a real number")
        dtype = _dtypes.promote(self.data, other.data)
        return self.to(dtype), other.to(dtype)

    # Each binary dunder is made by `_binary_op` (below the class): promotion, then one primitive.
    __add__ = add = _binary_op(F.Add, "add")
    __radd__ = _binary_op(F.Add, "add", reflected=True)
    __sub__ = sub = _binary_op(F.Sub, "sub")
    __rsub__ = _binary_op(F.Sub, "sub", reflected=True)
    __mul__ = mul = _binary_op(F.Mul, "mul")
    __rmul__ = _binary_op(F.Mul, "mul", reflected=True)
    _div = _binary_op(F.Div, "div")
    _rdiv = _binary_op(F.Div, "div", reflected=True)

    def __truediv__(self, other):
        if self.dtype.kind != "f" and not (isinstance(other, Tensor) and other.dtype.kind == "f"):
            self = self.float()  # true division of integers gives floats, as in torch
        return self._div(other)

    def __rtruediv__(self, other):
        if self.dtype.kind != "f":
            self = self.float()
        return self._rdiv(other)

    def __neg__(self):
        return F.Neg.apply(self)

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor):
            raise TypeError("pow: only a Python-number exponent is supported; for a tensor "
                            "exponent use (exponent * x.log()).exp()")
        if not isinstance(exponent, numbers.Real):
            raise TypeError(f"pow: exponent must be a number, not {type(exponent).__name__}")
        if self.dtype.kind != "f" and isinstance(exponent, numbers.Integral) and exponent < 0:
            raise ValueError(f"pow: an integer tensor to the negative power {exponent} is not an "
                             "integer; convert with .float() first")
        base = self.float() if self.dtype.kind != "f" and not isinstance(exponent, numbers.Integral) else self
        return F.Pow.apply(base, exponent=exponent)

    def __rpow__(self, base):
        """base ** self for a Python-number base: exp(self * log(base)) for float tensors."""
        if not isinstance(base, numbers.Real):
            raise TypeError(f"pow: a base of type {type(base).__name__} is not supported; "
                            "expected a real number")
        if self.dtype.kind != "f" and isinstance(base, numbers.Integral):
            return Tensor._wrap(np.power(base, self.data))  # int ** int stays int, as in torch
        if base <= 0:
            raise ValueError(f"pow: base {base} ** tensor needs a positive base (computed as "
                             "exp(x * log(base)))")
        return (self * float(np.log(base))).exp()

    def __matmul__(self, other):
        return self.matmul(other)

    def __rmatmul__(self, other):
        if not isinstance(other, np.ndarray):
            raise TypeError(f"matmul: unsupported operand of type {type(other).__name__}")
        return Tensor(other).matmul(self)

    pow = __pow__
    div = __truediv__

    def matmul(self, other):
        """self @ other, numpy's rules: batch dims broadcast, a 1-D operand is a vector."""
        a, b = self._operands(other, "matmul")
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: both operands need at least 1 dim, got shapes {a.shape} "
                             f"and {b.shape}")
        inner_a, inner_b = a.shape[-1], b.shape[-2] if b.ndim > 1 else b.shape[0]
        if inner_a != inner_b:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not fit: the last dim "
                             f"of the first ({inner_a}) must equal the "
                             f"{'second-to-last' if b.ndim > 1 else 'only'} dim of the second "
                             f"({inner_b})")
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: batch dims of {a.shape} and {b.shape} do not "
                             "broadcast") from None
        return F.MatMul.apply(a, b)

    # ------------------------------------------------------------------ elementwise

    def _float_input(self):
        return self if self.dtype.kind == "f" else self.float()

    def exp(self):
        return F.Exp.apply(self._float_input())

    def log(self):
        return F.Log.apply(self._float_input())

    def sqrt(self):
        return F.Sqrt.apply(self._float_input())

    def tanh(self):
        return F.Tanh.apply(self._float_input())

    def sigmoid(self):
        return F.Sigmoid.apply(self._float_input())

    def relu(self):
        return F.Relu.apply(self)

    def abs(self):
        return F.Abs.apply(self)

    maximum = _binary_op(F.Maximum, "maximum")

    def clip(self, min=None, max=None):
        if min is None and max is None:
            raise ValueError("clip: give at least one of min and max")
        bounds = [b for b in (min, max) if b is not None]
        if not all(isinstance(b, numbers.Real) for b in bounds):
            raise TypeError(f"clip: bounds must be numbers, got {min!r} and {max!r}")
        floats = any(_scalar_category(b) == 2 for b in bounds)
        x = self._float_input() if floats else self  # an int tensor clipped at 0.5 is float32
        return F.Clip.apply(x, low=min, high=max)

    clamp = clip

    # ------------------------------------------------------------------ reductions

    def sum(self, dim=None, keepdim=False):
        """Sum over `dim` (an int, a tuple, or None for every dim)."""
        return F.Sum.apply(self, axes=_normalize_dims(dim, self.ndim, "sum"), keepdim=keepdim)

    def mean(self, dim=None, keepdim=False):
        axes = _normalize_dims(dim, self.ndim, "mean")
        count = self.data.size if axes is None else int(np.prod([self.shape[a] for a in axes]))
        return self._float_input().sum(axes, keepdim) * (1.0 / max(count, 1))

    def var(self, dim=None, keepdim=False, correction=1):
        """sum((x - mean)^2) / (n - correction) over `dim`: correction=1 is the unbiased estimate.
        As in torch, n <= correction gives NaN (there is no spread to estimate)."""
        axes = _normalize_dims(dim, self.ndim, "var")
        count = self.data.size if axes is None else int(np.prod([self.shape[a] for a in axes]))
        centered = self - self.mean(axes, keepdim=True)
        scale = 1.0 / (count - correction) if count > correction else float("nan")
        return (centered * centered).sum(axes, keepdim) * scale

    def max(self, dim=None, keepdim=False):
        """Largest value over `dim`; the gradient flows to the arg-max."""
        if self.data.size == 0:
            raise ValueError(f"max: the tensor of shape {self.shape} is empty")
        return F.Max.apply(self, axes=_normalize_dims(dim, self.ndim, "max"), keepdim=keepdim)

    def min(self, dim=None, keepdim=False):
        return -(-self).max(dim, keepdim)

    def argmax(self, dim=None, keepdim=False):
        if dim is None:
            return Tensor._wrap(np.asarray(self.data.argmax()))
        axis = _normalize_dim(dim, self.ndim, "argmax")
        return Tensor._wrap(self.data.argmax(axis=axis, keepdims=keepdim))

    def any(self):
        return Tensor._wrap(np.asarray(self.data.any()))

    def all(self):
        return Tensor._wrap(np.asarray(self.data.all()))

    # ------------------------------------------------------------------ softmax

    def softmax(self, dim):
        """exp(x) / sum(exp(x)) along `dim`; a row of all -inf gives zeros, never NaN."""
        axis = _normalize_dim(dim, self.ndim, "softmax")
        if self.ndim == 0:  # the kernels work along a real axis
            return self.reshape(1).softmax(0).reshape(())
        return F.Softmax.apply(self._float_input(), axis=axis)

    def log_softmax(self, dim):
        """x - log(sum(exp(x))) along `dim`, computed stably; a row of all -inf gives -inf
        (log of probability 0) and a finite gradient, never NaN."""
        axis = _normalize_dim(dim, self.ndim, "log_softmax")
        if self.ndim == 0:
            return self.reshape(1).log_softmax(0).reshape(())
        return F.LogSoftmax.apply(self._float_input(), axis=axis)

    # ------------------------------------------------------------------ movement (numpy views)

    def reshape(self, *shape):
        shape = _shape_arg(shape)
        try:
            return F.Reshape.apply(self, shape=shape)
        except ValueError:
            raise ValueError(f"reshape: cannot view a tensor of shape {self.shape} "
                             f"({self.data.size} elements) as {shape}") from None

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        if self.ndim == 0:
            return self.reshape(1)
        start = _normalize_dim(start_dim, self.ndim, "flatten")
        end = _normalize_dim(end_dim, self.ndim, "flatten")
        return self.reshape(self.shape[:start] + (-1,) + self.shape[end + 1:])

    def permute(self, *dims):
        dims = _shape_arg(dims)
        axes = tuple(_normalize_dim(d, self.ndim, "permute") for d in dims)
        if sorted(axes) != list(range(self.ndim)):
            raise ValueError(f"permute: {dims} is not a permutation of the {self.ndim} dims of a "
                             f"tensor of shape {self.shape}")
        return F.Permute.apply(self, dims=axes)

    def transpose(self, dim0, dim1):
        dims = list(range(self.ndim))
        a, b = _normalize_dim(dim0, self.ndim, "transpose"), _normalize_dim(dim1, self.ndim, "transpose")
        if a != b:  # (a 0-d tensor has no dims to swap)
            dims[a], dims[b] = dims[b], dims[a]
        return F.Permute.apply(self, dims=tuple(dims))

    @property
    def T(self):
        if self.ndim != 2:
            raise ValueError(f".T: only for 2-D tensors (this one has shape {self.shape}); "
                             "use transpose or permute")
        return self.transpose(0, 1)

    def unsqueeze(self, dim):
        axis = _normalize_dim(dim, self.ndim + 1, "unsqueeze")
        return self.reshape(self.shape[:axis] + (1,) + self.shape[axis:])

    def squeeze(self, dim=None):
        if dim is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        axes = _normalize_dims(dim, self.ndim, "squeeze") or ()
        return self.reshape(tuple(n for i, n in enumerate(self.shape) if not (i in axes and n == 1)))

    def expand(self, *shape):
        shape = _shape_arg(shape)
        # -1 keeps a dim's size, as in torch.
        lead = len(shape) - self.ndim
        if lead < 0 or -1 in shape[:lead]:
            raise ValueError(f"expand: cannot expand shape {self.shape} to {shape} (the target "
                             "needs at least as many dims, and -1 only for existing dims)")
        full = tuple(self.shape[i - lead] if n == -1 else n for i, n in enumerate(shape))
        try:
            return F.Expand.apply(self, shape=full)
        except ValueError:
            raise ValueError(f"expand: cannot expand shape {self.shape} to {shape}") from None

    def contiguous(self):
        return self if self.data.flags.c_contiguous else F.Contiguous.apply(self)

    # ------------------------------------------------------------------ indexing

    def __getitem__(self, index):
        index, advanced = _index_arg(index)
        try:
            return F.GetItem.apply(self, index=index, advanced=advanced)
        except IndexError as error:
            raise IndexError(f"getitem: index {index!r} does not fit shape {self.shape}: "
                             f"{error}") from None

    def masked_fill(self, mask, value):
        """A copy with `value` wherever the boolean `mask` (broadcast to self) is True."""
        mask = _bool_mask(mask, "masked_fill")
        try:
            np.broadcast_shapes(self.shape, mask.shape)
        except ValueError:
            raise ValueError(f"masked_fill: mask of shape {mask.shape} does not broadcast with "
                             f"the tensor's shape {self.shape}") from None
        return F.MaskedFill.apply(self, mask=mask, value=value)

    # ------------------------------------------------------------------ comparisons (no grad)

    def _compare(self, other, ufunc):
        if isinstance(other, Tensor):
            other = other.data
        elif not isinstance(other, (np.ndarray, numbers.Real, np.bool_)):
            return NotImplemented  # e.g. `t == None` is False, `t < "a"` a TypeError
        try:
            return Tensor._wrap(np.asarray(ufunc(self.data, other)))
        except ValueError:
            raise ValueError(f"{ufunc.__name__}: shapes {self.shape} and {np.shape(other)} do "
                             "not broadcast") from None

    def __eq__(self, other):
        return self._compare(other, np.equal)

    def __ne__(self, other):
        return self._compare(other, np.not_equal)

    def __lt__(self, other):
        return self._compare(other, np.less)

    def __le__(self, other):
        return self._compare(other, np.less_equal)

    def __gt__(self, other):
        return self._compare(other, np.greater)

    def __ge__(self, other):
        return self._compare(other, np.greater_equal)

    def __invert__(self):
        if self.dtype != _BOOL:
            raise TypeError(f"~: only for bool tensors, not {self.dtype}")
        return Tensor._wrap(~self.data)

    def __and__(self, other):
        return self._compare(other, np.logical_and)

    def __or__(self, other):
        return self._compare(other, np.logical_or)


# ---------------------------------------------------------------------------- module-level ops

def where(condition, a, b):
    """Elementwise `a` where `condition` is True, else `b` (all three broadcast together)."""
    cond = _bool_mask(condition, "where")
    if isinstance(a, Tensor):
        a, b = a._operands(b, "where")
    elif isinstance(b, Tensor):
        b, a = b._operands(a, "where")  # a scalar `a` follows b's dtype, as in torch
    else:
        a, b = Tensor(a)._operands(b, "where")
    try:
        np.broadcast_shapes(cond.shape, a.shape, b.shape)
    except ValueError:
        raise ValueError(f"where: condition {cond.shape}, a {a.shape} and b {b.shape} do not "
                         "broadcast") from None
    return F.Where.apply(a, b, cond=cond)


def cat(tensors, dim=0):
    """Join tensors along an existing dim."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    first = tensors[0]
    if first.ndim == 0:
        raise ValueError("cat: 0-d tensors cannot be joined; use stack")
    axis = _normalize_dim(dim, first.ndim, "cat")
    dtype = first.dtype
    for t in tensors[1:]:
        if not isinstance(t, Tensor):
            raise TypeError(f"cat: expected Tensors, got a {type(t).__name__}")
        if t.ndim != first.ndim or any(
                a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != axis):
            raise ValueError(f"cat: shapes {[tuple(x.shape) for x in tensors]} must match except "
                             f"in dim {dim}")
        dtype = _promote_dtypes(dtype, t.dtype)
    return F.Cat.apply(*[t.to(dtype) for t in tensors], axis=axis)


def stack(tensors, dim=0):
    """Join tensors of one shape along a new dim."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack: all tensors need the same shape, got {sorted(shapes)}")
    axis = _normalize_dim(dim, tensors[0].ndim + 1, "stack")
    return cat([t.unsqueeze(axis) for t in tensors], dim=axis)


def zeros_like(tensor, dtype=None, requires_grad=False):
    return Tensor(np.zeros_like(tensor.data, dtype=dtype), requires_grad=requires_grad)


def ones_like(tensor, dtype=None, requires_grad=False):
    return Tensor(np.ones_like(tensor.data, dtype=dtype), requires_grad=requires_grad)


# ---------------------------------------------------------------------------- argument helpers

def _shape_arg(shape):
    """Accept f(2, 3) and f((2, 3)) alike, as torch does."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    shape = tuple(shape)
    for n in shape:
        if not isinstance(n, numbers.Integral):
            raise TypeError(f"shape {shape}: every size must be an int")
    return shape


def _bool_mask(mask, op):
    mask = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
    if mask.dtype != _BOOL:
        raise TypeError(f"{op}: the mask must be a bool tensor, not {mask.dtype}")
    return mask


def _index_arg(index):
    """Unwrap Tensors in an index; report whether it uses integer/bool arrays (advanced indexing)."""
    items = index if isinstance(index, tuple) else (index,)
    unwrapped, advanced = [], False
    for item in items:
        if isinstance(item, Tensor):
            item = item.data
        elif isinstance(item, list):
            item = np.asarray(item)
        if isinstance(item, np.ndarray):
            if item.dtype.kind not in "iub":
                raise IndexError(f"getitem: index arrays must be integer or bool, not {item.dtype}")
            advanced = True
        unwrapped.append(item)
    return (tuple(unwrapped) if isinstance(index, tuple) else unwrapped[0]), advanced


_autograd._Tensor = Tensor
