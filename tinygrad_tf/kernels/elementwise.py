"""Fused elementwise kernels of a Transformer step, each beside its numpy twin:

    bias_activation      out = dropout(act(pre + bias)), act ReLU or GELU (erf or tanh form),
                         after the GEMM of a linear layer; backward gives the grad of pre and
                         the bias's column sum in one pass
    bias_add             out += bias in place: a linear layer's bias (the same kernel, no act)
    embedding_position   out = dropout(weight[ids] * embed_scale + table[position])
    scatter_add_rows     out[ids[i]] += grad[i] * (mask[i] * scale): the gradient of a row gather
                         (embedding), with the dropout and scales of embedding_position folded in

numpy does each of these as three to five passes over memory, each with a full-size temporary,
on one core; the kernels read each input once and write each output once, rows split across
threads (prange). The scatter-add is serial: rows repeat (tokens), so threads would race on the
same output row, and it is a small fraction of a step (0.1 ms for 1024 tokens x 256).

Dropout masks are boolean arrays drawn by the caller from the seeded generator, so the fused and
composed forms of a model draw identical masks and give the same numbers.
"""
import math

import numpy as np
from numba import prange

from ._jit import ROWS_SERIAL_BELOW, LazyKernel

KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
ACTIVATIONS = ("relu", "gelu", "gelu_tanh")  # kernel codes 0, 1, 2
BIAS_ONLY = 3  # the kernel's code for bias_add (no activation)
CHUNKS = 16  # row chunks for the bias's column sum (partials summed in order at the end)
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_INV_SQRT2 = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_erf = np.vectorize(math.erf, otypes=[np.float64])  # numpy has no erf; the twin's is slow


def erf_numpy(x):
    """erf elementwise in x's dtype (np.vectorize over math.erf: slow, the reference)."""
    return np.asarray(_erf(x)).astype(x.dtype, copy=False)


# ---------------------------------------------------------------------------- numpy twins

def _activate_numpy(v, activation):
    if activation == "relu":
        return np.maximum(v, 0)
    if activation == "gelu":
        return (v * (0.5 * (1 + _erf(v * _INV_SQRT2)))).astype(v.dtype)
    return (v * (0.5 * (1 + np.tanh(_SQRT_2_OVER_PI * (v + 0.044715 * v ** 3))))).astype(v.dtype)


def _activation_slope_numpy(v, activation):
    if activation == "gelu":
        cdf = 0.5 * (1 + _erf(v * _INV_SQRT2))
        return cdf + v * np.exp(-0.5 * v * v) * _INV_SQRT_2PI
    tanh = np.tanh(_SQRT_2_OVER_PI * (v + 0.044715 * v ** 3))
    inner_slope = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * v * v)
    return 0.5 * (1 + tanh) + v * 0.5 * (1 - tanh * tanh) * inner_slope


def bias_activation_forward_numpy(pre, bias, activation, mask=None, scale=1.0):
    """pre (M, N), bias (N,) -> (out, saved): out = act(pre + bias) [* mask * scale]; `saved` is
    what backward needs (out for ReLU, pre + bias for GELU)."""
    v = pre + bias
    out = _activate_numpy(v, activation)
    if mask is not None:
        out = out * mask * out.dtype.type(scale)
    return out, (out if activation == "relu" else v)


def bias_activation_backward_numpy(grad, saved, activation, mask=None, scale=1.0):
    """-> (grad_pre, grad_bias) for the forward above (grad_bias = grad_pre summed over rows).
    ReLU's slope is read from the output: out > 0 exactly where pre + bias > 0 and kept."""
    if activation == "relu":
        grad_pre = np.where(saved > 0, grad * grad.dtype.type(scale), grad.dtype.type(0))
    else:
        g = grad if mask is None else grad * mask * grad.dtype.type(scale)
        grad_pre = (g * _activation_slope_numpy(saved, activation)).astype(grad.dtype)
    return grad_pre, grad_pre.sum(axis=0)


def embedding_position_forward_numpy(weight, ids, table, embed_scale, mask=None, scale=1.0):
    """weight (V, D), ids (B * T,), table (T, D) -> (B * T, D):
    weight[ids] * embed_scale + table[i % T] [* mask * scale]."""
    out = np.take(weight, ids, axis=0) * weight.dtype.type(embed_scale)
    out = (out.reshape(-1, *table.shape) + table).reshape(out.shape)
    if mask is not None:
        out = out * mask * out.dtype.type(scale)
    return out


def scatter_add_rows_numpy(ids, grad, num_rows, mask=None, scale=1.0):
    """out (num_rows, D) with out[ids[i]] += grad[i] [* mask[i]] * scale (repeats add up)."""
    out = np.zeros((num_rows, grad.shape[1]), dtype=grad.dtype)
    rows = grad if mask is None else grad * mask
    np.add.at(out, ids, rows * grad.dtype.type(scale) if scale != 1 else rows)
    return out


# ---------------------------------------------------------------------------- Numba kernels

