"""Softmax and log-softmax, forward and backward, over one axis.

A row that is -inf everywhere (a fully masked attention row) has no defined softmax; we return
zeros for it (and -inf from log_softmax), never NaN, so one padded query cannot poison a batch.
"""
import math

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic, overload

from ._jit import LazyKernel


def _shifted(x, axis):
    # Subtract the row max so exp never overflows; an all -inf row keeps shift 0 (not NaN).
    row_max = np.max(x, axis=axis, keepdims=True)
    return x - np.where(np.isfinite(row_max), row_max, 0)


def softmax_numpy(x, axis):
    """exp(x - max) / sum(exp(x - max)) along `axis`."""
    e = np.exp(_shifted(x, axis))
    total = e.sum(axis=axis, keepdims=True)
    return e / np.where(total == 0, 1, total)


def softmax_backward_numpy(y, grad, axis):
    """Given y = softmax(x) and dL/dy, dL/dx = y * (grad - sum(grad * y))."""
    return y * (grad - (grad * y).sum(axis=axis, keepdims=True))


def log_softmax_numpy(x, axis):
    """x - max - log(sum(exp(x - max))) along `axis`."""
    shifted = _shifted(x, axis)
    total = np.exp(shifted).sum(axis=axis, keepdims=True)
    return shifted - np.log(np.where(total == 0, 1, total))


def log_softmax_backward_numpy(y, grad, axis):
    """Given y = log_softmax(x) and dL/dy, dL/dx = grad - exp(y) * sum(grad)."""
    return grad - np.exp(y) * grad.sum(axis=axis, keepdims=True)


# ---------------------------------------------------------------------------- Numba kernels
#
# Each kernel works on a C-contiguous (rows, n) array: the wrapper moves the softmax axis last.
# Per row, in one prange task: one pass for the max, one for exp-and-sum, one to scale. The sums
# are allowed to reassociate (`fastmath={'reassoc'}`) so LLVM can keep 8 partial sums in a vector.
#
# np.exp would be a scalar libm call per element here (Numba has no vector exp without Intel's
# SVML), so the loops use `_exp_f32` / `_exp_f64` below, polynomials that vectorize.

_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)        # ln 2 split in two (Cody-Waite) so n * ln2 is exact
_LN2_LO = np.float32(-2.12194440e-4)
_EXP_MIN = np.float32(-88.0)              # round(-88 / ln 2) = -127: the exponent bits of 0.0
_HALF, _ONE = np.float32(0.5), np.float32(1.0)
_TAYLOR = tuple(np.float32(1.0 / math.factorial(k)) for k in range(8))  # 1/k!, k = 0..7


@intrinsic
def _float32_from_bits(typingctx, bits):
    """Reinterpret the low 32 bits of an integer as a float32 (a bit cast, no conversion)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.trunc(args[0], ir.IntType(32)), ir.FloatType())
    return types.float32(bits), codegen


@numba.njit(cache=True, fastmath={"contract"}, inline="always")
def _exp_f32(x):
    """exp(x) for float32 x <= 88, max relative error 7.9e-8 (measured in the tests);
    exactly 0 at and below -88, so masked (-inf) logits give exact zeros.

    exp(x) = 2^n * exp(r) with n = round(x / ln 2) and |r| <= ln2 / 2; exp(r) is a degree-7
    Taylor polynomial (relative error < 8e-9 there), 2^n is built by writing n + 127 into
    the exponent bits of a float32. Inputs are clamped at -88, where n + 127 = 0 writes the
    bit pattern of 0.0: the result is exactly 0 with no extra select."""
    xc = max(x, _EXP_MIN)
    n = np.floor(xc * _LOG2E + _HALF)
    r = xc - n * _LN2_HI - n * _LN2_LO
    c = _TAYLOR
    p = c[7]
    p = p * r + c[6]
    p = p * r + c[5]
    p = p * r + c[4]
    p = p * r + c[3]
    p = p * r + c[2]
    p = p * r + c[1]
    p = p * r + c[0]
    scale = _float32_from_bits((np.int32(n) + 127) << 23)
    return p * scale


@intrinsic
def _float64_from_bits(typingctx, bits):
    """Reinterpret a 64-bit integer as a float64 (a bit cast, no conversion)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(bits), codegen


_LN2_HI_64 = 0.6931471803691238         # ln 2's leading bits (low 32 bits zero): n * hi exact
_LN2_LO_64 = 1.9082149292705877e-10
_EXP_MIN_64 = -1022.0 * math.log(2.0)   # below: 2^n would be subnormal; exp is ~2e-308, give 0
_TAYLOR_64 = tuple(1.0 / math.factorial(k) for k in range(14))  # 1/k!, k = 0..13


