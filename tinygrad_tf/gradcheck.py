"""gradcheck: compare autograd's gradients with central differences, element by element.

Called as torch's `torch.autograd.gradcheck(func, inputs, ...)` (inputs a Tensor or a tuple, with
torch's keyword arguments) or as `gradcheck(func, x, y, ...)`; both reachable as
`tinygrad_tf.gradcheck` and `tinygrad_tf.autograd.gradcheck`.
"""
import numpy as np

from .autograd import grad as autograd_grad, no_grad
from .tensor import Tensor
from .xp import FirstOrderOnlyError


class GradcheckError(AssertionError, RuntimeError):
    """Autograd's gradient and the numeric one disagree (a RuntimeError, as torch's, and an
    AssertionError, so pytest reports it as a failed check)."""


class GradcheckKinkError(GradcheckError):
    """The check landed on a point where the function has a kink (e.g. relu at 0, a tie in max):
    the left and right slopes differ, so no single gradient is right. Move the input away."""


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _inputs_tuple(inputs, more):
    """torch's `inputs` (a Tensor, or a tuple/list of inputs) or ours (the inputs as arguments)."""
    if more:
        if isinstance(inputs, (tuple, list)):  # torch's form, then more positional arguments
            raise TypeError(f"gradcheck: the inputs were given as a {type(inputs).__name__}, "
                            f"then {len(more)} more positional argument(s): pass eps, atol, "
                            "rtol and the other options by keyword (as torch)")
        return (inputs,) + tuple(more)
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


def _refuse(name, **options):
    """Raise for options that ask for a check this library cannot run (no complex dtypes, no
    forward-mode AD, no sparse tensors) rather than pass without running it."""
    if options.get("check_forward_ad") or options.get("check_fwd_over_rev"):
        raise NotImplementedError(
            f"{name}: check_forward_ad/check_fwd_over_rev=True: tinygrad_tf has no forward-mode "
            "AD (autograd.functional.jvp uses the double-backward trick), so there is nothing to "
            "check; leave it False (the backward check runs)")
    if options.get("check_backward_ad") is False or options.get("check_rev_over_rev") is False:
        raise NotImplementedError(f"{name}: only the backward-mode check exists here; "
                                  "check_backward_ad/check_rev_over_rev must stay True")
    if options.get("masked"):
        raise NotImplementedError(f"{name}: masked=True is for sparse tensors, which "
                                  "tinygrad_tf does not have")


def _outputs(fn, values, dtypes):
    """fn at float64 `values` (non-arrays passed as they are), without a graph, as a list of
    float64 arrays, one per float output; the dtypes fn returned are added to `dtypes`."""
    with no_grad():
        outputs = fn(*[Tensor.from_numpy(v) if isinstance(v, np.ndarray) else v for v in values])
        outputs = [o.array for o in _as_tuple(outputs)
                   if isinstance(o, Tensor) and o.dtype.kind == "f"]
    dtypes.update(o.dtype for o in outputs)
    return [o.astype(np.float64) for o in outputs]


def _rounding_hint(dtypes, eps):
    """Why a right gradient can fail: fn does not compute in float64 on float64 inputs."""
    low = sorted(str(d) for d in dtypes if d.itemsize < 8)
    if low:
        return (f" fn returned {', '.join(low)} from float64 inputs, so its numeric gradient "
                f"(eps {eps:g}) is mostly rounding: compute in the inputs' dtype (as torch, "
                "which warns for inputs that are not float64), or pass a larger eps and looser "
                "atol/rtol.")
    return (" If there is none, fn may round inside (a float32 step): central differences at "
            f"eps {eps:g} are then noise.")


def _name(i, t):
    return f"input {i} (shape {t.shape}, {t.dtype})"


