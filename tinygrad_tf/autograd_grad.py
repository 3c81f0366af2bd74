"""torch's `autograd.grad` and `autograd.backward`, and `Tensor.backward`'s options `inputs=` and
`create_graph=`: front ends that check their arguments, then run one of the two walks,
`autograd.walk` (on arrays) or `graph_backward.run` (on Tensors, recording a graph:
create_graph=True). `autograd.py` re-exports `grad` and `backward`; `Tensor.backward` calls
`run_backward` when an option is given.
"""
import numpy as np

from . import autograd as _autograd
from . import graph_backward


def _walk(outputs, seeds, retain_graph, create_graph, capture):
    """Run backward from `outputs` with the upstream gradients `seeds` (arrays, or Tensors under
    create_graph); with `capture` (ids -> None) store the gradients reaching those tensors."""
    if create_graph:
        Tensor = _autograd._Tensor
        seeds = [s if isinstance(s, Tensor) else _autograd._wrap_array(s) for s in seeds]
        graph_backward.run(outputs, seeds, retain_graph, capture=capture)
    else:
        _autograd.walk(outputs, seeds, retain_graph, capture=capture)


def run_backward(outputs, grads, retain_graph, create_graph=False, inputs=None):
    """The engine behind Tensor.backward: `grads` arrays (Tensors allowed under create_graph);
    with `inputs`, only those tensors' `.grad` are accumulated."""
    Tensor = _autograd._Tensor
    outputs = outputs if isinstance(outputs, list) else [outputs]
    grads = grads if isinstance(grads, list) else [grads]
    capture = None
    if inputs is not None:
        inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        if not inputs:
            raise RuntimeError("backward: the inputs argument cannot be empty (as torch)")
        for t in inputs:
            if not t.requires_grad:
                raise RuntimeError(f"backward: an input of shape {t.shape} does not require grad")
        capture = {id(t): None for t in inputs}
    _walk(outputs, grads, retain_graph, create_graph, capture)
    for t in inputs or ():
        g = capture[id(t)]
        if g is None:
            continue
        if create_graph:  # a Tensor on a graph: accumulated out of place, as torch
            t.grad = g if t.grad is None else t.grad + g
            if t._ctx is None and _autograd._post_accumulate_hooks:
                _autograd._run_post_accumulate_hooks(t)
        else:
            _autograd._accumulate_grad(t, g)


def _seeds(op, outputs, grad_outputs, create_graph):
    """The upstream gradient of each output, checked as torch checks them: one per output (None
    only for a one-element output: ones), of its shape. Arrays of the output's dtype, or Tensors
    under create_graph."""
    Tensor = _autograd._Tensor
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, (Tensor, np.ndarray)):
        grad_outputs = [grad_outputs]
    if len(grad_outputs) != len(outputs):
        raise RuntimeError(f"{op}: {len(grad_outputs)} gradients for {len(outputs)} outputs; "
                           "expected one each")
    seeds = []
    for out, seed in zip(outputs, grad_outputs):
        if not out.requires_grad:
            raise RuntimeError(f"{op}: an output of shape {out.shape} does not require grad")
        if seed is None:
            if out.array.size != 1:
                raise RuntimeError(f"{op}: an output of shape {out.shape} needs a gradient; "
                                   "only a one-element output's defaults to 1")
            seed = np.ones_like(out.array)
        if create_graph and isinstance(seed, Tensor):
            seed = seed if seed.dtype == out.dtype else seed.to(out.dtype)
        else:
            seed = np.asarray(seed.array if isinstance(seed, Tensor) else seed, dtype=out.dtype)
        if seed.shape != out.shape:
            raise RuntimeError(f"{op}: a gradient of shape {seed.shape} for an output of shape "
                               f"{out.shape}")
        seeds.append(seed)
    return seeds


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """torch.autograd.backward: `Tensor.backward` for several outputs in one walk, each with its
    upstream gradient (grad_tensors: a Tensor or None each; None only for a one-element output).
    The leaves' `.grad` accumulate the sum over the outputs."""
    tensors = [tensors] if isinstance(tensors, _autograd._Tensor) else list(tensors)
    seeds = _seeds("autograd.backward", tensors, grad_tensors, create_graph)
    if retain_graph is None:
        retain_graph = create_graph
    run_backward(tensors, seeds, retain_graph, create_graph, inputs)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=None, is_grads_batched=False, materialize_grads=False):
    """d(outputs)/d(inputs), returned as a tuple of Tensors (one per input); no `.grad` changes.
    As torch.autograd.grad.

    outputs, inputs: a Tensor or a sequence. grad_outputs: the upstream gradient of each output
    (needed unless the output has one element). retain_graph defaults to create_graph.
    create_graph=True records the gradient computation, so the results can be differentiated
    again (Hessian-vector products, gradient penalties). allow_unused: return None for an input
    the outputs do not depend on, instead of raising; materialize_grads: zeros for it instead
    (implies allow_unused, as torch's)."""
    Tensor = _autograd._Tensor
    if is_grads_batched:
        raise NotImplementedError("grad: is_grads_batched is not supported; loop over the rows")
    if materialize_grads and allow_unused is False:
        raise ValueError("grad: expected allow_unused to be True or not passed when "
                         "materialize_grads=True (as torch)")
    allow_unused = bool(allow_unused) or materialize_grads
    single = isinstance(outputs, Tensor)
    outputs = [outputs] if single else list(outputs)
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    if retain_graph is None:
        retain_graph = create_graph
    seeds = _seeds("grad", outputs, grad_outputs, create_graph)
    for t in inputs:
        if not t.requires_grad:
            raise RuntimeError(f"grad: an input of shape {t.shape} does not require grad")
    capture = {id(t): None for t in inputs}
    _walk(outputs, seeds, retain_graph, create_graph, capture)
    result = []
    for t in inputs:
        g = capture[id(t)]
        if g is None and not allow_unused:
            raise RuntimeError(f"grad: an input of shape {t.shape} is not used by the outputs "
                               "(pass allow_unused=True to get None for it)")
        if g is None and materialize_grads:
            g = _autograd._wrap_array(np.zeros_like(t.array))
        elif g is not None and not create_graph:
            g = _autograd._wrap_array(np.array(g, dtype=t.dtype))
        result.append(g)
    return tuple(result)