@numba.njit(cache=True, fastmath={"contract"}, inline="always")
def _exp_f64(x):
    """exp(x) for float64 x <= 709, within 1 ulp of np.exp on [-708.39, 0] (measured in the
    tests); 0 below -708.39 (where exp is under 2.3e-308) and at -inf.

    As _exp_f32 with a degree-13 Taylor polynomial (truncation error < 5e-18 for |r| <= ln2 / 2)
    and n + 1023 written into the exponent bits of a float64. The clamp keeps n >= -1022 (a
    normal 2^n); the select after it gives the exact 0."""
    xc = max(x, _EXP_MIN_64)
    n = np.floor(xc * 1.4426950408889634 + 0.5)
    r = (xc - n * _LN2_HI_64) - n * _LN2_LO_64
    c = _TAYLOR_64
    p = c[13]
    for k in range(12, -1, -1):  # a constant trip count: unrolled, the loop over x vectorizes
        p = p * r + c[k]
    scale = _float64_from_bits((np.int64(n) + 1023) << 52)
    return 0.0 if x < _EXP_MIN_64 else p * scale


def _exp(x):
    return np.exp(x)


@overload(_exp, inline="always")
def _exp_overload(x):
    # Chosen per dtype at compile time: a polynomial for float32 and float64, libm's otherwise.
    if x == types.float32:
        return lambda x: _exp_f32(x)
    if x == types.float64:
        return lambda x: _exp_f64(x)
    return lambda x: math.exp(x)


