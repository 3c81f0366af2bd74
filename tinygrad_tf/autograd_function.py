"""torch's `autograd.Function`: a user's op with its own backward, on Tensors.

    class Exp(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x):                  # Tensors in (the caller's own objects), no graph
            out = x.exp()
            ctx.save_for_backward(out)
            return out

        @staticmethod
        def backward(ctx, grad_output):        # Tensors in, one Tensor (or None) per input out
            (out,) = ctx.saved_tensors
            return grad_output * out

    y = Exp.apply(x)

As in torch: forward runs with grad off; backward runs with grad off, or on under
create_graph=True, so a backward written with Tensor ops can be differentiated again. The
engine's own ops are `autograd.ArrayFunction`s (numpy arrays in and out, no wrapping); each
call here records one of them, a `<Name>Backward` node that is also the `ctx`.
"""
import functools
import inspect
import weakref

import numpy as np

from . import autograd as _autograd
from .autograd import ArrayFunction, _wrap_array, no_grad
from .xp import FirstOrderOnlyError, graph_guard


class FunctionCtx(ArrayFunction):
    """The recorded node of one `Function.apply` call, handed to forward and backward as `ctx`.
    Subclassed once per user Function as `<Name>Backward` (torch's grad_fn name)."""

    function = None      # the user's Function class
    _outputs = ()        # weak references to the output Tensors (saved outputs map back to them)
    _non_differentiable = ()
    _dirty = ()          # ids of inputs forward changed in place (and returns)
    _materialize_grads = True
    _pending = None      # multi-output: the gradients of the outputs, gathered by _OutputOf

    # ------------------------------------------------------------------ torch's ctx API

    def save_for_backward(self, *tensors):
        arrays = []
        for i, t in enumerate(tensors):
            if t is not None and not isinstance(t, _autograd._Tensor):
                raise TypeError(f"save_for_backward can only save tensors, but argument {i} is "
                                f"of type {type(t).__name__}")
            arrays.append(None if t is None else t.array)
        super().save_for_backward(*arrays)  # arrays: version-checked when unpacked

    @property
    def saved_tensors(self):
        """The saved Tensors: an input or output comes back as that very Tensor (under
        create_graph, on the graph, so a second derivative flows through it)."""
        if "_tensor_places" not in vars(self):  # a backward without retain_graph cleared it
            raise RuntimeError(f"{type(self).__name__}: its saved tensors were freed by the "
                               "backward that ran through it; pass retain_graph=True to that "
                               "backward to read them afterwards (as torch)")
        saved = ArrayFunction.saved_tensors.fget(self)  # raises if one was written in place
        known = {id(p.array): p for p in (self.parents or ())}
        for ref in self._outputs:
            out = ref()
            if out is not None:
                known[id(out.array)] = out
        return tuple(item if item is None or isinstance(item, _autograd._Tensor)
                     else known[id(item)] if id(item) in known else _wrap_array(item)
                     for item in saved)

    def mark_non_differentiable(self, *tensors):
        self._non_differentiable = tuple(self._non_differentiable) + tuple(map(id, tensors))

    def set_materialize_grads(self, value):
        self._materialize_grads = bool(value)

    def mark_dirty(self, *tensors):
        self._dirty = tuple(map(id, tensors))

    # ------------------------------------------------------------------ the engine's side

    @staticmethod
    def backward(ctx, grad):
        """Called by the engine with an array (first order) or a Tensor on a graph
        (create_graph): run the user's backward on Tensors, return one gradient per parent."""
        on_graph = isinstance(grad, _autograd._Tensor)
        if ctx._pending is not None:  # several outputs: their gradients were gathered
            grads, ctx._pending = ctx._pending, None
            grads = [_materialized(ctx, i, g, on_graph) for i, g in enumerate(grads)]
        else:
            grads = [grad if on_graph else _wrap_array(grad)]
        name = type(ctx).__name__
        if on_graph:
            returned = ctx.function.backward(ctx, *grads)
        else:
            with no_grad():
                returned = ctx.function.backward(ctx, *grads)
        if not isinstance(returned, tuple):
            returned = (returned,)
        places = ctx._tensor_places
        if len(returned) < len(ctx.needs_input_grad) or any(
                g is not None for g in returned[len(ctx.needs_input_grad):]):
            raise RuntimeError(f"function {name} returned an incorrect number of gradients "
                               f"(expected {len(ctx.needs_input_grad)}, got {len(returned)})")
        for i, g in enumerate(returned[:len(ctx.needs_input_grad)]):
            if g is None:
                continue
            if not isinstance(g, _autograd._Tensor):
                raise TypeError(f"function {name} returned a gradient of type "
                                f"{type(g).__name__} at position {i}; expected a Tensor or None")
            if i not in places:
                raise RuntimeError(f"function {name} returned a gradient different than None at "
                                   f"position {i}, but the corresponding forward input was not "
                                   "a Tensor")
        grads_out = tuple(returned[i] for i in places)
        return grads_out if on_graph else tuple(None if g is None else g.array for g in grads_out)


