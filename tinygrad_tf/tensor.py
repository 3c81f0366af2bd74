"""The Tensor: a numpy array, an optional gradient, and the op that made it.

This file is the class's core: its fields, `backward`, and the arithmetic operators, each one
primitive from `function.py` after PyTorch's type promotion. The other methods, with PyTorch's
names and semantics, are mixed in from files each readable in one sitting:
`tensor_elementwise.py` (exp, log, rounding, clip, bitwise ops, `//`, `%`), `tensor_index.py`
(views: reshape, permute, expand; indexing, gather/scatter, splitting, `where`/`cat`/`stack`),
`tensor_reduce.py` (reductions, max/min, softmax, sorting), `inplace.py` (in-place ops and
version counters) and `tensor_torch.py` (the rest of torch's surface: `.data`, `item`, `len`,
`repr`, `to()`, `float()`, `new_zeros`...); `factories.py` makes tensors.
"""
import numbers

import numpy as np

from . import autograd as _autograd
from . import dtypes as _dtypes
from . import factories as _factories
from . import function as F
from .dtypes import DEFAULT_FLOAT as _DEFAULT_FLOAT, INDEX as _INDEX
from .dtypes import category as _category, scalar_category as _scalar_category
from .inplace import InplaceOps
from .tensor_elementwise import ElementwiseOps, IntegerDivisionByZero  # noqa: F401 (re-exported)
from .tensor_elementwise import integer_power as _integer_power
from .tensor_index import IndexOps, cat, stack, where  # noqa: F401 (re-exported)
from .tensor_reduce import ReduceOps
from .tensor_torch import TorchMethods


def _as_array(data, dtype=None):
    return _dtypes.as_array(data.array if isinstance(data, Tensor) else data, dtype)


def _binary_op(fn, op, reflected=False):
    """The Tensor method `self <op> other` (`other <op> self` if reflected) for a two-input
    primitive `fn`: promote dtypes as PyTorch does, then one `fn.apply`. A factory, so the common
    case (two Tensors of one dtype) costs a single Python call on top of the primitive."""
    def method(self, other):
        if isinstance(other, Tensor) and other.array.dtype is self.array.dtype:
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


_BOOL_SUB = ("sub: subtraction, the `-` operator, with a bool tensor or a bool is not supported "
             "(as in torch); to invert a mask use `~` or logical_not(), for two masks `^`")


