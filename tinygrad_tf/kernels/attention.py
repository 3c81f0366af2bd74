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
import numba
import numpy as np
from numba import prange

from ._jit import LazyKernel
from .softmax import (_exp, softmax_backward_numba, softmax_backward_numpy, softmax_numba,
                      softmax_numpy)


def _heads_first(x):
    return x.transpose(0, 2, 1, 3)  # (B, L, h, E) -> (B, h, L, E), a view


def attention_forward_numpy(q, k, v, fill, scale, softmax=softmax_numpy):
    """(out (B, L, h, E), weights (B, h, L, S)) = the composed formula on np.matmul."""
    scores = np.matmul(_heads_first(q), _heads_first(k).transpose(0, 1, 3, 2))  # (B, h, L, S)
    scores *= scale
    if fill is not None:
        np.copyto(scores, -np.inf, where=np.broadcast_to(fill, scores.shape))
    weights = softmax(scores, -1)
    out = np.empty(q.shape[:3] + (v.shape[3],), q.dtype)
    _heads_first(out)[...] = np.matmul(weights, _heads_first(v))  # (B, h, L, E)
    return out, weights


def attention_backward_numpy(q, k, v, weights, grad_out, scale, grad_q, grad_k, grad_v,
                             softmax_backward=softmax_backward_numpy):
    """Write dL/dq, dL/dk, dL/dv (same layouts as q, k, v) into grad_q, grad_k, grad_v."""
    qh, kh, vh, gh = (_heads_first(x) for x in (q, k, v, grad_out))
    _heads_first(grad_v)[...] = np.matmul(weights.transpose(0, 1, 3, 2), gh)
    grad_weights = np.matmul(gh, vh.transpose(0, 1, 3, 2))  # (B, h, L, S)
    grad_scores = softmax_backward(weights, grad_weights, -1)
    grad_scores *= scale
    _heads_first(grad_q)[...] = np.matmul(grad_scores, kh)
    _heads_first(grad_k)[...] = np.matmul(grad_scores.transpose(0, 1, 3, 2), qh)


# "auto": the twin's np.matmul products (OpenBLAS) with the fused Numba softmax between them. On
# the small model's (32, 4, 32, 32) blocks numpy's softmax took 391 us of the twin's 681 us
# forward, the Numba kernel 166 us (/tmp probe, 29 Nov); the all-Numba kernel below lost inside
# a training step (docs/kernels.md).
def attention_forward_mixed(q, k, v, fill, scale):
    """attention_forward_numpy with the Numba softmax kernel."""
    return attention_forward_numpy(q, k, v, fill, scale, softmax=softmax_numba)


def attention_backward_mixed(q, k, v, weights, grad_out, scale, grad_q, grad_k, grad_v):
    """attention_backward_numpy with the Numba softmax-backward kernel."""
    attention_backward_numpy(q, k, v, weights, grad_out, scale, grad_q, grad_k, grad_v,
                             softmax_backward=softmax_backward_numba)


# ---------------------------------------------------------------------------- Numba kernels

# Every product below is a (rows, K) operand times a B packed as panels of NR = 32 columns,
# (n_panels, K, 32), zero past B's last column, into a C-contiguous (n_panels, rows_padded, 32)
# result: a 4 x 32 register tile per step (issue 10: a 4 x 16 tile keeps too few FMAs in flight).
NR = 32