def _materialized(ctx, i, grad, on_graph):
    """Output i's gradient as backward receives it: zeros where none arrived, unless the user
    asked for None (set_materialize_grads(False))."""
    if grad is not None:
        return grad if on_graph else _wrap_array(grad)
    if not ctx._materialize_grads:
        return None
    shape, dtype = ctx._output_meta[i]
    return _wrap_array(np.zeros(shape, dtype))


class _OutputOf(ArrayFunction):
    """Output i of a Function with several outputs. Their common parent is a placeholder
    (0-d) whose node is the user's ctx: the engine reaches it only after every output, so
    each output's backward just hands its gradient over, and the ctx's backward runs once."""

    @staticmethod
    def forward(ctx, placeholder, value, node, index):
        ctx.node, ctx.index = node, index
        return value

    def __repr__(self):
        return repr(self.node)

    def _edge(self):  # a consumer sees the Function's node and which output (as torch)
        return self.node, self.index

    @staticmethod
    def backward(ctx, grad):
        pending = ctx.node._pending
        if pending is None:
            pending = ctx.node._pending = [None] * len(ctx.node._outputs)
        pending[ctx.index] = grad if pending[ctx.index] is None else pending[ctx.index] + grad
        zero = np.zeros((), np.float32)  # the placeholder's own gradient is never read
        return _wrap_array(zero) if isinstance(grad, _autograd._Tensor) else zero


class _OnceDifferentiable(ArrayFunction):
    """Marks a gradient computed by a @once_differentiable backward under create_graph:
    differentiating it again raises, as in torch (rather than silently giving zero)."""

    @staticmethod
    def forward(ctx, grad):
        return grad.view()

    @staticmethod
    def backward(ctx, grad):
        raise FirstOrderOnlyError("trying to differentiate twice a function that was marked "
                                  "with @once_differentiable")


def once_differentiable(backward):
    """Decorate a Function's backward that is not itself differentiable (it may use numpy):
    it runs with grad off even under create_graph, and differentiating its result raises."""
    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        recording = _autograd.is_grad_enabled()
        depth, graph_guard.depth = graph_guard.depth, 0  # numpy is allowed in here
        try:
            with no_grad():
                returned = backward(ctx, *grads)
        finally:
            graph_guard.depth = depth
        if not recording or not any(isinstance(g, _autograd._Tensor) and g.requires_grad
                                    for g in grads):
            return returned
        single = not isinstance(returned, tuple)
        marked = tuple(g if g is None else _mark_once(g)
                       for g in ((returned,) if single else returned))
        return marked[0] if single else marked
    return wrapper


def _mark_once(grad):
    if not isinstance(grad, _autograd._Tensor) or grad.dtype.kind != "f":
        return grad
    with _autograd.enable_grad():
        return _OnceDifferentiable.apply(grad.detach().requires_grad_())


class _FunctionMeta(type):
    def __init__(cls, name, bases, namespace):
        super().__init__(name, bases, namespace)
        if not bases:  # the base class itself
            return
        if "vjp" in namespace:  # torch's other name for backward
            if "backward" in namespace:
                raise TypeError(f"{name}: implementing both 'backward' and 'vjp' for a custom "
                                "Function is not allowed; implement one of them (as torch)")
            cls.backward = namespace["vjp"]
        # torch names a Function's node `<Name>Backward`; it is the ctx the user's code sees
        cls._node_class = type(f"{name}Backward", (FunctionCtx,),
                               {"function": cls, "__module__": cls.__module__,
                                "__qualname__": f"{cls.__qualname__}Backward"})


