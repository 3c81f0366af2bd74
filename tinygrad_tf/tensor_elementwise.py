"""Tensor methods that apply one function to every element: exp, log and the other math
functions, rounding, sign, clip, the bitwise operators, and division with rounding (`//`, `%`,
`div(rounding_mode=)`) by torch's integer rules. Mixed into `Tensor` (tensor.py)."""
import numbers

import numpy as np

from . import autograd as _autograd
from . import dtypes as _dtypes
from . import function as F
from .dtypes import scalar_category as _scalar_category

_wrap = _autograd._wrap_array


def _sign(array):
    out = np.sign(array)
    return np.where(np.isnan(out), 0, out).astype(out.dtype) if out.dtype.kind == "f" else out


def _broadcasting(fn, a, b, op, **kwargs):
    try:
        return fn.apply(a, b, **kwargs)
    except ValueError as error:  # numpy's broadcast message does not name our op
        raise ValueError(f"{op}: shapes {a.shape} and {b.shape} do not broadcast") from error


def integer_power(base, exponent):
    """base ** exponent in integers, as torch: a negative exponent gives 0 (1 / base**k
    truncated) except for bases 1 and -1; numpy refuses negative integer exponents."""
    exponent = np.asarray(exponent)
    if not (exponent < 0).any():
        return np.asarray(np.power(base, exponent))
    negative = exponent < 0
    out = np.asarray(np.power(base, np.where(negative, 0, exponent)))
    unit = np.where(exponent % 2 == 0, 1, np.asarray(base))  # (-1) ** odd is -1
    return np.where(negative, np.where(np.abs(base) == 1, unit, 0), out).astype(out.dtype)


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


