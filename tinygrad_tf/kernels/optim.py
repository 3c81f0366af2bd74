"""Optimizer updates over a flat slice of the parameter arena, one pass each.

Every function takes 1-D C-contiguous arrays of one dtype (a run of parameters that sit side by
side in the arena, see tinygrad_tf/optim/arena.py) and updates them in place, so one call updates
every parameter of a group. The numpy twins spell out torch's update rules (the order of
operations follows torch's single-tensor code, so float64 results agree to rounding); the Numba
kernels do the same arithmetic per element in one parallel loop, reading each array once.

Scalars reach the kernels in the arrays' dtype (float32 arithmetic for float32 parameters, as
torch does), computed once per call by the optimizer (bias corrections, step sizes).
"""
import numpy as np
from numba import prange

from ._jit import LazyKernel


# ---------------------------------------------------------------------------- numpy twins

def sgd_step_numpy(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov,
                   maximize, first):
    """g = +-grad + wd * p; buf = g (first step) or momentum * buf + (1 - dampening) * g;
    g = g + momentum * buf (nesterov) or buf; p -= lr * g. `buf` is unused without momentum."""
    g = -grad if maximize else grad
    if weight_decay:
        g = g + weight_decay * param
    if momentum:
        if first:
            buf[...] = g
        else:
            buf *= momentum
            buf += (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    param -= lr * g


def adam_step_numpy(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps,
                    weight_decay, decoupled, amsgrad, maximize, bias_correction1,
                    bias_correction2_sqrt):
    """Adam / AdamW for one step t (bias_correction1 = 1 - beta1^t, bias_correction2_sqrt =
    sqrt(1 - beta2^t)): m = lerp(m, g, 1 - beta1); v = beta2 v + (1 - beta2) g^2;
    p -= lr / bc1 * m / (sqrt(vmax or v) / sqrt(bc2) + eps). Decoupled decay scales p first;
    L2 decay adds wd * p to g."""
    g = -grad if maximize else grad
    if weight_decay and decoupled:
        param *= 1 - lr * weight_decay
    elif weight_decay:
        g = g + weight_decay * param
    exp_avg += (1 - beta1) * (g - exp_avg)
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * g * g
    if amsgrad:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second = max_exp_avg_sq
    else:
        second = exp_avg_sq
    denom = np.sqrt(second) / bias_correction2_sqrt + eps
    param -= (lr / bias_correction1) * (exp_avg / denom)


def rmsprop_step_numpy(param, grad, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay,
                       momentum, centered, maximize):
    """s = alpha s + (1 - alpha) g^2; centered: a = lerp(a, g, 1 - alpha), s' = s - a^2;
    d = sqrt(s') + eps; momentum: buf = momentum buf + g / d, p -= lr buf; else p -= lr g / d."""
    g = -grad if maximize else grad
    if weight_decay:
        g = g + weight_decay * param
    square_avg *= alpha
    square_avg += (1 - alpha) * g * g
    if centered:
        grad_avg += (1 - alpha) * (g - grad_avg)
        denom = np.sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        denom = np.sqrt(square_avg) + eps
    if momentum > 0:
        buf *= momentum
        buf += g / denom
        param -= lr * buf
    else:
        param -= lr * (g / denom)


def adagrad_step_numpy(param, grad, state_sum, clr, eps, weight_decay, maximize):
    """sum += g^2; p -= clr * g / (sqrt(sum) + eps), clr = lr / (1 + (t - 1) lr_decay)."""
    g = -grad if maximize else grad
    if weight_decay:
        g = g + weight_decay * param
    state_sum += g * g
    param -= clr * (g / (np.sqrt(state_sum) + eps))


def sum_of_squares_numpy(x):
    """sum(x * x) of a 1-D array, accumulated in float64."""
    return float(np.dot(x.astype(np.float64, copy=False), x.astype(np.float64, copy=False)))


# ---------------------------------------------------------------------------- Numba kernels
#
# One prange loop per update, every array read and written once. The flags are loop-invariant,
# so LLVM unswitches them out of the loop; no fastmath, so the arithmetic is the twins' own.
# Derived scalars (1 - beta1, lr / bias_correction1, ...) come in precomputed in the arrays'
# dtype: an integer literal such as `1 - beta1` inside a kernel would promote float32 to float64.

def _sgd(param, grad, buf, lr, momentum, keep, weight_decay, nesterov, maximize, first):
    for i in prange(param.size):
        g = -grad[i] if maximize else grad[i]
        if weight_decay != 0:
            g = g + weight_decay * param[i]
        if momentum != 0:
            b = g if first else buf[i] * momentum + keep * g
            buf[i] = b
            g = g + momentum * b if nesterov else b
        param[i] = param[i] - lr * g


def _adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step_size, one_minus_beta1, beta2,
          one_minus_beta2, eps, weight_decay, shrink, bias_correction2_sqrt, decoupled, amsgrad,
          maximize):
    for i in prange(param.size):
        g = -grad[i] if maximize else grad[i]
        p = param[i]
        if weight_decay != 0:
            if decoupled:
                p = p * shrink
            else:
                g = g + weight_decay * p
        m = exp_avg[i] + one_minus_beta1 * (g - exp_avg[i])
        v = exp_avg_sq[i] * beta2 + one_minus_beta2 * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        if amsgrad:
            v = max(max_exp_avg_sq[i], v)
            max_exp_avg_sq[i] = v
        param[i] = p - step_size * (m / (np.sqrt(v) / bias_correction2_sqrt + eps))