@numba.njit(cache=True, fastmath={"contract"}, inline="never")
def _tile_4x32(a, r0, r1, r2, r3, panel, dest, d0, zero):
    """dest[d0 : d0+4, 0:32] = a[(r0, r1, r2, r3)] @ panel, panel a packed (K, 32) slice of B.

    128 accumulators written out as locals (Numba cannot cache exec'd code): with the SLP
    vectorizer LLVM keeps them in 8 zmm registers, 8 independent FMA chains per k."""
    c0_0 = c0_1 = c0_2 = c0_3 = c0_4 = c0_5 = c0_6 = c0_7 = zero
    c0_8 = c0_9 = c0_10 = c0_11 = c0_12 = c0_13 = c0_14 = c0_15 = zero
    c0_16 = c0_17 = c0_18 = c0_19 = c0_20 = c0_21 = c0_22 = c0_23 = zero
    c0_24 = c0_25 = c0_26 = c0_27 = c0_28 = c0_29 = c0_30 = c0_31 = zero
    c1_0 = c1_1 = c1_2 = c1_3 = c1_4 = c1_5 = c1_6 = c1_7 = zero
    c1_8 = c1_9 = c1_10 = c1_11 = c1_12 = c1_13 = c1_14 = c1_15 = zero
    c1_16 = c1_17 = c1_18 = c1_19 = c1_20 = c1_21 = c1_22 = c1_23 = zero
    c1_24 = c1_25 = c1_26 = c1_27 = c1_28 = c1_29 = c1_30 = c1_31 = zero
    c2_0 = c2_1 = c2_2 = c2_3 = c2_4 = c2_5 = c2_6 = c2_7 = zero
    c2_8 = c2_9 = c2_10 = c2_11 = c2_12 = c2_13 = c2_14 = c2_15 = zero
    c2_16 = c2_17 = c2_18 = c2_19 = c2_20 = c2_21 = c2_22 = c2_23 = zero
    c2_24 = c2_25 = c2_26 = c2_27 = c2_28 = c2_29 = c2_30 = c2_31 = zero
    c3_0 = c3_1 = c3_2 = c3_3 = c3_4 = c3_5 = c3_6 = c3_7 = zero
    c3_8 = c3_9 = c3_10 = c3_11 = c3_12 = c3_13 = c3_14 = c3_15 = zero
    c3_16 = c3_17 = c3_18 = c3_19 = c3_20 = c3_21 = c3_22 = c3_23 = zero
    c3_24 = c3_25 = c3_26 = c3_27 = c3_28 = c3_29 = c3_30 = c3_31 = zero
    for k in range(panel.shape[0]):
        p = panel[k]
        b0, b1, b2, b3 = p[0], p[1], p[2], p[3]
        b4, b5, b6, b7 = p[4], p[5], p[6], p[7]
        b8, b9, b10, b11 = p[8], p[9], p[10], p[11]
        b12, b13, b14, b15 = p[12], p[13], p[14], p[15]
        b16, b17, b18, b19 = p[16], p[17], p[18], p[19]
        b20, b21, b22, b23 = p[20], p[21], p[22], p[23]
        b24, b25, b26, b27 = p[24], p[25], p[26], p[27]
        b28, b29, b30, b31 = p[28], p[29], p[30], p[31]
        x = a[r0, k]
        c0_0 += x * b0; c0_1 += x * b1; c0_2 += x * b2; c0_3 += x * b3
        c0_4 += x * b4; c0_5 += x * b5; c0_6 += x * b6; c0_7 += x * b7
        c0_8 += x * b8; c0_9 += x * b9; c0_10 += x * b10; c0_11 += x * b11
        c0_12 += x * b12; c0_13 += x * b13; c0_14 += x * b14; c0_15 += x * b15
        c0_16 += x * b16; c0_17 += x * b17; c0_18 += x * b18; c0_19 += x * b19
        c0_20 += x * b20; c0_21 += x * b21; c0_22 += x * b22; c0_23 += x * b23
        c0_24 += x * b24; c0_25 += x * b25; c0_26 += x * b26; c0_27 += x * b27
        c0_28 += x * b28; c0_29 += x * b29; c0_30 += x * b30; c0_31 += x * b31
        x = a[r1, k]
        c1_0 += x * b0; c1_1 += x * b1; c1_2 += x * b2; c1_3 += x * b3
        c1_4 += x * b4; c1_5 += x * b5; c1_6 += x * b6; c1_7 += x * b7
        c1_8 += x * b8; c1_9 += x * b9; c1_10 += x * b10; c1_11 += x * b11
        c1_12 += x * b12; c1_13 += x * b13; c1_14 += x * b14; c1_15 += x * b15
        c1_16 += x * b16; c1_17 += x * b17; c1_18 += x * b18; c1_19 += x * b19
        c1_20 += x * b20; c1_21 += x * b21; c1_22 += x * b22; c1_23 += x * b23
        c1_24 += x * b24; c1_25 += x * b25; c1_26 += x * b26; c1_27 += x * b27
        c1_28 += x * b28; c1_29 += x * b29; c1_30 += x * b30; c1_31 += x * b31
        x = a[r2, k]
        c2_0 += x * b0; c2_1 += x * b1; c2_2 += x * b2; c2_3 += x * b3
        c2_4 += x * b4; c2_5 += x * b5; c2_6 += x * b6; c2_7 += x * b7
        c2_8 += x * b8; c2_9 += x * b9; c2_10 += x * b10; c2_11 += x * b11
        c2_12 += x * b12; c2_13 += x * b13; c2_14 += x * b14; c2_15 += x * b15
        c2_16 += x * b16; c2_17 += x * b17; c2_18 += x * b18; c2_19 += x * b19
        c2_20 += x * b20; c2_21 += x * b21; c2_22 += x * b22; c2_23 += x * b23
        c2_24 += x * b24; c2_25 += x * b25; c2_26 += x * b26; c2_27 += x * b27
        c2_28 += x * b28; c2_29 += x * b29; c2_30 += x * b30; c2_31 += x * b31
        x = a[r3, k]
        c3_0 += x * b0; c3_1 += x * b1; c3_2 += x * b2; c3_3 += x * b3
        c3_4 += x * b4; c3_5 += x * b5; c3_6 += x * b6; c3_7 += x * b7
        c3_8 += x * b8; c3_9 += x * b9; c3_10 += x * b10; c3_11 += x * b11
        c3_12 += x * b12; c3_13 += x * b13; c3_14 += x * b14; c3_15 += x * b15
        c3_16 += x * b16; c3_17 += x * b17; c3_18 += x * b18; c3_19 += x * b19
        c3_20 += x * b20; c3_21 += x * b21; c3_22 += x * b22; c3_23 += x * b23
        c3_24 += x * b24; c3_25 += x * b25; c3_26 += x * b26; c3_27 += x * b27
        c3_28 += x * b28; c3_29 += x * b29; c3_30 += x * b30; c3_31 += x * b31
    row = dest[d0 + 0]
    row[0] = c0_0; row[1] = c0_1; row[2] = c0_2; row[3] = c0_3
    row[4] = c0_4; row[5] = c0_5; row[6] = c0_6; row[7] = c0_7
    row[8] = c0_8; row[9] = c0_9; row[10] = c0_10; row[11] = c0_11
    row[12] = c0_12; row[13] = c0_13; row[14] = c0_14; row[15] = c0_15
    row[16] = c0_16; row[17] = c0_17; row[18] = c0_18; row[19] = c0_19
    row[20] = c0_20; row[21] = c0_21; row[22] = c0_22; row[23] = c0_23
    row[24] = c0_24; row[25] = c0_25; row[26] = c0_26; row[27] = c0_27
    row[28] = c0_28; row[29] = c0_29; row[30] = c0_30; row[31] = c0_31
    row = dest[d0 + 1]
    row[0] = c1_0; row[1] = c1_1; row[2] = c1_2; row[3] = c1_3
    row[4] = c1_4; row[5] = c1_5; row[6] = c1_6; row[7] = c1_7
    row[8] = c1_8; row[9] = c1_9; row[10] = c1_10; row[11] = c1_11
    row[12] = c1_12; row[13] = c1_13; row[14] = c1_14; row[15] = c1_15
    row[16] = c1_16; row[17] = c1_17; row[18] = c1_18; row[19] = c1_19
    row[20] = c1_20; row[21] = c1_21; row[22] = c1_22; row[23] = c1_23
    row[24] = c1_24; row[25] = c1_25; row[26] = c1_26; row[27] = c1_27
    row[28] = c1_28; row[29] = c1_29; row[30] = c1_30; row[31] = c1_31
    row = dest[d0 + 2]
    row[0] = c2_0; row[1] = c2_1; row[2] = c2_2; row[3] = c2_3
    row[4] = c2_4; row[5] = c2_5; row[6] = c2_6; row[7] = c2_7
    row[8] = c2_8; row[9] = c2_9; row[10] = c2_10; row[11] = c2_11
    row[12] = c2_12; row[13] = c2_13; row[14] = c2_14; row[15] = c2_15
    row[16] = c2_16; row[17] = c2_17; row[18] = c2_18; row[19] = c2_19
    row[20] = c2_20; row[21] = c2_21; row[22] = c2_22; row[23] = c2_23
    row[24] = c2_24; row[25] = c2_25; row[26] = c2_26; row[27] = c2_27
    row[28] = c2_28; row[29] = c2_29; row[30] = c2_30; row[31] = c2_31
    row = dest[d0 + 3]
    row[0] = c3_0; row[1] = c3_1; row[2] = c3_2; row[3] = c3_3
    row[4] = c3_4; row[5] = c3_5; row[6] = c3_6; row[7] = c3_7
    row[8] = c3_8; row[9] = c3_9; row[10] = c3_10; row[11] = c3_11
    row[12] = c3_12; row[13] = c3_13; row[14] = c3_14; row[15] = c3_15
    row[16] = c3_16; row[17] = c3_17; row[18] = c3_18; row[19] = c3_19
    row[20] = c3_20; row[21] = c3_21; row[22] = c3_22; row[23] = c3_23
    row[24] = c3_24; row[25] = c3_25; row[26] = c3_26; row[27] = c3_27
    row[28] = c3_28; row[29] = c3_29; row[30] = c3_30; row[31] = c3_31