class Tensor(ReduceOps, IndexOps, InplaceOps, ElementwiseOps, TorchMethods):
    """An n-dimensional array that can record the ops applied to it and differentiate them."""

    __slots__ = ("array", "_grad", "_requires_grad", "_ctx", "_retains_grad", "__weakref__")
    __array_ufunc__ = None  # so `numpy_array + tensor` calls Tensor.__radd__ instead of looping

    def __init__(self, data, dtype=None, requires_grad=False):
        """A tensor holding a *copy* of `data`, as torch.tensor (use `from_numpy` to share)."""
        array = _as_array(data, dtype)
        source = data.array if isinstance(data, Tensor) else data
        if isinstance(source, np.ndarray) and np.may_share_memory(array, source):
            array = array.copy()
        self._set_array(array, requires_grad)

    def _set_array(self, array, requires_grad):
        """Fill the fields around `array`, shared as it is (for subclasses like Parameter)."""
        self.array = array
        self._grad = None
        self._ctx = None
        self._retains_grad = self._requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # The ops' fast path: the array is already a valid ndarray, so skip __init__'s checks.
    _wrap = staticmethod(_autograd._wrap_array)

    # ------------------------------------------------------------------ basic properties

    @property
    def shape(self):
        return self.array.shape

    @property
    def ndim(self):
        return self.array.ndim

    @property
    def dtype(self):
        return self.array.dtype

    @property
    def is_leaf(self):
        return self._ctx is None

    __hash__ = object.__hash__  # identity: `==` is elementwise, so it cannot define equality

    # ------------------------------------------------------------------ autograd

    @property
    def grad(self):
        """d(loss)/d(self) as accumulated by backward: a Tensor of this shape and dtype, or None."""
        return self._grad

    @grad.setter
    def grad(self, grad):
        # As torch: refused where the mistake is made, not met later by a backward or optimizer.
        if grad is not None:
            if not isinstance(grad, Tensor):
                raise TypeError(f"assigned grad must be a Tensor or None, not {type(grad)}")
            if grad is self:
                raise RuntimeError("a tensor cannot be assigned as its own grad")
            if grad.dtype != self.dtype or grad.shape != self.shape:
                raise RuntimeError(f"assigning a gradient of shape {grad.shape}, {grad.dtype}, "
                                   f"to a tensor of shape {self.shape}, {self.dtype}")
        self._grad = grad

    @grad.deleter
    def grad(self):
        self._grad = None

    @property
    def requires_grad(self):
        """Whether ops on this tensor are recorded for backward (set on leaves only, as torch)."""
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag):
        if flag.__class__ is not bool:
            raise RuntimeError(f"requires_grad must be a bool, not {type(flag).__name__}")
        if self._ctx is not None:  # a computed tensor's flag follows its inputs
            raise RuntimeError("requires_grad can only be set on a leaf tensor; use detach() to "
                               "cut a computed tensor from the graph")
        self.requires_grad_(flag)

    def requires_grad_(self, requires_grad=True):
        if requires_grad.__class__ is not bool:
            raise TypeError(f"requires_grad_: expected a bool, not {type(requires_grad).__name__}")
        if requires_grad and self.dtype.kind != "f":
            raise RuntimeError(f"requires_grad_: only float tensors can require grad, not "
                               f"{self.dtype}")
        if not requires_grad and self._ctx is not None:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor; use detach()")
        self._requires_grad = requires_grad
        return self

    def retain_grad(self):
        """Keep this non-leaf tensor's gradient in `.grad` during backward."""
        self._retains_grad = True
        return self

    def detach(self):
        """The same data (shared, not copied), cut from the graph."""
        return Tensor._wrap(self.array)

    def clone(self):
        """A copy of the data that stays on the graph (the gradient passes straight through)."""
        return F.Contiguous.apply(self)

    def register_hook(self, hook):
        """Call hook(grad) when this tensor's gradient is computed; a Tensor it returns replaces
        the gradient. Returns a handle whose remove() unregisters the hook."""
        return _autograd.register_hook(self, hook)

    register_post_accumulate_grad_hook = _autograd.register_post_accumulate_grad_hook

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Accumulate d(self)/d(leaf) into the `.grad` of every leaf that requires grad, as torch.

        gradient: d(loss)/d(self), needed unless self has one element. retain_graph (default:
        create_graph) keeps the graph for another backward. create_graph=True records the
        backward itself, so the `.grad`s it makes can be differentiated again (double
        backward: docs/autograd.md). inputs: only these tensors (leaves or not) get `.grad`."""
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad (no input of its graph "
                               "has requires_grad=True, or it was computed under no_grad)")
        if gradient is None:
            if self.array.size != 1:
                raise RuntimeError(f"backward: a tensor of shape {self.shape} needs an explicit "
                                   "grad (gradient=) of the same shape; only a scalar's defaults "
                                   "to 1")
            gradient = np.ones_like(self.array)
        elif not (create_graph and isinstance(gradient, Tensor)):
            gradient = _as_array(gradient, self.dtype)
        if gradient.shape != self.shape:
            raise ValueError(f"backward: grad has shape {gradient.shape} but the tensor has "
                             f"shape {self.shape}")
        if retain_graph is None:
            retain_graph = create_graph
        if create_graph or inputs is not None:  # torch's options: autograd_grad.py
            _autograd.run_backward(self, gradient, retain_graph, create_graph, inputs)
        else:
            _autograd.walk(self, gradient, retain_graph)

    # ------------------------------------------------------------------ arithmetic

    def _operands(self, other, op):
        """Both sides as Tensors of one dtype, promoted as PyTorch does."""
        if isinstance(other, Tensor):
            if other.array.dtype == self.array.dtype:
                return self, other
        elif isinstance(other, np.ndarray):
            other = Tensor._wrap(_as_array(other))  # read, never written: no copy needed
        elif isinstance(other, (numbers.Real, np.bool_)):
            # A Python scalar never changes a tensor's dtype, unless it is of a higher category.
            dtype = self.dtype
            if _scalar_category(other) > _category(dtype):
                dtype = _DEFAULT_FLOAT if _scalar_category(other) == 2 else _INDEX
            return self.to(dtype), Tensor._wrap(np.asarray(other, dtype=dtype))
        else:
            raise TypeError(f"{op}: unsupported operand of type {type(other).__name__}; "
                            "expected a Tensor, a numpy array or a real number")
        dtype = _dtypes.promote(self.array, other.array)
        return self.to(dtype), other.to(dtype)

    # Each binary dunder is made by `_binary_op` (below the class): promotion, then one primitive.
    __add__ = _binary_op(F.Add, "add")  # add(other, alpha=): tensor_torch_extra.py
    __radd__ = _binary_op(F.Add, "add", reflected=True)
    _sub = _binary_op(F.Sub, "sub")
    _rsub = _binary_op(F.Sub, "sub", reflected=True)

    def __sub__(self, other):
        if self.array.dtype.kind == "b" or _dtypes.is_bool(other):
            raise RuntimeError(_BOOL_SUB)
        return self._sub(other)

    def __rsub__(self, other):
        if self.array.dtype.kind == "b" or _dtypes.is_bool(other):
            raise RuntimeError(_BOOL_SUB)
        return self._rsub(other)

    __mul__ = mul = _binary_op(F.Mul, "mul")
    __rmul__ = _binary_op(F.Mul, "mul", reflected=True)
    _div = _binary_op(F.Div, "div")
    _rdiv = _binary_op(F.Div, "div", reflected=True)

    def __truediv__(self, other):
        if self.dtype.kind != "f" and not (isinstance(other, Tensor) and other.dtype.kind == "f"):
            self = self.float()  # true division of integers gives floats, as in torch
        return self._div(other)

    def __rtruediv__(self, other):  # number / x as torch's: reciprocal(x) * number
        x = self if self.dtype.kind == "f" else self.float()
        return x.reciprocal() * other if isinstance(other, numbers.Real) else x._rdiv(other)

    def __neg__(self):
        if self.array.dtype.kind == "b":
            raise RuntimeError("neg: negation, the `-` operator, on a bool tensor is not "
                               "supported (as in torch); to invert a mask use `~` or "
                               "logical_not()")
        return F.Neg.apply(self)

    def __pow__(self, exponent):
        if isinstance(exponent, (Tensor, np.ndarray)):
            if self.dtype.kind == "b" and exponent.dtype.kind == "b":
                _dtypes.refuse_bool(self, "pow")
            if self.dtype.kind != "f" and getattr(exponent, "dtype", None).kind != "f":
                return Tensor._wrap(_integer_power(self.array, _as_array(exponent)))
            base, exponent = self._operands(exponent, "pow")
            try:
                return F.PowTensor.apply(base, exponent)
            except ValueError:
                raise ValueError(f"pow: shapes {base.shape} and {exponent.shape} do not "
                                 "broadcast") from None
        if not isinstance(exponent, numbers.Real):
            raise TypeError(f"pow: exponent must be a number or a Tensor, not "
                            f"{type(exponent).__name__}")
        if self.dtype.kind != "f" and isinstance(exponent, numbers.Integral) and exponent < 0:
            raise ValueError(f"pow: an integer tensor to the negative power {exponent} is not an "
                             "integer; convert with .float() first")
        floats = self.dtype.kind != "f" and not isinstance(exponent, numbers.Integral)
        if self.dtype.kind == "b" and isinstance(exponent, (bool, np.bool_)):
            # torch keeps bool for a bool exponent: x ** True is x, x ** False all True
            return Tensor._wrap(self.array.copy() if exponent else np.ones_like(self.array))
        if self.dtype.kind == "b" and not floats:  # an int lifts bools to int64, as in torch
            return Tensor._wrap(self.array.astype(_INDEX) ** int(exponent))
        return F.Pow.apply(self.float() if floats else self, exponent=exponent)

    def __rpow__(self, base):
        """base ** self for a Python-number base: exp(self * log(base)) for float tensors."""
        if not isinstance(base, numbers.Real):
            raise TypeError(f"pow: a base of type {type(base).__name__} is not supported; "
                            "expected a real number")
        if isinstance(base, (bool, np.bool_)) and self.dtype.kind == "b":
            _dtypes.refuse_bool(self, "pow")
        if self.dtype.kind != "f" and isinstance(base, numbers.Integral):
            return Tensor._wrap(_integer_power(base, self.array))  # int ** int stays int (torch)
        if base <= 0:  # as torch: real for whole exponents, NaN otherwise (0 ** x is 0 or 1)
            exponent = self._float_input()
            return Tensor._wrap(np.asarray(base, exponent.dtype)) ** exponent
        return (self * float(np.log(base))).exp()

    def __matmul__(self, other):
        return self.matmul(other)

    def __rmatmul__(self, other):
        if not isinstance(other, np.ndarray):
            raise TypeError(f"matmul: unsupported operand of type {type(other).__name__}")
        return Tensor._wrap(_as_array(other)).matmul(self)

    pow = __pow__

    def matmul(self, other):
        """self @ other, numpy's rules: batch dims broadcast, a 1-D operand is a vector. Both
        operands of one dtype, not bool, as torch (which promotes nothing here)."""
        a, b = self, other if isinstance(other, Tensor) else Tensor._wrap(_as_array(other))
        if a.dtype != b.dtype:
            raise RuntimeError(f"matmul: expected both operands to have the same dtype, got "
                               f"{a.dtype} and {b.dtype} (as torch); convert one with .to()")
        _dtypes.refuse_bool(a, "matmul")
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

    # Elementwise max and min; NaN propagates and ties split the gradient evenly, as in torch.
    _maximum = _binary_op(F.Maximum, "maximum")
    _minimum = _binary_op(F.Minimum, "minimum")

    # ------------------------------------------------------------------ comparisons (no grad)

    def _compare(self, other, ufunc):
        if isinstance(other, Tensor):
            other = other.array
        elif not isinstance(other, (np.ndarray, numbers.Real, np.bool_)):
            return NotImplemented  # e.g. `t == None` is False, `t < "a"` a TypeError
        try:
            return Tensor._wrap(np.asarray(ufunc(self.array, other)))
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


# ---------------------------------------------------------------------------- module-level ops

tensor = _factories.tensor
from_numpy = _factories.from_numpy
zeros_like, ones_like, full_like = _factories.zeros_like, _factories.ones_like, _factories.full_like
rand_like, randn_like = _factories.rand_like, _factories.randn_like
linspace, randint = _factories.linspace, _factories.randint

_autograd._Tensor = Tensor