def _rmsprop(param, grad, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
             weight_decay, momentum, centered, maximize):
    for i in prange(param.size):
        g = -grad[i] if maximize else grad[i]
        if weight_decay != 0:
            g = g + weight_decay * param[i]
        s = square_avg[i] * alpha + one_minus_alpha * g * g
        square_avg[i] = s
        if centered:
            a = grad_avg[i] + one_minus_alpha * (g - grad_avg[i])
            grad_avg[i] = a
            s = s - a * a
        denom = np.sqrt(s) + eps
        if momentum > 0:
            b = buf[i] * momentum + g / denom
            buf[i] = b
            param[i] = param[i] - lr * b
        else:
            param[i] = param[i] - lr * (g / denom)


def _adagrad(param, grad, state_sum, clr, eps, weight_decay, maximize):
    for i in prange(param.size):
        g = -grad[i] if maximize else grad[i]
        if weight_decay != 0:
            g = g + weight_decay * param[i]
        s = state_sum[i] + g * g
        state_sum[i] = s
        param[i] = param[i] - clr * (g / (np.sqrt(s) + eps))


def _sum_of_squares(x):
    total = 0.0
    for i in prange(x.size):
        v = np.float64(x[i])
        total += v * v
    return total


def _signatures(layout, result="void"):
    # layout: one letter per argument: a = 1-D array, s = scalar (the arrays' dtype), b = bool.
    out = {}
    for name, code in (("float32", "f4"), ("float64", "f8")):
        kinds = {"a": f"{code}[::1]", "s": code, "b": "boolean"}
        out[name] = f"{result}({', '.join(kinds[k] for k in layout)})"
    return out


sgd_kernel = LazyKernel(_sgd, _signatures("aaa" "ssss" "bbb"), parallel=True)
adam_kernel = LazyKernel(_adam, _signatures("aaaaa" "ssssssss" "bbb"), parallel=True)
rmsprop_kernel = LazyKernel(_rmsprop, _signatures("aaaaa" "ssssss" "bb"), parallel=True)
adagrad_kernel = LazyKernel(_adagrad, _signatures("aaa" "sss" "b"), parallel=True)
# reassoc: the sum may be split into vector lanes (as np.dot does); without it the loop is scalar.
sum_of_squares_kernel = LazyKernel(_sum_of_squares, _signatures("a", result="f8"),
                                   parallel=True, fastmath={"reassoc"})


def _cast(dtype, *scalars):
    return [dtype.type(s) for s in scalars]


def sgd_step_numba(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, maximize,
                   first):
    sgd_kernel(param, grad, buf, *_cast(param.dtype, lr, momentum, 1 - dampening, weight_decay),
               bool(nesterov), bool(maximize), bool(first), work=param.size)


def adam_step_numba(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps,
                    weight_decay, decoupled, amsgrad, maximize, bias_correction1,
                    bias_correction2_sqrt):
    scalars = _cast(param.dtype, lr / bias_correction1, 1 - beta1, beta2, 1 - beta2, eps,
                    weight_decay, 1 - lr * weight_decay, bias_correction2_sqrt)
    adam_kernel(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *scalars, bool(decoupled),
                bool(amsgrad), bool(maximize), work=param.size)


def rmsprop_step_numba(param, grad, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay,
                       momentum, centered, maximize):
    scalars = _cast(param.dtype, lr, alpha, 1 - alpha, eps, weight_decay, momentum)
    rmsprop_kernel(param, grad, square_avg, grad_avg, buf, *scalars, bool(centered),
                   bool(maximize), work=param.size)


def adagrad_step_numba(param, grad, state_sum, clr, eps, weight_decay, maximize):
    adagrad_kernel(param, grad, state_sum, *_cast(param.dtype, clr, eps, weight_decay),
                   bool(maximize), work=param.size)


def sum_of_squares_numba(x):
    """sum(x * x) of a 1-D contiguous array, accumulated in float64, in parallel."""
    return float(sum_of_squares_kernel(x, work=x.size))
