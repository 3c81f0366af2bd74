"""Scaled dot-product attention, forward and backward: the one place its arithmetic lives.

    out = (dropout(softmax(q k^T * scale + additive, masked))) v

for every (batch, head) block, with the heads read in place: `q` is (B, L, h, E), `k` (B, S, h, E)
and `v` (B, S, h, Ev), any strides (the slices of one packed QKV projection, or a (B, h, T, E)
tensor seen through a transpose). `out` is written in the same (B, L, h, Ev) layout.

One mask convention: `fill` is a boolean array broadcastable to (B, h, L, S), True where a score
is masked out; `additive` an optional float array of the same broadcast shape added to the
scaled scores (a learned bias, or -inf). A row with every key masked gets zero weights (zero
output and zero gradients, never NaN). `keep` (bool, same broadcast shape) and `drop_scale` are
dropout on the weights: the output uses weights * keep * drop_scale; `weights` (B, h, L, S), the
softmax before dropout, is returned for the backward pass.

Three versions with the same signatures:
- `*_numpy`: the composed formula on np.matmul, the reference and the tests' oracle.
- `*_mixed`: that formula with the Numba softmax kernels between the OpenBLAS products.
- `*_fused`: one Numba kernel per call. All (batch, head) blocks are split across the cores in
  one parallel loop; per block the products run on the Numba GEMM's register tile over small
  private copies, and the scores are made transposed, S^T = K Q^T (S, L), so that the softmax
  over keys runs down the columns: every pass (scale and mask, max, exp and sum, normalise) is
  an elementwise vector loop over a row of queries, none a horizontal reduction of a short
  row. Only the block's own (S, L) scores are live besides `weights`, which the kernel stores
  transposed (B, h, S, L) and returns as a (B, h, L, S) view; the backward reads those P^T
  blocks (contiguous, copied per block) and makes dV, dP^T, dS^T, dQ, dK.
"auto" takes the fused kernel for short sequences (max(L, S) <= FUSED_MAX_LENGTH), where one
BLAS call per small (batch, head) block loses, and the mixed version above that.
"""
import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import LazyKernel
from .matmul import MR, NR, _strips_times_panel
from .softmax import (_exp, softmax_backward_numba, softmax_backward_numpy, softmax_numba,
                      softmax_numpy)

# docs/kernels.md, "Attention": on the 2-core EPYC the fused kernel was 1.1-1.24x the mixed
# version forward and 0.92-1.06x backward from T = 10 to T = 128 (one thread; two parallelize
# only the fused kernel's products); longer sequences take the mixed version's OpenBLAS products.
FUSED_MAX_LENGTH = 128


def _heads_first(x):
    return x.transpose(0, 2, 1, 3)  # (B, L, h, E) -> (B, h, L, E), a view


def _dropped(weights, keep, drop_scale):
    return weights if keep is None else weights * keep * weights.dtype.type(drop_scale)


def attention_forward_numpy(q, k, v, fill, scale, additive=None, keep=None, drop_scale=1.0,
                            softmax=softmax_numpy):
    """(out (B, L, h, Ev), weights (B, h, L, S)) = the composed formula on np.matmul."""
    scores = np.matmul(_heads_first(q), _heads_first(k).transpose(0, 1, 3, 2))  # (B, h, L, S)
    scores *= scale
    if additive is not None:
        scores += additive
    if fill is not None:
        np.copyto(scores, -np.inf, where=np.broadcast_to(fill, scores.shape))
    weights = softmax(scores, -1)
    out = np.empty(q.shape[:3] + (v.shape[3],), q.dtype)
    _heads_first(out)[...] = np.matmul(_dropped(weights, keep, drop_scale), _heads_first(v))
    return out, weights


