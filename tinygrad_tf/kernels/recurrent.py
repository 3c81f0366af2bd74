"""One time step of a recurrent cell (nn.RNN / LSTM / GRU), forward and backward, beside its twin.

A recurrent layer's step is one GEMM, `hh = h @ W_hh^T + b_hh` (OpenBLAS, called by the caller),
then the cell's gate arithmetic on `xw_t` (the input projection of this step, all steps done
before the loop in one GEMM) and `hh`. That arithmetic is five to fifteen small numpy passes
with a temporary each; here it is one pass over the rows. Modes (torch's formulas and gate order):

    0 RNN tanh   h' = tanh(xw + hh)
    1 RNN relu   h' = relu(xw + hh)
    2 LSTM       i, f, g, o = sig, sig, tanh, sig of (xw + hh) in quarters;
                 c' = f c + i g,  h' = o tanh(c')
    3 GRU        r, z = sig(xw_r + hh_r), sig(xw_z + hh_z);  n = tanh(xw_n + r * hh_n);
                 h' = (1 - z) n + z h

`active` (B,) marks the rows whose sequence covers this step (variable lengths): an inactive row
keeps its state (h' = h, c' = c) and passes its gradient straight through. `saved` holds what
backward needs per row: h' (RNN), [i f g o c'] (LSTM), [r z n hh_n] (GRU).

Backward gives the gradient of xw_t and of hh (they differ only for the GRU, where hh_n is
multiplied by r), the part of dL/dh that bypasses W_hh (GRU's z * dh, or everything for an
inactive row), and dL/dc for the LSTM. The caller adds `d_hh @ W_hh` for the rest of dL/dh.
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

def _sigmoid_numpy(v):
    # two-sided: exp of a non-positive number only, so no overflow warning for large |v|
    e = np.exp(-np.abs(v))
    return np.where(v >= 0, 1 / (1 + e), e / (1 + e)).astype(v.dtype)


def cell_forward_numpy(mode, xw, hh, h, c, active):
    """xw, hh (B, G); h, c (B, H) (c None unless LSTM); active (B,) bool or None ->
    (h_new, c_new or None, saved)."""
    width = h.shape[1]
    if mode <= 1:
        pre = xw + hh
        h_new = np.tanh(pre) if mode == 0 else np.maximum(pre, 0)
        saved, c_new = h_new, None
    elif mode == 2:
        pre = xw + hh
        i, f = _sigmoid_numpy(pre[:, :width]), _sigmoid_numpy(pre[:, width:2 * width])
        g, o = np.tanh(pre[:, 2 * width:3 * width]), _sigmoid_numpy(pre[:, 3 * width:])
        c_new = f * c + i * g
        h_new = o * np.tanh(c_new)
        saved = np.concatenate([i, f, g, o, c_new], axis=1)
    else:
        r = _sigmoid_numpy(xw[:, :width] + hh[:, :width])
        z = _sigmoid_numpy(xw[:, width:2 * width] + hh[:, width:2 * width])
        hh_n = hh[:, 2 * width:]
        n = np.tanh(xw[:, 2 * width:] + r * hh_n)
        h_new = (1 - z) * n + z * h
        saved, c_new = np.concatenate([r, z, n, hh_n], axis=1), None
    if active is not None:
        h_new = np.where(active[:, None], h_new, h)
        if c_new is not None:
            c_new = np.where(active[:, None], c_new, c)
    return h_new, c_new, saved


def cell_backward_numpy(mode, dh, dc, h, c, saved, active):
    """dh, dc (B, H) (dc None unless LSTM); h, c the step's input state; saved from forward ->
    (d_xw, d_hh, dh_direct, dc_prev or None)."""
    width = h.shape[1]
    dc_prev = None
    dh_direct = np.zeros_like(dh)
    if mode <= 1:
        h_new = saved
        d_pre = dh * (1 - h_new * h_new) if mode == 0 else dh * (h_new > 0)
        d_xw = d_hh = d_pre
    elif mode == 2:
        i, f, g, o, c_new = (saved[:, k * width:(k + 1) * width] for k in range(5))
        tanh_c = np.tanh(c_new)
        dc_total = dc + dh * o * (1 - tanh_c * tanh_c)
        d_pre = np.concatenate([dc_total * g * i * (1 - i), dc_total * c * f * (1 - f),
                                dc_total * i * (1 - g * g), dh * tanh_c * o * (1 - o)], axis=1)
        d_xw = d_hh = d_pre
        dc_prev = dc_total * f
    else:
        r, z, n, hh_n = (saved[:, k * width:(k + 1) * width] for k in range(4))
        dn_pre = dh * (1 - z) * (1 - n * n)
        dr_pre = dn_pre * hh_n * r * (1 - r)
        dz_pre = dh * (h - n) * z * (1 - z)
        d_xw = np.concatenate([dr_pre, dz_pre, dn_pre], axis=1)
        d_hh = np.concatenate([dr_pre, dz_pre, dn_pre * r], axis=1)
        dh_direct = dh * z
    if active is not None:
        keep = active[:, None]
        d_xw, d_hh = np.where(keep, d_xw, 0), np.where(keep, d_hh, 0)
        dh_direct = np.where(keep, dh_direct, dh)
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


def _signatures(kind):
    def signature(dtype):
        matrix = f"Array({dtype}, 2, 'C', readonly=True)"
        out = f"Array({dtype}, 2, 'C')"
        active = "Array(boolean, 1, 'C', readonly=True)"
        # the first argument is an array: LazyKernel picks the version by its dtype
        if kind == "forward":  # xw, hh, h, c, active, mode, has_active, h_new, c_new, saved
            return (f"void({matrix}, {matrix}, {matrix}, {matrix}, {active}, int64, boolean, "
                    f"{out}, {out}, {out})")
        # dh, dc, h, c, saved, active, mode, has_active, d_xw, d_hh, dh_direct, dc_prev
        return (f"void({matrix}, {matrix}, {matrix}, {matrix}, {matrix}, {active}, int64, "
                f"boolean, {out}, {out}, {out}, {out})")
    return {dtype: signature(dtype) for dtype in ("float32", "float64")}


# Serial: one step is B x H elements, too little to pay for waking threads (and a parallel
# kernel took about three times as long to compile).
_OPTIONS = {"fastmath": {"contract"}}
cell_forward_rows = LazyKernel(_cell_forward_rows, _signatures("forward"), **_OPTIONS)
cell_backward_rows = LazyKernel(_cell_backward_rows, _signatures("backward"), **_OPTIONS)
_ALL_ACTIVE = np.ones(1, dtype=bool)


def _fits(*arrays):
    return arrays[0].dtype in KERNEL_DTYPES and all(a.dtype == arrays[0].dtype for a in arrays)


def _c(array):
    return np.ascontiguousarray(array)


def cell_forward_numba(mode, xw, hh, h, c, active):
    """cell_forward_numpy on the Numba kernel (other dtypes: the numpy twin)."""
    if not _fits(xw, hh, h) or h.size == 0:
        return cell_forward_numpy(mode, xw, hh, h, c, active)
    batch, width = h.shape
    h_new = np.empty(h.shape, dtype=h.dtype)  # C order whatever h's layout (the signature's)
    c_new = np.empty(h.shape, dtype=h.dtype) if mode == 2 else h_new
    saved = np.empty((batch, SAVED[mode] * width), dtype=h.dtype)
    cell_forward_rows(_c(xw), _c(hh), _c(h), _c(h if c is None else c),
                      _ALL_ACTIVE if active is None else _c(active), mode, active is not None,
                      h_new, c_new, saved, work=saved.size)
    return h_new, (c_new if mode == 2 else None), saved


def cell_backward_numba(mode, dh, dc, h, c, saved, active):
    """cell_backward_numpy on the Numba kernel (other dtypes: the numpy twin)."""
    if not _fits(dh, h, saved) or h.size == 0:
        return cell_backward_numpy(mode, dh, dc, h, c, saved, active)
    batch, width = h.shape
    gates = GATES[mode] * width
    d_xw, d_hh = np.empty((batch, gates), dtype=h.dtype), np.empty((batch, gates), dtype=h.dtype)
    dh_direct = np.empty(h.shape, dtype=h.dtype)
    dc_prev = np.empty(h.shape, dtype=h.dtype) if mode == 2 else dh_direct
    cell_backward_rows(_c(dh), _c(dh if dc is None else dc), _c(h), _c(h if c is None else c),
                       _c(saved), _ALL_ACTIVE if active is None else _c(active), mode,
                       active is not None, d_xw, d_hh, dh_direct, dc_prev, work=d_xw.size)
    return d_xw, d_hh, dh_direct, (dc_prev if mode == 2 else None)
