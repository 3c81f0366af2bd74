"""Matrix multiply: numpy's matmul (the reference; OpenBLAS underneath) and a Numba GEMM beside it.

The Numba kernel is a small Goto-style GEMM. B is first copied ("packed") into panels of NR
columns, each K x NR, contiguous and zero-padded past the last column, in the order the inner
loop reads them. A is read in place. Both reads accept any strides, so a transposed view such as
`k.transpose(-1, -2)` costs no separate copy. The micro-kernel computes one MR x NR tile of the
output with MR * NR accumulators held in CPU registers: per step of k it loads NR values of B and
MR of A and does MR * NR multiply-adds. With LLVM's SLP vectorizer on (see `_jit.py`) the 16
accumulators of a row become two 8-wide AVX2 registers, and `fastmath={'contract'}` lets
`c += a * b` become one fused multiply-add. (Full fastmath reassociates the k loop into gathers
and is slower.)

Parallelism: one `prange` over (batch item, B panel, chunk of row strips) jobs, so both a big 2-D
product and a batch of small attention matrices keep every core busy.
"""
import math

import numba
import numpy as np
from numba import prange

from ._jit import LazyKernel

MR, NR = 4, 16           # micro-tile: 4 x 16 float32 accumulators = 8 AVX2 registers
A_CHUNK_BYTES = 1 << 17  # rows of A one job streams past its B panel: about 128 KiB, L2-sized
# Batched products whose matrices have at most this many output elements run per batch item
# (`batched_gemm`): one parallel loop over the items instead of the GEMM's two.
BATCHED_MAX_MATRIX = 128 * 128


def matmul_numpy(a, b):
    """a @ b with numpy's batch broadcasting (OpenBLAS underneath)."""
    return np.matmul(a, b)


# ---------------------------------------------------------------------------- Numba GEMM

