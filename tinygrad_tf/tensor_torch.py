"""Tensor methods that torch programs use and that are short compositions of the others: the
device (`.device`, `.cpu()`), conversions (`int(t)`, `float(t)`, `f"{t:.4f}"`, `str` of a
0-d tensor as torch prints it), `dim`, `t`, `mm`, `narrow`, `nonzero`, `type`, `scatter_`,
`index_fill_`, `new_zeros`... `Tensor` (tensor.py) mixes in `TorchMethods`.
"""
import math

import numpy as np

from . import autograd as _autograd
from . import device as _device
from . import function as _function
from . import factories as _factories
from . import xp as _xp
from .args import index_tensor as _index_tensor, normalize_dim as _normalize_dim
from .dtypes import DEFAULT_FLOAT as _DEFAULT_FLOAT
from .tensor_torch_extra import TorchExtras

_wrap = _autograd._wrap_array


def _tensor_argument(other, op):
    """torch's elementwise functions of two tensors take no Python number."""
    if not isinstance(other, _autograd._Tensor):
        raise TypeError(f"{op}(): argument 'other' must be Tensor, not {type(other).__name__}")
    return other

# torch's legacy type names (`t.type()`, `t.type('torch.LongTensor')`)
TYPE_NAMES = {np.dtype(np.float32): "torch.FloatTensor", np.dtype(np.float64): "torch.DoubleTensor",
              np.dtype(np.float16): "torch.HalfTensor", np.dtype(np.int64): "torch.LongTensor",
              np.dtype(np.int32): "torch.IntTensor", np.dtype(np.int16): "torch.ShortTensor",
              np.dtype(np.int8): "torch.CharTensor", np.dtype(np.uint8): "torch.ByteTensor",
              np.dtype(np.bool_): "torch.BoolTensor"}
_TYPE_BY_NAME = {name: dtype for dtype, name in TYPE_NAMES.items()}


def torch_dtype_name(dtype):
    """numpy's float32 -> 'torch.float32', as torch prints dtypes."""
    return "torch.bool" if dtype == np.bool_ else f"torch.{np.dtype(dtype).name}"


def format_scalar(value, dtype):
    """One element as torch prints it: `2.3026`, `1.`, `1.0000e-05`, `3`, `True`."""
    if dtype.kind == "b":
        return str(bool(value))
    if dtype.kind in "iu":
        return str(int(value))
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude != 0 and (magnitude >= 1e8 or magnitude < 1e-4):
        return f"{value:.4e}"
    if value == int(value):
        return f"{value:.0f}."
    return f"{value:.4f}"