def gradcheck(func, inputs, *more_inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True,
              nondet_tol=0.0, check_undefined_grad=True, check_grad_dtypes=False,
              check_batched_grad=False, check_batched_forward_grad=False, check_forward_ad=False,
              check_backward_ad=True, fast_mode=False, masked=None, seed=0):
    """Check func's gradients w.r.t. every input Tensor that requires grad, as torch's gradcheck.

    Slow mode (the default, as torch): the analytic Jacobian, one backward per output element,
    is compared entry by entry with the numeric one from central differences
    (f(x + eps) - f(x - eps)) / 2 eps computed in float64 on float64 copies of the inputs, so
    float32 rounding cannot cause false failures (torch evaluates in the inputs' dtype and
    warns). An entry passes when |analytic - numeric| <= atol + rtol * |numeric| (NaN never
    passes). Both modes compare the vector-Jacobian product w . J for one random, non-uniform
    weight per output element (it catches a backward not linear in its upstream gradient);
    fast_mode=True compares only that (weaker: a small error next to a large entry can hide).
    Both also check, as torch, that backward gives zero for a zero upstream gradient ("backward
    not multiplied by grad_output") and the same result twice (within nondet_tol). As torch,
    the float outputs that require grad are checked (if none does, each float output's numeric
    gradient must be zero); integer outputs are skipped; non-Tensor inputs are passed as is.

    Returns True. On a mismatch raises GradcheckError naming the output, the input, the worst
    entry, both values, the tolerances and how many elements disagree (GradcheckKinkError if
    the worst element sits on a kink: its left and right slopes differ), or returns False when
    raise_exception=False. check_undefined_grad, check_batched_grad and
    check_batched_forward_grad are accepted: slow mode already backpropagates each output
    alone (the others' gradients undefined), and there is no vmap to check. check_forward_ad
    and masked=True raise NotImplementedError.
    """
    _refuse("gradcheck", check_forward_ad=check_forward_ad, check_backward_ad=check_backward_ad,
            masked=masked)
    try:
        return _gradcheck(func, _inputs_tuple(inputs, more_inputs), eps, atol, rtol, nondet_tol,
                          check_grad_dtypes, fast_mode, seed)
    except GradcheckError:
        if raise_exception:
            raise
        return False