def attention_backward_numpy(q, k, v, weights, grad_out, scale, grad_q, grad_k, grad_v,
                             keep=None, drop_scale=1.0, grad_scores=None,
                             softmax_backward=softmax_backward_numpy):
    """Write dL/dq, dL/dk, dL/dv (same layouts as q, k, v) into grad_q, grad_k, grad_v, and
    dL/d(scaled scores) (B, h, L, S), an additive mask's gradient, into grad_scores if given."""
    qh, kh, vh, gh = (_heads_first(x) for x in (q, k, v, grad_out))
    _heads_first(grad_v)[...] = np.matmul(
        _dropped(weights, keep, drop_scale).transpose(0, 1, 3, 2), gh)
    grad_weights = _dropped(np.matmul(gh, vh.transpose(0, 1, 3, 2)), keep, drop_scale)
    scores_grad = softmax_backward(weights, grad_weights, -1)
    if grad_scores is not None:
        grad_scores[...] = scores_grad
    scores_grad *= scale
    _heads_first(grad_q)[...] = np.matmul(scores_grad, kh)
    _heads_first(grad_k)[...] = np.matmul(scores_grad.transpose(0, 1, 3, 2), qh)


def attention_forward_mixed(q, k, v, fill, scale, additive=None, keep=None, drop_scale=1.0):
    """attention_forward_numpy with the Numba softmax kernel."""
    return attention_forward_numpy(q, k, v, fill, scale, additive, keep, drop_scale,
                                   softmax=softmax_numba)


def attention_backward_mixed(q, k, v, weights, grad_out, scale, grad_q, grad_k, grad_v,
                             keep=None, drop_scale=1.0, grad_scores=None):
    """attention_backward_numpy with the Numba softmax-backward kernel."""
    attention_backward_numpy(q, k, v, weights, grad_out, scale, grad_q, grad_k, grad_v, keep,
                             drop_scale, grad_scores, softmax_backward=softmax_backward_numba)


# ---------------------------------------------------------------------------- the fused kernel
#
# Every product inside a block is the Numba GEMM's 4 x 16 register tile (kernels/matmul.py,
# `_strips_times_panel`): the left operand is read in place (any strides: q, dO, or a transposed
# scratch block), the right one is packed into zero-padded panels of NR = 16 columns, (panels,
# K, NR), and the result lands in a padded scratch block (rows rounded up to 4, columns to NR).
# Blocks are grouped into a few chunks per thread, so the scratch is allocated once per chunk.

def _chunks(blocks):
    return min(blocks, 4 * numba.get_num_threads())  # a few per thread: uneven loads balance


@numba.njit(cache=True, inline="always")
def _panels(n):
    return (n + NR - 1) // NR


@numba.njit(cache=True, inline="always")
def _padded(n):
    return (n + MR - 1) // MR * MR


@numba.njit(cache=True)
def _pack(x, slot, b, h, panels):
    """panels[p, t, c] = X[t, p NR + c] for the (T, E) block X = x[b, :, slot, h, :] as NR-column
    panels. Only real entries are written: the padding keeps the zeros it was allocated with.
    Indexed element by element, no row views: each view of an array costs a reference-count
    update, an atomic that two threads working on one array bounce between their caches."""
    for p in range(panels.shape[0]):
        e0 = p * NR
        for t in range(x.shape[1]):
            for c in range(min(NR, x.shape[4] - e0)):
                panels[p, t, c] = x[b, t, slot, h, e0 + c]


@numba.njit(cache=True)
def _pack_transposed(x, slot, b, h, panels):
    """panels[p, e, c] = X[p NR + c, e]: the block's transpose (E, T), packed likewise."""
    for t in range(x.shape[1]):
        p, c = t // NR, t % NR
        for e in range(x.shape[4]):
            panels[p, e, c] = x[b, t, slot, h, e]


@numba.njit(cache=True)
def _copy_rows(x, slot, b, h, dest):
    """dest[t, e] = x[b, t, slot, h, e]: a block read in place becomes a private copy."""
    for t in range(x.shape[1]):
        for e in range(x.shape[4]):
            dest[t, e] = x[b, t, slot, h, e]


