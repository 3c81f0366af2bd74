"""Multi-head attention on heads laid out as (batch, position, head, feature), forward and backward.

softmax(q k^T * scale, masked) v for every (batch, head) block, reading the heads straight out of
a projection's output: `q` is (B, L, h, E), `k` and `v` are (B, S, h, E), any strides (e.g. the
q, k and v slices of one packed (B, L, 3, h, E) QKV projection). The output is (B, L, h, E) and
C-contiguous, so merging the heads back into (B, L, h * E) is a reshape, not a transpose copy.

`fill` is a boolean array broadcastable to (B, h, L, S), True where a score is masked out. A row
with every key masked gets zero weights (zero output and zero gradients, never NaN), as the
softmax kernels do. `weights` (B, h, L, S), the softmax, is returned for the backward pass.

The numpy functions are the reference (the composed formula with np.matmul, the test oracle);
the Numba kernels do one (batch, head) block per prange task: the block's K^T and V are packed
into small contiguous scratch arrays, then each query row goes scores -> mask -> softmax ->
weighted sum of V while the row is in L1, with no (B, h, L, S) temporaries besides `weights`.
"""
import numpy as np
from numba import prange

from ._jit import LazyKernel
from .softmax import _exp, softmax_backward_numpy, softmax_numpy


def _heads_first(x):
    return x.transpose(0, 2, 1, 3)  # (B, L, h, E) -> (B, h, L, E), a view


def attention_forward_numpy(q, k, v, fill, scale):
    """(out (B, L, h, E), weights (B, h, L, S)) = the composed formula on np.matmul."""
    scores = np.matmul(_heads_first(q), _heads_first(k).transpose(0, 1, 3, 2))  # (B, h, L, S)
    scores *= scale
    if fill is not None:
        np.copyto(scores, -np.inf, where=np.broadcast_to(fill, scores.shape))
    weights = softmax_numpy(scores, -1)
    out = np.empty(q.shape[:3] + (v.shape[3],), q.dtype)
    _heads_first(out)[...] = np.matmul(weights, _heads_first(v))  # (B, h, L, E)
    return out, weights


def attention_backward_numpy(q, k, v, weights, grad_out, scale, grad_q, grad_k, grad_v):
    """Write dL/dq, dL/dk, dL/dv (same layouts as q, k, v) into grad_q, grad_k, grad_v."""
    qh, kh, vh, gh = (_heads_first(x) for x in (q, k, v, grad_out))
    _heads_first(grad_v)[...] = np.matmul(weights.transpose(0, 1, 3, 2), gh)
    grad_weights = np.matmul(gh, vh.transpose(0, 1, 3, 2))  # (B, h, L, S)
    grad_scores = softmax_backward_numpy(weights, grad_weights, -1)
    grad_scores *= scale
    _heads_first(grad_q)[...] = np.matmul(grad_scores, kh)
    _heads_first(grad_k)[...] = np.matmul(grad_scores.transpose(0, 1, 3, 2), qh)


# ---------------------------------------------------------------------------- Numba kernels

def _attention_forward(q, k, v, fill, scale, out, weights):
    batch, length, heads, features = q.shape
    source, v_features = k.shape[1], v.shape[3]
    zero = np.zeros(1, out.dtype)[0]  # typed like the data: a float literal would be float64
    minus_inf = -np.inf * (zero + 1)
    for block in prange(batch * heads):
        b, h = block // heads, block % heads
        k_t = np.empty((features, source), out.dtype)  # K^T: a score row reads S in a row
        v_rows = np.empty((source, v_features), out.dtype)
        acc = np.empty(v_features, out.dtype)
        row = np.empty(source, out.dtype)  # contiguous scratch: the loops below vectorize
        for j in range(source):
            for e in range(features):
                k_t[e, j] = k[b, j, h, e]
            for e in range(v_features):
                v_rows[j, e] = v[b, j, h, e]
        for i in range(length):
            for j in range(source):
                row[j] = zero
            for e in range(features):
                x = q[b, i, h, e] * scale
                for j in range(source):
                    row[j] += x * k_t[e, j]
            row_max = minus_inf
            for j in range(source):
                if fill[b, h, i, j]:
                    row[j] = minus_inf
                elif row[j] > row_max:
                    row_max = row[j]
            for e in range(v_features):
                acc[e] = zero
            if row_max == minus_inf:  # every key masked: zero weights, zero output
                for j in range(source):
                    row[j] = zero
            else:
                total = zero
                for j in range(source):
                    w = _exp(row[j] - row_max)
                    row[j] = w
                    total += w
                inverse = (zero + 1) / total
                for j in range(source):
                    w = row[j] * inverse
                    row[j] = w
                    for e in range(v_features):
                        acc[e] += w * v_rows[j, e]
            weights[b, h, i] = row
            for e in range(v_features):
                out[b, i, h, e] = acc[e]