def _gradcheck(fn, inputs, eps, atol, rtol, nondet_tol, check_grad_dtypes, fast_mode, seed):
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor) and x.dtype.kind == "c":
            raise TypeError(f"gradcheck: {_name(i, x)} is complex; tinygrad_tf has no complex "
                            "autograd")
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad; pass tensors made with "
                         "requires_grad=True")
    rng = np.random.default_rng(seed)

    # Fresh leaves share the inputs' arrays (ops never write to inputs), so non-contiguous
    # layouts are kept.
    leaves = [Tensor.from_numpy(x.array).requires_grad_(x.requires_grad)
              if isinstance(x, Tensor) else x for x in inputs]
    outputs = _as_tuple(fn(*leaves))
    for o in outputs:
        if not isinstance(o, Tensor):
            raise TypeError(f"gradcheck: fn must return a Tensor (or a tuple of them), got "
                            f"{type(o).__name__}")
    # As torch: the float outputs that require grad are checked; if none does, every float
    # output's numeric gradient must be zero. Integer outputs are not differentiable.
    floats = [m for m, o in enumerate(outputs) if o.dtype.kind == "f"]
    keep = [m for m in floats if outputs[m].requires_grad] or floats
    outputs = [outputs[m] for m in keep]
    if not outputs:
        return True
    weights = [rng.standard_normal(o.shape) for o in outputs]
    wrt = [leaves[i] for i in checked]

    def vjp(grad_outputs, only=None):
        """One gradient array per checked input (zeros where None); with `only`, from that
        output alone (the others' gradients undefined, as torch's check_undefined_grad)."""
        if not any(o.requires_grad for o in outputs):
            return [np.zeros(leaves[i].shape) for i in checked]
        pairs = list(zip(outputs, grad_outputs))
        pairs = pairs if only is None else [pairs[only]]
        grads = autograd_grad([o for o, _ in pairs], wrt,
                              [Tensor.from_numpy(np.array(g, o.dtype)) for o, g in pairs],
                              retain_graph=True, allow_unused=True)
        for i, g in zip(checked, grads):
            if g is not None and check_grad_dtypes and g.dtype != inputs[i].dtype:
                raise GradcheckError(f"gradcheck: the gradient of {_name(i, inputs[i])} has "
                                     f"dtype {g.dtype} (check_grad_dtypes=True)")
        return [np.zeros(leaves[i].shape) if g is None else g.array.astype(np.float64)
                for i, g in zip(checked, grads)]

    # torch's two sanity checks: zero in, zero out; and the same result twice.
    for i, g in zip(checked, vjp([np.zeros(o.shape) for o in outputs])):
        nonzero = np.isfinite(g) & (g != 0)  # a NaN is reported by the comparison below
        if nonzero.any():
            raise GradcheckError(
                f"gradcheck: backward not multiplied by grad_output: a zero upstream gradient "
                f"gives a gradient up to {np.abs(g[nonzero]).max():.3g} for {_name(i, inputs[i])}")
    names = [(m, k) for m, o in enumerate(outputs) for k in range(o.numel())]

    def one_hot(m, k):  # the upstream gradients selecting element k of output m
        seeds = [np.zeros(o.shape) for o in outputs]
        seeds[m].reshape(-1)[k] = 1.0
        return seeds

    # Both modes: w . J for the random weights w, run twice (nondet_tol). Slow mode: also the
    # whole Jacobian, one row (per checked input) per output element, each from its output alone
    # (the others' gradients undefined, as torch's check_undefined_grad); fast mode: each output
    # alone once.
    projected = vjp(weights)
    if fast_mode:
        rows = [vjp(weights, only=m) for m in range(len(outputs))] if len(outputs) > 1 else []
    else:
        rows = [vjp(one_hot(m, k), only=m) for m, k in names]
    for i, a, b in zip(checked, projected, vjp(weights)):
        if np.any(~((np.abs(a - b) <= nondet_tol) | (np.isnan(a) & np.isnan(b)))):
            raise GradcheckError(
                f"gradcheck: backward is not reentrant: running it twice with the same input and "
                f"grad_output gives gradients for {_name(i, inputs[i])} that differ by "
                f"{np.nanmax(np.abs(a - b)):.3g} > nondet_tol {nondet_tol:g}")

    points = [(x.array.astype(np.float64) if x.dtype.kind == "f" else x.array)
              if isinstance(x, Tensor) else x for x in leaves]

    dtypes = set()

    def columns(flat, j, low, high):
        # d(out_m)/dx_j for every float output m (flattened), from x_j + low and x_j + high;
        # differenced per element, so a large constant in an output (1e9) cancels exactly.
        orig = flat[j]
        flat[j] = orig + high
        after = _outputs(fn, points, dtypes)
        flat[j] = orig + low
        before = _outputs(fn, points, dtypes)
        flat[j] = orig
        return [((after[m] - before[m]) / (high - low)).reshape(-1)
                for m in map(floats.index, keep)]

    def projected_slope(flat, j, low, high):
        return sum(float(w.reshape(-1) @ c) for w, c in zip(weights, columns(flat, j, low, high)))

    for n, i in enumerate(checked):
        shape = inputs[i].shape
        points[i] = points[i].copy()  # contiguous and ours to perturb
        flat = points[i].reshape(-1)
        if fast_mode:  # one row: w . J against the backward of sum(w * out)
            numeric = np.array([[projected_slope(flat, j, -eps, eps) for j in range(flat.size)]])
            analytic = projected[n].reshape(1, -1)
        else:  # the whole Jacobian, one row per output element
            cols = [columns(flat, j, -eps, eps) for j in range(flat.size)]
            numeric = np.concatenate([np.stack([c[m] for c in cols], axis=1) if cols
                                      else np.zeros((o.numel(), 0)) for m, o in enumerate(outputs)])
            analytic = np.array([r[n].reshape(-1) for r in rows]).reshape(numeric.shape)
            # and w . J, which the rows (one-hot upstream gradients) alone would not test for
            # a backward that is not linear in its upstream gradient
            w = np.concatenate([w.reshape(-1) for w in weights])
            numeric = np.concatenate([numeric, (w @ numeric)[None]])
            analytic = np.concatenate([analytic, projected[n].reshape(1, -1)])
        # Written as "not within tolerance" so a NaN on either side counts as a failure.
        bad = ~(np.abs(analytic - numeric) <= atol + rtol * np.abs(numeric))
        if bad.any():
            _report(fn, inputs, i, shape, flat, bad, analytic, numeric,
                    [None] if fast_mode else names + [None], [keep, outputs], columns,
                    projected_slope, fast_mode, eps, atol, rtol, dtypes)
    return True