@numba.njit(cache=True, inline="always")
def _block(rows, cols, dtype):
    """A C-contiguous (rows, cols + 1) scratch array and its (rows, cols) view typed as a
    strided ('A') array, like every other left operand of _product (q and dO slices,
    transposes): one compiled _product per dtype, not one per layout (each costs seconds of
    compiling). Loops write through the C array, where their stores vectorize."""
    base = np.empty((rows, cols + 1), dtype)
    return base, base[:, :cols]


@numba.njit(cache=True)
def _product(a, rows, panels, dest, zero):
    """dest[:rows, :] = a[:rows] @ B for B packed as `panels`; dest has _padded(rows) rows."""
    strips = (rows + MR - 1) // MR
    for p in range(panels.shape[0]):
        _strips_times_panel(a, panels[p], dest, 0, strips, p * NR, 0, zero)


@intrinsic
def _prefetch(typingctx, array, index):
    """Ask the caches for the line holding element `index` of C-contiguous `array` (a hint:
    no fault past the end, no effect on the result)."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        address = builder.gep(data, [args[1]])
        i32 = ir.IntType(32)
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [address.type, i32, i32, i32]),
            "llvm.prefetch.p0")
        builder.call(prefetch, [address, i32(0), i32(3), i32(1)])  # read, keep, data cache
        return context.get_dummy_value()
    return types.void(array, types.intp), codegen


@numba.njit(cache=True, inline="always")
def _prefetch_rows(x, start, stride, rows, count):
    """Prefetch `rows` rows of `count` elements of C-contiguous x, the first at element
    `start`, `stride` elements apart: the next block's operands while this one computes.
    Inside a step they come from L3 or memory, and a block's few short strided rows are too
    little for the hardware prefetchers: cold, a call took 2.6x its warm time (T = 32)."""
    step = 64 // x.itemsize
    for r in range(rows):
        for e in range(0, count, step):
            _prefetch(x, start + r * stride + e)


@numba.njit(cache=True, inline="always")
def _prefetch_heads(x, b, slot, h):
    """Prefetch block x[b, :, slot, h, :] of a (B, T, slots, h, E) array."""
    item = x.itemsize
    _prefetch_rows(x, (b * x.strides[0] + slot * x.strides[2] + h * x.strides[3]) // item,
                   x.strides[1] // item, x.shape[1], x.shape[4])


# Column reductions of a block (a max, a sum) over its rows j, NR columns at a time: the NR
# running values are plain locals, kept in registers across the rows. Written as a loop over
# an NR-element scratch row instead, each row's update waits on the previous row's store (3x
# slower at S = 32, measured). fastmath "contract": each running sum one FMA per element.

@numba.njit(cache=True, fastmath={"contract"})
def _column_max(x, rows, i0, low):
    """max over x[:rows, i0 + c] for c < NR, starting from `low`, as an NR-tuple."""
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = low
    m8 = m9 = m10 = m11 = m12 = m13 = m14 = m15 = low
    for j in range(rows):
        r = x[j, i0:i0 + NR]
        m0 = max(m0, r[0]); m1 = max(m1, r[1]); m2 = max(m2, r[2]); m3 = max(m3, r[3])
        m4 = max(m4, r[4]); m5 = max(m5, r[5]); m6 = max(m6, r[6]); m7 = max(m7, r[7])
        m8 = max(m8, r[8]); m9 = max(m9, r[9]); m10 = max(m10, r[10]); m11 = max(m11, r[11])
        m12 = max(m12, r[12]); m13 = max(m13, r[13]); m14 = max(m14, r[14])
        m15 = max(m15, r[15])
    return (m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15)


@numba.njit(cache=True, fastmath={"contract"})
def _column_exp_sums(x, rows, i0, m, zero):
    """x[j, i0 + c] = exp(x[j, i0 + c] - m[c]) for j < rows, c < NR; returns the column sums."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
    s8 = s9 = s10 = s11 = s12 = s13 = s14 = s15 = zero
    for j in range(rows):
        r = x[j, i0:i0 + NR]
        e0 = _exp(r[0] - m[0]); e1 = _exp(r[1] - m[1]); e2 = _exp(r[2] - m[2])
        e3 = _exp(r[3] - m[3]); e4 = _exp(r[4] - m[4]); e5 = _exp(r[5] - m[5])
        e6 = _exp(r[6] - m[6]); e7 = _exp(r[7] - m[7]); e8 = _exp(r[8] - m[8])
        e9 = _exp(r[9] - m[9]); e10 = _exp(r[10] - m[10]); e11 = _exp(r[11] - m[11])
        e12 = _exp(r[12] - m[12]); e13 = _exp(r[13] - m[13]); e14 = _exp(r[14] - m[14])
        e15 = _exp(r[15] - m[15])
        r[0] = e0; r[1] = e1; r[2] = e2; r[3] = e3; r[4] = e4; r[5] = e5; r[6] = e6
        r[7] = e7; r[8] = e8; r[9] = e9; r[10] = e10; r[11] = e11; r[12] = e12; r[13] = e13
        r[14] = e14; r[15] = e15
        s0 += e0; s1 += e1; s2 += e2; s3 += e3; s4 += e4; s5 += e5; s6 += e6; s7 += e7
        s8 += e8; s9 += e9; s10 += e10; s11 += e11; s12 += e12; s13 += e13; s14 += e14
        s15 += e15
    return (s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15)


