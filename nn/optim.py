"""nn.optim: SGD, Adam and AdamW with torch's update rules, hyper-parameters and state_dict format.

Updates happen in place on each parameter's array with numpy `out=` arguments and two scratch
buffers shared by all parameters, so a training step allocates nothing here: the optimizer's
time is a handful of passes over memory per parameter.
"""
import math

import numpy as np

from tinygrad_tf import Tensor


class Optimizer:
    """Base class: parameter groups, zero_grad, state_dict/load_state_dict.

    params: an iterable of Parameters, or of dicts {"params": [...], "lr": ..., ...} (parameter
    groups, each with its own hyper-parameters; missing ones come from the constructor's).
    """

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}  # id(param) -> {"step": int, buffers...}
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)
        self._scratch = {}

    def add_param_group(self, group):
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{type(self).__name__}: a parameter group is a dict with a 'params' "
                            "list")
        group = dict(group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in group["params"]:
            if not isinstance(p, Tensor) or not p.is_leaf:
                raise TypeError(f"{type(self).__name__}: can only optimize leaf Tensors (such as "
                                f"Parameters), got {type(p).__name__}"
                                f"{' computed by an op' if isinstance(p, Tensor) else ''}")
            if id(p) in seen:
                raise ValueError(f"{type(self).__name__}: a parameter appears in more than one "
                                 "group (or twice in one)")
            seen.add(id(p))
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._validate(group)
        self.param_groups.append(group)

    def _validate(self, group):
        if not group["lr"] >= 0:
            raise ValueError(f"{type(self).__name__}: invalid learning rate {group['lr']}")

    def zero_grad(self, set_to_none=True):
        """Forget the gradients of every optimized parameter (None, or zeros in place)."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.data.fill(0)

    def _scratch_like(self, array, slot):
        # One flat buffer per (slot, dtype), grown to the largest parameter: views of it serve
        # every parameter, so steps allocate nothing after the first.
        key = (slot, array.dtype)
        buffer = self._scratch.get(key)
        if buffer is None or buffer.size < array.size:
            buffer = self._scratch[key] = np.empty(array.size, dtype=array.dtype)
        return buffer[:array.size].reshape(array.shape)

    def _params_with_grad(self, group):
        for p in group["params"]:
            if p.grad is not None:
                grad = p.grad.data
                if grad.shape != p.data.shape:
                    raise ValueError(f"{type(self).__name__}.step: a gradient of shape "
                                     f"{grad.shape} for a parameter of shape {p.data.shape}")
                yield p, p.data, grad

    def step(self):
        raise NotImplementedError(f"{type(self).__name__} has no step method")

    # ------------------------------------------------------------------ state

    def state_dict(self):
        """{"state": {index: {"step": n, name: Tensor}}, "param_groups": [{..., "params":
        [index, ...]}]}, parameters numbered across groups in order, as torch. Buffers are copies."""
        index, groups = 0, []
        state = {}
        for group in self.param_groups:
            numbered = []
            for p in group["params"]:
                if id(p) in self.state:
                    state[index] = {k: (Tensor(v.copy()) if isinstance(v, np.ndarray) else v)
                                    for k, v in self.state[id(p)].items()}
                numbered.append(index)
                index += 1
            groups.append({**{k: v for k, v in group.items() if k != "params"},
                           "params": numbered})
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyper-parameters and buffers saved by state_dict (also after a round trip
        through nn.state.save/load), so the next step is exactly the one that would have come."""
        groups = state_dict["param_groups"]
        name = type(self).__name__
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: the checkpoint has {len(groups)} parameter "
                             f"groups, this optimizer {len(self.param_groups)}")
        saved_state = {int(k): v for k, v in state_dict["state"].items()}
        new_state = {}
        for i, (saved, group) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{name}.load_state_dict: group {i} has {len(saved['params'])} "
                                 f"parameters in the checkpoint, {len(group['params'])} here")
            for index, p in zip(saved["params"], group["params"]):
                entry = saved_state.get(int(index))
                if entry is None:
                    continue
                restored = {}
                for key, value in entry.items():
                    if isinstance(value, (Tensor, np.ndarray)):
                        array = value.data if isinstance(value, Tensor) else value
                        if array.shape != p.data.shape:
                            raise ValueError(f"{name}.load_state_dict: state {key!r} of "
                                             f"parameter {index} has shape {array.shape}, the "
                                             f"parameter {p.data.shape}")
                        restored[key] = array.astype(p.data.dtype, copy=True)
                    else:
                        restored[key] = int(value) if key == "step" else value
                new_state[id(p)] = restored
        for saved, group in zip(groups, self.param_groups):
            for key, value in saved.items():
                if key != "params":
                    group[key] = tuple(value) if isinstance(value, list) else value
        self.state = new_state

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params")
        return "\n".join(lines + [")"])


