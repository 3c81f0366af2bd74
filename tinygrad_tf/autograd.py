"""The autograd machinery: grad mode, the `ArrayFunction` base class of every op, and the
backward graph walk. (torch's `autograd.Function`, on Tensors, is autograd_function.py;
`autograd.grad`, `autograd.backward` and backward's `inputs=`/`create_graph=` are
autograd_grad.py.)

Every op records an `ArrayFunction` instance (the "ctx") on the tensor it produces. The ctx
holds the op's input tensors (`parents`) and whatever arrays its backward needs. `walk()`
orders the recorded graph topologically, then calls each op's `backward` from the output
towards the leaves.
"""
import numbers
import threading
import weakref

import numpy as np

from . import plugins as _plugins
from . import versions as _versions
from .autograd_graph import GraphNode
from .grad_mode_decorator import decorate as _decorate
from .xp import numpy_ops


# ---------------------------------------------------------------------------- grad mode

class _GradModeState(threading.local):
    # Ops record a graph only while it is on. Per thread, as torch's: a `no_grad` block in one
    # thread (an evaluation loop) never switches recording off in another. A new thread starts on.
    enabled = True


_GradMode = _GradModeState()


class _GradModeContext:
    """Base of `no_grad` and `enable_grad`: a context manager that is also a decorator, with or
    without parentheses (`@no_grad()` and `@no_grad`), as in torch."""
    mode = True

    def __new__(cls, function=None):
        self = super().__new__(cls)
        return self if function is None else self(function)

    def __init__(self, function=None):
        pass

    def __enter__(self):
        self._previous = _GradMode.enabled
        _GradMode.enabled = self.mode

    def __exit__(self, *exc):
        _GradMode.enabled = self._previous
        return False

    def __call__(self, function):  # a fresh context per call (and per resume of a generator)
        return _decorate(type(self), function)


class no_grad(_GradModeContext):
    """Within this block (or decorated function) ops record no graph: for inference and updates."""
    mode = False


class enable_grad(_GradModeContext):
    """Turn recording back on inside a `no_grad` block."""
    mode = True


def is_grad_enabled():
    return _GradMode.enabled


# ---------------------------------------------------------------------------- ArrayFunction

# Set by tensor.py (which imports this module): the class `apply` wraps results in.
_Tensor = None
_new_object = object.__new__


class ArrayFunction(GraphNode):
    """A differentiable op on numpy arrays (the engine's primitives, nn's fused ops). Subclass it
    and write two static methods side by side:

        class Cube(ArrayFunction):
            @staticmethod
            def forward(ctx, x):                 # numpy arrays in, a numpy array out
                ctx.save_for_backward(x)
                return x ** 3

            @staticmethod
            def backward(ctx, grad):             # d(loss)/d(output) in, one grad per input out
                (x,) = ctx.saved_tensors
                return grad * 3 * x ** 2

        y = Cube.apply(t)                        # t a Tensor; y a Tensor on the graph

    Non-tensor arguments go to `apply` as keyword arguments and reach `forward` the same way.
    `ctx.needs_input_grad` says which inputs need a gradient (forward and backward may skip work).
    `backward` returns one array (or None) per tensor input; a gradient with the broadcast shape
    of the output is summed back to its input's shape, and cast to its dtype, by the engine.
    """

    _saved = ()
    saved_clock = 1 << 62  # set by save_for_backward; an op that saves nothing is never stale
    xp = numpy_ops  # the array namespace of backward (xp.py): Tensor ops under create_graph

    def save_for_backward(self, *arrays):
        self._saved = arrays
        self.saved_clock = _versions.clock  # the in-place write clock, checked on unpacking

    @property
    def saved_tensors(self):
        """The arrays given to save_for_backward. As in torch, unpacking them raises if one was
        written in place since (only ops that save arrays pay for the check)."""
        if self.saved_clock < _versions.clock:
            _versions.check_saved(self)
        return self._saved

    @saved_tensors.setter
    def saved_tensors(self, arrays):
        self._saved = arrays

    @staticmethod
    def forward(ctx, *arrays, **kwargs):
        raise NotImplementedError(f"{type(ctx).__name__}.forward is not written")

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError(f"{type(ctx).__name__}.backward is not written")

    @classmethod
    def apply(cls, *inputs, **kwargs):
        """Run forward on the inputs' arrays; record the op on the result if grad is enabled and
        some input requires grad. This runs once per op, so it is kept short."""
        if _plugins.profiler is not None:  # (plugins.py: None costs one test per op)
            return _plugins.profiler.apply(cls, inputs, kwargs)
        ctx = cls()
        # Unrolled for the hot ops (one or two inputs, no keyword arguments): a tuple display and
        # a plain call are much cheaper than comprehensions and a ** call. A non-Tensor input
        # (it has no `requires_grad`) is reported clearly below.
        try:
            if len(inputs) == 2 and not kwargs:
                a, b = inputs
                ctx.needs_input_grad = needs = (a._requires_grad, b._requires_grad)
                out = cls.forward(ctx, a.array, b.array)
            elif len(inputs) == 1 and not kwargs:
                ctx.needs_input_grad = needs = (inputs[0]._requires_grad,)
                out = cls.forward(ctx, inputs[0].array)
            else:
                ctx.needs_input_grad = needs = tuple([t._requires_grad for t in inputs])
                out = cls.forward(ctx, *[t.array for t in inputs], **kwargs)
        except AttributeError:
            if all(isinstance(t, _Tensor) for t in inputs):
                raise
            raise _not_tensors(cls, inputs) from None
        if out.__class__ is not np.ndarray:
            scalar, out = out, _as_output(cls, out)
            if ctx._saved:  # a saved 0-d result is the output array itself (create_graph maps it)
                ctx._saved = tuple(out if s is scalar else s for s in ctx._saved)
        tensor = _new_object(_Tensor)
        tensor.array = out
        tensor._grad = None
        tensor._retains_grad = False
        if True in needs and _GradMode.enabled:
            ctx.parents = inputs
            tensor._requires_grad = True
            tensor._ctx = ctx
        else:
            tensor._requires_grad = False
            tensor._ctx = None
        return tensor

    def __repr__(self):
        return f"<{type(self).__name__}>"