@numba.njit(cache=True, fastmath={"contract"})
def _column_dots(x, y, rows, i0, zero):
    """sum over j < rows of x[j, i0 + c] * y[j, i0 + c] for c < NR, as an NR-tuple."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
    s8 = s9 = s10 = s11 = s12 = s13 = s14 = s15 = zero
    for j in range(rows):
        a, b = x[j, i0:i0 + NR], y[j, i0:i0 + NR]
        s0 += a[0] * b[0]; s1 += a[1] * b[1]; s2 += a[2] * b[2]; s3 += a[3] * b[3]
        s4 += a[4] * b[4]; s5 += a[5] * b[5]; s6 += a[6] * b[6]; s7 += a[7] * b[7]
        s8 += a[8] * b[8]; s9 += a[9] * b[9]; s10 += a[10] * b[10]; s11 += a[11] * b[11]
        s12 += a[12] * b[12]; s13 += a[13] * b[13]; s14 += a[14] * b[14]
        s15 += a[15] * b[15]
    return (s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15)


@numba.njit(cache=True, inline="always")
def _first(mask, dim, index):
    """The index into a mask's leading dim `dim` for batch or head `index` (size 1 broadcasts)."""
    return index if mask.shape[dim] > 1 else 0


# Inside the parallel loop no view (slice, row) of a shared array is ever made: each view
# updates the array's reference count, an atomic on one cache line that two threads then
# pull back and forth (measured: a loop making views ran 3x slower on two threads than on one).
# Shared arrays are read and written element by element; the products run on private copies.

