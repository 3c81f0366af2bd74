"""Layer norm over the rows of a matrix, optionally of a residual sum with dropout first:

    h = x + (s + c) * mask * scale   (the Transformer's "Add & Norm" with dropout; just h = x
                                  when there is no residual s, mask = 1 without dropout; c the
                                  bias of the linear layer that made s, folded in here so that
                                  layer needs no pass of its own, else 0)
    out = (h - mean(h)) * rstd * weight + bias,  rstd = 1 / sqrt(var(h) + eps)   (per row,
                                  biased variance)

numpy's version is about six passes over memory with a temporary per pass; a row of d_model
floats fits in L1, so the Numba kernel reads each input once and writes each output once, one
row per prange task; the row's sum and sum of squares come from the pass that reads (or builds)
it, with a second pass only where the mean dominates the variance (`_normalize_row`). Forward
keeps h (x itself without a residual), mean and rstd for backward, as torch does, not the
normalised rows: without a residual that is one full-size write fewer, and backward recomputes
(h - mean) * rstd as it reads h.
Backward is one pass per row as well, with weight's and bias's column sums kept per chunk of
rows (a fixed number of chunks so the result does not depend on the thread count) and added at
the end, in the kernel (numpy's sums of them cost more than a small row pass). Every loop
computes in the data's dtype: a float64 accumulator in a float32 loop costs a conversion per
element and halves the vector width.
"""
import math

import numba
import numpy as np
from numba import prange

from ._jit import LazyKernel

KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
CHUNKS = 16  # row chunks for the backward's column sums (partials summed in order)


# ---------------------------------------------------------------------------- numpy twins

def layer_norm_forward_numpy(x, weight, bias, eps, residual=None, mask=None, scale=1.0,
                             residual_bias=None):
    """x, residual (M, N), mask (M, N) bool or None, residual_bias (N,) or None -> (out, h, mean,
    rstd): h the rows normalised (x itself without a residual), mean and rstd = 1 / sqrt(var +
    eps) per row (M,), out = (h - mean) * rstd * weight + bias."""
    h = x
    if residual is not None:
        if residual_bias is not None:
            residual = residual + residual_bias
        dropped = residual if mask is None else residual * mask * x.dtype.type(scale)
        h = x + dropped
    width = h.shape[1]
    mean = h.mean(axis=1, dtype=h.dtype)
    centered = h - mean[:, None]
    var = np.einsum("ij,ij->i", centered, centered) / width
    rstd = (1 / np.sqrt(var + eps)).astype(x.dtype)
    out = centered
    out *= rstd[:, None]  # in place: `centered` is not needed again
    out *= weight
    out += bias
    return out, h, mean, rstd


def layer_norm_backward_numpy(grad, h, mean, rstd, weight, mask=None, scale=1.0, residual=False,
                              residual_bias=False):
    """-> (grad_x, grad_weight, grad_bias, grad_residual or None), and with residual_bias
    grad_residual's column sum (the residual bias's gradient) last, for the forward above:
    grad_h = rstd * (g - mean(g) - normed * mean(g * normed)) with g = grad * weight and normed
    = (h - mean) * rstd; grad_x = grad_h, grad_residual = grad_h * mask * scale (grad_x itself
    without a mask)."""
    width = h.shape[1]
    normed = (h - mean[:, None]) * rstd[:, None]
    g = grad * weight
    mean_g = g.mean(axis=1, keepdims=True)
    mean_gx = np.einsum("ij,ij->i", g, normed)[:, None] / width
    g -= mean_g
    g -= normed * mean_gx
    g *= rstd[:, None]
    grad_residual = None
    if residual:
        grad_residual = g if mask is None else g * mask * g.dtype.type(scale)
    grads = (g, np.einsum("ij,ij->j", grad, normed), grad.sum(axis=0), grad_residual)
    return grads + (grad_residual.sum(axis=0),) if residual_bias else grads


# ---------------------------------------------------------------------------- Numba kernels

@numba.njit(cache=True, inline="always")
def _as_dtype_of(n, like):
    """n as a float typed like `like`'s elements: `total / n` with an int n would be float64
    (float32 / int is) and turn every loop using the result into float64, a conversion per
    element. (A division, not a multiply by 1/n: the mean of a constant row stays exact.)"""
    typed = np.empty(1, like.dtype)
    typed[0] = n
    return typed[0]


