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


def _outputs(fn, values):
    """fn at float64 `values`, without a graph, as a list of float64 arrays."""
    with no_grad():
        outputs = fn(*[Tensor.from_numpy(v) for v in values])
        return [o.array.astype(np.float64) for o in _as_tuple(outputs)]


def _change(after, before, weights):
    # sum(w * (f(after) - f(before))), differenced per element before summing: a large constant
    # in the output (a masked_fill with 1e9) then cancels exactly instead of swamping the slope.
    return sum(float(np.sum(w * (a - b))) for a, b, w in zip(after, before, weights))


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Check fn's gradients w.r.t. every input that requires grad, at every element.

    The analytic gradient comes from `backward` in the inputs' own dtype; the numeric one from
    central differences (f(x + eps) - f(x - eps)) / 2 eps in float64, on float64 copies of the
    inputs, so float32 rounding cannot cause false failures. Both differentiate sum(out * w) for
    a random, non-uniform w (seeded by `seed`). An element passes when
    |analytic - numeric| <= atol + rtol * |numeric| (NaN never passes). Returns True, or raises
    GradcheckError naming the input, the worst element, both values, the tolerances and how many
    elements disagree; GradcheckKinkError if the worst element sits on a kink (its left and right
    slopes differ). `fn` must compute in its inputs' dtype for the float64 evaluation to be exact.
    """
    tensors = [x if isinstance(x, Tensor) else Tensor.from_numpy(np.asarray(x)) for x in inputs]
    checked = [i for i, t in enumerate(tensors) if t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad; pass tensors made with "
                         "requires_grad=True")
    rng = np.random.default_rng(seed)

    # Analytic: one backward of sum(out * w) with a random, non-uniform w. Fresh leaves share
    # the inputs' arrays (ops never write to inputs), so non-contiguous layouts are kept.
    leaves = [Tensor.from_numpy(t.array).requires_grad_(t.requires_grad) for t in tensors]
    outputs = _as_tuple(fn(*leaves))
    for o in outputs:
        if not isinstance(o, Tensor):
            raise TypeError(f"gradcheck: fn must return a Tensor (or a tuple of them), got "
                            f"{type(o).__name__}")
    weights = [rng.standard_normal(o.shape) for o in outputs]
    loss = None
    for o, w in zip(outputs, weights):
        if o.requires_grad:
            term = (o * Tensor.from_numpy(w.astype(o.dtype))).sum()
            loss = term if loss is None else loss + term
    if loss is not None:
        loss.backward()

    # Numeric: central differences in float64, every element of every checked input.
    points = [t.array.astype(np.float64) if t.dtype.kind == "f" else t.array for t in tensors]

    def slope(flat, j, low, high):
        # d(sum(w * out)) / dx_j from evaluations at x_j + low and x_j + high.
        orig = flat[j]
        flat[j] = orig + high
        after = _outputs(fn, points)
        flat[j] = orig + low
        before = _outputs(fn, points)
        flat[j] = orig
        return _change(after, before, weights) / (high - low)

    for i in checked:
        analytic = leaves[i].grad.array.astype(np.float64) if leaves[i].grad is not None \
            else np.zeros(tensors[i].shape)
        points[i] = points[i].copy()  # contiguous and ours to perturb
        flat = points[i].reshape(-1)
        numeric = np.array([slope(flat, j, -eps, eps) for j in range(flat.size)])
        numeric = numeric.reshape(tensors[i].shape)
        # Written as "not within tolerance" so a NaN on either side counts as a failure.
        bad = ~(np.abs(analytic - numeric) <= atol + rtol * np.abs(numeric))
        if bad.any():
            error = np.where(bad, np.nan_to_num(np.abs(analytic - numeric), nan=np.inf), -1)
            worst = np.unravel_index(int(np.argmax(error)), error.shape)
            j = int(np.ravel_multi_index(worst, error.shape)) if error.ndim else 0
            orig = flat[j]
            left, right = slope(flat, j, -eps, 0.0), slope(flat, j, 0.0, eps)
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


def gradgradcheck(func, inputs, grad_outputs=None, *, eps=1e-6, atol=1e-5, rtol=1e-3,
                  raise_exception=True, seed=0):
    """Check second derivatives (torch.autograd.gradgradcheck's arguments, a subset).

    The first derivatives, autograd.grad(func(*inputs), inputs, grad_outputs) as a function of
    (inputs, grad_outputs), go through `gradcheck`: their gradients by backward through the
    graph that create_graph=True records are compared with central differences of the plain
    first-order gradients. grad_outputs default to
    random (seeded) tensors of the outputs' shapes. On a mismatch the GradcheckError names the
    worst element: "input i" counts the inputs first, then the grad_outputs. Returns True;
    False instead of raising if raise_exception=False."""
    from .autograd import enable_grad, grad as autograd_grad, is_grad_enabled

    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    tensors = [x if isinstance(x, Tensor) else Tensor.from_numpy(np.asarray(x)) for x in inputs]
    differentiable = [i for i, t in enumerate(tensors) if t.requires_grad]
    if not differentiable:
        raise ValueError("gradgradcheck: no input requires grad")
    outputs = _as_tuple(func(*tensors))
    rng = np.random.default_rng(seed + 1)
    if grad_outputs is None:
        grad_outputs = [Tensor.from_numpy(rng.standard_normal(o.shape).astype(o.dtype))
                        for o in outputs]
    else:
        grad_outputs = [g if isinstance(g, Tensor) else Tensor.from_numpy(np.asarray(g))
                        for g in _as_tuple(grad_outputs)]
    grad_outputs = [Tensor.from_numpy(g.array).requires_grad_(g.dtype.kind == "f")
                    for g in grad_outputs]
    count = len(tensors)

    def first_derivatives(*args):
        # The numeric pass (gradcheck runs it under no_grad) differentiates the plain
        # first-order gradient, the analytic pass the one create_graph records: a wrong
        # double backward (or composed twin) then shows as a mismatch.
        create_graph = is_grad_enabled()
        xs, seeds = list(args[:count]), args[count:]
        with enable_grad():
            for i in differentiable:  # the numeric pass hands in plain arrays' tensors
                if not xs[i].requires_grad:
                    xs[i] = xs[i].requires_grad_()
            outs = [o for o in _as_tuple(func(*xs))]
            used = [(o, g) for o, g in zip(outs, seeds) if o.requires_grad]
            if not used:
                return tuple(xs[i]._wrap(np.zeros(xs[i].shape, xs[i].dtype))
                             for i in differentiable)
            grads = autograd_grad([o for o, _ in used], [xs[i] for i in differentiable],
                                  [g for _, g in used], create_graph=create_graph,
                                  allow_unused=True)
        return tuple(g if g is not None else xs[i]._wrap(np.zeros(xs[i].shape, xs[i].dtype))
                     for g, i in zip(grads, differentiable))

    try:
        return gradcheck(first_derivatives, *tensors, *grad_outputs, eps=eps, atol=atol,
                         rtol=rtol, seed=seed)
    except GradcheckError as error:
        if not raise_exception:
            return False
        raise type(error)(f"gradgradcheck (second derivatives; inputs 0-{count - 1} are the "
                          f"inputs, then the grad_outputs): {error}") from None