def _fused_forward(q, q_slot, k, k_slot, v, v_slot, bias, drop, scale, out, weights, chunks):
    batch, length, _, heads, features = q.shape
    source, v_features = k.shape[1], v.shape[4]
    width = _panels(length) * NR  # whole NR-wide steps: the padding columns are computed on
    # zero-padded panels and never written out
    dtype = weights.dtype
    # Constants typed like the data: a literal (or float32 + int) would be float64.
    zero, one = np.zeros(1, dtype)[0], np.ones(1, dtype)[0]
    minus_inf = np.full(1, -np.inf, dtype)[0]
    has_drop = drop.shape[2] > 0  # an empty `drop`: no dropout, the weights go in directly
    blocks = batch * heads
    for chunk in prange(chunks):
        first, end = chunk * blocks // chunks, (chunk + 1) * blocks // chunks
        q_t = np.zeros((_panels(length), features, NR), dtype)  # Q^T, packed
        v_p = np.zeros((_panels(v_features), source, NR), dtype)
        k_c, k_rows = _block(source, features, dtype)
        # S^T = K Q^T (S, L), then in place P^T (times the dropout factor)
        scores_c, scores = _block(_padded(source), width, dtype)
        result = np.empty((_padded(length), _panels(v_features) * NR), dtype)
        total = np.empty(width, dtype)  # per query column: 1 / sum of its exps
        for block in range(first, end):
            b, h = block // heads, block % heads
            bb, bh = _first(bias, 0, b), _first(bias, 1, h)
            db, dh = _first(drop, 0, b), _first(drop, 1, h)
            if block + 1 < end:
                nb, nh = (block + 1) // heads, (block + 1) % heads
                _prefetch_heads(q, nb, q_slot, nh)
                _prefetch_heads(k, nb, k_slot, nh)
                _prefetch_heads(v, nb, v_slot, nh)
            _pack_transposed(q, q_slot, b, h, q_t)
            _pack(v, v_slot, b, h, v_p)
            _copy_rows(k, k_slot, b, h, k_c)
            _product(k_rows, source, q_t, scores_c, zero)
            # Softmax down the columns (over keys j) for all queries at once: elementwise vector
            # loops along the rows of S^T and column reductions, none a horizontal reduction.
            wide = bias.shape[3] > 1  # else one bias per key, the same for every query
            for j in range(source):
                for i in range(width):
                    scores_c[j, i] = scores_c[j, i] * scale + bias[bb, bh, j, i if wide else 0]
            for i0 in range(0, width, NR):
                m = _column_max(scores_c, source, i0, minus_inf)
                # a query with every key masked: shift 0, exps of -inf, all 0
                m = (m[0] if m[0] > minus_inf else zero, m[1] if m[1] > minus_inf else zero,
                     m[2] if m[2] > minus_inf else zero, m[3] if m[3] > minus_inf else zero,
                     m[4] if m[4] > minus_inf else zero, m[5] if m[5] > minus_inf else zero,
                     m[6] if m[6] > minus_inf else zero, m[7] if m[7] > minus_inf else zero,
                     m[8] if m[8] > minus_inf else zero, m[9] if m[9] > minus_inf else zero,
                     m[10] if m[10] > minus_inf else zero, m[11] if m[11] > minus_inf else zero,
                     m[12] if m[12] > minus_inf else zero, m[13] if m[13] > minus_inf else zero,
                     m[14] if m[14] > minus_inf else zero, m[15] if m[15] > minus_inf else zero)
                sums = _column_exp_sums(scores_c, source, i0, m, zero)
                for c in range(NR):  # zero weights, zero output for a fully masked query
                    total[i0 + c] = one / sums[c] if sums[c] > zero else zero
            for j in range(source):
                for i in range(length):
                    w = scores_c[j, i] * total[i]
                    weights[b, h, j, i] = w
                    scores_c[j, i] = w * drop[db, dh, j, i] if has_drop else w
            _product(scores[:source, :length].T, length, v_p, result, zero)  # P V
            for i in range(length):
                for e in range(v_features):
                    out[b, i, h, e] = result[i, e]


