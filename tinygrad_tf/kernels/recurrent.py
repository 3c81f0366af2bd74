"""The time loop of a recurrent layer (nn.RNN / LSTM / GRU), forward and backward, beside its twin.

One layer in one direction, given xw (T, B, G), the input projections of every step (one GEMM
done by the caller): per step `hh = h @ W_hh^T + b_hh`, then the cell's gate arithmetic on
`xw[t]` and `hh`. Modes (torch's formulas and gate order):

    0 RNN tanh   h' = tanh(xw + hh)
    1 RNN relu   h' = relu(xw + hh)
    2 LSTM       i, f, g, o = sig, sig, tanh, sig of (xw + hh) in quarters;
                 c' = f c + i g,  h' = o tanh(c')
    3 GRU        r, z = sig(xw_r + hh_r), sig(xw_z + hh_z);  n = tanh(xw_n + r * hh_n);
                 h' = (1 - z) n + z h

`active` (T, B) marks the steps inside each sequence (variable lengths): an inactive row keeps
its state (h' = h, c' = c), outputs zeros and passes its gradient straight through. `saved`
holds what backward needs per row: h' (RNN), [i f g o c'] (LSTM), [r z n hh_n] (GRU).

The twin (`rnn_forward_numpy`) is a Python loop of one OpenBLAS matmul and a few numpy passes per
step; the Numba kernel (`rnn_forward_numba`) is the whole loop in one call, the matmul as dot
products along W_hh's rows and each cell one pass over its rows. Backward gives the gradients of
xw and of every step's hh; W_hh's gradient is one GEMM over all steps, done by the caller.
"""
import math

import numba
import numpy as np

from ._jit import LazyKernel

KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
MODES = {"RNN_TANH": 0, "RNN_RELU": 1, "LSTM": 2, "GRU": 3}
GATES = {0: 1, 1: 1, 2: 4, 3: 3}   # gate blocks of width H in xw and hh
SAVED = {0: 1, 1: 1, 2: 5, 3: 4}   # blocks of width H in `saved`


# ---------------------------------------------------------------------------- numpy twins