def _not_tensors(cls, inputs):
    kinds = ", ".join(type(t).__name__ for t in inputs)
    return TypeError(f"{cls.__name__}.apply takes Tensors as positional arguments (got {kinds}); "
                     "pass other arguments by keyword")


def _as_output(cls, out):
    # numpy reductions return numpy scalars, not 0-d arrays (and a forward may return an ndarray
    # subclass); anything else is a bug in forward.
    if isinstance(out, (np.generic, numbers.Number, np.ndarray)):
        return np.asarray(out)
    raise TypeError(f"{cls.__name__}.forward must return one numpy array, not "
                    f"{type(out).__name__}")


# ---------------------------------------------------------------------------- backward

def unbroadcast(grad, shape, op="op", xp=numpy_ops):
    """Sum `grad` down to `shape`, undoing numpy broadcasting (the one place this happens, for
    both walks: `xp` is the array namespace, xp.py)."""
    extra, returned = grad.ndim - len(shape), grad.shape
    if extra > 0:
        grad = xp.sum(grad, tuple(range(extra)))
    stretched = () if extra < 0 else tuple(i for i, n in enumerate(shape)
                                           if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = xp.sum(grad, stretched, keepdims=True)
    if grad.shape != tuple(shape):  # as torch: the input's shape must broadcast to the gradient's
        raise RuntimeError(f"{op}.backward returned a gradient of shape {returned} for an input "
                           f"of shape {tuple(shape)}; expected it (or a shape it broadcasts to)")
    return grad


def _topological_order(roots, stop=()):
    """Tensors that lead to `roots` (one tensor or a list) and require grad, inputs before
    outputs; the walk does not go past tensors whose id is in `stop` (backward's `inputs=`).
    Iterative DFS so a chain of any length works; keyed by id because Tensor `==` is
    elementwise. The create_graph walk (graph_backward.py) uses it too."""
    order, visited = [], set()
    stack = [(root, False) for root in (roots if isinstance(roots, list) else [roots])]
    while stack:
        tensor, children_done = stack.pop()
        if children_done:
            order.append(tensor)
            continue
        if id(tensor) in visited:
            continue
        visited.add(id(tensor))
        stack.append((tensor, True))
        ctx = tensor._ctx
        if ctx is None or id(tensor) in stop:
            continue
        if ctx.parents is None:
            raise RuntimeError(
                f"backward through {type(ctx).__name__} a second time: its saved arrays were "
                "freed by the first backward; pass retain_graph=True (or create_graph=True) to "
                "the first call")
        for parent in ctx.parents:
            if parent._requires_grad and id(parent) not in visited:
                stack.append((parent, False))
    return order


def _owned(grad, tensor):
    # A gradient array may be shared (Add returns `grad` twice) or a read-only broadcast view:
    # copy it before it is stored where a later backward adds into it in place.
    return _wrap_array(np.array(grad, dtype=tensor.array.dtype))


def _wrap_array(array):
    if array.__class__ is not np.ndarray:  # numpy ufuncs give scalars for 0-d: a writable array
        array = np.asarray(array)
    tensor = _new_object(_Tensor)
    tensor.array, tensor._grad, tensor._ctx = array, None, None
    tensor._requires_grad = tensor._retains_grad = False
    return tensor


def _new_leaf_grad(grad, tensor):
    """A leaf's first gradient as a new Tensor, in memory a plug-in lends (an optimizer's arena,
    plugins.grad_buffer: then an update reads it in place) or else a fresh copy."""
    lend = _plugins.grad_buffer
    if lend is not None:
        buffer = lend(tensor)
        if (buffer is not None and buffer.shape == grad.shape
                and buffer.dtype == tensor.array.dtype and buffer.flags.writeable):
            np.copyto(buffer, grad)
            return _wrap_array(buffer)
    return _owned(grad, tensor)


def _accumulate_grad(tensor, grad):
    """Add the array `grad` into `tensor.grad`, as torch's AccumulateGrad."""
    if tensor.grad is None:  # a new Tensor: a .grad the user kept is never written
        tensor.grad = _new_leaf_grad(grad, tensor) if tensor._ctx is None else _owned(grad, tensor)
    elif tensor.grad.requires_grad:  # a grad made by create_graph: out of place, as torch
        tensor.grad = tensor.grad + _wrap_array(grad)
    else:  # into the existing .grad, in place
        tensor.grad.array += grad
        _versions.increment_version(tensor.grad.array)
    if _post_accumulate_hooks:
        _run_post_accumulate_hooks(tensor)


def walk(root, grad, retain_graph=False, capture=None):
    """Accumulate d(root)/d(leaf) * grad into `.grad` of every leaf that requires grad.

    `root` and `grad` may be lists (several outputs). With `capture` (a dict keyed by the ids of
    some tensors of the graph) the gradient reaching each of those is stored there instead, and
    no `.grad` is touched (`autograd.grad`).

    Grad ownership (docs/autograd.md, section 10): a `.grad` is the user's. Here a leaf's .grad
    is either created (a new Tensor, when it is None) or added into in place; nothing else in
    the engine writes one, and an optimizer only reads it."""
    profiler = _plugins.profiler
    if profiler is not None:
        profiler.begin("autograd.backward", "engine")
    roots, grads_in = (root, grad) if isinstance(root, list) else ([root], [grad])
    order = _topological_order(roots)
    grads = {}
    for root, grad in zip(roots, grads_in):
        grads[id(root)] = grads[id(root)] + grad if id(root) in grads else grad
    plain = capture is None and not _hooks  # hooks and grad() take the slower branch below
    # Fan-in (a tensor used by several ops) adds gradients up. A backward's result may alias what
    # must not change (its saved arrays, its grad_output, which Add returns twice, user data, a
    # broadcast view), so the engine adds in place only into an array it made itself in this
    # walk: a sum, an unbroadcast or a cast. Those keys are `owned`; each is handed on at its turn.
    owned = set()
    while order:
        # Popped, not iterated: once an op's backward has run, nothing here keeps its output
        # alive, so each activation is freed as soon as the ops that consumed it are done.
        tensor = order.pop()
        grad = grads.pop(id(tensor), None)
        if grad is None:
            continue
        ctx = tensor._ctx
        if not plain:
            if id(tensor) in _hooks:
                grad = _run_hooks(tensor, grad)
            if capture is not None:
                if id(tensor) in capture:
                    capture[id(tensor)] = grad
                if ctx is None:
                    continue
        if ctx is None:  # a leaf: accumulate across backward calls until the grad is reset
            _accumulate_grad(tensor, grad)
            continue
        if tensor._retains_grad and capture is None:  # as torch: accumulated out of place
            tensor.grad = _owned(grad if tensor.grad is None else tensor.grad.array + grad, tensor)
        if profiler is None:
            input_grads = ctx.backward(ctx, grad)
        else:
            input_grads = profiler.backward(ctx, grad)
        if input_grads.__class__ is not tuple:
            input_grads = (input_grads,)
        parents = ctx.parents
        if len(input_grads) != len(parents):
            raise RuntimeError(f"{type(ctx).__name__}.backward returned {len(input_grads)} "
                               f"gradients for {len(parents)} inputs")
        for parent, parent_grad in zip(parents, input_grads):
            if parent_grad is None or not parent._requires_grad:
                continue
            data, made = parent.array, False
            if parent_grad.__class__ is not np.ndarray:
                parent_grad = np.asarray(parent_grad)
            if parent_grad.shape != data.shape:
                parent_grad, made = unbroadcast(parent_grad, data.shape, type(ctx).__name__), True
            if parent_grad.dtype != data.dtype:
                parent_grad, made = parent_grad.astype(data.dtype), True
            key = id(parent)
            if key in owned:  # fan-in into an array this walk made: add in place
                grads[key] += parent_grad
                continue
            if key in grads:  # fan-in: the sum is a new array, made here
                parent_grad, made = grads[key] + parent_grad, True
            grads[key] = parent_grad
            if made and parent_grad.__class__ is np.ndarray:  # (a 0-d sum is a numpy scalar)
                owned.add(key)
        if not retain_graph:  # free saved arrays now, so a training loop's memory stays flat
            ctx.__dict__.clear()
            ctx.parents = None
    if profiler is not None:
        profiler.end()


# ---------------------------------------------------------------------------- hooks

# id(tensor) -> (weak reference, [hook, ...]). A module-level table rather than a Tensor field,
# so tensors without hooks (all but a few) cost nothing; entries leave with their tensor.
_hooks = {}


class RemovableHandle:
    """What registering a hook returns: remove() unregisters it (as torch's handles)."""

    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def register_hook(tensor, hook):
    """Call `hook(grad)` (grad a Tensor) whenever the gradient w.r.t. `tensor` is computed; a
    non-None return value replaces that gradient. Returns a handle with `.remove()`."""
    return _add_hook(_hooks, "register_hook", tensor, hook)


def _add_hook(table, name, tensor, hook):
    if not tensor.requires_grad:
        raise RuntimeError(f"{name}: the tensor does not require grad, so it will never get a "
                           "gradient")
    key = id(tensor)
    if key not in table:
        table[key] = (weakref.ref(tensor, lambda _, key=key: table.pop(key, None)), [])
    hooks = table[key][1]
    hooks.append(hook)
    return RemovableHandle(hooks, hook)


def _live_hooks(table, tensor):
    # A copy, so a hook may remove itself; none if the entry is a dead tensor's reused id.
    reference, hooks = table.get(id(tensor), (None, ()))
    return list(hooks) if reference is not None and reference() is tensor else []


def _run_hooks(tensor, grad):
    for hook in _live_hooks(_hooks, tensor):
        result = hook(_wrap_array(grad))
        if result is not None:
            grad = hook_result(result, grad)
    return grad


def hook_result(result, grad):
    """A hook's replacement for the array `grad`, as an array: as torch, same shape and dtype."""
    new = result.array if isinstance(result, _Tensor) else result
    if not isinstance(new, np.ndarray) or new.shape != grad.shape or new.dtype != grad.dtype:
        raise RuntimeError(f"register_hook: a hook returned {type(result).__name__} of shape "
                           f"{np.shape(new)}, dtype {getattr(new, 'dtype', None)}; expected a "
                           f"Tensor of shape {grad.shape}, dtype {grad.dtype}")
    return new


# Hooks that run once a leaf's .grad holds its new sum (torch's post-accumulate-grad hooks: an
# optimizer step per parameter inside backward, say).
_post_accumulate_hooks = {}


def register_post_accumulate_grad_hook(tensor, hook):
    """Call `hook(tensor)` each time backward has accumulated into the leaf `tensor`'s `.grad`.
    Returns a handle with `.remove()`."""
    if tensor._ctx is not None:
        raise RuntimeError("register_post_accumulate_grad_hook: only a leaf tensor has a .grad "
                           "to accumulate into; this one was made by an op")
    return _add_hook(_post_accumulate_hooks, "register_post_accumulate_grad_hook", tensor, hook)


def _run_post_accumulate_hooks(tensor):
    for hook in _live_hooks(_post_accumulate_hooks, tensor):
        hook(tensor)


increment_version = _versions.increment_version

# torch's autograd.grad and autograd.backward, and Tensor.backward's inputs= and create_graph=
# (autograd_grad.py): imported last.
from .autograd_grad import backward, grad, run_backward  # noqa: E402,F401

# torch's autograd.Function (Tensors in and out), built on ArrayFunction: imported last.
from .autograd_function import Function, FunctionCtx, once_differentiable  # noqa: E402