def _fused_backward(q, q_slot, k, k_slot, v, v_slot, weights, grad_out, drop, scale, grad_q,
                    gq_slot, grad_k, gk_slot, grad_v, gv_slot, chunks):
    batch, length, _, heads, features = q.shape
    source, v_features = k.shape[1], v.shape[4]
    dtype = weights.dtype
    zero = np.zeros(1, dtype)[0]
    has_drop = drop.shape[2] > 0  # as in _fused_forward
    blocks = batch * heads
    for chunk in prange(chunks):
        first, end = chunk * blocks // chunks, (chunk + 1) * blocks // chunks
        g_p = np.zeros((_panels(v_features), length, NR), dtype)  # dO
        g_t = np.zeros((_panels(length), v_features, NR), dtype)  # dO^T
        k_p = np.zeros((_panels(features), source, NR), dtype)
        q_p = np.zeros((_panels(features), length, NR), dtype)
        v_c, v_rows = _block(source, v_features, dtype)
        # P^T, then P^T * keep * drop_scale; whole NR-wide steps for _column_dots, padding 0
        p_c, p_t = _block(source, _panels(length) * NR, dtype)
        p_c[:] = zero
        # dP^T = V dO^T (S, L), then in place dS^T
        ds_c, ds = _block(_padded(source), _panels(length) * NR, dtype)
        dot = np.empty(_panels(length) * NR, dtype)  # per query: rowsum(P * dP)
        dv = np.empty((_padded(source), _panels(v_features) * NR), dtype)
        dq = np.empty((_padded(length), _panels(features) * NR), dtype)
        dk = np.empty((_padded(source), _panels(features) * NR), dtype)
        for block in range(first, end):
            b, h = block // heads, block % heads
            db, dh = _first(drop, 0, b), _first(drop, 1, h)
            if block + 1 < end:
                nb, nh = (block + 1) // heads, (block + 1) % heads
                _prefetch_heads(q, nb, q_slot, nh)
                _prefetch_heads(k, nb, k_slot, nh)
                _prefetch_heads(v, nb, v_slot, nh)
                _prefetch_heads(grad_out, nb, 0, nh)
                _prefetch_rows(weights, (nb * heads + nh) * source * length, 0, 1,
                               source * length)
            _pack(grad_out, 0, b, h, g_p)
            _pack_transposed(grad_out, 0, b, h, g_t)
            _pack(k, k_slot, b, h, k_p)
            _pack(q, q_slot, b, h, q_p)
            _copy_rows(v, v_slot, b, h, v_c)
            for j in range(source):
                for i in range(length):
                    p_c[j, i] = weights[b, h, j, i]
            _product(v_rows, source, g_t, ds_c, zero)  # d(dropped)^T = V dO^T
            if has_drop:
                for j in range(source):
                    for i in range(length):
                        ds_c[j, i] *= drop[db, dh, j, i]  # dP
            for i0 in range(0, length, NR):  # dS = P * (dP - rowsum(P * dP)) * scale, transposed
                sums = _column_dots(p_c, ds_c, source, i0, zero)
                for c in range(NR):
                    dot[i0 + c] = sums[c]
            for j in range(source):
                for i in range(length):
                    ds_c[j, i] = p_c[j, i] * (ds_c[j, i] - dot[i]) * scale
            if has_drop:
                for j in range(source):
                    for i in range(length):
                        p_c[j, i] *= drop[db, dh, j, i]
            _product(p_t[:, :length], source, g_p, dv, zero)  # dV = (P * keep * s)^T dO
            _product(ds[:source, :length].T, length, k_p, dq, zero)  # dQ = dS K
            _product(ds[:source, :length], source, q_p, dk, zero)  # dK = dS^T Q
            for i in range(length):
                for e in range(features):
                    grad_q[b, i, gq_slot, h, e] = dq[i, e]
            for j in range(source):
                for e in range(features):
                    grad_k[b, j, gk_slot, h, e] = dk[j, e]
                for e in range(v_features):
                    grad_v[b, j, gv_slot, h, e] = dv[j, e]


def _forward_signature(dtype):
    # Inputs typed writable (the kernels never write them; _slots copies a read-only array) so
    # that their slices share one type with the scratch blocks: see _block.
    x = f"Array({dtype}, 5, 'C'), int64"
    mask, out = f"Array({dtype}, 4, 'C', readonly=True)", f"Array({dtype}, 4, 'C')"
    return f"void({x}, {x}, {x}, {mask}, {mask}, {dtype}, {out}, {out}, int64)"


def _backward_signature(dtype):
    x = grad = f"Array({dtype}, 5, 'C'), int64"
    # weights writable too: its blocks are a left operand of _product, as the scratch blocks
    weights, block = f"Array({dtype}, 4, 'C')", f"Array({dtype}, 4, 'C', readonly=True)"
    grad_out = f"Array({dtype}, 5, 'C')"
    return (f"void({x}, {x}, {x}, {weights}, {grad_out}, {block}, {dtype}, {grad}, {grad}, "
            f"{grad}, int64)")


