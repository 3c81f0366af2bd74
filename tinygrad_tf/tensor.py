"""The Tensor: a numpy array, an optional gradient, and the op that made it.

Ops with PyTorch's names and semantics are methods, each either one primitive from
`function.py` or a short composition of them. The class is spread over a few files, each
readable in one sitting: this one (construction, autograd, arithmetic, elementwise ops,
movement, comparisons), `tensor_reduce.py` (reductions, max/min, softmax, sorting),
`tensor_index.py` (indexing, gather/scatter, splitting, `where`/`cat`/`stack`), `inplace.py`
(in-place ops and version counters) and `factories.py` (making tensors).
"""
import numbers

import numpy as np

from . import autograd as _autograd
from . import dtypes as _dtypes
from . import factories as _factories
from . import function as F
from . import xp as _xp
from .args import normalize_dim as _normalize_dim, normalize_dims as _normalize_dims
from .args import shape_arg as _shape_arg
from .dtypes import BOOL as _BOOL, DEFAULT_FLOAT as _DEFAULT_FLOAT, INDEX as _INDEX
from .dtypes import category as _category, scalar_category as _scalar_category
from .inplace import InplaceOps
from .tensor_index import IndexOps, cat, stack, where  # noqa: F401 (re-exported)
from .tensor_reduce import ReduceOps
from .tensor_torch import TorchMethods
from .device import to_args as _to_args


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


def _sign(array):
    out = np.sign(array)
    return np.where(np.isnan(out), 0, out).astype(out.dtype) if out.dtype.kind == "f" else out


class IntegerDivisionByZero(ZeroDivisionError, RuntimeError):
    """torch raises RuntimeError("ZeroDivisionError") here; both `except`s catch this one."""


def _nonzero(dividend, divisor, op):
    """An integer divisor's array, refused if it holds a zero that divides (an empty result
    divides nothing, as in torch)."""
    empty = 0 in np.broadcast_shapes(dividend.shape, divisor.shape)
    if not empty and not divisor.array.all():
        raise IntegerDivisionByZero(f"{op}: integer division by zero (the divisor holds a 0; "
                                    "convert to float for inf/nan results)")
    return divisor.array