def _sigmoid_numpy(v, out=None):
    """sigmoid(v) = (1 + tanh(v / 2)) / 2: one transcendental, no overflow for any v, and the
    input's dtype kept; written into `out` when given."""
    out = np.multiply(v, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1
    out *= 0.5
    return out


def cell_forward_numpy(mode, xw, hh, h, c, active):
    """xw, hh (B, G); h, c (B, H) (c None unless LSTM); active (B,) bool or None ->
    (h_new, c_new or None, saved). Few passes, written into `saved` where it can."""
    width = h.shape[1]
    c_new = None
    if mode <= 1:
        pre = xw + hh
        h_new = np.tanh(pre, out=pre) if mode == 0 else np.maximum(pre, 0, out=pre)
        saved = h_new
    elif mode == 2:
        saved = np.empty((h.shape[0], 5 * width), dtype=h.dtype)  # [i f g o c']
        pre = np.add(xw, hh, out=saved[:, :4 * width])
        g_pre = pre[:, 2 * width:3 * width].copy()
        _sigmoid_numpy(pre, out=pre)
        i, f, g, o = (saved[:, k * width:(k + 1) * width] for k in range(4))
        np.tanh(g_pre, out=g)
        c_new = np.multiply(f, c, out=saved[:, 4 * width:])
        c_new += i * g
        h_new = np.tanh(c_new)
        h_new *= o
    else:
        saved = np.empty((h.shape[0], 4 * width), dtype=h.dtype)  # [r z n hh_n]
        rz = np.add(xw[:, :2 * width], hh[:, :2 * width], out=saved[:, :2 * width])
        _sigmoid_numpy(rz, out=rz)
        r, z = saved[:, :width], saved[:, width:2 * width]
        hh_n = saved[:, 3 * width:]
        hh_n[...] = hh[:, 2 * width:]
        n = np.multiply(r, hh_n, out=saved[:, 2 * width:3 * width])
        n += xw[:, 2 * width:]
        np.tanh(n, out=n)
        h_new = h - n      # h' = (1 - z) n + z h = n + z (h - n)
        h_new *= z
        h_new += n
    if active is not None:
        h_new = np.where(active[:, None], h_new, h)
        if c_new is not None:
            c_new = np.where(active[:, None], c_new, c)
    return h_new, c_new, saved


def cell_backward_numpy(mode, dh, dc, h, c, saved, active):
    """dh, dc (B, H) (dc None unless LSTM); h, c the step's input state; saved from forward ->
    (d_xw, d_hh, dh_direct (None: zero), dc_prev or None)."""
    width = h.shape[1]
    dc_prev = dh_direct = None
    if mode <= 1:
        h_new = saved
        d_pre = dh * (1 - h_new * h_new) if mode == 0 else dh * (h_new > 0)
        d_xw = d_hh = d_pre
    elif mode == 2:
        i, f, g, o, c_new = (saved[:, k * width:(k + 1) * width] for k in range(5))
        tanh_c = np.tanh(c_new)
        d_pre = np.empty((h.shape[0], 4 * width), dtype=dh.dtype)
        d_i, d_f, d_g, d_o = (d_pre[:, k * width:(k + 1) * width] for k in range(4))
        np.multiply(dh, tanh_c, out=d_o)          # dL/do, then through o's sigmoid below
        dc_total = 1 - tanh_c * tanh_c
        dc_total *= o
        dc_total *= dh
        dc_total += dc
        np.multiply(dc_total, g, out=d_i)
        np.multiply(dc_total, c, out=d_f)
        np.multiply(dc_total, i, out=d_g)
        d_g *= 1 - g * g
        for gate, s in ((d_i, i), (d_f, f), (d_o, o)):  # through the sigmoids: s (1 - s)
            gate *= s * (1 - s)
        d_xw = d_hh = d_pre
        dc_prev = dc_total * f
    else:
        r, z, n, hh_n = (saved[:, k * width:(k + 1) * width] for k in range(4))
        d_xw = np.empty((h.shape[0], 3 * width), dtype=dh.dtype)
        d_r, d_z, d_n = (d_xw[:, k * width:(k + 1) * width] for k in range(3))
        np.multiply(dh, 1 - z, out=d_n)
        d_n *= 1 - n * n
        np.multiply(d_n, hh_n, out=d_r)
        d_r *= r * (1 - r)
        np.subtract(h, n, out=d_z)
        d_z *= dh
        d_z *= z * (1 - z)
        d_hh = d_xw.copy()
        d_hh[:, 2 * width:] *= r
        dh_direct = dh * z
    if active is not None:
        keep = active[:, None]
        d_xw, d_hh = np.where(keep, d_xw, 0), np.where(keep, d_hh, 0)
        dh_direct = np.where(keep, 0 if dh_direct is None else dh_direct, dh)
        if dc_prev is not None:
            dc_prev = np.where(keep, dc_prev, dc)
    return d_xw, d_hh, dh_direct, dc_prev


# ---------------------------------------------------------------------------- Numba kernels

@numba.njit(cache=True, inline="always")
def _sig(v):
    # two-sided: exp of a non-positive number only (no overflow for large |v|)
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


def _cell_forward_rows(xw, hh, h, c, active, mode, has_active, h_new, c_new, saved):
    batch, width = h.shape
    for b in range(batch):
        if has_active and not active[b]:
            for j in range(width):
                h_new[b, j] = h[b, j]
                if mode == 2:
                    c_new[b, j] = c[b, j]
            continue
        for j in range(width):
            if mode <= 1:
                v = xw[b, j] + hh[b, j]
                v = math.tanh(v) if mode == 0 else max(v, 0.0)
                h_new[b, j] = v
                saved[b, j] = v
            elif mode == 2:
                i = _sig(xw[b, j] + hh[b, j])
                f = _sig(xw[b, width + j] + hh[b, width + j])
                g = math.tanh(xw[b, 2 * width + j] + hh[b, 2 * width + j])
                o = _sig(xw[b, 3 * width + j] + hh[b, 3 * width + j])
                cell = f * c[b, j] + i * g
                c_new[b, j] = cell
                h_new[b, j] = o * math.tanh(cell)
                saved[b, j] = i
                saved[b, width + j] = f
                saved[b, 2 * width + j] = g
                saved[b, 3 * width + j] = o
                saved[b, 4 * width + j] = cell
            else:
                r = _sig(xw[b, j] + hh[b, j])
                z = _sig(xw[b, width + j] + hh[b, width + j])
                hn = hh[b, 2 * width + j]
                n = math.tanh(xw[b, 2 * width + j] + r * hn)
                h_new[b, j] = (1.0 - z) * n + z * h[b, j]
                saved[b, j] = r
                saved[b, width + j] = z
                saved[b, 2 * width + j] = n
                saved[b, 3 * width + j] = hn


def _cell_backward_rows(dh, dc, h, c, saved, active, mode, has_active, d_xw, d_hh, dh_direct,
                        dc_prev):
    batch, width = h.shape
    gates = d_xw.shape[1]
    for b in range(batch):
        if has_active and not active[b]:
            for k in range(gates):
                d_xw[b, k] = 0.0
                d_hh[b, k] = 0.0
            for j in range(width):
                dh_direct[b, j] = dh[b, j]
                if mode == 2:
                    dc_prev[b, j] = dc[b, j]
            continue
        for j in range(width):
            g_h = dh[b, j]
            if mode <= 1:
                v = saved[b, j]
                d = g_h * (1.0 - v * v) if mode == 0 else (g_h if v > 0 else 0.0)
                d_xw[b, j] = d
                d_hh[b, j] = d
                dh_direct[b, j] = 0.0
            elif mode == 2:
                i = saved[b, j]
                f = saved[b, width + j]
                g = saved[b, 2 * width + j]
                o = saved[b, 3 * width + j]
                tanh_c = math.tanh(saved[b, 4 * width + j])
                dct = dc[b, j] + g_h * o * (1.0 - tanh_c * tanh_c)
                di = dct * g * i * (1.0 - i)
                df = dct * c[b, j] * f * (1.0 - f)
                dg = dct * i * (1.0 - g * g)
                do = g_h * tanh_c * o * (1.0 - o)
                d_xw[b, j] = d_hh[b, j] = di
                d_xw[b, width + j] = d_hh[b, width + j] = df
                d_xw[b, 2 * width + j] = d_hh[b, 2 * width + j] = dg
                d_xw[b, 3 * width + j] = d_hh[b, 3 * width + j] = do
                dc_prev[b, j] = dct * f
                dh_direct[b, j] = 0.0
            else:
                r = saved[b, j]
                z = saved[b, width + j]
                n = saved[b, 2 * width + j]
                hn = saved[b, 3 * width + j]
                dn = g_h * (1.0 - z) * (1.0 - n * n)
                dr = dn * hn * r * (1.0 - r)
                dz = g_h * (h[b, j] - n) * z * (1.0 - z)
                d_xw[b, j] = d_hh[b, j] = dr
                d_xw[b, width + j] = d_hh[b, width + j] = dz
                d_xw[b, 2 * width + j] = dn
                d_hh[b, 2 * width + j] = dn * r
                dh_direct[b, j] = g_h * z


# The row loops above as plain Numba functions, called once per time step by the sequence
# kernels below.
_cell_forward_body = numba.njit(cache=True, fastmath={"contract"})(_cell_forward_rows)
_cell_backward_body = numba.njit(cache=True, fastmath={"contract"})(_cell_backward_rows)


def _sequence_forward(xw, w_hh, b_hh, h0, c0, active, mode, reverse, has_bias, has_active,
                      result, h_prev, c_prev, saved, hh, h, c, h_next, c_next):
    """The whole time loop: per step hh = h @ w_hh^T + b_hh (dot products along w_hh's rows,
    contiguous), then the cell; writes the outputs, h_n (and c_n) into `result`."""
    steps, batch, gates = xw.shape
    width = h0.shape[1]
    h[:] = h0
    c[:] = c0
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        h_prev[t] = h
        if mode == 2:
            c_prev[t] = c
        for b in range(batch):
            for g in range(gates):
                acc = b_hh[g] if has_bias else xw[0, 0, 0] - xw[0, 0, 0]
                for k in range(width):
                    acc += h[b, k] * w_hh[g, k]
                hh[b, g] = acc
        _cell_forward_body(xw[t], hh, h, c, active[t], mode, has_active, h_next, c_next,
                           saved[t])
        h[:] = h_next
        if mode == 2:
            c[:] = c_next
        for b in range(batch):
            keep = not has_active or active[t, b]
            for j in range(width):
                result[t, b, j] = h[b, j] if keep else 0.0
    result[steps] = h
    if mode == 2:
        result[steps + 1] = c


def _sequence_backward(grad, w_hh, h_prev, c_prev, saved, active, mode, reverse, has_active,
                       d_xw, d_hh, dh, dc, dh_direct, dc_prev):
    """The time loop backward, last step first; leaves dL/dh0 in dh and dL/dc0 in dc."""
    steps, batch, width = h_prev.shape
    gates = w_hh.shape[0]
    dh[:] = grad[steps]
    if mode == 2:
        dc[:] = grad[steps + 1]
    for s in range(steps):
        t = s if reverse else steps - 1 - s
        for b in range(batch):
            if not has_active or active[t, b]:
                for j in range(width):
                    dh[b, j] += grad[t, b, j]
        _cell_backward_body(dh, dc, h_prev[t], c_prev[t], saved[t], active[t], mode, has_active,
                            d_xw[t], d_hh[t], dh_direct, dc_prev)
        for b in range(batch):
            for k in range(width):
                dh[b, k] = dh_direct[b, k]
            for g in range(gates):
                coefficient = d_hh[t, b, g]
                for k in range(width):
                    dh[b, k] += coefficient * w_hh[g, k]
        if mode == 2:
            dc[:] = dc_prev


def _signatures(kind):
    def signature(dtype):
        m2, m3 = (f"Array({dtype}, {n}, 'C', readonly=True)" for n in (2, 3))
        vector = f"Array({dtype}, 1, 'C', readonly=True)"
        o2, o3 = (f"Array({dtype}, {n}, 'C')" for n in (2, 3))
        active2 = "Array(boolean, 2, 'C', readonly=True)"
        # the first argument is an array: LazyKernel picks the version by its dtype
        return {
            # xw, w_hh, b_hh, h0, c0, active, mode, reverse, has_bias, has_active,
            # result, h_prev, c_prev, saved, hh, h, c, h_next, c_next
            "forward": f"void({m3}, {m2}, {vector}, {m2}, {m2}, {active2}, int64, boolean, "
                       f"boolean, boolean, {o3}, {o3}, {o3}, {o3}, {o2}, {o2}, {o2}, {o2}, {o2})",
            # grad, w_hh, h_prev, c_prev, saved, active, mode, reverse, has_active,
            # d_xw, d_hh, dh, dc, dh_direct, dc_prev
            "backward": f"void({m3}, {m2}, {m3}, {m3}, {m3}, {active2}, int64, boolean, boolean, "
                        f"{o3}, {o3}, {o2}, {o2}, {o2}, {o2})",
        }[kind]
    return {dtype: signature(dtype) for dtype in ("float32", "float64")}


# Serial (serial_below=0: no thread-count switch per call): a step is B x H elements, too
# little to pay for waking threads. The dot products' sums may be reassociated (vectorised);
# the cells keep their order.
sequence_forward_kernel = LazyKernel(_sequence_forward, _signatures("forward"),
                                     fastmath={"contract", "reassoc"}, serial_below=0)
sequence_backward_kernel = LazyKernel(_sequence_backward, _signatures("backward"),
                                      fastmath={"contract", "reassoc"}, serial_below=0)
_ALL_ACTIVE = np.ones(1, dtype=bool)


def _fits(*arrays):
    return arrays[0].dtype in KERNEL_DTYPES and all(a.dtype == arrays[0].dtype for a in arrays)


def _c(array):
    return np.ascontiguousarray(array)


# ---------------------------------------------------------------------------- the time loop

def rnn_forward_numpy(mode, xw, w_hh, b_hh, h0, c0, active, reverse):
    """One layer, one direction: xw (T, B, G) input projections, w_hh (G, H), b_hh (G,) or
    None, h0 (B, H), c0 (B, H) or None (LSTM only), active (T, B) bool or None ->
    (result (T + 1 [+ 1], B, H): outputs, h_n [, c_n]; and for backward h_prev, c_prev (T, B,
    H) each step's input state, saved (T, B, S) the cells' saved values). Per step one matmul
    (OpenBLAS) and the numpy cell."""
    steps, (batch, width) = xw.shape[0], h0.shape
    result = np.empty((steps + 1 + (mode == 2), batch, width), dtype=xw.dtype)
    h_prev = np.empty((steps, batch, width), dtype=xw.dtype)  # each step's input state
    c_prev = np.empty_like(h_prev) if mode == 2 else None
    saved = np.empty((steps, batch, SAVED[mode] * width), dtype=xw.dtype)
    w_hh_t = w_hh.T
    h, c = h0, c0
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        h_prev[t] = h
        if c is not None:
            c_prev[t] = c
        hh = np.matmul(h, w_hh_t)
        if b_hh is not None:
            hh += b_hh
        step_active = None if active is None else active[t]
        h, c, saved[t] = cell_forward_numpy(mode, xw[t], hh, h, c, step_active)
        result[t] = h
    if active is not None:
        result[:steps] *= active[:, :, None]  # steps past a sequence's end output zeros
    result[steps] = h
    if mode == 2:
        result[steps + 1] = c
    return result, h_prev, c_prev, saved


def rnn_backward_numpy(mode, grad, w_hh, h_prev, c_prev, saved, active, reverse):
    """grad of result -> (d_xw (T, B, G), d_hh (T, B, G) the grads of each step's
    h @ w_hh^T + b_hh, dh0, dc0 or None). W_hh's and b_hh's grads are d_hh summed against
    h_prev: one GEMM the caller does."""
    steps = h_prev.shape[0]
    dh = grad[steps].copy()
    dc = grad[steps + 1].copy() if mode == 2 else None
    d_xw = np.empty(h_prev.shape[:2] + (w_hh.shape[0],), dtype=grad.dtype)
    d_hh = np.empty_like(d_xw)
    for t in (range(steps) if reverse else range(steps - 1, -1, -1)):
        dh += grad[t] if active is None else grad[t] * active[t][:, None]
        d_xw[t], d_hh[t], dh_direct, dc = cell_backward_numpy(
            mode, dh, dc, h_prev[t], None if c_prev is None else c_prev[t], saved[t],
            None if active is None else active[t])
        dh = np.matmul(d_hh[t], w_hh)
        if dh_direct is not None:
            dh += dh_direct
    return d_xw, d_hh, dh, dc


def rnn_forward_numba(mode, xw, w_hh, b_hh, h0, c0, active, reverse):
    """rnn_forward_numpy as one Numba kernel call (other dtypes: the numpy twin)."""
    if not _fits(xw, w_hh, h0) or h0.size == 0 or xw.shape[0] == 0:
        return rnn_forward_numpy(mode, xw, w_hh, b_hh, h0, c0, active, reverse)
    steps, (batch, width) = xw.shape[0], h0.shape
    dtype = xw.dtype
    result = np.empty((steps + 1 + (mode == 2), batch, width), dtype=dtype)
    h_prev = np.empty((steps, batch, width), dtype=dtype)
    c_prev = np.empty_like(h_prev) if mode == 2 else h_prev[:, :0]
    saved = np.empty((steps, batch, SAVED[mode] * width), dtype=dtype)
    scratch = [np.empty((batch, width), dtype=dtype) for _ in range(4)]
    c0 = h0 if c0 is None else c0
    sequence_forward_kernel(
        _c(xw), _c(w_hh), _c(w_hh[:, 0] if b_hh is None else b_hh), _c(h0), _c(c0),
        _ALL_ACTIVE[None].repeat(steps, 0) if active is None else _c(active), mode, reverse,
        b_hh is not None, active is not None, result, h_prev,
        c_prev if mode == 2 else h_prev, saved, np.empty((batch, w_hh.shape[0]), dtype=dtype),
        *scratch, work=0)
    return result, h_prev, (c_prev if mode == 2 else None), saved


def rnn_backward_numba(mode, grad, w_hh, h_prev, c_prev, saved, active, reverse):
    """rnn_backward_numpy as one Numba kernel call (other dtypes: the numpy twin)."""
    if not _fits(grad, w_hh, h_prev) or h_prev.size == 0:
        return rnn_backward_numpy(mode, grad, w_hh, h_prev, c_prev, saved, active, reverse)
    steps, batch, width = h_prev.shape
    dtype = grad.dtype
    d_xw = np.empty((steps, batch, w_hh.shape[0]), dtype=dtype)
    d_hh = np.empty_like(d_xw)
    dh, dc, dh_direct, dc_prev = (np.empty((batch, width), dtype=dtype) for _ in range(4))
    sequence_backward_kernel(
        _c(grad), _c(w_hh), _c(h_prev), _c(h_prev if c_prev is None else c_prev), _c(saved),
        _ALL_ACTIVE[None].repeat(steps, 0) if active is None else _c(active), mode, reverse,
        active is not None, d_xw, d_hh, dh, dc, dh_direct, dc_prev, work=0)
    return d_xw, d_hh, dh, (dc if mode == 2 else None)


# Under "auto", the sequence kernel runs layers whose step (B x G x H multiply-adds of
# h @ W_hh^T) is at most this; bigger ones run the numpy twin. Numba has no vectorised exp/tanh
# here (no SVML): a transcendental costs it ~7-15 ns against numpy's ~1.5-3, so the kernel wins
# where the twin's per-step call overhead dominates. One thread, 20 steps, fwd + bwd, kernel vs
# twin (a busy machine, noisy): LSTM H16 B4 0.20 vs 1.40 ms, H32 B8 0.75 vs 1.62, H32 B32 3.1
# vs 2.5, H128 B32 17 vs 7.0; GRU H32 B8 0.43 vs 1.40, H32 B32 1.7 vs 2.0, H64 B64 7.4 vs 4.3.
AUTO_SEQUENCE_MAX_MACS = 1 << 16


def _use_sequence_kernel(w_hh, batch):
    return batch * w_hh.shape[0] * w_hh.shape[1] <= AUTO_SEQUENCE_MAX_MACS


def rnn_forward_auto(mode, xw, w_hh, b_hh, h0, c0, active, reverse):
    kernel = rnn_forward_numba if _use_sequence_kernel(w_hh, h0.shape[0]) else rnn_forward_numpy
    return kernel(mode, xw, w_hh, b_hh, h0, c0, active, reverse)


def rnn_backward_auto(mode, grad, w_hh, h_prev, c_prev, saved, active, reverse):
    kernel = (rnn_backward_numba if _use_sequence_kernel(w_hh, h_prev.shape[1])
              else rnn_backward_numpy)
    return kernel(mode, grad, w_hh, h_prev, c_prev, saved, active, reverse)