class Function(metaclass=_FunctionMeta):
    """Base class of a user's differentiable op, as torch.autograd.Function: static
    `forward(ctx, *args)` and `backward(ctx, *grad_outputs)` on Tensors, called through
    `apply(*args)`; or forward(*args) plus setup_context(ctx, inputs, output)."""

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("You must implement the forward function for custom "
                                  "autograd.Function.")

    @staticmethod
    def setup_context(ctx, inputs, output):
        raise NotImplementedError("setup_context is not implemented.")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("You must implement either the backward or vjp method for "
                                  "your custom autograd.Function to use it with backward mode AD.")

    @staticmethod
    def jvp(ctx, *grad_inputs):
        raise NotImplementedError("You must implement the jvp function for custom "
                                  "autograd.Function to use it with forward mode AD (tinygrad_tf "
                                  "has none: a jvp you write is kept and never called)")

    def __init__(self, *args, **kwargs):
        raise RuntimeError(f"{type(self).__name__}: call {type(self).__name__}.apply(...), "
                           "not an instance (legacy autograd functions are not supported, as "
                           "in torch)")

    @classmethod
    def apply(cls, *args, **kwargs):
        Tensor = _autograd._Tensor
        with_setup = cls.setup_context is not Function.setup_context
        if kwargs:  # as torch: keyword arguments are bound to forward's positions
            signature = inspect.signature(cls.forward)
            bound = (signature.bind(*args, **kwargs) if with_setup
                     else signature.bind(None, *args, **kwargs))
            bound.apply_defaults()
            args = bound.args if with_setup else bound.args[1:]
        ctx = _autograd._new_object(cls._node_class)
        places = tuple(i for i, a in enumerate(args) if isinstance(a, Tensor))
        recording = _autograd.is_grad_enabled()
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad and recording
                                     for a in args)
        ctx._tensor_places = places
        with no_grad():
            if with_setup:
                output = cls.forward(*args)
                cls.setup_context(ctx, args, output)
            else:
                output = cls.forward(ctx, *args)
        single = not isinstance(output, tuple)
        outputs = (output,) if single else output
        inputs = {id(args[i]) for i in places} - set(ctx._dirty)
        # An input returned as is comes back as a new Tensor on its memory (torch: a view);
        # one marked dirty is itself the output, its history moved onto a stand-in parent.
        outputs = tuple(Tensor._wrap(o.array) if isinstance(o, Tensor) and id(o) in inputs
                        else o for o in outputs)
        if ctx._dirty:
            args = _rebase_dirty(cls, ctx, args, outputs)
        differentiable = [i for i, o in enumerate(outputs)
                          if isinstance(o, Tensor) and o.dtype.kind == "f"
                          and id(o) not in ctx._non_differentiable]
        if not any(ctx.needs_input_grad) or not differentiable:
            return outputs[0] if single else outputs
        ctx.parents = tuple(args[i] for i in places)
        ctx._outputs = tuple(weakref.ref(o) if isinstance(o, Tensor) else (lambda: None)
                             for o in outputs)
        if single:
            _attach(outputs[0], ctx)
            return outputs[0]
        ctx._output_meta = tuple((np.shape(o), getattr(o, "dtype", np.float32))
                                 for o in outputs)
        placeholder = _wrap_array(np.zeros((), np.float32))
        _attach(placeholder, ctx)
        for i in differentiable:
            node = _autograd._new_object(_OutputOf)
            node.node, node.index, node.needs_input_grad = ctx, i, (True,)
            node.parents = (placeholder,)
            _attach(outputs[i], node)
        return outputs


def _rebase_dirty(cls, ctx, args, outputs):
    """The inputs with each dirty one replaced by a stand-in holding its history (its old
    node), so the dirty tensor can become this op's output, as torch's mark_dirty."""
    args = list(args)
    for i, a in enumerate(args):
        if id(a) not in ctx._dirty:
            continue
        if a.requires_grad and a._ctx is None and _autograd.is_grad_enabled():
            raise RuntimeError(f"{cls.__name__}: a leaf Variable that requires grad is being "
                               "used in an in-place operation (ctx.mark_dirty)")
        if not any(o is a for o in outputs):
            raise RuntimeError(f"{cls.__name__}: a tensor given to ctx.mark_dirty must be "
                               "returned as an output")
        stand_in = _wrap_array(a.array)
        stand_in._requires_grad, stand_in._ctx = a.requires_grad, a._ctx
        args[i] = stand_in
    return tuple(args)


def _attach(tensor, ctx):
    tensor._requires_grad = True
    tensor._ctx = ctx