class TorchMethods(TorchExtras):
    __slots__ = ()  # a mixin of Tensor, which keeps its fields in slots

    # ------------------------------------------------------------------ device

    @property
    def device(self):
        return _device.CPU

    is_cuda = False
    is_cpu = True

    @property
    def grad_fn(self):
        """The op that made this tensor (its recorded node), None for a leaf or without grad;
        `grad_fn.next_functions` walks the graph (autograd_graph.py)."""
        return None if self._ctx is None else self._ctx._edge()[0]

    def cpu(self):
        return self

    def cuda(self, *args, **kwargs):
        raise RuntimeError("cuda(): tinygrad_tf runs on the CPU only; drop the call or use "
                           ".to('cpu')")

    def get_device(self):
        return -1  # torch's answer for a CPU tensor

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

    # ------------------------------------------------------------------ the array and Python's protocols

    # `array` (a slot) is the numpy array holding the values: the engine reads and writes it
    # directly. `data` is torch's: a Tensor sharing that memory, cut from the graph.
    @property
    def data(self):
        """This tensor's values as a new Tensor sharing its memory, with no graph and no grad
        (torch's `.data`). Unlike torch, an in-place write through it bumps the version the
        two share, so a backward that saved the old values raises instead of using new ones."""
        return _wrap(self.array)

    @data.setter
    def data(self, value):
        """`t.data = other` makes `t` hold `other`'s memory (any shape or dtype), as torch."""
        if not isinstance(value, TorchMethods):
            raise TypeError(f"data: a tensor's .data can only be set to a Tensor, not "
                            f"{type(value).__name__} (wrap a numpy array with tensor(...) or "
                            "from_numpy(...))")
        self.array = value.array

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

    def __repr__(self):
        body = np.array2string(self.array, separator=", ", precision=4, prefix="Tensor(")
        extras = "" if self.dtype == _DEFAULT_FLOAT else f", dtype={self.dtype}"
        if self._ctx is not None:
            extras += f", grad_fn={type(self.grad_fn).__name__}"
        elif self.requires_grad:
            extras += ", requires_grad=True"
        return f"Tensor({body}{extras})"

    # ------------------------------------------------------------------ conversions

    def _one_element(self, op):
        if self.array.size != 1:
            raise RuntimeError(f"{op}: only a one-element tensor can be converted to a Python "
                               f"scalar; this one has shape {self.shape}")
        return self.array.reshape(()).item()

    def __int__(self):
        return int(self._one_element("int()"))

    def __float__(self):
        return float(self._one_element("float()"))

    def __index__(self):
        if self.array.dtype.kind not in "iu" or self.array.size != 1:
            raise TypeError("__index__: only integer tensors of a single element can be used as "
                            f"an index (this one: {self.dtype}, shape {self.shape})")
        return int(self.array.reshape(()).item())

    def __format__(self, spec):
        if self.ndim == 0:
            return format(self.array.item(), spec)  # f"{loss:.4f}", as torch
        if spec:
            raise TypeError(f"format: the spec {spec!r} needs a 0-d tensor, this one has shape "
                            f"{self.shape} (format t.item() or t.tolist())")
        return str(self)

    def __str__(self):
        if self.ndim != 0:
            return repr(self)
        extras = ""
        if self.dtype not in (np.float32, np.int64, np.bool_):
            extras += f", dtype={torch_dtype_name(self.dtype)}"
        if self._ctx is not None:
            extras += f", grad_fn=<{self.grad_fn.name()}>"
        elif self.requires_grad:
            extras += ", requires_grad=True"
        return f"tensor({format_scalar(self.array.item(), self.dtype)}{extras})"

    def to(self, *args, **kwargs):
        """torch's `to(dtype)`, `to(device)`, `to(device, dtype)`, `to(other)`: this tensor as
        `dtype` (itself if nothing changes, a copy with copy=True). The device can only be the
        CPU. Only a float result keeps the graph: an int or bool tensor has no gradient."""
        if len(args) == 1 and not kwargs and isinstance(args[0], (np.dtype, type)):
            dtype, copy = np.dtype(args[0]), False  # the common to(dtype): skip the parsing
        else:
            dtype, copy = _device.to_args(args, kwargs)
        if dtype is None or dtype == self.dtype:
            return self.clone() if copy else self
        if dtype.kind != "f":
            return self._wrap(self.array.astype(dtype))
        return _function.Cast.apply(self, dtype=dtype)

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

    def type(self, dtype=None):
        """t.type() -> 'torch.FloatTensor'; t.type(dtype or 'torch.LongTensor') -> converted."""
        if dtype is None:
            return TYPE_NAMES.get(self.dtype, f"torch.{self.dtype.name}")
        if isinstance(dtype, str):
            if dtype not in _TYPE_BY_NAME:
                raise ValueError(f"type: unknown type name {dtype!r}; expected one of "
                                 f"{', '.join(sorted(_TYPE_BY_NAME))}")
            dtype = _TYPE_BY_NAME[dtype]
        elif isinstance(dtype, type) and issubclass(dtype, TorchMethods):
            raise TypeError("type: pass a dtype or a type name, not a class")
        return self.to(dtype)

    def type_as(self, other):
        return self.to(other.dtype)

    def is_floating_point(self):
        return self.dtype.kind == "f"

    def element_size(self):
        return self.array.itemsize

    def is_contiguous(self):
        return self.array.flags.c_contiguous

    # ------------------------------------------------------------------ shapes

    def dim(self):
        return self.array.ndim

    ndimension = dim

    def nelement(self):
        return self.array.size

    def t(self):
        """Transpose a matrix; 0-d and 1-d tensors come back as they are (torch.t)."""
        if self.ndim > 2:
            raise ValueError(f"t: expects a tensor with at most 2 dims, got shape {self.shape}; "
                             "use transpose(dim0, dim1)")
        return self if self.ndim < 2 else self.transpose(0, 1)

    def mm(self, other):
        """Matrix product of two 2-D tensors (torch.mm); matmul broadcasts, mm does not."""
        if self.ndim != 2 or getattr(other, "ndim", None) != 2:
            raise ValueError(f"mm: both operands must be 2-D, got shapes {self.shape} and "
                             f"{getattr(other, 'shape', None)}")
        return self.matmul(other)

    def bmm(self, other):
        """Batched matrix product of two 3-D tensors with the same batch size (torch.bmm)."""
        if self.ndim != 3 or getattr(other, "ndim", None) != 3 or self.shape[0] != other.shape[0]:
            raise ValueError(f"bmm: expected two 3-D tensors with one batch size, got shapes "
                             f"{self.shape} and {getattr(other, 'shape', None)}")
        return self.matmul(other)

    def narrow(self, dim, start, length):
        """The slice [start, start + length) along dim, sharing memory (torch.narrow)."""
        axis = _normalize_dim(dim, self.ndim, "narrow")
        size = self.shape[axis]
        start = int(start)
        if start < 0:
            start += size
        if not (0 <= start <= size and 0 <= length and start + length <= size):
            raise IndexError(f"narrow: start {start} and length {length} do not fit in dim "
                             f"{dim} of size {size}")
        return self[(slice(None),) * axis + (slice(start, start + length),)]

    def nonzero(self, as_tuple=False):
        """Indices of the non-zero elements: an (N, ndim) int64 tensor, or one per dim."""
        if self.ndim == 0:  # torch: shape (1, 0) or (0, 0); as_tuple sees it as 1-D
            if as_tuple:
                return (_wrap(np.flatnonzero(self.array.reshape(1)).astype(np.int64)),)
            return _wrap(np.zeros((int(self.array.item() != 0), 0), np.int64))
        indices = np.nonzero(self.array)
        if as_tuple:
            return tuple(_wrap(i.astype(np.int64)) for i in indices)
        return _wrap(np.stack(indices, axis=1).astype(np.int64))

    def new_tensor(self, data, dtype=None, requires_grad=False):
        return type(self)(data, dtype=dtype or self.dtype, requires_grad=requires_grad)

    def _new_filled(self, fill, size, dtype, requires_grad):
        from .args import shape_arg
        out = _wrap(np.full(shape_arg(size), fill, dtype=dtype or self.dtype))
        return out.requires_grad_(True) if requires_grad else out

    def new_zeros(self, *size, dtype=None, device=None, requires_grad=False):
        _device.check(device, "new_zeros")
        return self._new_filled(0, size, dtype, requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad=False):
        _device.check(device, "new_ones")
        return self._new_filled(1, size, dtype, requires_grad)

    def new_empty(self, *size, dtype=None, device=None, requires_grad=False):
        _device.check(device, "new_empty")
        return self._new_filled(0, size, dtype, requires_grad)

    def new_full(self, size, fill_value, dtype=None, device=None, requires_grad=False):
        _device.check(device, "new_full")
        return self._new_filled(fill_value, (size,), dtype, requires_grad)

    # ------------------------------------------------------------------ in-place index ops

    def scatter_(self, dim, index, src=None, value=None, reduce=None):
        """In place: self[index[i][j]][j] = src[i][j] along dim (src a tensor or a number)."""
        if reduce is not None:
            raise NotImplementedError("scatter_: reduce= is not supported; use scatter_add or "
                                      "scatter_reduce-free code")
        if (src is None) == (value is None):
            raise TypeError("scatter_: give exactly one of src and value")
        src = value if src is None else src
        self._check_inplace("scatter_", src)
        return self.copy_(self.detach().scatter(dim, index, src))

    def index_fill_(self, dim, index, value):
        """In place: every slice along dim at the 1-D `index` set to `value`."""
        axis = _normalize_dim(dim, self.ndim, "index_fill_")
        index = _index_tensor(index, "index_fill_")
        if index.ndim > 1:
            raise ValueError(f"index_fill_: index must be 1-D or 0-d, got shape {index.shape}")
        self._check_inplace("index_fill_", value)
        if isinstance(value, TorchMethods):
            value = value._one_element("index_fill_")
        selection = (slice(None),) * axis + (index.reshape(-1),)
        self[selection] = value
        return self

    def index_fill(self, dim, index, value):
        """A copy with the slices at `index` along dim set to `value` (differentiable)."""
        axis = _normalize_dim(dim, self.ndim, "index_fill")
        mask = np.zeros(self.shape[axis], dtype=bool)
        mask[_index_tensor(index, "index_fill").reshape(-1)] = True
        return self.masked_fill(_wrap(mask.reshape((-1,) + (1,) * (self.ndim - axis - 1))), value)

    # ------------------------------------------------------------------ small composites

    def neg(self):
        return -self

    negative = neg

    def square(self):
        return self ** 2  # (x * x would keep a bool tensor bool; torch gives int64)

    def rsqrt(self):
        return self.sqrt().reciprocal()

    def log2(self):
        return self.log() * (1 / math.log(2))

    def log10(self):
        return self.log() * (1 / math.log(10))

    def multiply(self, other):
        return self * other

    def subtract(self, other, alpha=1):
        return self - (other if alpha == 1 else other * alpha)

    def divide(self, other):
        return self / other

    true_divide = divide

    def clamp_min(self, min):
        return self.clamp(min=min)

    def clamp_max(self, max):
        return self.clamp(max=max)

    def broadcast_to(self, *shape):
        return self.expand(*shape)

    def ravel(self):
        return self.reshape(-1)

    def swapaxes(self, axis0, axis1):
        return self.transpose(axis0, axis1)

    swapdims = swapaxes

    def outer(self, other):
        return self.reshape(-1, 1) * other.reshape(1, -1)

    def dot(self, other):
        if self.ndim != 1 or getattr(other, "ndim", None) != 1:
            raise ValueError(f"dot: expects two 1-D tensors, got shapes {self.shape} and "
                             f"{getattr(other, 'shape', None)}")
        return self.matmul(other)

    def masked_select(self, mask):
        """The elements where the bool `mask` (broadcast) is True, as a 1-D tensor."""
        mask = mask.array if isinstance(mask, TorchMethods) else np.asarray(mask)
        shape = np.broadcast_shapes(self.shape, mask.shape)
        return self.expand(shape)[_wrap(np.broadcast_to(mask, shape))]

    def repeat_interleave(self, repeats, dim=None):
        """Each element (or slice along dim) repeated `repeats` times (an int or a 1-D tensor)."""
        x = self.reshape(-1) if dim is None else self
        axis = 0 if dim is None else _normalize_dim(dim, self.ndim, "repeat_interleave")
        counts = repeats.array if isinstance(repeats, TorchMethods) else repeats
        index = np.repeat(np.arange(x.shape[axis]), counts)
        return x.index_select(axis, _wrap(index))

    def argwhere(self):
        return self.nonzero()

    def isinf(self):
        return _wrap(np.isinf(self.array))

    def logical_not(self):
        return _wrap(np.logical_not(self.array))

    def maximum(self, other):
        return self._maximum(_tensor_argument(other, "maximum"))

    def minimum(self, other):
        return self._minimum(_tensor_argument(other, "minimum"))

    def logical_and(self, other):
        return self._compare(_tensor_argument(other, "logical_and"), np.logical_and)

    def logical_or(self, other):
        return self._compare(_tensor_argument(other, "logical_or"), np.logical_or)

    def logical_xor(self, other):
        return self._compare(_tensor_argument(other, "logical_xor"), np.logical_xor)

    def eq(self, other):
        return self == other

    def ne(self, other):
        return self != other

    def lt(self, other):
        return self < other

    def le(self, other):
        return self <= other

    def gt(self, other):
        return self > other

    def ge(self, other):
        return self >= other

    not_equal, less, less_equal, greater, greater_equal = ne, lt, le, gt, ge

    def equal(self, other):
        """True if both have the same shape and elements (torch.equal)."""
        return self.shape == other.shape and bool(np.array_equal(self.array, other.array))

    def allclose(self, other, rtol=1e-05, atol=1e-08, equal_nan=False):
        other = other.array if isinstance(other, TorchMethods) else other
        return bool(np.allclose(self.array, other, rtol=rtol, atol=atol, equal_nan=equal_nan))

    def multinomial(self, num_samples, replacement=False, generator=None):
        from .torch_names import multinomial
        return multinomial(self, num_samples, replacement, generator=generator)