@numba.njit(cache=True, inline="always")
def _normalize_row(h, total, squares, out, weight, bias, eps, width, mean, rstd, i):
    """out = (h - mean) * rstd * weight + bias for one row, given its sum and sum of squares;
    stores mean[i] and rstd[i]. The variance comes from the two sums (one pass over the row,
    which the caller made) unless the mean dominates it, where that difference would lose
    digits: then (and for a constant row, whose variance must be exactly 0) from a second pass
    over h - mean. Where the one-pass form is taken, var >= mean^2 / 4, so its rounding error is
    at most ~5 ulp of the variance (the two-pass form's is ~1)."""
    n = h.shape[0]
    zero = eps - eps
    mean[i] = total / width
    mu = mean[i]
    var = squares / width - mu * mu
    if not var * 4 > mu * mu:  # (also NaN: the two passes propagate it)
        spread = zero
        for j in range(n):
            d = h[j] - mu
            spread += d * d
        var = spread / width
    rstd[i] = 1.0 / math.sqrt(var + eps)
    r = rstd[i]  # read back in the data's dtype: the loop below stays float32 for float32
    for j in range(n):
        out[j] = (h[j] - mu) * r * weight[j] + bias[j]


def _layer_norm_rows(x, residual, residual_bias, mask, weight, bias, eps, scale, has_residual,
                     has_mask, out, h_rows, mean, rstd):
    m, n = x.shape
    zero = scale - scale  # 0 typed like the data
    width = _as_dtype_of(n, x)
    for i in prange(m):
        total = zero
        squares = zero
        if has_residual:  # h = x + s goes to `h_rows` (kept for backward), summed as it goes
            h = h_rows[i]
            if has_mask:  # one loop per case: no branch inside the vector loops
                keep = mask[i]
                for j in range(n):
                    v = x[i, j] + ((residual[i, j] + residual_bias[j]) * scale
                                   if keep[j] else zero)
                    h[j] = v
                    total += v
                    squares += v * v
            else:  # (residual_bias is zeros when there is none: s + 0 is s)
                for j in range(n):
                    v = x[i, j] + (residual[i, j] + residual_bias[j])
                    h[j] = v
                    total += v
                    squares += v * v
            _normalize_row(h, total, squares, out[i], weight, bias, eps, width, mean, rstd, i)
        else:  # x itself is h: nothing written but the output
            row = x[i]
            for j in range(n):
                total += row[j]
                squares += row[j] * row[j]
            _normalize_row(row, total, squares, out[i], weight, bias, eps, width, mean, rstd, i)