@numba.njit(cache=True, inline="never")
def _product(a, rows, panels, dest, zero):
    """dest[p, i, :] = (a[:rows] @ B)[i, 32 p : 32 p + 32] for B packed as `panels`. Rows past
    `rows` in the last 4-row tile repeat row rows - 1; their results land in dest's padding."""
    for p in range(panels.shape[0]):
        for i0 in range(0, rows, 4):
            _tile_4x32(a, i0, min(i0 + 1, rows - 1), min(i0 + 2, rows - 1),
                       min(i0 + 3, rows - 1), panels[p], dest[p], i0, zero)


@numba.njit(cache=True, inline="always")
def _panels(n):
    return (n + NR - 1) // NR


@numba.njit(cache=True, inline="always")
def _padded(n):
    return (n + 3) // 4 * 4


def _attention_forward(q, k, v, fill, scale, out, weights):
    batch, length, heads, features = q.shape
    source, v_features = k.shape[1], v.shape[3]
    zero = np.zeros(1, out.dtype)[0]  # typed like the data: a float literal would be float64
    minus_inf = -np.inf * (zero + 1)
    for block in prange(batch * heads):
        b, h = block // heads, block % heads
        k_panels = np.zeros((_panels(source), features, NR), out.dtype)  # K^T, packed
        v_panels = np.zeros((_panels(v_features), source, NR), out.dtype)
        for j in range(source):  # one row view per position: the loops index 1-D
            k_row, v_row = k[b, j, h], v[b, j, h]
            for e in range(features):
                k_panels[j // NR, e, j % NR] = k_row[e]
            for e in range(v_features):
                v_panels[e // NR, j, e % NR] = v_row[e]
        scores = np.empty((_panels(source), _padded(length), NR), out.dtype)
        _product(q[b, :, h, :], length, k_panels, scores, zero)
        for i in range(length):  # scale, mask, softmax: row i of weights[b, h]
            row = weights[b, h, i]
            row_max = minus_inf
            for j in range(source):
                x = scores[j // NR, i, j % NR] * scale
                if fill[b, h, i, j]:
                    x = minus_inf
                elif x > row_max:
                    row_max = x
                row[j] = x
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
                    row[j] *= inverse
        result = np.empty((_panels(v_features), _padded(length), NR), out.dtype)
        _product(weights[b, h], length, v_panels, result, zero)
        for i in range(length):
            out_row = out[b, i, h]
            for e in range(v_features):
                out_row[e] = result[e // NR, i, e % NR]


def _attention_backward(q, k, v, weights, grad_out, scale, grad_q, grad_k, grad_v):
    batch, length, heads, features = q.shape
    source, v_features = k.shape[1], v.shape[3]
    dtype = weights.dtype
    zero = np.zeros(1, dtype)[0]
    for block in prange(batch * heads):
        b, h = block // heads, block % heads
        g_panels = np.zeros((_panels(v_features), length, NR), dtype)  # dO
        q_panels = np.zeros((_panels(features), length, NR), dtype)
        for i in range(length):
            g_row, q_row = grad_out[b, i, h], q[b, i, h]
            for e in range(v_features):
                g_panels[e // NR, i, e % NR] = g_row[e]
            for e in range(features):
                q_panels[e // NR, i, e % NR] = q_row[e]
        v_t_panels = np.zeros((_panels(source), v_features, NR), dtype)  # V^T
        k_panels = np.zeros((_panels(features), source, NR), dtype)
        for j in range(source):
            k_row, v_row = k[b, j, h], v[b, j, h]
            for e in range(v_features):
                v_t_panels[j // NR, e, j % NR] = v_row[e]
            for e in range(features):
                k_panels[e // NR, j, e % NR] = k_row[e]
        p = weights[b, h]  # (L, S)
        dv = np.empty((_panels(v_features), _padded(source), NR), dtype)
        _product(p.T, source, g_panels, dv, zero)  # dV = P^T dO
        dp = np.empty((_panels(source), _padded(length), NR), dtype)
        _product(grad_out[b, :, h, :], length, v_t_panels, dp, zero)  # dP = dO V^T
        ds = np.empty((length, source), dtype)
        for i in range(length):  # dS = P * (dP - rowsum(P * dP)), times the scale
            dot = zero
            for j in range(source):
                dot += p[i, j] * dp[j // NR, i, j % NR]
            for j in range(source):
                ds[i, j] = p[i, j] * (dp[j // NR, i, j % NR] - dot) * scale
        dq = np.empty((_panels(features), _padded(length), NR), dtype)
        _product(ds, length, k_panels, dq, zero)  # dQ = dS K
        dk = np.empty((_panels(features), _padded(source), NR), dtype)
        _product(ds.T, source, q_panels, dk, zero)  # dK = dS^T Q
        for i in range(length):
            q_row = grad_q[b, i, h]
            for e in range(features):
                q_row[e] = dq[e // NR, i, e % NR]
        for j in range(source):
            k_row, v_row = grad_k[b, j, h], grad_v[b, j, h]
            for e in range(features):
                k_row[e] = dk[e // NR, j, e % NR]
            for e in range(v_features):
                v_row[e] = dv[e // NR, j, e % NR]


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
