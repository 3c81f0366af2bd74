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
  one parallel loop; each block's q, k, v rows are copied into small contiguous scratch arrays,
  then each query row goes scores -> mask -> softmax -> weighted sum of v while the row is in
  L1: only one row of a block's (L, S) scores is live at a time besides `weights` itself. The
  backward is one pass over query rows too (dV, dP, dS, dQ per row; dK accumulated per block).
"auto" takes the fused kernel for short sequences (max(L, S) <= FUSED_MAX_LENGTH), where one
BLAS call per small (batch, head) block loses, and the mixed version above that.
"""
import numba
import numpy as np
from numba import prange

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
    panels. Only real entries are written: the padding keeps the zeros it was allocated with."""
    for t in range(x.shape[1]):
        row = x[b, t, slot, h]
        for p in range(panels.shape[0]):
            e0 = p * NR
            panel_row = panels[p, t]
            for c in range(min(NR, x.shape[4] - e0)):
                panel_row[c] = row[e0 + c]


@numba.njit(cache=True)
def _pack_transposed(x, slot, b, h, panels):
    """panels[p, e, c] = X[p NR + c, e]: the block's transpose (E, T), packed likewise."""
    for t in range(x.shape[1]):
        row, panel, c = x[b, t, slot, h], panels[t // NR], t % NR
        for e in range(x.shape[4]):
            panel[e, c] = row[e]


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


@numba.njit(cache=True, inline="always")
def _mask_row(mask, b, h, i):
    """Row (b, h, i) of a (B or 1, h or 1, L or 1, S) C-contiguous mask: size-1 dims broadcast
    (a key padding mask is one row of S per batch item)."""
    return mask[b if mask.shape[0] > 1 else 0, h if mask.shape[1] > 1 else 0,
                i if mask.shape[2] > 1 else 0]


def _fused_forward(q, q_slot, k, k_slot, v, v_slot, bias, drop, scale, out, weights, chunks):
    batch, length, _, heads, features = q.shape
    source, v_features = k.shape[1], v.shape[4]
    dtype = weights.dtype
    # Constants typed like the data: a literal (or float32 + int) would be float64.
    zero, one = np.zeros(1, dtype)[0], np.ones(1, dtype)[0]
    minus_inf = np.full(1, -np.inf, dtype)[0]
    has_drop = drop.shape[2] > 0  # an empty `drop`: no dropout, the weights go in directly
    blocks = batch * heads
    for chunk in prange(chunks):
        k_t = np.zeros((_panels(source), features, NR), dtype)  # K^T, packed
        v_p = np.zeros((_panels(v_features), source, NR), dtype)
        scores = np.empty((_padded(length), _panels(source) * NR), dtype)
        dropped_c, dropped = _block(length, source, dtype)  # weights * keep * drop_scale
        result = np.empty((_padded(length), _panels(v_features) * NR), dtype)
        for block in range(chunk * blocks // chunks, (chunk + 1) * blocks // chunks):
            b, h = block // heads, block % heads
            _pack_transposed(k, k_slot, b, h, k_t)
            _pack(v, v_slot, b, h, v_p)
            _product(q[b, :, q_slot, h, :], length, k_t, scores, zero)
            for i in range(length):  # scale, mask, softmax, dropout: row i of the block
                row, x, bias_row = weights[b, h, i], scores[i], _mask_row(bias, b, h, i)
                for j in range(source):
                    row[j] = x[j] * scale + bias_row[j]
                row_max = minus_inf
                for j in range(source):
                    row_max = max(row_max, row[j])
                if row_max == minus_inf:  # every key masked: zero weights, zero output
                    # a loop, not `row[:] = zero`: a slice assignment compiles Numba's whole
                    # broadcasting setitem (about 1 s of the four kernels' cold compile)
                    for j in range(source):
                        row[j] = zero
                        dropped_c[i, j] = zero
                    continue
                total = zero
                for j in range(source):
                    w = _exp(row[j] - row_max)
                    row[j] = w
                    total += w
                inverse = one / total
                if has_drop:
                    drop_row, dropped_row = _mask_row(drop, b, h, i), dropped_c[i]
                    for j in range(source):
                        w = row[j] * inverse
                        row[j] = w
                        dropped_row[j] = w * drop_row[j]
                else:
                    for j in range(source):
                        row[j] *= inverse
            left = dropped if has_drop else weights[b, h][:, :source]  # both strided (L, S)
            _product(left, length, v_p, result, zero)
            for i in range(length):
                out_row = out[b, i, h]
                for e in range(v_features):
                    out_row[e] = result[i, e]


def _fused_backward(q, q_slot, k, k_slot, v, v_slot, weights, grad_out, drop, scale, grad_q,
                    gq_slot, grad_k, gk_slot, grad_v, gv_slot, chunks):
    batch, length, _, heads, features = q.shape
    source, v_features = k.shape[1], v.shape[4]
    dtype = weights.dtype
    zero = np.zeros(1, dtype)[0]
    has_drop = drop.shape[2] > 0  # as in _fused_forward
    blocks = batch * heads
    for chunk in prange(chunks):
        g_p = np.zeros((_panels(v_features), length, NR), dtype)  # dO
        v_t = np.zeros((_panels(source), v_features, NR), dtype)  # V^T
        k_p = np.zeros((_panels(features), source, NR), dtype)
        q_p = np.zeros((_panels(features), length, NR), dtype)
        dropped_c, dropped = _block(length, source, dtype)
        ds_c, ds = _block(length, source, dtype)
        dv = np.empty((_padded(source), _panels(v_features) * NR), dtype)
        dp = np.empty((_padded(length), _panels(source) * NR), dtype)
        dq = np.empty((_padded(length), _panels(features) * NR), dtype)
        dk = np.empty((_padded(source), _panels(features) * NR), dtype)
        for block in range(chunk * blocks // chunks, (chunk + 1) * blocks // chunks):
            b, h = block // heads, block % heads
            _pack(grad_out, 0, b, h, g_p)
            _pack_transposed(v, v_slot, b, h, v_t)
            _pack(k, k_slot, b, h, k_p)
            _pack(q, q_slot, b, h, q_p)
            p = weights[b, h]  # (L, S)
            if has_drop:
                for i in range(length):
                    drop_row, p_row, dropped_row = _mask_row(drop, b, h, i), p[i], dropped_c[i]
                    for j in range(source):
                        dropped_row[j] = p_row[j] * drop_row[j]
            left = dropped if has_drop else p[:, :source]  # both strided (L, S)
            _product(left.T, source, g_p, dv, zero)  # dV = (P * keep * s)^T dO
            _product(grad_out[b, :, 0, h, :], length, v_t, dp, zero)  # d(dropped) = dO V^T
            for i in range(length):  # dS = P * (dP - rowsum(P * dP)) * scale
                p_row, dp_row, ds_row = p[i], dp[i], ds_c[i]
                if has_drop:
                    drop_row = _mask_row(drop, b, h, i)
                    for j in range(source):
                        dp_row[j] *= drop_row[j]  # dP
                dot = zero
                for j in range(source):
                    dot += p_row[j] * dp_row[j]
                for j in range(source):
                    ds_row[j] = p_row[j] * (dp_row[j] - dot) * scale
            _product(ds, length, k_p, dq, zero)  # dQ = dS K
            _product(ds.T, source, q_p, dk, zero)  # dK = dS^T Q
            for i in range(length):
                row = grad_q[b, i, gq_slot, h]
                for e in range(features):
                    row[e] = dq[i, e]
            for j in range(source):
                k_row, v_row = grad_k[b, j, gk_slot, h], grad_v[b, j, gv_slot, h]
                for e in range(features):
                    k_row[e] = dk[j, e]
                for e in range(v_features):
                    v_row[e] = dv[j, e]


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


def _compact(mask):
    """mask as 4-D with its broadcast (stride-0) batch, head and query dims cut to size 1."""
    mask = np.asarray(mask)
    mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
    return mask[tuple(slice(0, 1) if stride == 0 else slice(None) for stride in mask.strides[:3])]


def _drop_factor(shape, dtype, keep, drop_scale):
    """keep * drop_scale as a kernel mask (below), or without dropout an empty (1, 1, 0, 0)
    array: the kernels then use the weights as they are."""
    if keep is None:
        return np.zeros((1, 1, 0, 0), dtype)
    return _row_mask(shape, dtype, keep=keep, drop_scale=drop_scale)


def _row_mask(shape, dtype, fill=None, additive=None, keep=None, drop_scale=1.0):
    """One float mask for the kernel, C-contiguous (B or 1, h or 1, L or 1, S): additive plus
    -inf where `fill` (the bias), or keep * drop_scale (the dropout factor); zeros without them.
    A mask the same for every query (a key padding mask) stays one row of S per (b, h)."""
    fill, additive, keep = (None if m is None else _compact(m) for m in (fill, additive, keep))
    parts = [m for m in (fill, additive, keep) if m is not None]
    if not parts:
        return np.zeros((1, 1, 1, shape[3]), dtype)
    out = np.zeros(np.broadcast_shapes(*(m.shape[:3] for m in parts)) + shape[3:], dtype)
    if additive is not None:
        out += additive
    if fill is not None:
        np.copyto(out, -np.inf, where=np.broadcast_to(fill, out.shape))
    if keep is not None:
        out[...] = np.broadcast_to(keep, out.shape) * dtype(drop_scale)
    return out


def _slots(x):
    """(x5, slot): x (B, T, h, E) as slot 0 of a C-contiguous (B, T, slots, h, E) array x5 that
    starts at x's first element, so every (b, t, h) row is unit-stride for the kernel. x is
    typically one slot of a packed projection (B, T, 3, h, E) or itself C-contiguous; other
    layouts are copied first. x5 may reach past x's buffer in its unused slots: the kernel reads
    and writes slot 0 only."""
    batch, length, heads, features = x.shape
    if x.flags.c_contiguous and x.flags.writeable:  # one slot: a reshape (as_strided costs ~4 us)
        return x.reshape(batch, length, 1, heads, features), 0
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
    weights = np.empty(shape, q.dtype)
    bias = _row_mask(shape, dtype, fill=fill, additive=additive)
    drop = _drop_factor(shape, dtype, keep, drop_scale)
    attention_forward_blocks(
        *_slots(q), *_slots(k), *_slots(v), bias, drop, dtype(scale), out, weights,
        _chunks(q.shape[0] * q.shape[2]), work=2 * weights.size * q.shape[3])
    return out, weights


def _writable(x):
    # The kernels' signatures take writable arrays (they never write these): see _slots.
    x = np.ascontiguousarray(x)
    return x if x.flags.writeable else x.copy()


# The backward's serial read-through (below) only up to this many bytes: the small step's calls
# (2.1 MB: its packed q, k, v and the weights) gained 7-13% at two threads and 20-24% at one;
# the short step's (4.1 MB) went -4% to +4% at two threads, the read costing what it saved.
READ_THROUGH_MAX_BYTES = 3 << 20


def _read_through(*arrays):
    """Read the memory under `arrays` once, front to back: the buffer each is a view of (one
    read for q, k, v of one packed projection), when it is C-contiguous and at most twice the
    size of the views in it (never a large array that a small view happens to share); nothing
    when that is more than READ_THROUGH_MAX_BYTES in all."""
    owners = {}
    for x in arrays:
        owner = x
        while isinstance(owner.base, np.ndarray):
            owner = owner.base
        owners.setdefault(id(owner), [owner, 0])[1] += x.nbytes
    readable = [owner for owner, viewed in owners.values()
                if owner.flags.c_contiguous and owner.nbytes <= 2 * viewed
                and owner.nbytes % 4 == 0]
    if sum(owner.nbytes for owner in readable) > READ_THROUGH_MAX_BYTES:
        return
    for owner in readable:  # integers: NaN and inf are bits like any other
        np.bitwise_or.reduce(owner.reshape(-1).view(
            np.uint64 if owner.nbytes % 8 == 0 else np.uint32))


def attention_backward_fused(q, k, v, weights, grad_out, scale, grad_q, grad_k, grad_v,
                             keep=None, drop_scale=1.0, grad_scores=None):
    """attention_backward_numpy as one fused Numba kernel (grad_scores: on the twin)."""
    if grad_scores is not None or not _covered(q, k, v, weights, grad_out):
        return attention_backward_numpy(q, k, v, weights, grad_out, scale, grad_q, grad_k,
                                        grad_v, keep, drop_scale, grad_scores)
    # In a training step q, k, v and the weights were written by the forward long before and
    # come back from memory: the kernel's short strided rows then wait on each line (a third of
    # a call). One sequential read first brings them in at streaming speed, with no compile
    # cost (bench/RESULTS.md, helper attn4). dO is fresh, the gradients are written: not read.
    _read_through(q, k, v, weights)
    dtype = q.dtype.type
    grads = [_slots(g) for g in (grad_q, grad_k, grad_v)]
    attention_backward_blocks(
        *_slots(q), *_slots(k), *_slots(v), _writable(weights), _slots(grad_out)[0],
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
