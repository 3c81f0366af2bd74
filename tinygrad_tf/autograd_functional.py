"""tinygrad_tf.autograd.functional: torch.autograd.functional's vjp, jvp, vhp, hvp, jacobian and
hessian, with torch's argument names and return structure.

`func` takes the inputs (a Tensor or a tuple of them) and returns a Tensor (a tuple for vjp, jvp
and jacobian too). A single Tensor input gives single results, a tuple gives tuples, as torch.
Everything is built on `autograd.grad(..., create_graph=True)`: a Hessian-vector product is the
gradient of <grad, v>, and a Jacobian-vector product (forward mode) is the double-backward
trick, the vjp of a vjp with a dummy cotangent u: d/du <J^T u, v> = J v.
`vectorize=True` is accepted and ignored (the rows of a Jacobian are computed one by one);
`strategy="forward-mode"` is refused, as there is no forward-mode engine here.
"""
import numpy as np

from .autograd import enable_grad, grad
from .tensor import Tensor


def _tuple(x, what):
    is_tuple = isinstance(x, (tuple, list))
    items = tuple(x) if is_tuple else (x,)
    for item in items:
        if not isinstance(item, Tensor):
            raise TypeError(f"autograd.functional: {what} must be a Tensor or a tuple of Tensors, "
                            f"got {type(item).__name__}")
    return is_tuple, items


def _leaves(inputs, create_graph):
    # Fresh leaves on the inputs' memory; with create_graph the caller's inputs themselves, so
    # results can be differentiated with respect to them, as torch does.
    if create_graph and all(t.requires_grad for t in inputs):
        return inputs
    return tuple(t if create_graph and t.requires_grad else Tensor._wrap(t.array).requires_grad_()
                 for t in inputs)


def _finish(items, create_graph):
    return tuple(None if t is None else (t if create_graph else t.detach()) for t in items)


def _grads(outputs, inputs, grad_outputs, create_graph, strict, what):
    used = [(o, g) for o, g in zip(outputs, grad_outputs) if o.requires_grad]
    if not used:
        results = (None,) * len(inputs)
    else:
        results = grad([o for o, _ in used], inputs, [g for _, g in used],
                       create_graph=True, allow_unused=True)
    out = []
    for i, (t, g) in enumerate(zip(inputs, results)):
        if g is None:
            if strict:
                raise RuntimeError(f"autograd.functional.{what}: the output of the function is "
                                   f"independent of input {i} (strict=True)")
            g = Tensor._wrap(np.zeros(t.shape, t.dtype))
        out.append(g)
    return tuple(out)


def _vectors(v, like, what, name="v"):
    if v is None:
        if any(t.array.size != 1 for t in like):
            raise RuntimeError(f"autograd.functional.{what}: {name} can be omitted only when "
                               "every tensor it pairs with has a single element")
        return tuple(Tensor._wrap(np.ones(t.shape, t.dtype)) for t in like)
    _, vs = _tuple(v, name)
    if len(vs) != len(like) or any(a.shape != b.shape for a, b in zip(vs, like)):
        raise RuntimeError(f"autograd.functional.{what}: {name} has shapes "
                           f"{[tuple(a.shape) for a in vs]}, expected "
                           f"{[tuple(b.shape) for b in like]}")
    return vs


def _call(func, inputs, is_tuple, what):
    with enable_grad():
        out = func(*inputs) if is_tuple else func(inputs[0])
    out_tuple, outs = _tuple(out, f"{what}'s function output")
    return out_tuple, outs


def vjp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), v^T J): the vector-Jacobian product."""
    is_tuple, inputs = _tuple(inputs, "inputs")
    leaves = _leaves(inputs, create_graph)
    out_tuple, outs = _call(func, leaves, is_tuple, "vjp")
    result = _finish(_grads(outs, leaves, _vectors(v, outs, "vjp"), create_graph, strict, "vjp"),
                     create_graph)
    outs = _finish(outs, create_graph)
    return (outs if out_tuple else outs[0]), (result if is_tuple else result[0])


def jvp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), J v): the Jacobian-vector product, by the double-backward trick."""
    is_tuple, inputs = _tuple(inputs, "inputs")
    leaves = _leaves(inputs, create_graph)
    vs = _vectors(v, leaves, "jvp")
    out_tuple, outs = _call(func, leaves, is_tuple, "jvp")
    dummies = tuple(Tensor._wrap(np.zeros(o.shape, o.dtype)).requires_grad_() for o in outs)
    with enable_grad():
        firsts = _grads(outs, leaves, dummies, True, strict, "jvp")
        pairs = [(g, w) for g, w in zip(firsts, vs) if g.requires_grad]
        if pairs:
            result = grad([g for g, _ in pairs], dummies, [w for _, w in pairs],
                          create_graph=create_graph, allow_unused=True)
        else:
            result = (None,) * len(dummies)
    result = tuple(Tensor._wrap(np.zeros(o.shape, o.dtype)) if r is None else r
                   for r, o in zip(result, outs))
    outs = _finish(outs, create_graph)
    result = _finish(result, create_graph)
    return (outs if out_tuple else outs[0]), (result if out_tuple else result[0])


def _scalar_output(func, leaves, is_tuple, what):
    out_tuple, outs = _call(func, leaves, is_tuple, what)
    if out_tuple or outs[0].array.size != 1:
        raise RuntimeError(f"autograd.functional.{what}: the function must return a single "
                           f"Tensor with one element, got shape {outs[0].shape}")
    return outs[0]


def vhp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), v^T H) for a scalar func: H its Hessian."""
    is_tuple, inputs = _tuple(inputs, "inputs")
    leaves = _leaves(inputs, create_graph)
    vs = _vectors(v, leaves, "vhp")
    out = _scalar_output(func, leaves, is_tuple, "vhp")
    with enable_grad():
        firsts = _grads([out], leaves, [Tensor._wrap(np.ones(out.shape, out.dtype))], True,
                        strict, "vhp")
        result = _grads(list(firsts), leaves, list(vs), create_graph, strict, "vhp")
    (out,) = _finish((out,), create_graph)
    result = _finish(result, create_graph)
    return out, (result if is_tuple else result[0])


def hvp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), H v) for a scalar func. H is symmetric, so this is vhp's product (torch
    computes it another way; the values agree)."""
    return vhp(func, inputs, v, create_graph, strict)


def jacobian(func, inputs, create_graph=False, strict=False, vectorize=False,
             strategy="reverse-mode"):
    """d func(inputs) / d inputs: for output i and input j a Tensor of shape
    outputs[i].shape + inputs[j].shape, nested as torch nests them (tuples only where func's
    output or the inputs are tuples). One backward per output element (vectorize is ignored)."""
    if strategy != "reverse-mode":
        raise NotImplementedError("autograd.functional.jacobian: only strategy='reverse-mode' "
                                  "(there is no forward-mode engine here)")
    is_tuple, inputs = _tuple(inputs, "inputs")
    leaves = _leaves(inputs, create_graph)
    out_tuple, outs = _call(func, leaves, is_tuple, "jacobian")
    from .tensor import stack
    blocks = []
    for o in outs:
        rows = []
        for k in range(o.array.size):
            seed = np.zeros(o.array.size, o.dtype)
            seed[k] = 1
            rows.append(_grads([o], leaves, [Tensor._wrap(seed.reshape(o.shape))],
                               create_graph, strict, "jacobian"))
        per_input = []
        for j, t in enumerate(leaves):
            if rows:
                block = stack([r[j] for r in rows]).reshape(o.shape + t.shape)
            else:
                block = Tensor._wrap(np.zeros(o.shape + t.shape, t.dtype))
            per_input.append(block if create_graph else block.detach())
        blocks.append(tuple(per_input) if is_tuple else per_input[0])
    return tuple(blocks) if out_tuple else blocks[0]


def hessian(func, inputs, create_graph=False, strict=False, vectorize=False,
            outer_jacobian_strategy="reverse-mode"):
    """The Hessian of a scalar func: for inputs i, j a Tensor of shape inputs[i].shape +
    inputs[j].shape (a tuple of tuples for a tuple of inputs), the Jacobian of the gradient."""
    is_tuple, inputs = _tuple(inputs, "inputs")

    def gradient(*xs):
        out = _scalar_output(func, xs, is_tuple, "hessian")
        return _grads([out], xs, [Tensor._wrap(np.ones(out.shape, out.dtype))], True, strict,
                      "hessian")

    result = jacobian(gradient, inputs, create_graph, strict, vectorize, outer_jacobian_strategy)
    return result if is_tuple else result[0][0]