def _report(fn, inputs, i, shape, flat, bad, analytic, numeric, names, outputs, columns,
            projected_slope, fast_mode, eps, atol, rtol, dtypes):
    """Raise for the worst disagreeing entry: a kink if its one-sided slopes differ."""
    error = np.where(bad, np.nan_to_num(np.abs(analytic - numeric), nan=np.inf), -1)
    row, j = np.unravel_index(int(np.argmax(error)), error.shape)
    worst = np.unravel_index(j, shape) if shape else ()
    where = f"{_name(i, inputs[i])}, element {tuple(int(k) for k in worst)} = {float(flat[j]):.6g}"
    if names[row] is not None:
        m, k = names[row]
        (keep, outputs), out_shape = outputs, outputs[1][m].shape
        index = tuple(int(t) for t in np.unravel_index(k, out_shape)) if out_shape else ()
        where += f", output {keep[m]} (shape {out_shape}) element {index}"
        left = columns(flat, j, -eps, 0.0)[m][k]
        right = columns(flat, j, 0.0, eps)[m][k]
    else:
        left, right = projected_slope(flat, j, -eps, 0.0), projected_slope(flat, j, 0.0, eps)
    counts = f"{int(bad.any(axis=0).sum())} of {flat.size} elements disagree"
    if not fast_mode:
        counts += f" ({int(bad[:-1].sum())} of {bad[:-1].size} Jacobian entries)"
    a, n = analytic[row, j], numeric[row, j]
    hint = _rounding_hint(dtypes, eps)
    if abs(right - left) > atol + rtol * max(abs(right), abs(left)):
        raise GradcheckKinkError(
            f"gradcheck: {where} sits on a kink: the slope is {left:.6g} from the left and "
            f"{right:.6g} from the right (analytic {a:.6g}); {counts}. Check at a point away "
            "from kinks (relu at 0, ties in max/maximum/abs)." + hint)
    raise GradcheckError(
        f"gradcheck: wrong gradient for {where}: analytic {a:.8g}, numeric {n:.8g} "
        f"(|diff| {abs(a - n):.3g} > atol {atol:g} + rtol {rtol:g} * |numeric|); {counts}."
        + (hint if "fn returned" in hint else ""))


def gradgradcheck(func, inputs, grad_outputs=None, *, eps=1e-6, atol=1e-5, rtol=1e-3,
                  gen_non_contig_grad_outputs=False, raise_exception=True, nondet_tol=0.0,
                  check_undefined_grad=True, check_grad_dtypes=False, check_batched_grad=False,
                  check_fwd_over_rev=False, check_rev_over_rev=True, fast_mode=False,
                  masked=False, seed=0):
    """Check second derivatives, with torch.autograd.gradgradcheck's arguments.

    The first derivatives, autograd.grad(func(*inputs), inputs, grad_outputs) as a function of
    (inputs, grad_outputs), go through `gradcheck`: their gradients by backward through the
    graph that create_graph=True records are compared with central differences of the plain
    first-order gradients. grad_outputs default to random (seeded) tensors of the outputs'
    shapes (stored non-contiguously with gen_non_contig_grad_outputs=True). On a mismatch the
    GradcheckError names the worst element: "input i" counts the inputs first, then the
    grad_outputs. A backward that is first-order only (@once_differentiable, or one turning
    Tensors into arrays) fails the check, as in torch (there its second derivative is zero). Returns True;
    False instead of raising if raise_exception=False."""
    from .autograd import enable_grad, is_grad_enabled

    _refuse("gradgradcheck", check_fwd_over_rev=check_fwd_over_rev,
            check_rev_over_rev=check_rev_over_rev, masked=masked)
    tensors = _inputs_tuple(inputs, ())
    differentiable = [i for i, t in enumerate(tensors) if isinstance(t, Tensor) and t.requires_grad]
    if not differentiable:
        raise ValueError("gradgradcheck: no input requires grad")
    outputs = [o for o in _as_tuple(func(*tensors)) if isinstance(o, Tensor) and o.dtype.kind == "f"]
    rng = np.random.default_rng(seed + 1)
    if grad_outputs is None:
        grad_outputs = [rng.standard_normal(o.shape).astype(o.dtype) for o in outputs]
        if gen_non_contig_grad_outputs:  # every other element of a buffer twice as large
            grad_outputs = [np.repeat(g[..., None], 2, -1)[..., 0] if g.ndim else g
                            for g in grad_outputs]
    grad_outputs = [Tensor.from_numpy(g.array if isinstance(g, Tensor) else np.asarray(g))
                    for g in _as_tuple(grad_outputs)]
    if len(grad_outputs) != len(outputs):  # zip would check only some of the outputs
        raise RuntimeError(f"gradgradcheck: func returned {len(outputs)} float output(s) but "
                           f"{len(grad_outputs)} grad_output(s) were given; pass one per output")
    grad_outputs = [g.requires_grad_(g.dtype.kind == "f") for g in grad_outputs]
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
            outs = [o for o in _as_tuple(func(*xs)) if isinstance(o, Tensor) and o.dtype.kind == "f"]
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
        try:
            return _gradcheck(first_derivatives, (*tensors, *grad_outputs), eps, atol, rtol,
                              nondet_tol, check_grad_dtypes, fast_mode, seed)
        except FirstOrderOnlyError as error:  # torch: the second derivative comes out zero
            raise GradcheckError(f"the backward has no second derivative: {error}") from None
    except GradcheckError as error:
        if not raise_exception:
            return False
        raise type(error)(f"gradgradcheck (second derivatives; inputs 0-{count - 1} are the "
                          f"inputs, then the grad_outputs): {error}") from None