@numba.njit(cache=True, fastmath={'contract'})
def _strips_times_panel(a, bp, dest, s_begin, s_end, j0, row_offset, zero):
    """dest[i - row_offset : +MR, j0 : j0+NR] = a[i : i+MR] @ bp for row strips i = MR * s,
    s in range(s_begin, s_end); bp is a packed B panel (K x NR).

    The MR x NR accumulators are written out by hand (not generated and exec'd: Numba cannot
    cache exec'd code) as plain local variables, which LLVM keeps in registers. Rows past the
    end of `a` repeat its last row; the caller then passes a spare tile as `dest` and keeps the
    rows that exist."""
    m, kdim = a.shape
    for s in range(s_begin, s_end):
        i0 = s * MR
        r0, r1, r2, r3 = i0, min(i0 + 1, m - 1), min(i0 + 2, m - 1), min(i0 + 3, m - 1)
        c0_0 = c0_1 = c0_2 = c0_3 = c0_4 = c0_5 = c0_6 = c0_7 = zero
        c0_8 = c0_9 = c0_10 = c0_11 = c0_12 = c0_13 = c0_14 = c0_15 = zero
        c1_0 = c1_1 = c1_2 = c1_3 = c1_4 = c1_5 = c1_6 = c1_7 = zero
        c1_8 = c1_9 = c1_10 = c1_11 = c1_12 = c1_13 = c1_14 = c1_15 = zero
        c2_0 = c2_1 = c2_2 = c2_3 = c2_4 = c2_5 = c2_6 = c2_7 = zero
        c2_8 = c2_9 = c2_10 = c2_11 = c2_12 = c2_13 = c2_14 = c2_15 = zero
        c3_0 = c3_1 = c3_2 = c3_3 = c3_4 = c3_5 = c3_6 = c3_7 = zero
        c3_8 = c3_9 = c3_10 = c3_11 = c3_12 = c3_13 = c3_14 = c3_15 = zero
        for k in range(kdim):
            b0, b1, b2, b3 = bp[k, 0], bp[k, 1], bp[k, 2], bp[k, 3]
            b4, b5, b6, b7 = bp[k, 4], bp[k, 5], bp[k, 6], bp[k, 7]
            b8, b9, b10, b11 = bp[k, 8], bp[k, 9], bp[k, 10], bp[k, 11]
            b12, b13, b14, b15 = bp[k, 12], bp[k, 13], bp[k, 14], bp[k, 15]
            x = a[r0, k]
            c0_0 += x * b0; c0_1 += x * b1; c0_2 += x * b2; c0_3 += x * b3
            c0_4 += x * b4; c0_5 += x * b5; c0_6 += x * b6; c0_7 += x * b7
            c0_8 += x * b8; c0_9 += x * b9; c0_10 += x * b10; c0_11 += x * b11
            c0_12 += x * b12; c0_13 += x * b13; c0_14 += x * b14; c0_15 += x * b15
            x = a[r1, k]
            c1_0 += x * b0; c1_1 += x * b1; c1_2 += x * b2; c1_3 += x * b3
            c1_4 += x * b4; c1_5 += x * b5; c1_6 += x * b6; c1_7 += x * b7
            c1_8 += x * b8; c1_9 += x * b9; c1_10 += x * b10; c1_11 += x * b11
            c1_12 += x * b12; c1_13 += x * b13; c1_14 += x * b14; c1_15 += x * b15
            x = a[r2, k]
            c2_0 += x * b0; c2_1 += x * b1; c2_2 += x * b2; c2_3 += x * b3
            c2_4 += x * b4; c2_5 += x * b5; c2_6 += x * b6; c2_7 += x * b7
            c2_8 += x * b8; c2_9 += x * b9; c2_10 += x * b10; c2_11 += x * b11
            c2_12 += x * b12; c2_13 += x * b13; c2_14 += x * b14; c2_15 += x * b15
            x = a[r3, k]
            c3_0 += x * b0; c3_1 += x * b1; c3_2 += x * b2; c3_3 += x * b3
            c3_4 += x * b4; c3_5 += x * b5; c3_6 += x * b6; c3_7 += x * b7
            c3_8 += x * b8; c3_9 += x * b9; c3_10 += x * b10; c3_11 += x * b11
            c3_12 += x * b12; c3_13 += x * b13; c3_14 += x * b14; c3_15 += x * b15
        # Row views with constant indices below let LLVM store 8 lanes at once.
        row = dest[i0 - row_offset + 0, j0:j0 + NR]
        row[0] = c0_0; row[1] = c0_1; row[2] = c0_2; row[3] = c0_3
        row[4] = c0_4; row[5] = c0_5; row[6] = c0_6; row[7] = c0_7
        row[8] = c0_8; row[9] = c0_9; row[10] = c0_10; row[11] = c0_11
        row[12] = c0_12; row[13] = c0_13; row[14] = c0_14; row[15] = c0_15
        row = dest[i0 - row_offset + 1, j0:j0 + NR]
        row[0] = c1_0; row[1] = c1_1; row[2] = c1_2; row[3] = c1_3
        row[4] = c1_4; row[5] = c1_5; row[6] = c1_6; row[7] = c1_7
        row[8] = c1_8; row[9] = c1_9; row[10] = c1_10; row[11] = c1_11
        row[12] = c1_12; row[13] = c1_13; row[14] = c1_14; row[15] = c1_15
        row = dest[i0 - row_offset + 2, j0:j0 + NR]
        row[0] = c2_0; row[1] = c2_1; row[2] = c2_2; row[3] = c2_3
        row[4] = c2_4; row[5] = c2_5; row[6] = c2_6; row[7] = c2_7
        row[8] = c2_8; row[9] = c2_9; row[10] = c2_10; row[11] = c2_11
        row[12] = c2_12; row[13] = c2_13; row[14] = c2_14; row[15] = c2_15
        row = dest[i0 - row_offset + 3, j0:j0 + NR]
        row[0] = c3_0; row[1] = c3_1; row[2] = c3_2; row[3] = c3_3
        row[4] = c3_4; row[5] = c3_5; row[6] = c3_6; row[7] = c3_7
        row[8] = c3_8; row[9] = c3_9; row[10] = c3_10; row[11] = c3_11
        row[12] = c3_12; row[13] = c3_13; row[14] = c3_14; row[15] = c3_15


@numba.njit(cache=True)
def _pack_panel(b, j0, panel, zero):
    """panel[k, j] = b[k, j0 + j], zero past b's last column: NR columns of B made contiguous."""
    ncols = min(NR, b.shape[1] - j0)
    for k in range(b.shape[0]):
        for j in range(ncols):
            panel[k, j] = b[k, j0 + j]
        for j in range(ncols, NR):
            panel[k, j] = zero


