"""gradcheck: compare autograd's gradients with central differences, element by element."""
import numpy as np

from .autograd import no_grad
from .tensor import Tensor


class GradcheckError(AssertionError):
    """Autograd's gradient and the numeric one disagree."""


class GradcheckKinkError(GradcheckError):
    """The check landed on a point where the function has a kink (e.g. relu at 0, a tie in max):
    the left and right slopes differ, so no single gradient is right. Move the input away."""


def _as_tuple(out):
    return out if isinstance(out, (tuple, list)) else (out,)


def _weighted_sum(outputs, weights):
    """The scalar sum(out * w) over every output, as float64; `weights` make upstream grads
    non-uniform, so a backward that mixes up elements cannot pass by symmetry."""
    return sum(float(np.sum(o.data.astype(np.float64) * w)) for o, w in zip(outputs, weights))


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Check fn's gradients w.r.t. every input that requires grad, at every element.

    The analytic gradient comes from `backward` in the inputs' own dtype; the numeric one from
    central differences (f(x + eps) - f(x - eps)) / 2 eps in float64, on float64 copies of the
    inputs, so float32 rounding cannot cause false failures. An element passes when
    |analytic - numeric| <= atol + rtol * |numeric|. Returns True, or raises GradcheckError naming
    the input, the worst element, both values and how many elements disagree.
    """
    tensors = [x if isinstance(x, Tensor) else Tensor(x) for x in inputs]
    checked = [i for i, t in enumerate(tensors) if t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad; pass tensors made with "
                         "requires_grad=True")
    rng = np.random.default_rng(seed)

    # Analytic: one backward of sum(out * w) with a random, non-uniform w.
    leaves = [Tensor(t.data.copy(), requires_grad=t.requires_grad) for t in tensors]
    outputs = _as_tuple(fn(*leaves))
    for o in outputs:
        if not isinstance(o, Tensor):
            raise TypeError(f"gradcheck: fn must return a Tensor (or a tuple of them), got "
                            f"{type(o).__name__}")
    weights = [rng.standard_normal(o.shape) for o in outputs]
    loss = None
    for o, w in zip(outputs, weights):
        if o.requires_grad:
            term = (o * Tensor(w.astype(o.dtype))).sum()
            loss = term if loss is None else loss + term
    if loss is not None:
        loss.backward()

    # Numeric: central differences in float64, every element of every checked input.
    points = [t.data.astype(np.float64) if t.dtype.kind == "f" else t.data for t in tensors]

    def f(values):
        with no_grad():
            return _weighted_sum(_as_tuple(fn(*[Tensor(v) for v in values])), weights)

    for i in checked:
        analytic = leaves[i].grad.data.astype(np.float64) if leaves[i].grad is not None \
            else np.zeros(tensors[i].shape)
        numeric = np.zeros(tensors[i].shape)
        x = points[i] = points[i].copy()  # contiguous and ours to perturb
        flat = x.reshape(-1)
        for j in range(flat.size):
            orig = flat[j]
            flat[j] = orig + eps
            plus = f(points)
            flat[j] = orig - eps
            minus = f(points)
            flat[j] = orig
            numeric.flat[j] = (plus - minus) / (2 * eps)
        bad = np.abs(analytic - numeric) > atol + rtol * np.abs(numeric)
        if bad.any():
            error = np.where(bad, np.abs(analytic - numeric), -1)
            worst = np.unravel_index(int(np.argmax(error)), error.shape)
            j = int(np.ravel_multi_index(worst, error.shape)) if error.ndim else 0
            orig = flat[j]
            f0 = f(points)
            flat[j] = orig + eps
            right = (f(points) - f0) / eps
            flat[j] = orig - eps
            left = (f0 - f(points)) / eps
            flat[j] = orig
            where = (f"input {i} (shape {tensors[i].shape}, {tensors[i].dtype}), element "
                     f"{tuple(int(k) for k in worst)} = {float(orig):.6g}")
            counts = f"{int(bad.sum())} of {bad.size} elements disagree"
            if abs(right - left) > atol + rtol * max(abs(right), abs(left)):
                raise GradcheckKinkError(
                    f"gradcheck: {where} sits on a kink: the slope is {left:.6g} from the left and "
                    f"{right:.6g} from the right (analytic {analytic[worst]:.6g}); {counts}. "
                    "Check at a point away from kinks (relu at 0, ties in max/maximum/abs).")
            raise GradcheckError(
                f"gradcheck: wrong gradient for {where}: analytic {analytic[worst]:.8g}, numeric "
                f"{numeric[worst]:.8g} (|diff| {abs(analytic[worst] - numeric[worst]):.3g} > "
                f"atol {atol:g} + rtol {rtol:g} * |numeric|); {counts}.")
    return True
