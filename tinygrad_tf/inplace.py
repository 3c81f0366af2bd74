"""In-place ops (`add_`, `x += y`, `x[i] = v`, ...) and the rules that keep them safe, as torch's:

- under grad mode, a tensor that is part of the graph (a leaf that requires grad, or the result
  of a recorded op) cannot be written in place, and neither can any tensor from an operand that
  requires grad: torch would record the write; here it raises, never giving a wrong gradient.
  Under `no_grad` (an optimizer step) every write is allowed;
- every write bumps the version of the memory written (`versions.py`), shared with views, so a
  backward that needs the old values raises instead of silently using the new ones.

`Tensor` (tensor.py) mixes in `InplaceOps`.
"""
import numpy as np

from . import autograd as _autograd
from . import dtypes as _dtypes
from . import versions as _versions
from .args import bool_mask as _bool_mask, index_arg as _index_arg
from .args import without_leading_ones as _without_leading_ones


def _value(other):
    return other.array if isinstance(other, _autograd._Tensor) else other


class InplaceOps:
    __slots__ = ()  # a mixin of Tensor, which keeps its fields in slots

    def _check_inplace(self, op, *operands):
        if _autograd._GradMode.enabled:
            if self.requires_grad and self._ctx is None:
                raise RuntimeError(
                    f"{op}: a leaf tensor of shape {self.shape} that requires grad cannot be "
                    "changed in place outside no_grad (torch: 'a leaf Variable that requires grad "
                    "is being used in an in-place operation'); write `with no_grad(): ...`")
            if self.requires_grad:
                raise RuntimeError(
                    f"{op}: in-place ops on a tensor that is part of the autograd graph (shape "
                    f"{self.shape}, made by {type(self._ctx).__name__}) are not supported; use "
                    "the out-of-place op (x = x + y, x = x.masked_fill(...))")
            if any(getattr(o, "requires_grad", False) for o in operands):
                raise RuntimeError(
                    f"{op}: writing a tensor that requires grad into a tensor of shape "
                    f"{self.shape} in place is not supported; use the out-of-place op")
        if not self.array.flags.writeable:
            raise RuntimeError(f"{op}: the tensor of shape {self.shape} is a read-only view "
                               "(e.g. made by expand); clone() it before writing to it")

    def _write(self, op, ufunc, other):
        self._check_inplace(op, other)
        try:
            ufunc(self.array, _value(other), out=self.array, casting="same_kind")
        except TypeError:
            kind = np.result_type(self.array, _value(other))
            raise TypeError(f"{op}: the result of type {kind} cannot be stored in place in a "
                            f"tensor of dtype {self.dtype}") from None
        except ValueError:
            raise ValueError(f"{op}: an operand of shape {np.shape(_value(other))} does not "
                             f"broadcast to the tensor's shape {self.shape}") from None
        _versions.increment_version(self.array)
        return self

    def add_(self, other, alpha=1):
        """self += alpha * other, in place."""
        return self._write("add_", np.add, other if alpha == 1 else other * alpha)

    def sub_(self, other, alpha=1):
        """self -= alpha * other, in place."""
        if self.array.dtype.kind == "b" or _dtypes.is_bool(other):
            raise RuntimeError("sub_: subtraction with a bool tensor or a bool is not supported "
                               "(as in torch); to invert a mask use logical_not_()")
        return self._write("sub_", np.subtract, other if alpha == 1 else other * alpha)

    def mul_(self, other):
        return self._write("mul_", np.multiply, other)

    def div_(self, other):
        return self._write("div_", np.true_divide, other)

    def __iadd__(self, other):
        return self.add_(other)

    def __isub__(self, other):
        return self.sub_(other)

    def __imul__(self, other):
        return self.mul_(other)

    def __itruediv__(self, other):
        return self.div_(other)

    def zero_(self):
        return self.fill_(0)

    def fill_(self, value):
        """Set every element to `value` (a number or a one-element tensor)."""
        self._check_inplace("fill_", value)
        self.array[...] = _value(value)
        _versions.increment_version(self.array)
        return self

    def copy_(self, src):
        """Copy src's values (broadcast to this shape, converted to this dtype) into self."""
        self._check_inplace("copy_", src)
        try:
            np.copyto(self.array, _value(src), casting="unsafe")
        except ValueError:
            raise ValueError(f"copy_: source of shape {np.shape(_value(src))} does not broadcast "
                             f"to the tensor's shape {self.shape}") from None
        _versions.increment_version(self.array)
        return self

    def clamp_(self, min=None, max=None):
        if min is None and max is None:
            raise ValueError("clamp_: give at least one of min and max")
        _dtypes.refuse_bool(self, "clamp_")
        self._check_inplace("clamp_")
        np.clip(self.array, min, max, out=self.array)
        _versions.increment_version(self.array)
        return self

    clip_ = clamp_

    def masked_fill_(self, mask, value):
        """Set the elements where the boolean `mask` (broadcast to self) is True to `value`."""
        mask = _bool_mask(mask, "masked_fill_")
        self._check_inplace("masked_fill_", value)
        try:
            np.copyto(self.array, _value(value), where=mask, casting="unsafe")
        except ValueError:
            raise ValueError(f"masked_fill_: mask of shape {mask.shape} does not broadcast to "
                             f"the tensor's shape {self.shape}") from None
        _versions.increment_version(self.array)
        return self

    def __setitem__(self, index, value):
        """self[index] = value, in place (value a number, an array or a tensor)."""
        self._check_inplace("setitem", value)
        index, _ = _index_arg(index, "setitem")
        try:
            self.array[index] = _without_leading_ones(_value(value))
        except (IndexError, ValueError) as error:
            raise type(error)(f"setitem: cannot assign a value of shape {np.shape(_value(value))}"
                              f" to index {index!r} of shape {self.shape}: {error}") from None
        _versions.increment_version(self.array)

    @property
    def _version(self):
        """How many in-place writes this tensor's memory has had (shared with its views)."""
        return _versions.version(self.array)