class SGD(Optimizer):
    """Stochastic gradient descent, torch's rule:
        g = grad + weight_decay * p
        buf = momentum * buf + (1 - dampening) * g    (buf = g on the first step)
        g = g + momentum * buf if nesterov else buf   (when momentum != 0)
        p -= lr * g
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov momentum needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _validate(self, group):
        super()._validate(group)
        for key in ("momentum", "weight_decay"):
            if not group[key] >= 0:
                raise ValueError(f"SGD: invalid {key} {group[key]}")

    def step(self):
        for group in self.param_groups:
            lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
            decay, nesterov = group["weight_decay"], group["nesterov"]
            for p, param, grad in self._params_with_grad(group):
                g = self._scratch_like(param, 0)
                if decay:
                    np.multiply(param, decay, out=g)
                    g += grad
                else:
                    np.copyto(g, grad)
                if momentum:
                    state = self.state.setdefault(id(p), {})
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = g.copy()
                    else:
                        buf *= momentum
                        if dampening:
                            g *= 1 - dampening  # nesterov forbids dampening: g is free now
                        buf += g
                    if nesterov:
                        ahead = self._scratch_like(param, 1)
                        np.multiply(buf, momentum, out=ahead)
                        g += ahead
                    else:
                        np.copyto(g, buf)
                g *= lr
                param -= g


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), torch's rule; weight_decay adds decay * p to the gradient
    (L2 regularisation; for decoupled decay use AdamW):
        m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g^2
        p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay))

    def _validate(self, group):
        super()._validate(group)
        beta1, beta2 = group["betas"]
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got "
                             f"{group['betas']}")
        if not group["eps"] >= 0 or not group["weight_decay"] >= 0:
            raise ValueError(f"{type(self).__name__}: eps and weight_decay must be >= 0")

    def step(self):
        for group in self.param_groups:
            lr, eps, decay = group["lr"], group["eps"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            for p, param, grad in self._params_with_grad(group):
                state = self.state.get(id(p))
                if state is None:
                    state = self.state[id(p)] = {"step": 0, "exp_avg": np.zeros_like(param),
                                                 "exp_avg_sq": np.zeros_like(param)}
                state["step"] += 1
                step, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                if decay and self.decoupled:
                    param *= 1 - lr * decay
                elif decay:
                    g = self._scratch_like(param, 1)
                    np.multiply(param, decay, out=g)
                    g += grad
                    grad = g
                s = self._scratch_like(param, 0)
                # m += (1 - beta1) * (g - m): torch's lerp form, so rounding matches.
                np.subtract(grad, m, out=s)
                s *= 1 - beta1
                m += s
                v *= beta2
                np.multiply(grad, grad, out=s)
                s *= 1 - beta2
                v += s
                bias_correction1 = 1 - beta1 ** step
                bias_correction2 = 1 - beta2 ** step
                np.sqrt(v, out=s)
                s /= math.sqrt(bias_correction2)
                s += eps
                np.divide(m, s, out=s)
                s *= lr / bias_correction1
                param -= s


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019): p *= 1 - lr * weight_decay
    before the Adam step. torch's default weight_decay=0.01."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

