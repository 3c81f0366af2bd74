"""Softmax cross-entropy over the rows of a (rows, C) logits matrix, forward and backward, each
one pass over the logits (nn's FusedCrossEntropy builds the loss and the per-row factors):

forward, per row i with target y = target[i] and class weights w (all 1 without weight):
    lse[i] = log(sum_c exp(z[i, c])),   logp_target[i] = z[i, y] - lse[i],
    smooth[i] = sum_c w[c] * (z[i, c] - lse[i])     (the label-smoothing term)
backward, with p = exp(z - lse) (softmax recomputed from the logits, nothing (rows, C) kept):
    out[i, j] = p[i, j] * coef[i] - off[i] * w[j],   out[i, y] -= picked[i]
and rows with keep[i] False set to 0 (their logits may all be -inf).

The log-softmax matrix is never built: numpy's way (log_softmax, pick, row sums) is four passes
over the logits and a (rows, C) temporary. A row whose logits are all -inf gets lse 0 (so
logp_target = -inf, as log_softmax gives there, and p = 0 in backward), never NaN from -inf + inf.
"""
import numpy as np
from numba import prange

from ._jit import ROWS_SERIAL_BELOW, LazyKernel
from .softmax import _exp, _max_of

KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ---------------------------------------------------------------------------- numpy twins

def cross_entropy_rows_numpy(z, target, weight):
    """-> (lse, logp_target, smooth), each (rows,), as in the module docstring."""
    row_max = z.max(axis=1) if z.shape[0] else np.zeros(0, z.dtype)
    shift = np.where(np.isfinite(row_max), row_max, 0).astype(z.dtype)
    shifted = z - shift[:, None]
    total = np.exp(shifted).sum(axis=1)
    offset = np.log(np.where(total == 0, 1, total)).astype(z.dtype)  # log(sum exp(z - shift))
    logp_target = shifted[np.arange(len(z)), target] - offset
    smooth = shifted @ weight - offset * weight.sum(dtype=z.dtype)
    return shift + offset, logp_target, smooth


def cross_entropy_grad_numpy(z, lse, target, keep, coef, off, weight, picked):
    """The backward formula above, into a new (rows, C) array."""
    p = np.exp(z - lse[:, None])
    p *= coef[:, None]
    p -= off[:, None] * weight[None, :]
    p[np.arange(len(p)), target] -= picked
    p[~keep] = 0
    return p


# ---------------------------------------------------------------------------- Numba kernels

def _cross_entropy_rows(z, target, weight, total_weight, lse, logp_target, smooth):
    m, n = z.shape
    zero = total_weight - total_weight  # 0 typed like the data: every loop in one dtype
    minus_inf = np.full(1, -np.inf, z.dtype)[0]
    for i in prange(m):
        row = z[i]
        row_max = _max_of(row, n, minus_inf)
        shift = row_max if np.isfinite(row_max) else zero
        total = zero
        weighted = zero
        for j in range(n):  # one pass: the exp sum and the weighted sum together
            d = row[j] - shift
            total += _exp(d)
            weighted += weight[j] * d
        offset = np.log(total) if total != zero else zero
        lse[i] = shift + offset
        logp_target[i] = (row[target[i]] - shift) - offset
        smooth[i] = weighted - offset * total_weight


def _cross_entropy_grad_rows(z, lse, target, keep, coef, off, weight, picked, out):
    m, n = z.shape
    for i in prange(m):
        row = out[i]
        if not keep[i]:
            row[:] = 0
            continue
        c, o, s = coef[i], off[i], lse[i]
        for j in range(n):
            row[j] = _exp(z[i, j] - s) * c - o * weight[j]
        row[target[i]] -= picked[i]


def _signatures(kind):
    def signature(dtype):
        matrix, vector = f"Array({dtype}, 2, 'C', readonly=True)", \
            f"Array({dtype}, 1, 'C', readonly=True)"
        out1, out2 = f"Array({dtype}, 1, 'C')", f"Array({dtype}, 2, 'C')"
        target = "Array(int64, 1, 'C', readonly=True)"
        if kind == "forward":
            return f"void({matrix}, {target}, {vector}, {dtype}, {out1}, {out1}, {out1})"
        keep = "Array(boolean, 1, 'C', readonly=True)"
        return (f"void({matrix}, {vector}, {target}, {keep}, {vector}, {vector}, {vector}, "
                f"{vector}, {out2})")
    return {dtype: signature(dtype) for dtype in ("float32", "float64")}


# reassoc: the row sums keep vector partial sums. No nnan/ninf: -inf logits are allowed.
_OPTIONS = {"parallel": True, "fastmath": {"contract", "reassoc"},
            "serial_below": ROWS_SERIAL_BELOW}
cross_entropy_rows_kernel = LazyKernel(_cross_entropy_rows, _signatures("forward"), **_OPTIONS)
cross_entropy_grad_rows = LazyKernel(_cross_entropy_grad_rows, _signatures("backward"),
                                     **_OPTIONS)


def _fits(z, *vectors):
    return (z.dtype in KERNEL_DTYPES and all(v.dtype == z.dtype for v in vectors)
            and z.size > 0)


def cross_entropy_rows_numba(z, target, weight):
    """cross_entropy_rows_numpy on the Numba kernel (other dtypes: the numpy twin)."""
    if not _fits(z, weight):
        return cross_entropy_rows_numpy(z, target, weight)
    m = z.shape[0]
    lse, logp_target, smooth = (np.empty(m, z.dtype) for _ in range(3))
    z, weight = np.ascontiguousarray(z), np.ascontiguousarray(weight)
    target = np.ascontiguousarray(target, dtype=np.int64)
    cross_entropy_rows_kernel(z, target, weight, z.dtype.type(weight.sum(dtype=z.dtype)), lse,
                              logp_target, smooth, work=z.size)
    return lse, logp_target, smooth


def cross_entropy_grad_numba(z, lse, target, keep, coef, off, weight, picked):
    """cross_entropy_grad_numpy on the Numba kernel (other dtypes: the numpy twin)."""
    if not _fits(z, lse, coef, off, weight, picked):
        return cross_entropy_grad_numpy(z, lse, target, keep, coef, off, weight, picked)
    out = np.empty(z.shape, z.dtype)
    z, lse, coef, off, weight, picked = map(np.ascontiguousarray,
                                            (z, lse, coef, off, weight, picked))
    target = np.ascontiguousarray(target, dtype=np.int64)
    keep = np.ascontiguousarray(keep, dtype=bool)
    cross_entropy_grad_rows(z, lse, target, keep, coef, off, weight, picked, out, work=z.size)
    return out
