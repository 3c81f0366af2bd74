"""Argument checking shared by the Tensor files: dims, shapes, masks and indices."""
import functools
import numbers

import numpy as np

from . import autograd as _autograd
from .dtypes import BOOL as _BOOL, category


def normalize_dim(dim, ndim, op):
    if not isinstance(dim, numbers.Integral):
        raise TypeError(f"{op}: dim must be an int, not {type(dim).__name__}")
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor with {ndim} dims "
                         f"(expected {-max(ndim, 1)} to {max(ndim, 1) - 1})")
    return dim % ndim if ndim else 0


def normalize_dims(dim, ndim, op):
    """dim as an int, a tuple/list of ints or None -> a sorted tuple of non-negative dims, or None."""
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, numbers.Integral) else tuple(dim)
    axes = tuple(sorted({normalize_dim(d, ndim, op) for d in dims}))
    if len(axes) != len(dims):
        raise ValueError(f"{op}: dim {dim} names the same dim twice")
    return axes if ndim else None


def shape_arg(shape):
    """Accept f(2, 3) and f((2, 3)) alike, as torch does."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    shape = tuple(shape)
    for n in shape:
        if not isinstance(n, numbers.Integral):
            raise TypeError(f"shape {shape}: every size must be an int")
    return shape


def bool_mask(mask, op):
    mask = mask.array if isinstance(mask, _autograd._Tensor) else np.asarray(mask)
    if mask.dtype != _BOOL:
        raise TypeError(f"{op}: the mask must be a bool tensor, not {mask.dtype}")
    return mask


def index_arg(index, op="getitem"):
    """Unwrap Tensors in an index; report whether it uses integer/bool arrays (advanced indexing)."""
    items = index if isinstance(index, tuple) else (index,)
    unwrapped, advanced = [], False
    for item in items:
        if isinstance(item, _autograd._Tensor):
            item = item.array
        elif isinstance(item, list):
            item = np.asarray(item)
        elif isinstance(item, slice) and item.step is not None and item.step < 0:
            raise ValueError(f"{op}: slice step must be positive, got {item.step} (as torch); "
                             "use flip() to reverse")
        if isinstance(item, np.ndarray):
            if item.dtype.kind not in "iub":
                raise IndexError(f"{op}: index arrays must be integer or bool, not {item.dtype}")
            advanced = True
        unwrapped.append(item)
    return (tuple(unwrapped) if isinstance(index, tuple) else unwrapped[0]), advanced


def index_tensor(index, op):
    """An integer index array (from a Tensor, array or list) for gather/scatter/index_select."""
    array = index.array if isinstance(index, _autograd._Tensor) else np.asarray(index)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{op}: index must be an integer tensor, not {array.dtype}")
    return array


def without_leading_ones(value):
    """An assigned value without its leading size-1 dims, as torch reads `x[i] = v`: a (1,) value
    fills a single element and a (1, n) value a row of n (numpy refuses a value with more dims
    than its target; leading 1s never change how a value broadcasts)."""
    shape = np.shape(value)
    ones = next((i for i, size in enumerate(shape) if size != 1), len(shape))
    return value if ones == 0 else np.reshape(value, shape[ones:])


def write_out(result, out, op):
    """torch's out=: the result written into `out` (same shape; a dtype it can hold), which is
    returned. As torch, refused where a gradient is recorded (out= records none)."""
    if out is None:
        return result
    if not isinstance(out, _autograd._Tensor):
        raise TypeError(f"{op}: out must be a Tensor, not {type(out).__name__}")
    if _autograd.is_grad_enabled() and (result.requires_grad or out.requires_grad):
        raise RuntimeError(f"{op}(): functions with out=... arguments don't support automatic "
                           "differentiation, but one of the arguments requires grad (as torch)")
    if out.shape != result.shape:
        raise ValueError(f"{op}: out has shape {out.shape}, the result {result.shape} (torch "
                         "would resize out; here it must have the result's shape)")
    if category(result.dtype) > category(out.dtype):
        raise RuntimeError(f"{op}: result type {result.dtype} can't be cast to the desired "
                           f"output type {out.dtype} (as torch)")
    return out.copy_(result)


def accept_numpy_names(cls, names):
    """Let the methods `names` of `cls` also take numpy's spellings `axis=` and `keepdims=` for
    `dim=` and `keepdim=`, as torch's do (`x.sum(axis=1)`)."""
    for name in names:
        setattr(cls, name, _with_numpy_names(cls.__dict__[name]))


def _with_numpy_names(method):
    @functools.wraps(method)
    def renamed(self, *args, **kwargs):
        if "axis" in kwargs or "keepdims" in kwargs:
            if "axis" in kwargs:
                kwargs["dim"] = kwargs.pop("axis")
            if "keepdims" in kwargs:
                kwargs["keepdim"] = kwargs.pop("keepdims")
        return method(self, *args, **kwargs)
    return renamed