class Tensor(ReduceOps, IndexOps, InplaceOps, TorchMethods):
    """An n-dimensional array that can record the ops applied to it and differentiate them."""

    __slots__ = ("array", "grad", "requires_grad", "_ctx", "_retains_grad", "__weakref__")
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
        self.grad = None
        self._ctx = None
        self._retains_grad = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # The ops' fast path: the array is already a valid ndarray, so skip __init__'s checks.
    _wrap = staticmethod(_autograd._wrap_array)

    # ------------------------------------------------------------------ factories

    zeros = staticmethod(_factories.zeros)
    ones = staticmethod(_factories.ones)
    full = staticmethod(_factories.full)
    randn = staticmethod(_factories.randn)
    rand = staticmethod(_factories.rand)
    randint = staticmethod(_factories.randint)
    arange = staticmethod(_factories.arange)
    linspace = staticmethod(_factories.linspace)
    eye = staticmethod(_factories.eye)
    from_numpy = staticmethod(_factories.from_numpy)

    # ------------------------------------------------------------------ basic properties

    # `array` (a slot) is the numpy array holding the values: the engine reads and writes it
    # directly. `data` is torch's: a Tensor sharing that memory, cut from the graph.
    @property
    def data(self):
        """This tensor's values as a new Tensor sharing its memory, with no graph and no grad
        (torch's `.data`). Unlike torch, an in-place write through it bumps the version the
        two share, so a backward that saved the old values raises instead of using new ones."""
        return Tensor._wrap(self.array)

    @data.setter
    def data(self, value):
        """`t.data = other` makes `t` hold `other`'s memory (any shape or dtype), as torch."""
        if not isinstance(value, Tensor):
            raise TypeError(f"data: a tensor's .data can only be set to a Tensor, not "
                            f"{type(value).__name__} (wrap a numpy array with tensor(...) or "
                            "from_numpy(...))")
        self.array = value.array

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

    def size(self, dim=None):
        return self.array.shape if dim is None else self.array.shape[dim]

    def numel(self):
        return self.array.size

    def numpy(self):
        _xp.check_not_in_graph_backward("Tensor.numpy()")
        return self.array

    def item(self):
        if self.array.size != 1:
            raise ValueError(f"item: only a one-element tensor has an item; this one has shape "
                             f"{self.shape}")
        return self.array.item()

    def tolist(self):
        return self.array.tolist()

    def __array__(self, dtype=None, copy=None):
        _xp.check_not_in_graph_backward("converting a Tensor to a numpy array")
        if dtype is not None and np.dtype(dtype) != self.dtype:
            return self.array.astype(dtype)
        return self.array.copy() if copy else self.array

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.array.shape[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __bool__(self):
        if self.array.size != 1:
            raise RuntimeError(f"bool() of a tensor of shape {self.shape} is ambiguous; "
                               "use .any() or .all()")
        return bool(self.array)

    __hash__ = object.__hash__  # identity: `==` is elementwise, so it cannot define equality

    def __repr__(self):
        body = np.array2string(self.array, separator=", ", precision=4, prefix="Tensor(")
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
        return Tensor._wrap(self.array)

    def clone(self):
        """A copy of the data that stays on the graph (the gradient passes straight through)."""
        return F.Contiguous.apply(self)

    def register_hook(self, hook):
        """Call hook(grad) when this tensor's gradient is computed; a Tensor it returns replaces
        the gradient. Returns a handle whose remove() unregisters the hook."""
        return _autograd.register_hook(self, hook)

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
        _autograd.run_backward(self, gradient, retain_graph, create_graph, inputs)

    # ------------------------------------------------------------------ dtype

    def to(self, *args, **kwargs):
        """torch's `to(dtype)`, `to(device)`, `to(device, dtype)`, `to(other)`: this tensor as
        `dtype` (itself if nothing changes, a copy with copy=True). The device can only be the
        CPU. Only a float result keeps the graph: an int or bool tensor has no gradient."""
        if len(args) == 1 and not kwargs and isinstance(args[0], (np.dtype, type)):
            dtype, copy = np.dtype(args[0]), False  # the common to(dtype): skip the parsing
        else:
            dtype, copy = _to_args(args, kwargs)
        if dtype is None or dtype == self.dtype:
            return self.clone() if copy else self
        if dtype.kind != "f":
            return Tensor._wrap(self.array.astype(dtype))
        return F.Cast.apply(self, dtype=dtype)

    def astype(self, dtype):
        return self.to(np.dtype(dtype))

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
        if isinstance(exponent, (Tensor, np.ndarray)):
            if self.dtype.kind != "f" and getattr(exponent, "dtype", None).kind != "f":
                return Tensor._wrap(np.power(self.array, _as_array(exponent)))
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
        if self.dtype.kind == "b" and not floats:  # an int lifts bools to int64, as in torch
            return Tensor._wrap(self.array.astype(_INDEX) ** int(exponent))
        return F.Pow.apply(self.float() if floats else self, exponent=exponent)

    def __rpow__(self, base):
        """base ** self for a Python-number base: exp(self * log(base)) for float tensors."""
        if not isinstance(base, numbers.Real):
            raise TypeError(f"pow: a base of type {type(base).__name__} is not supported; "
                            "expected a real number")
        if self.dtype.kind != "f" and isinstance(base, numbers.Integral):
            return Tensor._wrap(np.power(base, self.array))  # int ** int stays int, as in torch
        if base <= 0:
            raise ValueError(f"pow: base {base} ** tensor needs a positive base (computed as "
                             "exp(x * log(base)))")
        return (self * float(np.log(base))).exp()

    def __matmul__(self, other):
        return self.matmul(other)

    def __rmatmul__(self, other):
        if not isinstance(other, np.ndarray):
            raise TypeError(f"matmul: unsupported operand of type {type(other).__name__}")
        return Tensor._wrap(_as_array(other)).matmul(self)

    pow = __pow__
    div = __truediv__

    def __floordiv__(self, other):
        """floor(self / other); no gradient flows (it is piecewise constant), as in torch.
        Integers divided by zero raise ZeroDivisionError, as torch (numpy would give 0)."""
        a, b = self._operands(other, "floor_divide")
        if a.dtype.kind != "f":
            return Tensor._wrap(np.asarray(np.floor_divide(a.array, _nonzero(a, b, "floor_divide"))))
        return (a / b).floor()

    def __rfloordiv__(self, other):
        a, b = self._operands(other, "floor_divide")
        return b // a

    def __mod__(self, other):
        """self - floor(self / other) * other: the sign follows the divisor (torch.remainder)."""
        a, b = self._operands(other, "remainder")
        if a.dtype.kind != "f":
            return Tensor._wrap(np.asarray(np.remainder(a.array, _nonzero(a, b, "remainder"))))
        return a - (a / b).floor() * b

    def __rmod__(self, other):
        a, b = self._operands(other, "remainder")
        return b % a

    floor_divide = __floordiv__
    remainder = __mod__

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

    def log1p(self):
        """log(1 + x), precise for small x."""
        return F.Log1p.apply(self._float_input())

    def expm1(self):
        """exp(x) - 1, precise for small x."""
        return F.Expm1.apply(self._float_input())

    def sin(self):
        return F.Sin.apply(self._float_input())

    def erf(self):
        """The error function, 2 / sqrt(pi) * integral of exp(-t^2) from 0 to x."""
        return F.Erf.apply(self._float_input())

    def cos(self):
        return F.Cos.apply(self._float_input())

    def _step(self, fn):
        # Integer and bool tensors are already whole (and have no gradient).
        return Tensor._wrap(fn(self.array)) if self.dtype.kind != "f" else F.Step.apply(self, fn=fn)

    def floor(self):
        return self._step(np.floor)

    def ceil(self):
        return self._step(np.ceil)

    def round(self):
        """Round half to even, as torch.round."""
        return self._step(np.round)

    def sign(self):
        """-1, 0 or 1; as torch, sign(NaN) is 0 (numpy's is NaN) and a bool tensor is kept."""
        if self.dtype.kind == "b":
            return Tensor._wrap(self.array.copy())
        return self._step(_sign)

    def isnan(self):
        return Tensor._wrap(np.isnan(self.array))

    def isfinite(self):
        return Tensor._wrap(np.isfinite(self.array))

    def relu(self):
        return F.Relu.apply(self)

    def abs(self):
        return F.Abs.apply(self)

    # Elementwise max and min; NaN propagates and ties split the gradient evenly, as in torch.
    maximum = _binary_op(F.Maximum, "maximum")
    minimum = _binary_op(F.Minimum, "minimum")

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

    # ------------------------------------------------------------------ movement (numpy views)

    def reshape(self, *shape):
        shape = _shape_arg(shape)
        if any(n < -1 for n in shape):  # numpy would take any negative size as -1
            raise ValueError(f"reshape: invalid size in {shape}: sizes are >= 0, or one -1")
        try:
            return F.Reshape.apply(self, shape=shape)
        except ValueError:
            raise ValueError(f"reshape: cannot view a tensor of shape {self.shape} "
                             f"({self.array.size} elements) as {shape}") from None

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        if self.ndim == 0:
            return self.reshape(1)
        start = _normalize_dim(start_dim, self.ndim, "flatten")
        end = _normalize_dim(end_dim, self.ndim, "flatten")
        if start > end:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} "
                             f"(shape {self.shape})")
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
        return self if self.array.flags.c_contiguous else F.Contiguous.apply(self)

    def expand_as(self, other):
        return self.expand(other.shape)

    def view_as(self, other):
        return self.reshape(other.shape)

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

    # Bitwise ops, as torch: logical on bools, bitwise on integers, refused for floats.
    def __invert__(self):
        if self.dtype.kind == "f":
            raise TypeError(f"~: only for bool and integer tensors, not {self.dtype}")
        return Tensor._wrap(np.invert(self.array))

    def _bitwise(self, other, ufunc, op):
        if not isinstance(other, (Tensor, np.ndarray, numbers.Integral, np.bool_)):
            return NotImplemented
        a, b = self._operands(other, op)
        if a.dtype.kind == "f":
            raise TypeError(f"{op}: only for bool and integer tensors, not {a.dtype}")
        try:
            return Tensor._wrap(np.asarray(ufunc(a.array, b.array)))
        except ValueError:
            raise ValueError(f"{op}: shapes {a.shape} and {b.shape} do not broadcast") from None

    def __and__(self, other):
        return self._bitwise(other, np.bitwise_and, "bitwise_and")

    def __or__(self, other):
        return self._bitwise(other, np.bitwise_or, "bitwise_or")

    def __xor__(self, other):
        return self._bitwise(other, np.bitwise_xor, "bitwise_xor")

    __rand__, __ror__, __rxor__ = __and__, __or__, __xor__


# ---------------------------------------------------------------------------- module-level ops

tensor = _factories.tensor
from_numpy = _factories.from_numpy
zeros_like, ones_like, full_like = _factories.zeros_like, _factories.ones_like, _factories.full_like
rand_like, randn_like = _factories.rand_like, _factories.randn_like
linspace, randint = _factories.linspace, _factories.randint

_autograd._Tensor = Tensor
