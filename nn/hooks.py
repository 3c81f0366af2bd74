"""A module's full backward hooks: torch's `register_full_backward_pre_hook` and
`register_full_backward_hook`, called by `Module.__call__` (module.py).

As torch's BackwardHook, two identity Functions go around one call of the module: one on the
tensor inputs that require grad (before forward), one on the outputs (after the forward hooks).
Backward reaches the outputs' identity first: its pre-hooks see grad_output (one entry per
output, None where no gradient arrived) and may replace it. It then reaches the inputs'
identity: the full hooks see grad_input (one entry per positional argument: None for a
non-tensor, zeros for a tensor that needs no gradient) with that grad_output, and may replace
grad_input. If no input requires grad, the full hooks are called at the outputs with
grad_input all None, as torch does (torch also warns then).
"""
import numpy as np

from tinygrad_tf import Tensor
from tinygrad_tf.autograd import Function, is_grad_enabled


class _Identity(Function):
    """The given tensors as they are; backward passes their gradients through `on_backward`,
    which returns one gradient per tensor (the ones to flow on)."""

    @staticmethod
    def forward(ctx, on_backward, materialize, *tensors):
        ctx.on_backward = on_backward
        ctx.set_materialize_grads(materialize)  # inputs: zeros where none came (as torch)
        return tensors

    @staticmethod
    def backward(ctx, *grads):
        return (None, None) + tuple(ctx.on_backward(grads))


class _Call:
    """The hooks and the gradients of one module call."""

    def __init__(self, module, args):
        self.module, self.args = module, args
        self.pre_hooks = list(module._backward_pre_hooks or ())
        self.hooks = list(module._backward_hooks or ())
        self.inputs = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
        self.grad_output = None

    def wrap_inputs(self):
        if not self.inputs:
            return self.args
        wrapped = _Identity.apply(self.on_input_grads, True, *[self.args[i] for i in self.inputs])
        args = list(self.args)
        for i, tensor in zip(self.inputs, wrapped):
            args[i] = tensor
        return tuple(args)

    def wrap_outputs(self, output):
        outputs = output if isinstance(output, tuple) else (output,)
        self.outputs = [i for i, o in enumerate(outputs)
                        if isinstance(o, Tensor) and o.requires_grad]
        self.n_outputs = len(outputs)
        if not self.outputs:
            return output
        wrapped = _Identity.apply(self.on_output_grads, False, *[outputs[i] for i in self.outputs])
        outputs = list(outputs)
        for i, tensor in zip(self.outputs, wrapped):
            outputs[i] = tensor
        return tuple(outputs) if isinstance(output, tuple) else outputs[0]

    def on_output_grads(self, grads):
        grad_output = [None] * self.n_outputs
        for i, grad in zip(self.outputs, grads):
            grad_output[i] = grad
        for hook in self.pre_hooks:
            result = hook(self.module, tuple(grad_output))
            if result is not None:
                grad_output = _checked(result, len(grad_output), "grad_output")
        self.grad_output = tuple(grad_output)
        if not self.inputs:  # nothing reaches the inputs: the full hooks fire here, as torch
            for hook in self.hooks:
                hook(self.module, (None,) * len(self.args), self.grad_output)
        return [grad_output[i] for i in self.outputs]

    def on_input_grads(self, grads):
        grad_input = [None] * len(self.args)
        for i, a in enumerate(self.args):
            if isinstance(a, Tensor):  # zeros for an input that needs no gradient, as torch
                grad_input[i] = a._wrap(np.zeros_like(a.array))
        for i, grad in zip(self.inputs, grads):
            grad_input[i] = grad
        for hook in self.hooks:
            result = hook(self.module, tuple(grad_input), self.grad_output)
            if result is not None:
                grad_input = _checked(result, len(grad_input), "grad_input")
        return [grad_input[i] for i in self.inputs]


def _checked(result, count, what):
    result = list(result) if isinstance(result, (tuple, list)) else [result]
    if len(result) != count:
        raise RuntimeError(f"Backward hook returned an invalid number of {what}, got "
                           f"{len(result)}, but expected {count}")
    return result


def backward_hooks_call(module, args):
    """The call's hook state, or None when no backward hook can fire (grad mode off)."""
    if not (module._backward_hooks or module._backward_pre_hooks) or not is_grad_enabled():
        return None
    return _Call(module, args)