# reassoc: the row sums keep vector partial sums. No nnan/ninf: -inf marks masked scores.
_OPTIONS = {"parallel": True, "fastmath": {"contract", "reassoc"}}
_DTYPES = ("float32", "float64")
attention_forward_blocks = LazyKernel(
    _fused_forward, {d: _forward_signature(d) for d in _DTYPES}, **_OPTIONS)
attention_backward_blocks = LazyKernel(
    _fused_backward, {d: _backward_signature(d) for d in _DTYPES}, **_OPTIONS)
KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _covered(*arrays):
    dtype = arrays[0].dtype
    return dtype in KERNEL_DTYPES and all(a.dtype == dtype and a.size for a in arrays)


def _scores_shape(q, k):
    return (q.shape[0], q.shape[2], q.shape[1], k.shape[1])  # (B, h, L, S)


def _compact(mask, dims=2):
    """mask as 4-D with its broadcast (stride-0) dims among the first `dims` cut to size 1."""
    mask = np.asarray(mask)
    mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
    return mask[tuple(slice(0, 1) if stride == 0 else slice(None)
                      for stride in mask.strides[:dims])]


def _drop_factor(shape, dtype, keep, drop_scale):
    """keep * drop_scale as a kernel mask (below), or without dropout an empty (1, 1, 0, 0)
    array: the kernels then use the weights as they are."""
    if keep is None:
        return np.zeros((1, 1, 0, 0), dtype)
    return _kernel_mask(shape, dtype, keep=keep, drop_scale=drop_scale)


def _kernel_mask(shape, dtype, fill=None, additive=None, keep=None, drop_scale=1.0, width=None):
    """One float mask for the kernels, transposed like their score blocks: C-contiguous (B or 1,
    h or 1, S, width) with entry [.., j, i] for query i and key j. Additive plus -inf where
    `fill` (the bias), or keep * drop_scale (the dropout factor); zeros without them. Columns
    past L (width > L: the forward's whole NR-wide steps) are zero. With `width` given (the
    bias), a mask the same for every query (a key padding mask) keeps one column: (.., S, 1)."""
    length, source = shape[2:]
    parts = [_compact(m, 3) for m in (fill, additive, keep) if m is not None]
    lead = np.broadcast_shapes(*(m.shape[:2] for m in parts)) if parts else (1, 1)
    if width is None or any(m.shape[2] > 1 for m in parts):
        columns = length if width is None else width
    else:
        columns = length = 1
    out = np.zeros(lead + (source, columns), dtype)
    real = out[..., :length].swapaxes(2, 3)  # (.., L or 1, S), a view
    fill, additive, keep = (None if m is None else _compact(m, 3) for m in (fill, additive, keep))
    if additive is not None:
        real += additive
    if fill is not None:
        np.copyto(real, -np.inf, where=np.broadcast_to(fill, real.shape))
    if keep is not None:
        real[...] = np.broadcast_to(keep, real.shape) * dtype(drop_scale)
    return out


def _slots(x):
    """(x5, slot): x (B, T, h, E) as slot 0 of a C-contiguous (B, T, slots, h, E) array x5 that
    starts at x's first element, so every (b, t, h) row is unit-stride for the kernel. x is
    typically one slot of a packed projection (B, T, 3, h, E) or itself C-contiguous; other
    layouts are copied first. x5 may reach past x's buffer in its unused slots: the kernel reads
    and writes slot 0 only."""
    batch, length, heads, features = x.shape
    item = x.itemsize
    row = heads * features * item
    strides = x.strides
    fits = (strides[3] == item or features == 1) and (strides[2] == features * item or heads == 1)
    fits = fits and strides[1] % row == 0 and strides[1] > 0 and (
        strides[0] == length * strides[1] or batch == 1)
    if not fits or not x.flags.writeable:  # the kernel's signature takes writable arrays
        x = np.array(x, order="C")
        return x.reshape(batch, length, 1, heads, features), 0
    slots = strides[1] // row
    return np.lib.stride_tricks.as_strided(
        x, (batch, length, slots, heads, features),
        (length * strides[1], strides[1], row, features * item, item)), 0