def _layer_norm_backward_rows(grad, h_rows, mean, rstd, weight, mask, scale, has_residual,
                              has_mask, residual_bias, grad_x, grad_residual, partials, sums):
    m, n = h_rows.shape
    chunks = partials.shape[1]
    zero = scale - scale  # 0 typed like the data: every loop stays in one dtype and vectorizes
    width = _as_dtype_of(n, h_rows)
    for c in prange(chunks):
        column_w, column_b = partials[0, c], partials[1, c]
        column_rb = partials[partials.shape[0] - 1, c]  # partials[2]: only with residual_bias
        column_w[:] = zero
        column_b[:] = zero
        if residual_bias:
            column_rb[:] = zero
        for i in range(c * m // chunks, (c + 1) * m // chunks):
            g_row, h = grad[i], h_rows[i]
            mu, r = mean[i], rstd[i]
            sum_g = zero
            sum_gx = zero
            for j in range(n):  # one pass: row sums, and weight's and bias's column sums
                g, x = g_row[j], (h[j] - mu) * r  # x: the forward's normalised value
                gw = g * weight[j]
                sum_g += gw
                sum_gx += gw * x
                column_w[j] += g * x
                column_b[j] += g
            mean_g = sum_g / width
            mean_gx = sum_gx / width
            out = grad_x[i]
            # one loop per case: no branch inside the vector loops. Without a mask the
            # residual's gradient is grad_x itself (the caller passes the same array).
            if has_residual and has_mask:  # (two loops: 10% faster than one writing both)
                for j in range(n):
                    out[j] = r * (g_row[j] * weight[j] - mean_g - (h[j] - mu) * r * mean_gx)
                keep, dropped = mask[i], grad_residual[i]
                for j in range(n):
                    dropped[j] = out[j] * scale if keep[j] else zero
                if residual_bias:  # the folded linear bias's column sum, this chunk's rows
                    for j in range(n):
                        column_rb[j] += dropped[j]
            elif has_residual and residual_bias:
                for j in range(n):
                    value = r * (g_row[j] * weight[j] - mean_g - (h[j] - mu) * r * mean_gx)
                    out[j] = value
                    column_rb[j] += value
            else:
                for j in range(n):
                    out[j] = r * (g_row[j] * weight[j] - mean_g - (h[j] - mu) * r * mean_gx)
    for j in range(n):  # the chunks' column sums, in order
        sum_w, sum_b = partials[0, 0, j], partials[1, 0, j]
        for c in range(1, chunks):
            sum_w += partials[0, c, j]
            sum_b += partials[1, c, j]
        sums[0, j], sums[1, j] = sum_w, sum_b
    if residual_bias:
        for j in range(n):
            sum_rb = partials[2, 0, j]
            for c in range(1, chunks):
                sum_rb += partials[2, c, j]
            sums[2, j] = sum_rb


def _signatures(kind):
    def signature(dtype):
        matrix, vector = f"Array({dtype}, 2, 'C', readonly=True)", \
            f"Array({dtype}, 1, 'C', readonly=True)"
        out2, out1 = f"Array({dtype}, 2, 'C')", f"Array({dtype}, 1, 'C')"
        mask = "Array(boolean, 2, 'C', readonly=True)"
        if kind == "forward":
            return (f"void({matrix}, {matrix}, {vector}, {mask}, {vector}, {vector}, {dtype}, "
                    f"{dtype}, boolean, boolean, {out2}, {out2}, {out1}, {out1})")
        return (f"void({matrix}, {matrix}, {vector}, {vector}, {vector}, {mask}, {dtype}, "
                f"boolean, boolean, boolean, {out2}, {out2}, Array({dtype}, 3, 'C'), {out2})")
    return {dtype: signature(dtype) for dtype in ("float32", "float64")}


# Below this many elements a call runs on one thread. Lower than the other row kernels' 2^19
# (ROWS_SERIAL_BELOW): inside a training step, where a GEMM has just used the second core, two
# threads won from 1024 x 256 on (short step at 2 threads, one process, alternated per step: layer
# norm 9.2 -> 7.5-7.9 ms a step; medium 6.8-7.5 -> 6.0-7.2; small's 1024 x 128 the same either
# way). A call alone, after the second core has idled, still pays ~40 us to wake it and is
# faster serial up to 1024 x 512 (docs/kernels.md).
SERIAL_BELOW = 1 << 18
_OPTIONS = {"parallel": True, "fastmath": {"contract", "reassoc"}, "serial_below": SERIAL_BELOW}
layer_norm_rows = LazyKernel(_layer_norm_rows, _signatures("forward"), **_OPTIONS)
layer_norm_backward_rows = LazyKernel(_layer_norm_backward_rows, _signatures("backward"),
                                      **_OPTIONS)
_NO_MASK = np.ones((1, 1), dtype=bool)


def _fits(*arrays):
    # C-order too: the kernels' signatures take nothing else (nn's layer norm passes C-order
    # arrays; a strided one from a direct call goes to the twin, not to numba's TypeError)
    return arrays[0].dtype in KERNEL_DTYPES and all(
        a.dtype == arrays[0].dtype and a.flags.c_contiguous for a in arrays)


def layer_norm_forward_numba(x, weight, bias, eps, residual=None, mask=None, scale=1.0,
                             residual_bias=None):
    """layer_norm_forward_numpy on the Numba kernel (other dtypes: the numpy twin)."""
    extra = [a for a in (residual, residual_bias) if a is not None]
    if not _fits(x, weight, bias, *extra) or x.size == 0:
        return layer_norm_forward_numpy(x, weight, bias, eps, residual, mask, scale,
                                        residual_bias)
    out = np.empty_like(x)
    h = x if residual is None else np.empty_like(x)
    mean, rstd = np.empty(x.shape[0], dtype=x.dtype), np.empty(x.shape[0], dtype=x.dtype)
    dtype = x.dtype.type
    if residual_bias is None:
        residual_bias = np.zeros(x.shape[1], x.dtype)
    layer_norm_rows(x, x if residual is None else residual, residual_bias,
                    _NO_MASK if mask is None else mask, weight, bias, dtype(eps), dtype(scale),
                    residual is not None, mask is not None, out, out if residual is None else h,
                    mean, rstd, work=x.size)
    return out, h, mean, rstd


def layer_norm_backward_numba(grad, h, mean, rstd, weight, mask=None, scale=1.0, residual=False,
                              residual_bias=False):
    """layer_norm_backward_numpy on the Numba kernel (other dtypes: the numpy twin)."""
    if not _fits(grad, h, mean, rstd, weight) or grad.size == 0:
        return layer_norm_backward_numpy(grad, h, mean, rstd, weight, mask, scale, residual,
                                         residual_bias)
    grad_x = np.empty_like(h)
    # without a mask the residual's gradient is grad_x itself, as the twin's
    grad_residual = np.empty_like(h) if residual and mask is not None else grad_x
    residual_bias = bool(residual and residual_bias)
    width = h.shape[1]
    partials = np.empty((2 + residual_bias, min(CHUNKS, h.shape[0]), width), h.dtype)
    sums = np.empty((2 + residual_bias, width), h.dtype)  # the results: no partials kept alive
    layer_norm_backward_rows(grad, h, mean, rstd, weight, _NO_MASK if mask is None else mask,
                             h.dtype.type(scale), residual, mask is not None, residual_bias,
                             grad_x, grad_residual, partials, sums, work=h.size)
    grads = (grad_x, sums[0], sums[1], grad_residual if residual else None)
    return grads + (sums[2],) if residual_bias else grads
