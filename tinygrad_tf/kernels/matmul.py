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

`matmul_pool` is the third way, for 2-D products (a linear layer's): OpenBLAS's kernel on our
threads. It splits the product into one block of rows (or columns) per Numba thread and has
each thread call OpenBLAS's one-threaded cblas GEMM on its block, so the GEMMs run on the same
OpenMP pool as every other parallel kernel of the step instead of on OpenBLAS's own workers
(kernels/threads.py, `one_pool`).
"""
import math

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core.extending import intrinsic

from . import _jit, threads
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


# ---------------------------------------------------------------------------- OpenBLAS on our pool

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # cblas's enum values
POOL_ALIGN = 16  # block edges on multiples of 16 rows / columns: whole SIMD tiles in each block
# Batches of smaller items stay on numpy's loop (one OpenBLAS call per item, on one thread, as
# OpenBLAS itself runs products below about this many multiply-adds): (128, 32, 32) products
# were no faster split across the pool in a noisy sitting, and the per-call cost is the pool's.
POOL_MIN_ITEM = 1 << 18


@intrinsic
def _cblas_gemm(typingctx, address, double, trans_a, trans_b, m, n, kdim, a, lda, b, ldb, c,
                ldc):
    """Call the cblas_?gemm at `address` (an ILP64 build: 64-bit dims) for the row-major
    c = a @ b (alpha 1, beta 0): cblas_dgemm's signature when `double`, else cblas_sgemm's.
    a, b, c are addresses. An intrinsic, not a ctypes call: the address is an argument, so
    the compiled kernel holds no pointer of this process and caches on disk like the others."""
    signature = types.void(types.int64, types.boolean, *(types.int64,) * 11)

    def codegen(context, builder, sig, args):
        int32, int64, pointer = ir.IntType(32), ir.IntType(64), ir.IntType(8).as_pointer()
        (address_, double_, trans_a_, trans_b_, m_, n_, k_, a_, lda_, b_, ldb_, c_, ldc_) = args

        def call(real):
            function = ir.FunctionType(ir.VoidType(), [int32, int32, int32, int64, int64, int64,
                                                       real, pointer, int64, pointer, int64,
                                                       real, pointer, int64])
            builder.call(builder.inttoptr(address_, function.as_pointer()), [
                ir.Constant(int32, ROW_MAJOR), builder.trunc(trans_a_, int32),
                builder.trunc(trans_b_, int32), m_, n_, k_, ir.Constant(real, 1.0),
                builder.inttoptr(a_, pointer), lda_, builder.inttoptr(b_, pointer), ldb_,
                ir.Constant(real, 0.0), builder.inttoptr(c_, pointer), ldc_])
        with builder.if_else(builder.trunc(double_, ir.IntType(1))) as (then, otherwise):
            with then:
                call(ir.DoubleType())
            with otherwise:
                call(ir.FloatType())
        return context.get_dummy_value()
    return signature, codegen


def _pool_gemm(address, double, trans_a, trans_b, m, n, kdim, a, lda, b, ldb, c, ldc, itemsize,
               blocks, by_rows, batch2, count, strides):
    """c[t] = a[t] @ b[t] for `count` items (addresses and cblas flags; item t = (t // batch2,
    t % batch2), at byte offsets strides[0 or 1] * that pair for a, [2, 3] for b, [4, 5] for c),
    each as `blocks` cblas calls, all in one prange: block i of an item computes its rows
    (by_rows) or columns [start_i, stop_i), edges on POOL_ALIGN."""
    size = m if by_rows else n
    for job in prange(count * blocks):
        item, block = job // blocks, job % blocks
        i1, i2 = item // batch2, item % batch2
        a_t = a + i1 * strides[0] + i2 * strides[1]
        b_t = b + i1 * strides[2] + i2 * strides[3]
        c_t = c + i1 * strides[4] + i2 * strides[5]
        start = (size * block // blocks) // POOL_ALIGN * POOL_ALIGN
        stop = size if block == blocks - 1 else \
            (size * (block + 1) // blocks) // POOL_ALIGN * POOL_ALIGN
        if stop > start:
            if by_rows:  # row i of a is at i * lda (or, transposed, column i of its storage)
                a_start = a_t + start * (lda if trans_a == NO_TRANS else 1) * itemsize
                _cblas_gemm(address, double, trans_a, trans_b, stop - start, n, kdim, a_start,
                            lda, b_t, ldb, c_t + start * ldc * itemsize, ldc)
            else:
                b_start = b_t + start * (1 if trans_b == NO_TRANS else ldb) * itemsize
                _cblas_gemm(address, double, trans_a, trans_b, m, stop - start, kdim, a_t, lda,
                            b_start, ldb, c_t + start * itemsize, ldc)


# One signature for every dtype (the operands are addresses; `double` picks the routine): one
# compile. LazyKernel picks signatures by its first argument's dtype, here the int64 address.
pool_gemm = LazyKernel(_pool_gemm, {"int64": "void(int64, boolean, " + "int64, " * 12
                                    + "int64, boolean, int64, int64, Array(int64, 1, 'C'))"},
                       parallel=True)


def _cblas_layout(x):
    """(cblas flag, leading dimension) of the matrices in x's last two dims, or None: row-major
    (unit stride along a row) as it is, a transposed view (unit stride down a column) with the
    transpose flag; the rows (columns) may lie further apart than the matrix is wide (high)."""
    (rows, cols), (row_stride, col_stride), size = x.shape[-2:], x.strides[-2:], x.itemsize
    if col_stride == size and row_stride % size == 0 and row_stride >= max(1, cols) * size:
        return NO_TRANS, row_stride // size
    if row_stride == size and col_stride % size == 0 and col_stride >= max(1, rows) * size:
        return TRANS, col_stride // size
    return None


def matmul_pool(a, b, threads_count=None):
    """a @ b for float32/float64 operands of two or more dims (numpy's batch broadcasting) as
    one-threaded OpenBLAS calls spread over `threads_count` (default: Numba's count) threads of
    Numba's pool: one block of rows (or columns) per thread for a 2-D product or a small batch,
    whole items for a batch of at least that many (see the module's docstring). np.matmul itself
    on one thread, for small products and other operands, or without numpy's ILP64 OpenBLAS."""
    threads_count = numba.get_num_threads() if threads_count is None else threads_count
    gemms = threads.cblas_gemm()
    if (threads_count < 2 or gemms is None or a.ndim < 2 or b.ndim < 2 or a.dtype != b.dtype
            or a.dtype not in GEMM_DTYPES or a.shape[-1] != b.shape[-2]):
        return matmul_numpy(a, b)  # numpy raises its own error on a mismatch
    (m, kdim), n = a.shape[-2:], b.shape[-1]
    batch = batch_shape(a, b)
    count = math.prod(batch)
    if (count * m * n * kdim < _jit.SERIAL_BELOW or 0 in (m, n, kdim)
            or count > 1 and m * n * kdim < POOL_MIN_ITEM):
        return matmul_numpy(a, b)
    a4, b4 = _as_4d(a, batch, m, kdim), _as_4d(b, batch, kdim, n)
    layout_a, layout_b = _cblas_layout(a4), _cblas_layout(b4)
    if layout_a is None:
        a4 = np.ascontiguousarray(a4)
        layout_a = _cblas_layout(a4)
    if layout_b is None:
        b4 = np.ascontiguousarray(b4)
        layout_b = _cblas_layout(b4)
    out = np.empty(a4.shape[:2] + (m, n), dtype=a.dtype)
    blocks = max(1, threads_count // count)
    double = a.dtype == np.float64
    strides = np.array(a4.strides[:2] + b4.strides[:2] + out.strides[:2], dtype=np.int64)
    pool_gemm(np.int64(gemms[1] if double else gemms[0]), double, layout_a[0], layout_b[0], m, n,
              kdim, a4.ctypes.data, layout_a[1], b4.ctypes.data, layout_b[1], out.ctypes.data,
              max(1, n), a.itemsize, blocks, m >= n, a4.shape[1], count, strides,
              work=count * m * n * kdim)
    return out.reshape(batch + (m, n))


def matmul_blas(a, b):
    """np.matmul, on Numba's pool when threads.one_pool() is on (matmul_pool): for the numpy
    twins that the "auto" set runs (long-sequence attention, the recurrent layers' steps)."""
    return matmul_pool(a, b) if threads.pool_on() else np.matmul(a, b)


def _unbatch(out, a_ndim, b_ndim):
    # A 1-D operand's row / column dim comes off again, as in numpy.
    if a_ndim == 1:
        out = out[..., 0, :]
    if b_ndim == 1:
        out = out[..., 0]
    return out
