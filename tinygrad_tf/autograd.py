"""The autograd machinery: grad mode, the `Function` base class, and the backward graph walk.

Every op records a `Function` instance (the "ctx") on the tensor it produces. The ctx holds the
op's input tensors (`parents`) and whatever arrays its backward needs. `backward()` orders the
recorded graph topologically, then calls each op's `backward` from the output towards the leaves.
"""
import contextlib

import numpy as np


# ---------------------------------------------------------------------------- grad mode

class _GradMode:
    # One process-wide switch, like torch's default: ops record a graph only while it is on.
    enabled = True


class _GradModeContext(contextlib.ContextDecorator):
    """Base of `no_grad` and `enable_grad`: a context manager that is also a decorator."""
    mode = True

    def __enter__(self):
        self._previous = _GradMode.enabled
        _GradMode.enabled = self.mode

    def __exit__(self, *exc):
        _GradMode.enabled = self._previous
        return False

    def _recreate_cm(self):
        # ContextDecorator reuses the instance per call; a fresh one keeps nesting and recursion right.
        return type(self)()


class no_grad(_GradModeContext):
    """Within this block (or decorated function) ops record no graph: for inference and updates."""
    mode = False


class enable_grad(_GradModeContext):
    """Turn recording back on inside a `no_grad` block."""
    mode = True


def is_grad_enabled():
    return _GradMode.enabled


# ---------------------------------------------------------------------------- Function

class Function:
    """A differentiable op. Subclass it and write two static methods side by side:

        class Cube(Function):
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
    `backward` returns one array (or None) per tensor input; a gradient with the broadcast shape
    of the output is summed back to its input's shape by the engine.
    """

    # Filled in by tensor.py: Function.apply builds Tensors, and tensor.py imports this module.
    _tensor_class = None

    saved_tensors = ()

    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays

    @staticmethod
    def forward(ctx, *arrays, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **kwargs):
        ctx = cls()
        out = cls.forward(ctx, *[t.data for t in inputs], **kwargs)
        if not isinstance(out, np.ndarray):  # numpy reductions return scalars, not 0-d arrays
            out = np.asarray(out)
        tensor = Function._tensor_class._wrap(out)
        if _GradMode.enabled:
            for t in inputs:
                if t.requires_grad:
                    ctx.parents = inputs
                    ctx.needs_input_grad = tuple(p.requires_grad for p in inputs)
                    tensor.requires_grad = True
                    tensor._ctx = ctx
                    break
        return tensor

    def __repr__(self):
        return f"<{type(self).__name__}>"


# ---------------------------------------------------------------------------- backward

def unbroadcast(grad, shape, op="op"):
    """Sum `grad` down to `shape`, undoing numpy broadcasting (the one place this happens)."""
    extra = grad.ndim - len(shape)
    if extra < 0:
        raise RuntimeError(f"{op}.backward returned a gradient of shape {grad.shape}, "
                           f"fewer dims than its input's {shape}")
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    if grad.shape != tuple(shape):
        raise RuntimeError(f"{op}.backward returned a gradient of shape {grad.shape} for an "
                           f"input of shape {tuple(shape)}; they must match (or broadcast to it)")
    return grad


def _topological_order(root):
    """Tensors that lead to `root` and require grad, inputs before outputs. Iterative DFS so a
    chain of any length works; keyed by id because Tensor `==` is elementwise."""
    order, visited = [], set()
    stack = [(root, False)]
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
        if ctx is not None:
            if ctx.parents is None:
                raise RuntimeError(
                    f"backward through {type(ctx).__name__} a second time: its saved arrays were "
                    "freed by the first backward; pass retain_graph=True to the first call")
            for parent in ctx.parents:
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order


def backward(root, grad, retain_graph=False):
    """Accumulate d(root)/d(leaf) * grad into `.grad` of every leaf that requires grad."""
    order = _topological_order(root)
    grads = {id(root): grad}
    for tensor in reversed(order):
        grad = grads.pop(id(tensor), None)
        if grad is None:
            continue
        ctx = tensor._ctx
        if ctx is None:  # a leaf: accumulate across backward calls until zero_grad
            if tensor.grad is None:
                # Own the memory: `grad` may be shared with another input (Add returns g twice).
                tensor.grad = Function._tensor_class._wrap(np.array(grad, dtype=tensor.dtype))
            else:
                tensor.grad.data += grad
            continue
        if tensor._retains_grad:
            tensor.grad = Function._tensor_class._wrap(np.array(grad, dtype=tensor.dtype))
        input_grads = type(ctx).backward(ctx, grad)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        op = type(ctx).__name__
        if len(input_grads) != len(ctx.parents):
            raise RuntimeError(f"{op}.backward returned {len(input_grads)} gradients for "
                               f"{len(ctx.parents)} inputs")
        for parent, parent_grad in zip(ctx.parents, input_grads):
            if parent_grad is None or not parent.requires_grad:
                continue
            parent_grad = np.asarray(parent_grad)
            if parent_grad.shape != parent.data.shape:
                parent_grad = unbroadcast(parent_grad, parent.data.shape, op)
            if parent_grad.dtype != parent.data.dtype:
                parent_grad = parent_grad.astype(parent.data.dtype)
            key = id(parent)
            grads[key] = grads[key] + parent_grad if key in grads else parent_grad
        if not retain_graph:  # free saved arrays now, so a training loop's memory stays flat
            ctx.__dict__.clear()
            ctx.parents = None
