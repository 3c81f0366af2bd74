"""The elementwise primitives (binary, then unary): forward and backward side by side.

Part of the op catalogue in function.py, which re-exports every class here; the module
docstring there says how the backwards are written (once, against `ctx.xp`).
"""
import numpy as np

from . import kernels
from .autograd import ArrayFunction, unbroadcast


# ---------------------------------------------------------------------------- elementwise, binary

class Add(ArrayFunction):
    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


class Sub(ArrayFunction):
    @staticmethod
    def forward(ctx, a, b):
        return a - b

    @staticmethod
    def backward(ctx, grad):
        return grad, -grad


class Mul(ArrayFunction):
    @staticmethod
    def forward(ctx, a, b):
        need_a, need_b = ctx.needs_input_grad
        # Each side's gradient reads only the other side, so, as torch, save a only if b needs
        # a gradient and b only if a does: `w` may be written in place in `x * w` before
        # backward when x needs no gradient.
        ctx.save_for_backward(a if need_b else None, b if need_a else None)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        return (grad * b if need_a else None), (grad * a if need_b else None)


class Div(ArrayFunction):
    @staticmethod
    def forward(ctx, a, b):
        # b serves both gradients, a only b's: saved only then (as torch)
        ctx.save_for_backward(a if ctx.needs_input_grad[1] else None, b)
        return a / b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        grad_a = grad / b
        return grad_a, (-grad_a * a / b if ctx.needs_input_grad[1] else None)


class Maximum(ArrayFunction):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.maximum(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        # As torch.maximum: ties split the gradient evenly; where either is NaN (the output
        # NaN) both get all of it, as neither is smaller.
        tie = 0.5 * (a == b)
        return grad * (1.0 - ((a < b) + tie)), grad * (1.0 - ((a > b) + tie))


class Minimum(ArrayFunction):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.minimum(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        tie = 0.5 * (a == b)  # as torch.minimum: ties split evenly, NaN gives both all
        return grad * (1.0 - ((a > b) + tie)), grad * (1.0 - ((a < b) + tie))


# ---------------------------------------------------------------------------- elementwise, unary

class Neg(ArrayFunction):
    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, grad):
        return -grad


def _power(x, p):
    """x ** p; small whole powers by multiplying (numpy's pow for x ** 3.0 is ~20x slower than
    x * x * x, and public code writes torch.pow(x, 3.0) in GELU). Within an ulp or two of pow."""
    if p == 3:
        return x * x * x
    if p == 4:
        square = x * x
        return square * square
    return x ** p  # numpy fast-paths 2, 1, 0.5, 0, -1 itself


class Pow(ArrayFunction):
    """x ** exponent for a Python-number exponent."""
    @staticmethod
    def forward(ctx, x, exponent):
        ctx.save_for_backward(x)
        ctx.exponent = exponent
        return _power(x, exponent)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        p = ctx.exponent
        if p == 0:  # x ** 0 is constant; x ** -1 would turn 0 * inf at x = 0 into NaN
            return ctx.xp.zeros_like(grad)
        return grad * p * _power(x, p - 1)


class Exp(ArrayFunction):
    @staticmethod
    def forward(ctx, x):
        out = np.exp(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad * out


class Log(ArrayFunction):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.log(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / x


class Sqrt(ArrayFunction):
    @staticmethod
    def forward(ctx, x):
        out = np.sqrt(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad / (2 * out)


class Reciprocal(ArrayFunction):
    """1 / x; it saves its result, as torch's (so `number / x`, built on it as torch's is, saves
    no x: writing x in place before backward is fine there and here)."""
    @staticmethod
    def forward(ctx, x):
        out = 1 / x
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return -grad * out * out


class Tanh(ArrayFunction):
    @staticmethod
    def forward(ctx, x):
        out = np.tanh(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad * (1 - out * out)


class Sigmoid(ArrayFunction):
    @staticmethod
    def forward(ctx, x):
        # exp(-|x|) never overflows; dividing by 1 + e keeps full relative precision far into
        # the negative tail (0.5 * (1 + tanh(x / 2)) rounds to 0 below about -17 in float32).
        e = np.exp(-np.abs(x))
        out = np.where(x >= 0, 1, e) / (1 + e)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad * out * (1 - out)


class Relu(ArrayFunction):
    @staticmethod
    def forward(ctx, x):
        out = np.maximum(x, 0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad * (out > 0)


class Abs(ArrayFunction):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.abs(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.xp.sign(x)


class Clip(ArrayFunction):
    """min(max(x, low), high); either bound may be None."""
    @staticmethod
    def forward(ctx, x, low, high):
        ctx.save_for_backward(x)
        ctx.low, ctx.high = low, high
        return np.clip(x, low, high)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        if ctx.low is None:
            return grad * (x <= ctx.high)
        if ctx.high is None:
            return grad * (x >= ctx.low)
        return grad * ((x >= ctx.low) & (x <= ctx.high))


class PowTensor(ArrayFunction):
    """a ** b for two tensors; d/db is a ** b * log(a), taken as 0 where a == 0 and b >= 0."""
    @staticmethod
    def forward(ctx, a, b):
        out = a ** b
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        a, b, out = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        xp = ctx.xp
        grad_a = None
        # The masked-out values are made harmless, not just masked: under create_graph the
        # masked branch's gradient is 0 * (its slope), which would be NaN at an inf.
        if need_a:  # a ** 0 is constant: no 0 * inf = NaN at a == 0
            zero_b = b == 0
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                grad_a = xp.where(zero_b, 0, grad * b * a ** xp.where(zero_b, 1, b - 1))
        grad_b = None
        if need_b:
            constant = (a == 0) & (b >= 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                grad_b = xp.where(constant, 0, grad * out * xp.log(xp.where(constant, 1, a)))
        return grad_a, grad_b


class Erf(ArrayFunction):
    """The error function (numpy has none: a kernel); d/dx erf(x) = 2 / sqrt(pi) exp(-x^2)."""
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return kernels.erf(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (2 / np.sqrt(np.pi)) * ctx.xp.exp(-(x * x))


class Log1p(ArrayFunction):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.log1p(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (1 + x)


class Expm1(ArrayFunction):
    @staticmethod
    def forward(ctx, x):
        out = np.expm1(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad * (out + 1)


class Sin(ArrayFunction):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.sin(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.xp.cos(x)


class Cos(ArrayFunction):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.cos(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return -grad * ctx.xp.sin(x)


class Step(ArrayFunction):
    """A piecewise-constant function (`floor`, `ceil`, `round`, `sign`): gradient zero, as torch."""
    @staticmethod
    def forward(ctx, x, fn):
        return fn(x)

    @staticmethod
    def backward(ctx, grad):
        return ctx.xp.zeros_like(grad)


class RoundedQuotient(ArrayFunction):
    """rounding(a / b) (np.floor for `//`, np.trunc): piecewise constant, so both gradients
    are 0, as torch's div with a rounding mode. It saves a and b as torch does, so writing
    either in place before backward is an error, as there."""
    @staticmethod
    def forward(ctx, a, b, rounding):
        ctx.save_for_backward(a, b)
        with np.errstate(divide="ignore", invalid="ignore"):
            return rounding(a / b)

    @staticmethod
    def backward(ctx, grad):
        ctx.saved_tensors  # noqa: B018 (the in-place check: torch's div saved both)
        zero = ctx.xp.zeros_like(grad)
        return zero, zero


class Cast(ArrayFunction):
    """Change dtype; the gradient is cast back to the input's dtype by the engine."""
    @staticmethod
    def forward(ctx, x, dtype):
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad
