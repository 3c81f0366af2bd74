"""Module and Parameter: the tree that models are built from, with PyTorch's names and semantics.

A Module's attributes that are Parameters or Modules register themselves, so

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = nn.Linear(2, 8)
            self.out = nn.Linear(8, 1)

        def forward(self, x):
            return self.out(self.hidden(x).relu())

knows its parameters (`hidden.weight`, `hidden.bias`, ...) without being told.
"""
import collections

import numpy as np

from tinygrad_tf import Tensor
from tinygrad_tf import dtypes as _dtypes
from tinygrad_tf.autograd import RemovableHandle, increment_version
from tinygrad_tf.device import to_args as _to_args

from .hooks import backward_hooks_call


class Parameter(Tensor):
    """A Tensor that is a model's learnable weight: it requires grad and registers on a Module."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        array = data.array if isinstance(data, Tensor) else data
        if not isinstance(array, np.ndarray):
            array = np.asarray(array, dtype=np.float32)
        self._set_array(_dtypes.as_array(array), requires_grad)  # shares, as torch's Parameter

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class IncompatibleKeys(collections.namedtuple("IncompatibleKeys", "missing_keys unexpected_keys")):
    """What `load_state_dict(strict=False)` could not match, as torch returns it."""

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"  # what torch scripts print
        return super().__repr__()


def _unwrap(value, key):
    if isinstance(value, Tensor):
        return value.array
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "__array__") and hasattr(value, "shape"):  # e.g. a torch state_dict's
        return np.asarray(value)
    raise TypeError(f"load_state_dict: value for {key!r} is a {type(value).__name__}; expected a "
                    "Tensor or a numpy array")


class _WithKwargs:
    """A forward hook registered with with_kwargs=True: it is also given the keyword arguments."""

    def __init__(self, hook):
        self.hook = hook


class Module:
    """Base class of every layer and model: subclass it, assign layers in __init__, write forward."""

    def __init__(self):
        # object.__setattr__: our own __setattr__ needs these dicts to exist already.
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------------ registration

    def _registries(self, name):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() is called; "
                                 f"call super().__init__() first in {type(self).__name__}.__init__")
        return self._parameters, self._modules, self._buffers

    def __setattr__(self, name, value):
        params, modules, buffers = self._registries(name)
        # As torch: a parameter's (module's) name takes only a Parameter (Module) or None; a
        # plain tensor would silently stop being trained and saved.
        for registry, kind in ((params, Parameter), (modules, Module)):
            if name in registry and value is not None and not isinstance(value, kind):
                raise TypeError(f"cannot assign {type(value).__name__} as {kind.__name__.lower()} "
                                f"{name!r} ({kind.__name__} or None expected, as in torch); "
                                f"for a new value keep it a {kind.__name__}, e.g. nn.Parameter(t)")
        for registry in (params, modules, buffers):
            if name in registry and not (registry is buffers and isinstance(value, Tensor)):
                del registry[name]
        if isinstance(value, Parameter):
            self.__dict__.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            self.__dict__.pop(name, None)
            modules[name] = value
        elif name in buffers:
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Called only when normal lookup fails: look in the registries, and never answer None
        # for an unknown name (a typo must fail loudly).
        for registry in ("_parameters", "_modules", "_buffers"):
            found = self.__dict__.get(registry)
            if found is not None and name in found:
                return found[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for registry in (self._parameters, self._modules, self._buffers):
            if name in registry:
                del registry[name]
                self._non_persistent.discard(name)
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        """Add a Parameter (or None, a declared-but-absent one such as a missing bias)."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None, not "
                            f"{type(param).__name__}")
        self._registries(name)
        self.__dict__.pop(name, None)
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """Add a Tensor that is state but not learned (e.g. positional encodings). Persistent
        buffers are saved in state_dict; non-persistent ones are rebuilt by the constructor."""
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor or None, not "
                            f"{type(tensor).__name__}")
        self._registries(name)
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module, not {type(module).__name__}")
        self._registries(name)
        self.__dict__.pop(name, None)
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target):
        """The module at a dotted path ('encoder.layers.0'); '' is this module."""
        module = self
        for name in target.split(".") if target else []:
            if name not in module._modules:
                raise AttributeError(f"{type(module).__name__} has no submodule {name!r} "
                                     f"(looking up {target!r})")
            module = module._modules[name]
        return module

    def get_parameter(self, target):
        """The Parameter at a dotted path ('encoder.layers.0.linear.weight')."""
        return self._get_entry(target, "_parameters", "parameter")

    def get_buffer(self, target):
        """The buffer at a dotted path ('norm.running_mean')."""
        return self._get_entry(target, "_buffers", "buffer")

    def _get_entry(self, target, table, kind):
        path, _, name = target.rpartition(".")
        module = self.get_submodule(path)
        entries = getattr(module, table)
        if name not in entries:
            raise AttributeError(f"{type(module).__name__} has no {kind} {name!r}")
        return entries[name]

    # ------------------------------------------------------------------ calling

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward method")

    # A module's hook lists exist once a hook is registered; until then a call reads these
    # class-level Nones (and False) and goes straight to forward.
    _forward_pre_hooks = _forward_hooks = _backward_pre_hooks = _backward_hooks = None
    _hooked = False

    def __call__(self, *args, **kwargs):
        if not self._hooked:
            return self.forward(*args, **kwargs)
        for hook in list(self._forward_pre_hooks or ()):
            if hook.__class__ is _WithKwargs:
                result = hook.hook(self, args, kwargs)
                if result is not None:
                    if not (isinstance(result, tuple) and len(result) == 2):
                        raise RuntimeError("forward pre-hook must return None or a tuple of "
                                           f"(new_args, new_kwargs), but got {result!r}")
                    args, kwargs = result
                continue
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        backward_hooks = backward_hooks_call(self, args)  # hooks.py: None if none can fire
        if backward_hooks is not None:  # as torch: after the pre-hooks, around the rest
            args = backward_hooks.wrap_inputs()
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks or ()):
            if hook.__class__ is _WithKwargs:
                result = hook.hook(self, args, kwargs, output)
            else:
                result = hook(self, args, output)
            if result is not None:
                output = result
        if backward_hooks is not None:
            output = backward_hooks.wrap_outputs(output)
        return output

    def register_forward_pre_hook(self, hook, *, prepend=False, with_kwargs=False):
        """Call hook(module, args) before each forward (args: the positional arguments, a
        tuple); a value it returns replaces them. with_kwargs=True: hook(module, args, kwargs),
        returning None or (new_args, new_kwargs). prepend=True: before the hooks already there.
        Returns a handle whose remove() unregisters it."""
        return self._add_hook("_forward_pre_hooks", _WithKwargs(hook) if with_kwargs else hook,
                              prepend)

    def register_forward_hook(self, hook, *, prepend=False, with_kwargs=False):
        """Call hook(module, args, output) after each forward (with_kwargs=True: hook(module,
        args, kwargs, output)); a value it returns replaces the output. prepend=True: before the
        hooks already there. Returns a handle whose remove() unregisters it."""
        return self._add_hook("_forward_hooks", _WithKwargs(hook) if with_kwargs else hook,
                              prepend)

    def register_full_backward_pre_hook(self, hook, prepend=False):
        """Call hook(module, grad_output) when the gradients of this call's outputs are known
        (a tuple, None for an output no gradient reached); a tuple it returns replaces them.
        Returns a handle whose remove() unregisters it. (nn/hooks.py)"""
        return self._add_hook("_backward_pre_hooks", hook, prepend)

    def register_full_backward_hook(self, hook, prepend=False):
        """Call hook(module, grad_input, grad_output) when the gradients of this call's
        positional inputs are known; a tuple it returns replaces grad_input. Returns a handle
        whose remove() unregisters it. (nn/hooks.py)"""
        return self._add_hook("_backward_hooks", hook, prepend)

    def _add_hook(self, kind, hook, prepend=False):
        hooks = self.__dict__.get(kind)
        if hooks is None:
            hooks = []
            object.__setattr__(self, kind, hooks)
            object.__setattr__(self, "_hooked", True)
        if prepend:
            hooks.insert(0, hook)
        else:
            hooks.append(hook)
        return RemovableHandle(hooks, hook)

    # ------------------------------------------------------------------ traversal

    def named_modules(self, prefix="", remove_duplicate=True):
        """(dotted name, module) for this module and every descendant, depth first in
        registration order; a module reachable by two names is listed once unless
        remove_duplicate=False (state_dict lists it under both, as torch does)."""
        seen, stack = set(), [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if remove_duplicate:
                if id(module) in seen:
                    continue
                seen.add(id(module))
            yield name, module
            children = [(f"{name}.{child_name}" if name else child_name, child)
                        for child_name, child in module._modules.items() if child is not None]
            stack.extend(reversed(children))  # reversed: pop() then visits them in order

    def modules(self):
        return (module for _, module in self.named_modules())

    def named_children(self):
        return ((name, m) for name, m in self._modules.items() if m is not None)

    def children(self):
        return (m for _, m in self.named_children())

    def _named_members(self, registry, prefix, recurse, remove_duplicate=True):
        seen = set()
        modules = self.named_modules(prefix, remove_duplicate) if recurse else [(prefix, self)]
        for module_name, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))  # a shared (tied) parameter is listed once
                yield (f"{module_name}.{name}" if module_name else name), value

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """(dotted name, Parameter) pairs, e.g. ("encoder.layers.0.linear.weight", p); a tied
        parameter once, unless remove_duplicate=False."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        return (b for _, b in self.named_buffers(recurse=recurse))

    def num_parameters(self, trainable_only=False):
        """How many scalars the model learns (tied parameters counted once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def apply(self, fn):
        """Call fn(module) on every submodule and then on self (as torch does); returns self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ modes and grads

    def train(self, mode=True):
        """Training mode (dropout active) for this module and all below it; returns self."""
        if not isinstance(mode, bool):
            raise TypeError(f"train: mode must be a bool, not {type(mode).__name__}")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        """Evaluation mode (dropout off) for this module and all below it; returns self."""
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        """Forget accumulated gradients: set .grad to None (default) or fill it with zeros."""
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    # ------------------------------------------------------------------ dtype

    def to(self, *args, **kwargs):
        """torch's `to(device)`, `to(dtype)`, `to(device, dtype)`: convert every floating
        parameter and buffer to `dtype` in place (the Parameter objects stay the same, so an
        optimizer built earlier still holds them); returns self. The device can only be the CPU."""
        dtype, _ = _to_args(args, kwargs, "Module.to")
        if dtype is None:
            return self
        if dtype.kind != "f":
            raise TypeError(f"Module.to: only float dtypes are supported, not {dtype}")
        for tensor in list(self.parameters()) + list(self.buffers()):
            if tensor.dtype.kind == "f" and tensor.dtype != dtype:
                tensor.array = tensor.array.astype(dtype)
                if tensor.grad is not None:
                    tensor.grad.array = tensor.grad.array.astype(dtype)
        return self

    def cpu(self):
        return self

    def cuda(self, device=None):
        raise RuntimeError("Module.cuda(): tinygrad_tf runs on the CPU only; drop the call or use "
                           ".to('cpu')")

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def half(self):
        return self.to(np.float16)

    # ------------------------------------------------------------------ state

    def state_dict(self, *, destination=None, prefix="", keep_vars=False):
        """An ordered {dotted name: Tensor} of every parameter and persistent buffer. The Tensors
        hold copies, so the dict is a snapshot that later training steps do not change (torch
        returns references instead; keep_vars=True gives the parameters themselves). A tied
        parameter appears under each of its names, as ONE Tensor, so nn.state.save stores it
        once and load gives the names one Tensor again. `prefix` starts every name;
        `destination` is the dict filled (a new OrderedDict by default)."""
        state = collections.OrderedDict() if destination is None else destination
        copies = {}  # id(parameter or buffer) -> its snapshot, shared by every name it has

        def snapshot(t):
            if keep_vars:
                return t
            if id(t) not in copies:
                copies[id(t)] = Tensor(t.array)  # Tensor() copies
            return copies[id(t)]
        for module_name, module in self.named_modules(prefix.rstrip("."), remove_duplicate=False):
            prefix = f"{module_name}." if module_name else ""
            for name, p in module._parameters.items():
                if p is not None:
                    state[prefix + name] = snapshot(p)
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent:
                    state[prefix + name] = snapshot(b)
        return state

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Copy values into this module's parameters and buffers, in place (assign=True: make
        the given tensors the parameters and buffers themselves, as torch's).

        strict=True raises on missing or unexpected keys; a shape mismatch always raises. The
        error lists every offending key. Returns (missing_keys, unexpected_keys).
        """
        own = {}
        for module_name, module in self.named_modules(remove_duplicate=False):
            prefix = f"{module_name}." if module_name else ""
            own.update({prefix + n: p for n, p in module._parameters.items() if p is not None})
            own.update({prefix + n: b for n, b in module._buffers.items()
                        if b is not None and n not in module._non_persistent})
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched = []
        for key, target in own.items():
            if key in state_dict:
                value = _unwrap(state_dict[key], key)
                if value.shape != target.shape:
                    mismatched.append(f"{key}: checkpoint {tuple(value.shape)}, model "
                                      f"{tuple(target.shape)}")
        problems = []
        if mismatched:
            problems.append("shape mismatch for " + "; ".join(mismatched))
        if strict and missing:
            problems.append("missing keys " + ", ".join(map(repr, missing)))
        if strict and unexpected:
            problems.append("unexpected keys " + ", ".join(map(repr, unexpected)))
        if problems:
            raise KeyError(f"load_state_dict into {type(self).__name__}: " + "; ".join(problems))
        for key, target in own.items():
            if key in state_dict and assign:
                path, _, name = key.rpartition(".")
                owner, value = self.get_submodule(path), state_dict[key]
                value = value if isinstance(value, Tensor) else Tensor(_unwrap(value, key))
                if isinstance(target, Parameter):
                    value = Parameter(value, requires_grad=target.requires_grad)
                    owner._parameters[name] = value
                else:
                    owner._buffers[name] = value
            elif key in state_dict:
                np.copyto(target.array, _unwrap(state_dict[key], key), casting="same_kind")
                increment_version(target)  # a backward that saved the old values must raise
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ repr

    def extra_repr(self):
        """The text inside this module's parentheses in repr (e.g. 'in_features=2, ...')."""
        return ""

    def __repr__(self):
        lines = [f"({name}): " + repr(module).replace("\n", "\n  ")
                 for name, module in self._modules.items()]
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        body = ([extra] if extra else []) + lines
        return f"{type(self).__name__}(\n  " + "\n  ".join(body) + "\n)"

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._modules)
                      | set(self._buffers))