def _bias_activation_rows(pre, bias, mask, scale, kind, has_mask, keep_pre, out):
    # ReLU writes into `pre` itself (the caller passes it as `out` too). Through `pre`, not
    # `out`: with two names for one array LLVM's overlap check fails at run time and the loop
    # runs scalar (1024 x 512 float32, one thread: 155 us through `out`, 34 through `pre`).
    # One loop per activation, each with its own variables, so ReLU's stays in the data's dtype.
    m, n = pre.shape
    zero = scale - scale  # 0 typed like the data
    for i in prange(m):
        if kind == 0:
            for j in range(n):
                v = pre[i, j] + bias[j]
                r = v if v > zero else zero
                if has_mask:
                    r = r * scale if mask[i, j] else zero
                pre[i, j] = r
        elif kind == BIAS_ONLY:  # bias_add: no activation (a linear layer's bias), in place
            for j in range(n):
                pre[i, j] = pre[i, j] + bias[j]
        else:
            for j in range(n):
                u = pre[i, j] + bias[j]
                if keep_pre:
                    pre[i, j] = u
                if kind == 1:
                    a = 0.5 * u * (1 + math.erf(u * _INV_SQRT2))
                else:
                    a = 0.5 * u * (1 + math.tanh(_SQRT_2_OVER_PI * (u + 0.044715 * u * u * u)))
                if has_mask:
                    a = a * scale if mask[i, j] else 0.0
                out[i, j] = a


def _bias_activation_backward_rows(grad, saved, mask, scale, kind, has_mask, grad_pre,
                                   partial_b):
    m, n = grad.shape
    chunks = partial_b.shape[0]
    zero = scale - scale
    for c in prange(chunks):
        column = partial_b[c]  # in the data's dtype: a float64 sum would convert per element
        column[:] = zero
        for i in range(c * m // chunks, (c + 1) * m // chunks):
            if kind == 0:  # ReLU: the slope is read from the output (saved), mask included
                g_row, s_row, out = grad[i], saved[i], grad_pre[i]
                for j in range(n):
                    r = g_row[j] * scale if s_row[j] > zero else zero
                    out[j] = r
                    column[j] += r
                continue
            for j in range(n):
                g = grad[i, j]
                v = saved[i, j]
                if has_mask:
                    g = g * scale if mask[i, j] else zero
                if kind == 1:
                    slope = 0.5 * (1 + math.erf(v * _INV_SQRT2)) + \
                        v * math.exp(-0.5 * v * v) * _INV_SQRT_2PI
                else:
                    t = math.tanh(_SQRT_2_OVER_PI * (v + 0.044715 * v * v * v))
                    slope = 0.5 * (1 + t) + \
                        v * 0.5 * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * v * v)
                d = g * slope
                grad_pre[i, j] = d
                column[j] += d


def _embedding_position_rows(weight, ids, table, embed_scale, mask, scale, has_mask, out):
    rows, n = out.shape
    length = table.shape[0]
    zero = scale - scale
    for i in prange(rows):
        row = ids[i]
        t = i % length
        for j in range(n):
            v = weight[row, j] * embed_scale + table[t, j]
            if has_mask:
                v = v * scale if mask[i, j] else zero
            out[i, j] = v


def _scatter_add_rows(grad, ids, mask, scale, has_mask, out):
    zero = scale - scale
    for i in range(ids.shape[0]):
        row = ids[i]
        for j in range(grad.shape[1]):
            g = grad[i, j] * scale
            if has_mask and not mask[i, j]:
                g = zero
            out[row, j] += g


def _signatures(kind):
    def signature(dtype):
        matrix, vector = f"Array({dtype}, 2, 'C', readonly=True)", \
            f"Array({dtype}, 1, 'C', readonly=True)"
        out2 = f"Array({dtype}, 2, 'C')"
        mask, ids = "Array(boolean, 2, 'C', readonly=True)", "Array(int64, 1, 'C', readonly=True)"
        return {
            "bias_activation": f"void({out2}, {vector}, {mask}, {dtype}, int64, boolean, boolean, "
                               f"{out2})",
            "bias_activation_backward": f"void({matrix}, {matrix}, {mask}, {dtype}, int64, "
                                        f"boolean, {out2}, {out2})",
            "embedding_position": f"void({matrix}, {ids}, {matrix}, {dtype}, {mask}, {dtype}, "
                                  f"boolean, {out2})",
            "scatter_add": f"void({matrix}, {ids}, {mask}, {dtype}, boolean, {out2})",
        }[kind]
    return {dtype: signature(dtype) for dtype in ("float32", "float64")}


_OPTIONS = {"parallel": True, "fastmath": {"contract"}, "serial_below": ROWS_SERIAL_BELOW}
bias_activation_rows = LazyKernel(_bias_activation_rows, _signatures("bias_activation"),
                                  **_OPTIONS)
bias_activation_backward_rows = LazyKernel(
    _bias_activation_backward_rows, _signatures("bias_activation_backward"), **_OPTIONS)
