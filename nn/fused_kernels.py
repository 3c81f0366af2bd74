"""Loops of nn's fused ops that numpy cannot do in one pass: layer norm, the embedding
gradient's scatter-add and the last step of cross-entropy's gradient. Each Numba kernel stands
beside a numpy twin with the same signature.

Which one runs follows the engine's kernel switch: the numpy twins under
`tinygrad_tf.kernels.use("numpy")`, the Numba kernels under any other set. Why these (the
cross-entropy step says why beside it):
  - numpy's layer norm is six full passes over memory with a temporary per pass; a row of
    d_model floats fits in L1, so a loop per row reads the input once and writes once.
  - numpy has no fast scatter-add: np.add.at and reduceat took 2-5 ms for the gradient of a
    (1024 tokens, 256) embedding here, a plain loop 0.1 ms.
The kernels are serial (no prange): these are memory-bound loops of well under a millisecond,
where waking a thread pool costs more than it saves, and collapses when cores are oversubscribed.
They compile on first call for a dtype (or load from Numba's disk cache).
"""
import math

import numpy as np

from tinygrad_tf import kernels

_jit = {}


def _numba(name):
    """The Numba kernel `name`, compiled (or loaded from cache) on first use."""
    if not _jit:
        import numba  # deferred: importing nn compiles nothing
        options = dict(cache=True, nogil=True, fastmath={"reassoc", "contract"})
        _jit.update({fn.__name__: numba.njit(**options)(fn) for fn in
                     (_layer_norm_rows, _layer_norm_backward_rows, _scatter_add_rows,
                      _cross_entropy_grad_rows)})
    return _jit[name]


def _use_numba(*arrays):
    return kernels.active() != "numpy" and all(a.dtype in (np.float32, np.float64)
                                               for a in arrays)


# ---------------------------------------------------------------------------- layer norm

def layer_norm_forward_numpy(rows, weight, bias, eps):
    """rows (M, N) -> (out, normed, rstd): normed = (x - mean) * rstd, out = normed * w + b,
    rstd = 1 / sqrt(var + eps) per row (M,), biased variance."""
    width = rows.shape[1]
    centered = rows - rows.mean(axis=1, keepdims=True)
    var = np.einsum("ij,ij->i", centered, centered) / width
    rstd = 1 / np.sqrt(var + eps)
    normed = centered
    normed *= rstd[:, None]  # in place: `centered` is not needed again
    out = normed * weight
    out += bias
    return out, normed, rstd


def _layer_norm_rows(rows, weight, bias, eps, out, normed, rstd):
    m, n = rows.shape
    for i in range(m):
        total = 0.0
        for j in range(n):
            total += rows[i, j]
        mean = total / n
        spread = 0.0
        for j in range(n):
            d = rows[i, j] - mean
            spread += d * d
        r = 1.0 / math.sqrt(spread / n + eps)
        rstd[i] = r
        for j in range(n):
            h = (rows[i, j] - mean) * r
            normed[i, j] = h
            out[i, j] = h * weight[j] + bias[j]


def layer_norm_forward_numba(rows, weight, bias, eps):
    out, normed = np.empty_like(rows), np.empty_like(rows)
    rstd = np.empty(rows.shape[0], dtype=rows.dtype)
    _numba("_layer_norm_rows")(rows, weight, bias, rows.dtype.type(eps), out, normed, rstd)
    return out, normed, rstd


def layer_norm_backward_numpy(grad_rows, normed, rstd, weight):
    """-> (grad_x, grad_weight, grad_bias) for out = normed * w + b:
    grad_x = rstd * (g - mean(g) - normed * mean(g * normed)) with g = grad * w."""
    width = normed.shape[1]
    g = grad_rows * weight
    mean_g = g.mean(axis=1, keepdims=True)
    mean_gx = np.einsum("ij,ij->i", g, normed)[:, None] / width
    g -= mean_g
    g -= normed * mean_gx
    g *= rstd[:, None]
    return g, np.einsum("ij,ij->j", grad_rows, normed), grad_rows.sum(axis=0)


def _layer_norm_backward_rows(grad_rows, normed, rstd, weight, grad_x, grad_w, grad_b):
    m, n = normed.shape
    for j in range(n):
        grad_w[j] = 0.0
        grad_b[j] = 0.0
    for i in range(m):
        sum_g = 0.0
        sum_gx = 0.0
        for j in range(n):
            gw = grad_rows[i, j] * weight[j]
            sum_g += gw
            sum_gx += gw * normed[i, j]
            grad_w[j] += grad_rows[i, j] * normed[i, j]
            grad_b[j] += grad_rows[i, j]
        mean_g = sum_g / n
        mean_gx = sum_gx / n
        r = rstd[i]
        for j in range(n):
            grad_x[i, j] = r * (grad_rows[i, j] * weight[j] - mean_g - normed[i, j] * mean_gx)


