"""Making tensors: from data (`tensor` copies, `from_numpy` shares), filled, random, ranges.

Each is also a static method of Tensor (`Tensor.zeros(2, 3)`), and the `*_like` ones follow
another tensor's shape and dtype, as in torch.
"""
import numbers

import numpy as np

from . import autograd as _autograd
from . import dtypes as _dtypes
from . import random as _random
from .device import check as _check_device
from .args import shape_arg as _shape_arg
from .dtypes import BOOL as _BOOL, DEFAULT_FLOAT as _DEFAULT_FLOAT, INDEX as _INDEX
from .dtypes import scalar_category as _scalar_category


def _float(dtype):
    """torch's dtype=None: the default float type."""
    return _DEFAULT_FLOAT if dtype is None else dtype


def _new(array, requires_grad=False):
    """A leaf Tensor owning `array` (a fresh array, so no copy is needed)."""
    tensor = _autograd._wrap_array(array)
    return tensor.requires_grad_(True) if requires_grad else tensor


def tensor(data, dtype=None, requires_grad=False, device=None):
    """A new tensor holding a copy of `data` (a Tensor, a numpy array, a list or a number)."""
    _check_device(device, "tensor")
    return _autograd._Tensor(data, dtype=dtype, requires_grad=requires_grad)


def from_numpy(array):
    """A tensor that shares memory with the numpy `array`: writes to one show in the other."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy array, got {type(array).__name__}")
    return _autograd._wrap_array(_dtypes.as_array(array))


def zeros(*shape, dtype=_DEFAULT_FLOAT, requires_grad=False, device=None):
    _check_device(device, "zeros")
    return _new(np.zeros(_shape_arg(shape), _float(dtype)), requires_grad)


def ones(*shape, dtype=_DEFAULT_FLOAT, requires_grad=False, device=None):
    _check_device(device, "ones")
    return _new(np.ones(_shape_arg(shape), _float(dtype)), requires_grad)


def full(shape, fill_value, dtype=None, requires_grad=False, device=None):
    _check_device(device, "full")
    if dtype is None:
        dtype = [_BOOL, _INDEX, _DEFAULT_FLOAT][_scalar_category(fill_value)]
    return _new(np.full(_shape_arg((shape,)), fill_value, dtype), requires_grad)


def _random_float(dtype, op):
    """rand/randn draw floats: torch refuses an integer or bool dtype (a cast would give
    mostly zeros)."""
    dtype = np.dtype(_float(dtype))
    if dtype.kind != "f":
        raise TypeError(f"{op}: draws floats; dtype {dtype} is not supported (as in torch); use "
                        "randint for integers")
    return dtype


def randn(*shape, dtype=_DEFAULT_FLOAT, requires_grad=False, device=None, generator=None):
    _check_device(device, "randn")
    _random_float(dtype, "randn")
    draws = _random.generator_of(generator).standard_normal(_shape_arg(shape))
    return _new(draws.astype(_float(dtype)), requires_grad)


def rand(*shape, dtype=_DEFAULT_FLOAT, requires_grad=False, device=None, generator=None):
    _check_device(device, "rand")
    _random_float(dtype, "rand")
    draws = _random.generator_of(generator).random(_shape_arg(shape))
    return _new(draws.astype(_float(dtype)), requires_grad)


def randint(low, high=None, size=None, dtype=_INDEX, requires_grad=False, device=None,
            generator=None):
    """Integers drawn uniformly from [low, high) (`randint(high, size)` means low = 0)."""
    _check_device(device, "randint")
    if size is None:  # torch.randint(high, size)
        low, high, size = 0, low, high
    if size is None:
        raise TypeError("randint: give a size, e.g. randint(0, 10, (2, 3))")
    if not high > low:
        raise ValueError(f"randint: expected low < high, got low={low} and high={high}")
    size = (size,) if isinstance(size, numbers.Integral) else tuple(size)
    draws = _random.generator_of(generator).integers(low, high, size)
    return _new(draws.astype(_INDEX if dtype is None else dtype), requires_grad)


def arange(start, stop=None, step=1, dtype=None, requires_grad=False, device=None):
    _check_device(device, "arange")
    if stop is None:
        start, stop = 0, start
    if dtype is None:
        floats = any(_scalar_category(v) == 2 for v in (start, stop, step))
        dtype = _DEFAULT_FLOAT if floats else _INDEX
    return _new(np.arange(start, stop, step, dtype=dtype), requires_grad)


def linspace(start, end, steps, dtype=_DEFAULT_FLOAT, requires_grad=False, device=None):
    """`steps` evenly spaced values from start to end, both included."""
    _check_device(device, "linspace")
    if not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"linspace: steps must be a non-negative int, got {steps!r}")
    return _new(np.linspace(start, end, steps).astype(dtype), requires_grad)


def eye(n, m=None, dtype=_DEFAULT_FLOAT, requires_grad=False, device=None):
    _check_device(device, "eye")
    return _new(np.eye(n, m, dtype=dtype), requires_grad)


def zeros_like(tensor, dtype=None, requires_grad=False, device=None):
    _check_device(device, "zeros_like")
    return _new(np.zeros_like(tensor.array, dtype=dtype), requires_grad)


def ones_like(tensor, dtype=None, requires_grad=False, device=None):
    _check_device(device, "ones_like")
    return _new(np.ones_like(tensor.array, dtype=dtype), requires_grad)


def full_like(tensor, fill_value, dtype=None, requires_grad=False, device=None):
    _check_device(device, "full_like")
    return _new(np.full_like(tensor.array, fill_value, dtype=dtype), requires_grad)


def rand_like(tensor, dtype=None, requires_grad=False, device=None):
    _check_device(device, "rand_like")
    return rand(*tensor.shape, dtype=dtype or tensor.dtype, requires_grad=requires_grad)


def randn_like(tensor, dtype=None, requires_grad=False, device=None):
    _check_device(device, "randn_like")
    return randn(*tensor.shape, dtype=dtype or tensor.dtype, requires_grad=requires_grad)