def attention_forward_fused(q, k, v, fill, scale, additive=None, keep=None, drop_scale=1.0):
    """attention_forward_numpy as one fused Numba kernel."""
    if not _covered(q, k, v) or (additive is not None and additive.dtype != q.dtype):
        return attention_forward_numpy(q, k, v, fill, scale, additive, keep, drop_scale)
    shape = _scores_shape(q, k)
    dtype = q.dtype.type
    out = np.empty(q.shape[:3] + (v.shape[3],), q.dtype)
    weights_t = np.empty(shape[:2] + shape[:1:-1], q.dtype)  # (B, h, S, L): P^T blocks
    bias = _kernel_mask(shape, dtype, fill=fill, additive=additive,
                        width=_panels(shape[2]) * NR)
    drop = _drop_factor(shape, dtype, keep, drop_scale)
    attention_forward_blocks(
        *_slots(q), *_slots(k), *_slots(v), bias, drop, dtype(scale), out, weights_t,
        _chunks(q.shape[0] * q.shape[2]), work=2 * weights_t.size * q.shape[3])
    return out, weights_t.transpose(0, 1, 3, 2)


def _transposed_weights(weights):
    """The (B, h, S, L) P^T blocks the backward kernel reads: in place when `weights` is the
    forward kernel's (a transposed view), else a copy (the twin's, or a read-only array: the
    kernel's signature takes writable arrays, see _slots)."""
    weights_t = weights.transpose(0, 1, 3, 2)
    if weights_t.flags.c_contiguous and weights_t.flags.writeable:
        return weights_t
    return np.array(weights_t, order="C")


def attention_backward_fused(q, k, v, weights, grad_out, scale, grad_q, grad_k, grad_v,
                             keep=None, drop_scale=1.0, grad_scores=None):
    """attention_backward_numpy as one fused Numba kernel (grad_scores: on the twin)."""
    if grad_scores is not None or not _covered(q, k, v, weights, grad_out):
        return attention_backward_numpy(q, k, v, weights, grad_out, scale, grad_q, grad_k,
                                        grad_v, keep, drop_scale, grad_scores)
    dtype = q.dtype.type
    grads = [_slots(g) for g in (grad_q, grad_k, grad_v)]
    attention_backward_blocks(
        *_slots(q), *_slots(k), *_slots(v), _transposed_weights(weights), _slots(grad_out)[0],
        _drop_factor(weights.shape, dtype, keep, drop_scale), dtype(scale),
        *grads[0], *grads[1], *grads[2], _chunks(q.shape[0] * q.shape[2]),
        work=4 * weights.size * q.shape[3])
    for grad, (written, _) in zip((grad_q, grad_k, grad_v), grads):
        if not np.shares_memory(grad, written):  # a layout _slots had to copy
            grad[...] = written[:, :, 0]


def _fused_wins(q, k):
    return max(q.shape[1], k.shape[1]) <= FUSED_MAX_LENGTH


def attention_forward_auto(q, k, v, fill, scale, additive=None, keep=None, drop_scale=1.0):
    """The fused kernel for short sequences, the mixed version for long ones."""
    version = attention_forward_fused if _fused_wins(q, k) else attention_forward_mixed
    return version(q, k, v, fill, scale, additive, keep, drop_scale)


def attention_backward_auto(q, k, v, weights, grad_out, scale, grad_q, grad_k, grad_v,
                            keep=None, drop_scale=1.0, grad_scores=None):
    """The fused kernel for short sequences, the mixed version for long ones."""
    version = attention_backward_fused if _fused_wins(q, k) else attention_backward_mixed
    version(q, k, v, weights, grad_out, scale, grad_q, grad_k, grad_v, keep, drop_scale,
            grad_scores)