def layer_norm_backward_numba(grad_rows, normed, rstd, weight):
    grad_x = np.empty_like(normed)
    # float64 column sums: M rows added in float32 would lose digits for long batches.
    grad_w, grad_b = np.empty(normed.shape[1]), np.empty(normed.shape[1])
    _numba("_layer_norm_backward_rows")(grad_rows, normed, rstd, weight, grad_x, grad_w, grad_b)
    return grad_x, grad_w.astype(normed.dtype), grad_b.astype(normed.dtype)


def layer_norm_forward(rows, weight, bias, eps):
    if _use_numba(rows, weight, bias) and rows.dtype == weight.dtype == bias.dtype:
        return layer_norm_forward_numba(rows, weight, bias, eps)
    return layer_norm_forward_numpy(rows, weight, bias, eps)


def layer_norm_backward(grad_rows, normed, rstd, weight):
    if _use_numba(grad_rows, normed, weight) and grad_rows.dtype == normed.dtype == weight.dtype:
        return layer_norm_backward_numba(grad_rows, normed, rstd, weight)
    return layer_norm_backward_numpy(grad_rows, normed, rstd, weight)


# ---------------------------------------------------------------------------- scatter-add

def scatter_add_rows_numpy(ids, grad_rows, num_rows):
    """out (num_rows, D) with out[ids[i]] += grad_rows[i] for every i (repeats add up)."""
    out = np.zeros((num_rows, grad_rows.shape[1]), dtype=grad_rows.dtype)
    np.add.at(out, ids, grad_rows)
    return out


def _scatter_add_rows(ids, grad_rows, out):
    for i in range(ids.shape[0]):
        row = ids[i]
        for j in range(grad_rows.shape[1]):
            out[row, j] += grad_rows[i, j]


def scatter_add_rows_numba(ids, grad_rows, num_rows):
    out = np.zeros((num_rows, grad_rows.shape[1]), dtype=grad_rows.dtype)
    _numba("_scatter_add_rows")(np.ascontiguousarray(ids, dtype=np.int64), grad_rows, out)
    return out


def scatter_add_rows(ids, grad_rows, num_rows):
    if _use_numba(grad_rows):
        return scatter_add_rows_numba(ids, grad_rows, num_rows)
    return scatter_add_rows_numpy(ids, grad_rows, num_rows)


# ---------------------------------------------------------------------------- cross-entropy grad
#
# The last step of cross_entropy's backward, in place on the softmax probabilities p (rows, C):
#     out[i, j] = p[i, j] * coef[i] - off[i] * weight[j],   out[i, target[i]] -= picked[i]
# and rows with keep[i] False set to 0 (their p may be nan when every logit is -inf). numpy
# spends ~0.15 ms per (1024, 1000) float32 pass on a per-row (column-broadcast) multiply; this
# loop does the whole step in one pass.

def cross_entropy_grad_numpy(p, target, keep, coef, off, weight, picked):
    """The formula above, in place on p (which is returned)."""
    p *= coef[:, None]
    p -= off[:, None] * weight[None, :]
    p[np.arange(len(p)), target] -= picked
    p[~keep] = 0
    return p


def _cross_entropy_grad_rows(p, target, keep, coef, off, weight, picked):
    m, n = p.shape
    for i in range(m):
        if not keep[i]:
            for j in range(n):
                p[i, j] = 0.0
            continue
        c, o = coef[i], off[i]
        for j in range(n):
            p[i, j] = p[i, j] * c - o * weight[j]
        p[i, target[i]] -= picked[i]


def cross_entropy_grad_numba(p, target, keep, coef, off, weight, picked):
    _numba("_cross_entropy_grad_rows")(p, np.ascontiguousarray(target, dtype=np.int64), keep,
                                       coef, off, weight, picked)
    return p


def cross_entropy_grad(p, target, keep, coef, off, weight, picked):
    if _use_numba(p, coef, off, weight, picked) and \
            p.dtype == coef.dtype == off.dtype == weight.dtype == picked.dtype:
        return cross_entropy_grad_numba(p, target, keep, coef, off, weight, picked)
    return cross_entropy_grad_numpy(p, target, keep, coef, off, weight, picked)