embedding_position_rows = LazyKernel(_embedding_position_rows,
                                     _signatures("embedding_position"), **_OPTIONS)
scatter_add_rows_kernel = LazyKernel(_scatter_add_rows, _signatures("scatter_add"),
                                     fastmath={"contract"})
_NO_MASK = np.ones((1, 1), dtype=bool)


def _erf_flat(x, out):
    for i in prange(x.shape[0]):
        out[i] = math.erf(x[i])


erf_kernel = LazyKernel(_erf_flat, {d: f"void({d}[::1], {d}[::1])" for d in ("float32", "float64")},
                        parallel=True)


def erf_numba(x):
    """erf_numpy on the Numba kernel (the engine's Erf op; GELU's exact form)."""
    if x.dtype not in KERNEL_DTYPES:
        return erf_numpy(x)
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    erf_kernel(flat, out, work=flat.size)
    return out.reshape(x.shape)


def _fits(*arrays):
    return arrays[0].dtype in KERNEL_DTYPES and all(a.dtype == arrays[0].dtype for a in arrays)


def bias_activation_forward_numba(pre, bias, activation, mask=None, scale=1.0):
    """bias_activation_forward_numpy on the Numba kernel. `pre` must be a fresh array the caller
    owns (a GEMM's output): the kernel writes into it (ReLU's out, GELU's pre + bias)."""
    if not _fits(pre, bias) or pre.size == 0 or not pre.flags.c_contiguous:
        return bias_activation_forward_numpy(pre, bias, activation, mask, scale)
    relu = activation == "relu"
    out = pre if relu else np.empty_like(pre)
    bias = np.ascontiguousarray(bias)  # the kernel takes a C-order bias (a strided view: a copy)
    bias_activation_rows(pre, bias, _NO_MASK if mask is None else mask, pre.dtype.type(scale),
                         ACTIVATIONS.index(activation), mask is not None, not relu, out,
                         work=pre.size)
    return out, (out if relu else pre)


def bias_add_numpy(out, bias):
    """out += bias (out (M, N), bias (N,)), in place; returns out."""
    out += bias
    return out


def bias_add_numba(out, bias):
    """bias_add_numpy on bias_activation's kernel (code BIAS_ONLY): one vectorized pass, about
    half numpy's broadcast add (1024 x 384 float32, one thread); `out` a fresh array (a GEMM's
    output) the caller owns."""
    if not _fits(out, bias) or out.size == 0 or out.ndim != 2 or not out.flags.c_contiguous:
        return bias_add_numpy(out, bias)
    bias_activation_rows(out, np.ascontiguousarray(bias), _NO_MASK, out.dtype.type(1), BIAS_ONLY,
                         False, False, out, work=out.size)
    return out


def bias_activation_backward_numba(grad, saved, activation, mask=None, scale=1.0):
    """bias_activation_backward_numpy on the Numba kernel."""
    if not _fits(grad, saved) or grad.size == 0:
        return bias_activation_backward_numpy(grad, saved, activation, mask, scale)
    grad = np.ascontiguousarray(grad)
    grad_pre = np.empty_like(saved)
    partial_b = np.empty((min(CHUNKS, grad.shape[0]), grad.shape[1]), grad.dtype)
    bias_activation_backward_rows(grad, saved, _NO_MASK if mask is None else mask,
                                  grad.dtype.type(scale), ACTIVATIONS.index(activation),
                                  mask is not None, grad_pre, partial_b, work=grad.size)
    return grad_pre, partial_b.sum(axis=0, dtype=grad.dtype)


def embedding_position_forward_numba(weight, ids, table, embed_scale, mask=None, scale=1.0):
    """embedding_position_forward_numpy on the Numba kernel."""
    if not _fits(weight, table) or ids.size == 0:
        return embedding_position_forward_numpy(weight, ids, table, embed_scale, mask, scale)
    out = np.empty((ids.shape[0], weight.shape[1]), dtype=weight.dtype)
    dtype = weight.dtype.type
    embedding_position_rows(np.ascontiguousarray(weight), np.ascontiguousarray(ids, np.int64),
                            np.ascontiguousarray(table), dtype(embed_scale),
                            _NO_MASK if mask is None else mask, dtype(scale), mask is not None,
                            out, work=out.size)
    return out


def scatter_add_rows_numba(ids, grad, num_rows, mask=None, scale=1.0):
    """scatter_add_rows_numpy on the (serial) Numba kernel."""
    if not _fits(grad) or grad.size == 0:
        return scatter_add_rows_numpy(ids, grad, num_rows, mask, scale)
    out = np.zeros((num_rows, grad.shape[1]), dtype=grad.dtype)
    scatter_add_rows_kernel(np.ascontiguousarray(grad), np.ascontiguousarray(ids, dtype=np.int64),
                            _NO_MASK if mask is None else mask, grad.dtype.type(scale),
                            mask is not None, out, work=grad.size)  # serial either way
    return out