class ElementwiseOps:
    __slots__ = ()  # a mixin of Tensor, which keeps its fields in slots

    # ------------------------------------------------------------------ elementwise

    def _float_input(self):
        return self if self.dtype.kind == "f" else self.float()

    def exp(self):
        return F.Exp.apply(self._float_input())

    def log(self):
        return F.Log.apply(self._float_input())

    def sqrt(self):
        return F.Sqrt.apply(self._float_input())

    def reciprocal(self):
        return F.Reciprocal.apply(self._float_input())

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
        return _wrap(fn(self.array)) if self.dtype.kind != "f" else F.Step.apply(self, fn=fn)

    def floor(self):
        _dtypes.refuse_bool(self, "floor")
        return self._step(np.floor)

    def ceil(self):
        _dtypes.refuse_bool(self, "ceil")
        return self._step(np.ceil)

    def round(self, decimals=0):
        """Round half to even (to `decimals` places), as torch.round."""
        _dtypes.refuse_bool(self, "round")
        return self._step(np.round if decimals == 0 else lambda a: np.round(a, decimals))

    def sign(self):
        """-1, 0 or 1; as torch, sign(NaN) is 0 (numpy's is NaN) and a bool tensor is kept."""
        if self.dtype.kind == "b":
            return _wrap(self.array.copy())
        return self._step(_sign)

    def isnan(self):
        return _wrap(np.isnan(self.array))

    def isfinite(self):
        return _wrap(np.isfinite(self.array))

    def relu(self):
        _dtypes.refuse_bool(self, "relu")
        return F.Relu.apply(self)

    def abs(self):
        _dtypes.refuse_bool(self, "abs")
        return F.Abs.apply(self)

    def clip(self, min=None, max=None):
        if min is None and max is None:
            raise ValueError("clip: give at least one of min and max")
        bounds = [b for b in (min, max) if b is not None]
        if any(isinstance(b, _autograd._Tensor) for b in bounds):
            # as torch: ties keep self (and its gradient); a bound gets it where it is taken
            from .tensor_index import where
            out = self if min is None else where(self < min, min, self)
            return out if max is None else where(out > max, max, out)
        _dtypes.refuse_bool(self, "clamp")
        if not all(isinstance(b, numbers.Real) for b in bounds):
            raise TypeError(f"clip: bounds must be numbers, got {min!r} and {max!r}")
        floats = any(_scalar_category(b) == 2 for b in bounds)
        x = self._float_input() if floats else self  # an int tensor clipped at 0.5 is float32
        return F.Clip.apply(x, low=min, high=max)

    clamp = clip

    # Bitwise ops, as torch: logical on bools, bitwise on integers, refused for floats.
    def __invert__(self):
        if self.dtype.kind == "f":
            raise TypeError(f"~: only for bool and integer tensors, not {self.dtype}")
        return _wrap(np.invert(self.array))

    def _bitwise(self, other, ufunc, op):
        if not isinstance(other, (ElementwiseOps, np.ndarray, numbers.Integral, np.bool_)):
            return NotImplemented
        a, b = self._operands(other, op)
        if a.dtype.kind == "f":
            raise TypeError(f"{op}: only for bool and integer tensors, not {a.dtype}")
        try:
            return _wrap(np.asarray(ufunc(a.array, b.array)))
        except ValueError:
            raise ValueError(f"{op}: shapes {a.shape} and {b.shape} do not broadcast") from None

    def __and__(self, other):
        return self._bitwise(other, np.bitwise_and, "bitwise_and")

    def __or__(self, other):
        return self._bitwise(other, np.bitwise_or, "bitwise_or")

    def __xor__(self, other):
        return self._bitwise(other, np.bitwise_xor, "bitwise_xor")

    __rand__, __ror__, __rxor__ = __and__, __or__, __xor__

    # ------------------------------------------------------------------ division with rounding

    def div(self, other, rounding_mode=None):
        """self / other; rounding_mode 'floor' is `//`, 'trunc' rounds toward zero (both with
        a zero gradient, as torch's)."""
        if rounding_mode is None:
            return self / other
        if rounding_mode == "floor":
            return self // other
        if rounding_mode != "trunc":
            raise RuntimeError(f"div expected rounding_mode to be one of None, 'trunc', or "
                               f"'floor' but found {rounding_mode!r}")
        a, b = self._operands(other, "div")
        _dtypes.refuse_bool(a, "div (trunc)")
        if a.dtype.kind != "f":
            divisor = _nonzero(a, b, "div")
            quotient = np.abs(a.array) // np.abs(divisor)
            return _wrap(np.asarray(np.where((a.array < 0) != (divisor < 0),
                                                    -quotient, quotient)))
        return _broadcasting(F.RoundedQuotient, a, b, "div", rounding=np.trunc)

    def __floordiv__(self, other):
        """floor(self / other); no gradient flows (it is piecewise constant), as in torch.
        Integers divided by zero raise ZeroDivisionError, as torch (numpy would give 0)."""
        a, b = self._operands(other, "floor_divide")
        _dtypes.refuse_bool(a, "floor_divide")
        if a.dtype.kind != "f":
            return _wrap(np.asarray(np.floor_divide(a.array, _nonzero(a, b, "floor_divide"))))
        return _broadcasting(F.RoundedQuotient, a, b, "floor_divide", rounding=np.floor)

    def __rfloordiv__(self, other):
        a, b = self._operands(other, "floor_divide")
        return b // a

    def __mod__(self, other):
        """self - floor(self / other) * other: the sign follows the divisor (torch.remainder)."""
        a, b = self._operands(other, "remainder")
        _dtypes.refuse_bool(a, "remainder")
        if a.dtype.kind != "f":
            return _wrap(np.asarray(np.remainder(a.array, _nonzero(a, b, "remainder"))))
        # the quotient a constant, as torch's gradient: d/db = -floor(a / b) (-inf at b = 0,
        # where a floor() on the graph would give 0 * inf = NaN)
        with np.errstate(divide="ignore", invalid="ignore"):
            quotient = _wrap(np.floor(a.array / b.array))
            out = a - quotient * b
            # the values from numpy's remainder: the formula is NaN at an infinite divisor
            # (5 % inf is 5); `out` is new, no op has saved it yet
            np.copyto(out.array, np.remainder(a.array, b.array))
        return out

    def __rmod__(self, other):
        a, b = self._operands(other, "remainder")
        return b % a

    floor_divide = __floordiv__
    remainder = __mod__
