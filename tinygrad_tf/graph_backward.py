"""Backward with create_graph=True: the same graph walk as autograd.walk, on Tensors.

Each op's backward runs with `ctx.xp = tensor_ops` (xp.py), its gradient and its saved arrays
as Tensors: a saved array that is one of the op's inputs, or its output, becomes that very
Tensor (matched by identity); any other saved array (a mask, an index) stays a constant
array. The backward's lines then record ops like a forward does, so the gradients it returns
can be differentiated again. An op whose backward only numpy can run has a
`composed(ctx, *inputs)` twin (its forward from differentiable Tensor ops): here it is
recomputed and differentiated instead.

Turning a Tensor into a numpy array inside a backward on this path (np.asarray, .numpy())
raises: the result would be a constant, and a second derivative through it silently zero.
"""
import numpy as np

from . import autograd as _autograd
from .xp import graph_guard, tensor_ops

_wrap = _autograd._wrap_array
_FAR_FUTURE = 1 << 62


def _saved_as_tensors(ctx, output):
    saved = ctx._saved
    if not saved:
        return saved
    # matched by identity, the output first; other arrays (masks, indices, constants) stay
    # arrays: the xp calls and the Tensor operators take them as constants. (A loop over the
    # one to three parents: this runs once per op of every create_graph walk.)
    parents, out_array, mapped = ctx.parents, output.array, []
    for item in saved:
        if isinstance(item, np.ndarray):
            if item is out_array:
                item = output
            else:
                for parent in parents:
                    if parent.array is item:
                        item = parent
                        break
        mapped.append(item)
    return tuple(mapped)


def _op_grads(ctx, output, grad):
    """The gradients of one op's inputs, as Tensors on a graph."""
    cls = type(ctx)
    composed = getattr(cls, "composed", None)
    if composed is not None:
        ctx.saved_tensors  # noqa: B018 (the in-place check on the saved arrays)
        parents = ctx.parents
        with _autograd.enable_grad():
            out = composed(ctx, *parents)
        wanted = [p for p in parents if p.requires_grad]
        if not out.requires_grad or not wanted:
            return (None,) * len(parents)
        capture = {id(p): None for p in wanted}
        run([out], [grad], retain_graph=True, capture=capture, stop=set(capture))
        return tuple(capture.get(id(p)) for p in parents)
    ctx.saved_tensors  # noqa: B018 (the in-place check, on the arrays)
    saved, clock = ctx._saved, ctx.saved_clock
    ctx._saved, ctx.saved_clock, ctx.xp = _saved_as_tensors(ctx, output), _FAR_FUTURE, tensor_ops
    graph_guard.depth += 1
    try:  # grad mode is on: run() turned it on for the whole walk
        return cls.backward(ctx, grad)
    finally:
        graph_guard.depth -= 1
        del ctx.xp
        ctx._saved, ctx.saved_clock = saved, clock


def _run_hooks(tensor, grad):
    for hook in _autograd._live_hooks(_autograd._hooks, tensor):
        result = hook(grad)
        if result is not None:  # checked as on the plain walk; a Tensor keeps its graph
            new = _autograd.hook_result(result, grad.array)
            grad = result if isinstance(result, type(grad)) else grad._wrap(new)
    return grad


def run(roots, grads, retain_graph=True, capture=None, stop=()):
    """Accumulate d(roots)/d(leaf) * grads (Tensors) into each leaf's `.grad` as a Tensor on a
    graph; with `capture` (ids of tensors -> None) store the gradients reaching those tensors
    there instead, touching no `.grad` (autograd.grad)."""
    grad_mode = _autograd._GradMode
    previous, grad_mode.enabled = grad_mode.enabled, True  # the backwards record their ops
    try:
        _walk(roots, grads, retain_graph, capture, stop)
    finally:
        grad_mode.enabled = previous


def _walk(roots, grads, retain_graph, capture, stop):
    Tensor = _autograd._Tensor
    order = _autograd._topological_order(roots, stop)
    pending = {}
    for root, grad in zip(roots, grads):
        key = id(root)
        pending[key] = pending[key] + grad if key in pending else grad
    while order:
        tensor = order.pop()
        grad = pending.pop(id(tensor), None)
        if grad is None:
            continue
        if id(tensor) in _autograd._hooks:
            grad = _run_hooks(tensor, grad)
        ctx = tensor._ctx
        if capture is not None:
            if id(tensor) in capture:
                capture[id(tensor)] = grad
            if ctx is None or id(tensor) in stop:
                continue
        elif ctx is None:  # a leaf: as torch, accumulated out of place under create_graph
            tensor.grad = grad if tensor.grad is None else tensor.grad + grad
            if _autograd._post_accumulate_hooks:
                _autograd._run_post_accumulate_hooks(tensor)
            continue
        elif tensor._retains_grad:
            tensor.grad = grad if tensor.grad is None else tensor.grad + grad
        input_grads = _op_grads(ctx, tensor, grad)
        if input_grads.__class__ is not tuple:
            input_grads = (input_grads,)
        parents = ctx.parents
        if len(input_grads) != len(parents):
            raise RuntimeError(f"{type(ctx).__name__}.backward returned {len(input_grads)} "
                               f"gradients for {len(parents)} inputs")
        for parent, parent_grad in zip(parents, input_grads):
            if parent_grad is None or not parent.requires_grad:
                continue
            if not isinstance(parent_grad, Tensor):
                raise RuntimeError(
                    f"{type(ctx).__name__}.backward returned a {type(parent_grad).__name__} "
                    "under create_graph=True; it must compute with ctx.xp (or the Tensor "
                    "operators) so the gradient records a graph, or define composed(ctx, *inputs)")
            array, data = parent_grad.array, parent.array
            if array.shape != data.shape:
                parent_grad = _autograd.unbroadcast(parent_grad, data.shape, type(ctx).__name__,
                                                    tensor_ops)
            if array.dtype != data.dtype:
                parent_grad = parent_grad.to(data.dtype)
            key = id(parent)
            pending[key] = pending[key] + parent_grad if key in pending else parent_grad
        if not retain_graph:
            ctx.__dict__.clear()
            ctx.parents = None
