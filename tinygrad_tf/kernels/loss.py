"""The last step of cross-entropy's gradient, in place on the softmax probabilities p (rows, C):

    out[i, j] = p[i, j] * coef[i] - off[i] * weight[j],   out[i, target[i]] -= picked[i]

and rows with keep[i] False set to 0 (their p may be NaN when every logit is -inf). numpy spends
about 0.15 ms per (1024, 1000) float32 pass on the per-row multiply alone; the loop below does
the whole step in one pass over p. nn's FusedCrossEntropy builds coef, off and picked.
"""
import numpy as np

from ._jit import LazyKernel

KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def cross_entropy_grad_numpy(p, target, keep, coef, off, weight, picked):
    """The formula above, in place on p (which is returned)."""
    p *= coef[:, None]
    p -= off[:, None] * weight[None, :]
    p[np.arange(len(p)), target] -= picked
    p[~keep] = 0
    return p


def _cross_entropy_grad_rows(p, target, keep, coef, off, weight, picked):
    m, n = p.shape
    for i in range(m):  # serial: a memory-bound pass well under a millisecond
        if not keep[i]:
            for j in range(n):
                p[i, j] = 0.0
            continue
        c, o = coef[i], off[i]
        for j in range(n):
            p[i, j] = p[i, j] * c - o * weight[j]
        p[i, target[i]] -= picked[i]


def _signature(dtype):
    vector = f"Array({dtype}, 1, 'C', readonly=True)"
    return (f"void(Array({dtype}, 2, 'C'), Array(int64, 1, 'C', readonly=True), "
            f"Array(boolean, 1, 'C', readonly=True), {vector}, {vector}, {vector}, {vector})")


cross_entropy_grad_rows = LazyKernel(_cross_entropy_grad_rows,
                                     {d: _signature(d) for d in ("float32", "float64")},
                                     fastmath={"contract"})


def cross_entropy_grad_numba(p, target, keep, coef, off, weight, picked):
    """cross_entropy_grad_numpy on the (serial) Numba kernel."""
    arrays = (p, coef, off, weight, picked)
    if (p.dtype not in KERNEL_DTYPES or any(a.dtype != p.dtype for a in arrays)
            or p.size == 0 or not p.flags.c_contiguous):
        return cross_entropy_grad_numpy(p, target, keep, coef, off, weight, picked)
    contiguous = [np.ascontiguousarray(a) for a in (coef, off, weight, picked)]
    cross_entropy_grad_rows(p, np.ascontiguousarray(target, dtype=np.int64),
                            np.ascontiguousarray(keep, dtype=bool), *contiguous,
                            work=0)  # serial either way
    return p