def _gemm(a, b, out):
    """out[i, j] = a[i, j] @ b[i, j] over 4-D (B1, B2, M, K) and (B1, B2, K, N) views."""
    batch1, batch2, m, kdim = a.shape
    n = b.shape[3]
    nbatch = batch1 * batch2
    nstrip, npanel = (m + MR - 1) // MR, (n + NR - 1) // NR
    zero = np.zeros(1, out.dtype)[0]
    strips_per_job = max(1, A_CHUNK_BYTES // (kdim * MR * out.itemsize + 1))
    nchunk = (nstrip + strips_per_job - 1) // strips_per_job
    b_packed = np.empty((nbatch, npanel, kdim, NR), out.dtype)
    for job in prange(nbatch * npanel):
        t, p = job // npanel, job % npanel
        _pack_panel(b[t // batch2, t % batch2], p * NR, b_packed[t, p], zero)
    # Panel-major jobs: a B panel (K x NR) stays in L1 while the job's A strips stream past it.
    for job in prange(nbatch * npanel * nchunk):
        t, rest = job // (npanel * nchunk), job % (npanel * nchunk)
        p, chunk = rest // nchunk, rest % nchunk
        a_t, out_t = a[t // batch2, t % batch2], out[t // batch2, t % batch2]
        tile = np.empty((MR, NR), out.dtype)
        j0 = p * NR
        ncols = min(NR, n - j0)
        s_begin = chunk * strips_per_job
        s_end = min(nstrip, s_begin + strips_per_job)
        full_end = max(s_begin, min(s_end, m // MR)) if ncols == NR else s_begin  # whole tiles
        _strips_times_panel(a_t, b_packed[t, p], out_t, s_begin, full_end, j0, 0, zero)
        for s in range(full_end, s_end):  # edge tiles: compute into `tile`, keep what fits
            i0 = s * MR
            _strips_times_panel(a_t, b_packed[t, p], tile, s, s + 1, 0, i0, zero)
            for r in range(min(MR, m - i0)):
                for j in range(ncols):
                    out_t[i0 + r, j0 + j] = tile[r, j]


# ---------------------------------------------------------------------------- batched small

@numba.njit(cache=True)
def _pack_panels(b, panels, zero):
    """panels[p, k, j] = b[k, p NR + j], zero past b's last column. A transposed view (unit
    stride along k) is read along k, so both the reads and the writes stay in cache lines."""
    kdim, n = b.shape
    for p in range(panels.shape[0]):
        j0 = p * NR
        ncols = min(NR, n - j0)
        panel = panels[p]
        if b.strides[0] < b.strides[1]:
            for j in range(ncols):
                for k in range(kdim):
                    panel[k, j] = b[k, j0 + j]
        else:
            for k in range(kdim):
                for j in range(ncols):
                    panel[k, j] = b[k, j0 + j]
        for k in range(kdim):
            for j in range(ncols, NR):
                panel[k, j] = zero


def _batched_gemm(a, b, out, chunks):
    """out[t] = a[t] @ b[t] for (T, M, K) and (T, K, N) operands of any strides, small M, N:
    one prange over `chunks` runs of batch items; each item packs its B into NR-column panels
    (scratch allocated once per run) and streams its A strips past them, writing whole tiles
    straight into `out` and edge tiles through a spare tile."""
    nbatch, m, kdim = a.shape
    n = b.shape[2]
    npanel, nstrip, full = (n + NR - 1) // NR, (m + MR - 1) // MR, m // MR
    zero = np.zeros(1, out.dtype)[0]
    for chunk in prange(chunks):
        panels = np.empty((npanel, kdim, NR), out.dtype)
        tile = np.empty((MR, NR), out.dtype)
        for t in range(chunk * nbatch // chunks, (chunk + 1) * nbatch // chunks):
            a_t, out_t = a[t], out[t]
            _pack_panels(b[t], panels, zero)
            for p in range(npanel):
                j0 = p * NR
                ncols = min(NR, n - j0)
                full_end = full if ncols == NR else 0
                _strips_times_panel(a_t, panels[p], out_t, 0, full_end, j0, 0, zero)
                for s in range(full_end, nstrip):
                    i0 = s * MR
                    _strips_times_panel(a_t, panels[p], tile, s, s + 1, 0, i0, zero)
                    for r in range(min(MR, m - i0)):
                        for j in range(ncols):
                            out_t[i0 + r, j0 + j] = tile[r, j]


def _batched_signature(dtype):
    operand = f"Array({dtype}, 3, 'A', readonly=True)"
    return f"void({operand}, {operand}, Array({dtype}, 3, 'C'), int64)"


# float32 only (the training dtype): each compiled dtype costs ~12 s of cold compiling; float64
# batches take the general GEMM.
batched_gemm = LazyKernel(_batched_gemm, {"float32": _batched_signature("float32")},
                          parallel=True, fastmath={"contract"})


def _gemm_signature(dtype):
    operand = f"Array({dtype}, 4, 'A', readonly=True)"
    return f"void({operand}, {operand}, Array({dtype}, 4, 'C'))"


gemm = LazyKernel(_gemm, {d: _gemm_signature(d) for d in ("float32", "float64")},
                  parallel=True, fastmath={"contract"})
GEMM_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _as_4d(x, batch, rows, cols):
    # A read-only broadcast view with exactly two batch dims (stride 0 where x is broadcast);
    # more than two batch dims are merged, which copies only if their strides do not allow it.
    x = np.broadcast_to(x, batch + (rows, cols))
    if len(batch) > 2:
        x = x.reshape((-1, batch[-1], rows, cols))
    return x.reshape((1,) * (4 - x.ndim) + x.shape)


def batch_shape(a, b):
    """The broadcast batch dims of two matrix operands (np.broadcast_shapes costs ~1.6 us a
    call, the tuple comparison for the usual equal batches ~0.2)."""
    batch_a, batch_b = a.shape[:-2], b.shape[:-2]
    return batch_a if batch_a == batch_b else np.broadcast_shapes(batch_a, batch_b)


def _as_3d(x, batch, rows, cols):
    # A read-only (items, rows, cols) view, the batch dims merged (a copy only where their
    # strides do not allow it, e.g. some broadcast operands). A read-only view (not a writeable
    # one) matches the kernel's signature exactly: Numba's dispatch is fastest then.
    if x.shape[:-2] != batch:  # np.broadcast_to costs ~2.5 us a call
        x = np.broadcast_to(x, batch + (rows, cols))
    x = x.reshape((-1, rows, cols))
    x.flags.writeable = False  # a new view or copy: the caller's array is untouched
    return x


def matmul_numba(a, b):
    """a @ b on the Numba GEMM, with numpy's rules (batch broadcasting, 1-D operands).
    Dtypes other than matching float32/float64, and empty operands, go to `matmul_numpy`."""
    if a.dtype != b.dtype or a.dtype not in GEMM_DTYPES or a.ndim == 0 or b.ndim == 0:
        return matmul_numpy(a, b)
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    (m, kdim), (kdim_b, n) = a2.shape[-2:], b2.shape[-2:]
    if kdim != kdim_b or 0 in (m, n, kdim):
        return matmul_numpy(a, b)  # numpy raises its own error on a mismatch
    if b.ndim == 2 and a.ndim > 2:  # a linear layer: fold a's batch into rows, one 2-D product
        return matmul_numba(a.reshape(-1, kdim), b).reshape(a.shape[:-1] + (n,))
    batch = batch_shape(a2, b2)
    count = math.prod(batch)
    if count > 1 and m * n <= BATCHED_MAX_MATRIX and a.dtype == np.float32:
        out = np.empty((count, m, n), dtype=a.dtype)
        batched_gemm(_as_3d(a2, batch, m, kdim), _as_3d(b2, batch, kdim, n), out,
                     min(count, 4 * numba.get_num_threads()), work=out.size * kdim)
        return _unbatch(out.reshape(batch + (m, n)), a.ndim, b.ndim)
    a4, b4 = _as_4d(a2, batch, m, kdim), _as_4d(b2, batch, kdim, n)
    out = np.empty(a4.shape[:2] + (m, n), dtype=a.dtype)
    gemm(a4, b4, out, work=out.size * kdim)
    return _unbatch(out.reshape(batch + (m, n)), a.ndim, b.ndim)


def _unbatch(out, a_ndim, b_ndim):
    # A 1-D operand's row / column dim comes off again, as in numpy.
    if a_ndim == 1:
        out = out[..., 0, :]
    if b_ndim == 1:
        out = out[..., 0]
    return out