def _attention_backward(q, k, v, weights, grad_out, scale, grad_q, grad_k, grad_v):
    batch, length, heads, features = q.shape
    source, v_features = k.shape[1], v.shape[3]
    zero = np.zeros(1, weights.dtype)[0]
    for block in prange(batch * heads):
        b, h = block // heads, block % heads
        q_rows = np.empty((length, features), weights.dtype)
        k_rows = np.empty((source, features), weights.dtype)
        v_t = np.empty((v_features, source), weights.dtype)
        g_rows = np.empty((length, v_features), weights.dtype)
        dk = np.zeros((source, features), weights.dtype)
        dv = np.zeros((source, v_features), weights.dtype)
        ds = np.empty(source, weights.dtype)
        dq = np.empty(features, weights.dtype)
        for i in range(length):
            for e in range(features):
                q_rows[i, e] = q[b, i, h, e]
            for e in range(v_features):
                g_rows[i, e] = grad_out[b, i, h, e]
        for j in range(source):
            for e in range(features):
                k_rows[j, e] = k[b, j, h, e]
            for e in range(v_features):
                v_t[e, j] = v[b, j, h, e]
        for i in range(length):
            p = weights[b, h, i]
            for j in range(source):  # dV += p_i^T dO_i
                w = p[j]
                for e in range(v_features):
                    dv[j, e] += w * g_rows[i, e]
            for j in range(source):
                ds[j] = zero
            for e in range(v_features):  # dP_i = dO_i V^T
                x = g_rows[i, e]
                for j in range(source):
                    ds[j] += x * v_t[e, j]
            dot = zero
            for j in range(source):
                dot += ds[j] * p[j]
            for j in range(source):  # dS_i = p_i * (dP_i - p_i . dP_i), times the scale
                ds[j] = p[j] * (ds[j] - dot) * scale
            for e in range(features):
                dq[e] = zero
            for j in range(source):  # dQ_i = dS_i K ;  dK += dS_i^T q_i
                s = ds[j]
                for e in range(features):
                    dq[e] += s * k_rows[j, e]
                    dk[j, e] += s * q_rows[i, e]
            for e in range(features):
                grad_q[b, i, h, e] = dq[e]
        for j in range(source):
            for e in range(features):
                grad_k[b, j, h, e] = dk[j, e]
            for e in range(v_features):
                grad_v[b, j, h, e] = dv[j, e]


def _forward_signature(dtype):
    strided, dense = f"Array({dtype}, 4, 'A', readonly=True)", f"Array({dtype}, 4, 'C')"
    fill = "Array(boolean, 4, 'A', readonly=True)"
    return f"void({strided}, {strided}, {strided}, {fill}, {dtype}, {dense}, {dense})"


def _backward_signature(dtype):
    # q, k, v, grad_out and the three gradients take any strides (views of packed projections);
    # weights is the forward's own C-contiguous output.
    strided, out = f"Array({dtype}, 4, 'A', readonly=True)", f"Array({dtype}, 4, 'A')"
    weights = f"Array({dtype}, 4, 'C', readonly=True)"
    return f"void({strided}, {strided}, {strided}, {weights}, {strided}, {dtype}, " \
           f"{out}, {out}, {out})"


_OPTIONS = {"parallel": True, "fastmath": {"contract"}}
_DTYPES = ("float32", "float64")
attention_forward_blocks = LazyKernel(
    _attention_forward, {d: _forward_signature(d) for d in _DTYPES}, **_OPTIONS)
attention_backward_blocks = LazyKernel(
    _attention_backward, {d: _backward_signature(d) for d in _DTYPES}, **_OPTIONS)
KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _covered(*arrays):
    dtype = arrays[0].dtype
    return dtype in KERNEL_DTYPES and all(a.dtype == dtype and a.size for a in arrays)


def attention_forward_numba(q, k, v, fill, scale):
    """attention_forward_numpy on the fused Numba kernel."""
    if not _covered(q, k, v):
        return attention_forward_numpy(q, k, v, fill, scale)
    batch, length, heads, _ = q.shape
    shape = (batch, heads, length, k.shape[1])
    fill = np.broadcast_to(np.zeros((), bool) if fill is None else fill, shape)
    out = np.empty(q.shape[:3] + (v.shape[3],), q.dtype)
    weights = np.empty(shape, q.dtype)
    work = 2 * weights.size * q.shape[3]
    attention_forward_blocks(q, k, v, fill, q.dtype.type(scale), out, weights, work=work)
    return out, weights


def attention_backward_numba(q, k, v, weights, grad_out, scale, grad_q, grad_k, grad_v):
    """attention_backward_numpy on the fused Numba kernel."""
    if not _covered(q, k, v, weights, grad_out):
        return attention_backward_numpy(q, k, v, weights, grad_out, scale, grad_q, grad_k,
                                        grad_v)
    work = 4 * weights.size * q.shape[3]
    attention_backward_blocks(q, k, v, weights, grad_out, q.dtype.type(scale), grad_q, grad_k,
                              grad_v, work=work)