@numba.njit(cache=True, inline="always")
def _row_max(x, i, scratch):
    """max(x[i]); `scratch` is any writable row of >= 8 elements (the output row, say).

    Eight running maxima, one per lane of an AVX2 register, stored to 8 adjacent slots at the
    end: LLVM does not vectorize a plain float max loop (NaN rules), but from those adjacent
    stores its SLP vectorizer builds one vector max per 8 elements."""
    n = x.shape[1]
    n8 = n - n % 8
    row_max = x[i, 0]
    if n8 > 0:
        blocks = x[i, :n8].reshape((n8 // 8, 8))  # rows of 8: constant indices, vector loads
        m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = row_max
        for b in range(n8 // 8):
            v = blocks[b]
            m0 = v[0] if v[0] > m0 else m0
            m1 = v[1] if v[1] > m1 else m1
            m2 = v[2] if v[2] > m2 else m2
            m3 = v[3] if v[3] > m3 else m3
            m4 = v[4] if v[4] > m4 else m4
            m5 = v[5] if v[5] > m5 else m5
            m6 = v[6] if v[6] > m6 else m6
            m7 = v[7] if v[7] > m7 else m7
        lanes = scratch[0:8]
        lanes[0], lanes[1], lanes[2], lanes[3] = m0, m1, m2, m3
        lanes[4], lanes[5], lanes[6], lanes[7] = m4, m5, m6, m7
        for k in range(8):
            row_max = lanes[k] if lanes[k] > row_max else row_max
    for j in range(n8, n):
        row_max = x[i, j] if x[i, j] > row_max else row_max
    return row_max


@numba.njit(cache=True, inline="always")
def _max_of(row, n, start):
    """max(start, row[:n]) with eight running maxima: a float max loop does not vectorize (NaN
    rules), and one running maximum makes every compare wait for the one before."""
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = start
    n8 = n - n % 8
    for j in range(0, n8, 8):
        v = row[j]
        m0 = v if v > m0 else m0
        v = row[j + 1]
        m1 = v if v > m1 else m1
        v = row[j + 2]
        m2 = v if v > m2 else m2
        v = row[j + 3]
        m3 = v if v > m3 else m3
        v = row[j + 4]
        m4 = v if v > m4 else m4
        v = row[j + 5]
        m5 = v if v > m5 else m5
        v = row[j + 6]
        m6 = v if v > m6 else m6
        v = row[j + 7]
        m7 = v if v > m7 else m7
    for j in range(n8, n):
        v = row[j]
        m0 = v if v > m0 else m0
    m0, m1, m2, m3 = max(m0, m4), max(m1, m5), max(m2, m6), max(m3, m7)
    return max(max(m0, m2), max(m1, m3))


@numba.njit(cache=True, fastmath={"contract", "reassoc"}, inline="always")
def _row_shift_and_total(x, i, out, zero):
    """Store exp(x[i] - shift) in out[i]; return (shift, total), shift as in `_shifted`."""
    n = x.shape[1]
    row_max = _row_max(x, i, out[i])
    shift = row_max if np.isfinite(row_max) else zero  # an all -inf row: shift 0, not NaN
    total = zero
    for j in range(n):
        e = _exp(x[i, j] - shift)
        out[i, j] = e
        total += e
    return shift, total


def _softmax_rows(x, out):
    zero = np.zeros(1, out.dtype)[0]  # typed like the data: a float literal would be float64
    for i in prange(x.shape[0]):
        shift, total = _row_shift_and_total(x, i, out, zero)
        scale = _ONE / total if total != 0 else zero  # float32 stays float32; -inf row: 0
        for j in range(x.shape[1]):
            out[i, j] *= scale


def _log_softmax_rows(x, out):
    zero = np.zeros(1, out.dtype)[0]
    for i in prange(x.shape[0]):
        shift, total = _row_shift_and_total(x, i, out, zero)
        offset = shift + np.log(total) if total != 0 else zero  # all -inf: x - 0 = -inf
        for j in range(x.shape[1]):
            out[i, j] = x[i, j] - offset


def _softmax_backward_rows(y, grad, out):
    zero = np.zeros(1, out.dtype)[0]
    for i in prange(y.shape[0]):
        dot = zero
        for j in range(y.shape[1]):
            dot += grad[i, j] * y[i, j]
        for j in range(y.shape[1]):
            out[i, j] = y[i, j] * (grad[i, j] - dot)


def _log_softmax_backward_rows(y, grad, out):
    zero = np.zeros(1, out.dtype)[0]
    for i in prange(y.shape[0]):
        total = zero
        for j in range(y.shape[1]):
            total += grad[i, j]
        for j in range(y.shape[1]):
            out[i, j] = grad[i, j] - _exp(y[i, j]) * total


def _signatures(n_inputs):
    def signature(dtype):
        row = f"Array({dtype}, 2, 'C', readonly=True)"
        return f"void({', '.join([row] * n_inputs)}, Array({dtype}, 2, 'C'))"
    return {dtype: signature(dtype) for dtype in ("float32", "float64")}


_OPTIONS = {"parallel": True, "fastmath": {"contract", "reassoc"}}
softmax_rows = LazyKernel(_softmax_rows, _signatures(1), **_OPTIONS)
log_softmax_rows = LazyKernel(_log_softmax_rows, _signatures(1), **_OPTIONS)
softmax_backward_rows = LazyKernel(_softmax_backward_rows, _signatures(2), **_OPTIONS)
log_softmax_backward_rows = LazyKernel(_log_softmax_backward_rows, _signatures(2), **_OPTIONS)
KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _rows_call(kernel, twin, axis, first, *rest):
    """Run a rows kernel over `axis` of same-shape arrays; fall back to the numpy twin for
    dtypes the kernels do not cover and for empty arrays."""
    arrays = (first,) + rest
    if (first.dtype not in KERNEL_DTYPES or first.size == 0 or
            any(a.dtype != first.dtype or a.shape != first.shape for a in rest)):
        return twin(*arrays, axis)
    moved = [np.moveaxis(a, axis, -1) for a in arrays]
    shape = moved[0].shape
    # A copy only when the axis is not already last and contiguous (e.g. softmax over dim 0).
    rows = [np.ascontiguousarray(a).reshape(-1, shape[-1]) for a in moved]
    out = np.empty(rows[0].shape, dtype=first.dtype)
    kernel(*rows, out, work=out.size)
    return np.moveaxis(out.reshape(shape), -1, axis)


def softmax_numba(x, axis):
    """softmax_numpy on the fused Numba kernel."""
    return _rows_call(softmax_rows, softmax_numpy, axis, x)


def softmax_backward_numba(y, grad, axis):
    """softmax_backward_numpy on the fused Numba kernel."""
    return _rows_call(softmax_backward_rows, softmax_backward_numpy, axis, y, grad)


def log_softmax_numba(x, axis):
    """log_softmax_numpy on the fused Numba kernel."""
    return _rows_call(log_softmax_rows, log_softmax_numpy, axis, x)


def log_softmax_backward_numba(y, grad, axis):
    """log_softmax_backward_numpy on the fused Numba kernel."""
    return _rows_call(log_softmax_backward_rows, log_softmax_backward_numpy, axis, y, grad)
