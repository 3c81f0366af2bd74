"""SGD, Adam, AdamW, RMSprop and Adagrad with torch's update rules, defaults, hyper-parameter
names and state_dict keys. Each `_update` is one fused kernel call over a run of parameters that
sit side by side in the arena (tinygrad_tf/kernels/optim.py has the rules as numpy twins)."""
import numpy as np

from .optimizer import Optimizer


def _check(name, **values):
    for key, value in values.items():
        if not value >= 0:
            raise ValueError(f"{name}: invalid {key} {value!r}; expected a value >= 0")


class SGD(Optimizer):
    """Stochastic gradient descent, torch's rule:
        g = grad + weight_decay * p                   (-grad with maximize)
        buf = momentum * buf + (1 - dampening) * g    (buf = g on the first step)
        g = g + momentum * buf if nesterov else buf   (when momentum != 0)
        p -= lr * g
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, *, maximize=False, foreach=None, differentiable=False,
                 fused=None):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov momentum needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize, foreach=foreach,
                                      differentiable=differentiable, fused=fused))

    def _validate(self, group):
        super()._validate(group)
        _check("SGD", momentum=group["momentum"], weight_decay=group["weight_decay"])

    def _keeps_state(self, group):
        return group["momentum"] != 0  # torch keeps no state for plain SGD

    def _init_state(self, group, state):
        pass  # no step counter in torch's SGD state

    def _run_key(self, state):
        return isinstance(state.get("momentum_buffer"), np.ndarray)

    def _update(self, group, arena, dtype, start, stop, entries):
        momentum = group["momentum"]
        first = False
        if momentum:
            first = not isinstance(entries[0][1].get("momentum_buffer"), np.ndarray)
            buf = arena.state_buffer("momentum_buffer", dtype)[start:stop]
            if first:  # the kernel writes buf = g; give each parameter its view now
                for slot, state in entries:
                    state["momentum_buffer"] = arena.state_view("momentum_buffer", slot, dtype)
        else:
            buf = self._flat(arena, "data", dtype, start, stop)  # unused by the kernel
        self._kernel("sgd_step", dtype)(
            self._flat(arena, "data", dtype, start, stop),
            self._flat(arena, "grad", dtype, start, stop), buf, group["lr"], momentum,
            group["dampening"], group["weight_decay"], group["nesterov"], group["maximize"],
            first)


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), torch's rule; weight_decay adds decay * p to the gradient
    (L2 regularisation; AdamW, or decoupled_weight_decay=True, decays the weights instead):
        m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g^2
        v_max = max(v_max, v)             (amsgrad; v_max replaces v below)
        p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, maximize=False, foreach=None, capturable=False,
                 differentiable=False, fused=None, decoupled_weight_decay=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, foreach=foreach, capturable=capturable,
                                      differentiable=differentiable, fused=fused,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _validate(self, group):
        super()._validate(group)
        beta1, beta2 = group["betas"]
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got "
                             f"{group['betas']}")
        _check(type(self).__name__, eps=group["eps"], weight_decay=group["weight_decay"])

    def _state_names(self, group):
        names = ("exp_avg", "exp_avg_sq")
        return names + ("max_exp_avg_sq",) if group["amsgrad"] else names

    def _update(self, group, arena, dtype, start, stop, entries):
        for _, state in entries:
            state["step"] += 1
        step = entries[0][1]["step"]  # one run: every parameter in it has the same step
        beta1, beta2 = group["betas"]
        flat = {name: self._flat(arena, name, dtype, start, stop)
                for name in ("data", "grad") + self._state_names(group)}
        self._kernel("adam_step", dtype)(
            flat["data"], flat["grad"], flat["exp_avg"], flat["exp_avg_sq"],
            flat.get("max_exp_avg_sq", flat["exp_avg_sq"]), group["lr"], beta1, beta2,
            group["eps"], group["weight_decay"], group["decoupled_weight_decay"],
            group["amsgrad"], group["maximize"], 1 - beta1 ** step,
            (1 - beta2 ** step) ** 0.5)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019): p *= 1 - lr * weight_decay
    before the Adam step. torch's default weight_decay=0.01."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, foreach=None, capturable=False,
                 differentiable=False, fused=None):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize, foreach=foreach,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture 6e), torch's rule:
        s = alpha * s + (1 - alpha) * g^2;  centered: a = lerp(a, g, 1 - alpha), s' = s - a^2
        momentum > 0: buf = momentum * buf + g / (sqrt(s') + eps); p -= lr * buf
        else:         p -= lr * g / (sqrt(s') + eps)
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, capturable=False, foreach=None, maximize=False,
                 differentiable=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered,
                                      capturable=capturable, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable))

    def _validate(self, group):
        super()._validate(group)
        _check("RMSprop", alpha=group["alpha"], eps=group["eps"],
               weight_decay=group["weight_decay"], momentum=group["momentum"])

    def _state_names(self, group):
        names = ("square_avg",)
        if group["momentum"] > 0:
            names += ("momentum_buffer",)
        return names + ("grad_avg",) if group["centered"] else names

    def _run_key(self, state):
        return None  # the step count does not enter the update

    def _update(self, group, arena, dtype, start, stop, entries):
        for _, state in entries:
            state["step"] += 1
        flat = {name: self._flat(arena, name, dtype, start, stop)
                for name in ("data", "grad") + self._state_names(group)}
        square_avg = flat["square_avg"]
        self._kernel("rmsprop_step", dtype)(
            flat["data"], flat["grad"], square_avg, flat.get("grad_avg", square_avg),
            flat.get("momentum_buffer", square_avg), group["lr"], group["alpha"], group["eps"],
            group["weight_decay"], group["momentum"], group["centered"], group["maximize"])


class Adagrad(Optimizer):
    """Adagrad (Duchi et al., 2011), torch's rule, for step t:
        sum += g^2;  p -= lr / (1 + (t - 1) * lr_decay) * g / (sqrt(sum) + eps)
    State exists from construction (sum = initial_accumulator_value), as in torch."""

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10, foreach=None, *, maximize=False,
                 differentiable=False, fused=None):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps, foreach=foreach, maximize=maximize,
                                      differentiable=differentiable, fused=fused))
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p] = {"step": 0, "sum": np.full_like(
                    p.array, group["initial_accumulator_value"])}

    def _validate(self, group):
        super()._validate(group)
        _check("Adagrad", lr_decay=group["lr_decay"], weight_decay=group["weight_decay"],
               initial_accumulator_value=group["initial_accumulator_value"], eps=group["eps"])

    def _state_names(self, group):
        return ("sum",)

    def _update(self, group, arena, dtype, start, stop, entries):
        for _, state in entries:
            state["step"] += 1
        step = entries[0][1]["step"]
        clr = group["lr"] / (1 + (step - 1) * group["lr_decay"])
        self._kernel("adagrad_step", dtype)(
            self._flat(arena, "data", dtype, start, stop),
            self._flat(arena, "grad", dtype, start, stop),
            self._flat(arena, "sum", dtype, start, stop), clr, group["eps"],
            group["weight_decay"], group["maximize"])


