"""One small case per Function of the engine and of nn: how to call it, on which inputs.

Each case builds float64 inputs (the differentiable ones require grad) and the integer/bool
tensors the op reads (indices, masks), and a function of all of them giving one output. The
tests that walk every op use it (tests/test_saved.py: mutation after the forward;
tests/test_higher_order.py: gradgradcheck), and check that every Function has a case here, so a
new op cannot be left out silently.
"""
import numpy as np

import tinygrad_tf as tg
from tinygrad_tf import Tensor
from tinygrad_tf.autograd import ArrayFunction
from tinygrad_tf import nn
from tinygrad_tf.nn import attention, fused, rnn
from tinygrad_tf.nn import functional as F


def all_functions():
    """Every ArrayFunction subclass defined in tinygrad_tf or nn. (autograd_function.py's nodes
    run a user's backward: the custom-Function cases below and test_custom_function.py.)"""
    found, stack = set(), list(ArrayFunction.__subclasses__())
    while stack:
        cls = stack.pop()
        if (cls.__module__.startswith("tinygrad_tf.") and cls not in found
                and cls.__module__ != "tinygrad_tf.autograd_function"):
            found.add(cls)
        stack.extend(cls.__subclasses__())
    return found


def _float(rng, *shape, low=-1.5, high=1.5, grad=True):
    return Tensor(rng.uniform(low, high, shape)).requires_grad_(grad)


def _seeded(fn):
    # dropout masks come from the seeded generator: the same mask on every call
    def run(*args):
        tg.manual_seed(0)
        return fn(*args)
    return run


def _cases():
    c = {}
    u = lambda rng: [_float(rng, 2, 3)]  # noqa: E731
    b = lambda rng: [_float(rng, 2, 3), _float(rng, 3)]  # noqa: E731
    pos = lambda rng: [_float(rng, 2, 3, low=0.5, high=2.0)]  # noqa: E731
    c["Add"] = (lambda x, y: x + y, b)
    c["Sub"] = (lambda x, y: x - y, b)
    c["Mul"] = (lambda x, y: x * y, b)
    c["Div"] = (lambda x, y: x / y, lambda rng: [_float(rng, 2, 3),
                                                  _float(rng, 3, low=0.5, high=2.0)])
    c["Maximum"] = (lambda x, y: x.maximum(y),
                    lambda rng: [Tensor([[0.1, -1.2, 0.7], [1.3, 0.2, -0.4]]).requires_grad_(),
                                 Tensor([0.5, -0.5, 0.0]).requires_grad_()])
    c["Minimum"] = (lambda x, y: x.minimum(y), c["Maximum"][1])
    c["Neg"] = (lambda x: -x, u)
    c["Pow"] = (lambda x: x ** 3, u)
    c["Exp"] = (lambda x: x.exp(), u)
    c["Log"] = (lambda x: x.log(), pos)
    c["Sqrt"] = (lambda x: x.sqrt(), pos)
    c["Reciprocal"] = (lambda x: x.reciprocal() + 2.5 / x, pos)
    c["Tanh"] = (lambda x: x.tanh(), u)
    c["Sigmoid"] = (lambda x: x.sigmoid(), u)
    c["Relu"] = (lambda x: x.relu(), lambda rng: [Tensor([[0.3, -0.7, 1.1], [-0.2, 0.9, -1.4]])
                                                  .requires_grad_()])
    c["Abs"] = (lambda x: x.abs(), lambda rng: [Tensor([[0.3, -0.7, 1.1], [-0.2, 0.9, -1.4]])
                                                .requires_grad_()])
    c["Clip"] = (lambda x: x.clip(-0.5, 0.5), lambda rng: [Tensor([[0.3, -0.7, 1.1],
                                                                   [-0.2, 0.1, -1.4]])
                                                           .requires_grad_()])
    c["PowTensor"] = (lambda x, y: x ** y, lambda rng: [_float(rng, 2, 3, low=0.5, high=2.0),
                                                        _float(rng, 3)])
    c["Erf"] = (lambda x: x.erf(), u)
    c["AddAt"] = (lambda x, i: tg.function.AddAt.apply(x, index=i.array, shape=(5, 3),
                                                       advanced=True),
                  lambda rng: [_float(rng, 4, 3), Tensor([0, 2, 2, 4])])
    c["Log1p"] = (lambda x: x.log1p(), pos)
    c["Expm1"] = (lambda x: x.expm1(), u)
    c["Sin"] = (lambda x: x.sin(), u)
    c["Cos"] = (lambda x: x.cos(), u)
    c["Step"] = (lambda x: x.floor() + x, u)
    c["RoundedQuotient"] = (lambda x, y: x // y + x * y, lambda rng: [
        _float(rng, 2, 3), _float(rng, 3, low=0.5, high=2.0)])
    c["Cast"] = (lambda x: x.float().double() * x, u)
    c["Sum"] = (lambda x: x.sum(1) * 1.0, u)
    c["AMax"] = (lambda x: x.amax((0, 1)) + x.amin(1, keepdim=True),
                 lambda rng: [Tensor([[0.3, -0.7, 1.1], [-0.2, 0.9, -1.4]]).requires_grad_()])
    c["Max"] = (lambda x: x.max(1)[0], lambda rng: [Tensor([[0.3, -0.7, 1.1], [-0.2, 0.9, -1.4]])
                                                  .requires_grad_()])
    c["Reshape"] = (lambda x: x.reshape(3, 2), u)
    c["Permute"] = (lambda x: x.permute(1, 0), u)
    c["Expand"] = (lambda x: x.reshape(2, 1, 3).expand(2, 4, 3), u)
    c["Contiguous"] = (lambda x: x.clone(), u)
    c["GetItem"] = (lambda x, i: x[i], lambda rng: [_float(rng, 4, 3), Tensor([0, 2, 2, 3])])
    c["CumSum"] = (lambda x: x.cumsum(1), u)
    c["Prod"] = (lambda x: x.prod(1), u)
    c["Gather"] = (lambda x, i: x.gather(1, i), lambda rng: [_float(rng, 2, 3),
                                                            Tensor([[0, 2, 2], [1, 1, 0]])])
    c["Scatter"] = (lambda x, s, i: x.scatter(1, i, s),
                    lambda rng: [_float(rng, 2, 3), _float(rng, 2, 2), Tensor([[0, 2], [1, 0]])])
    c["MaskedFill"] = (lambda x, v, m: x.masked_fill(m, v),
                       lambda rng: [_float(rng, 2, 3), Tensor(0.7).requires_grad_(),
                                    Tensor([[True, False, True], [False, False, True]])])
    c["Where"] = (lambda x, y, m: tg.where(m, x, y),
                  lambda rng: [_float(rng, 2, 3), _float(rng, 3),
                               Tensor([[True, False, True], [False, False, True]])])
    c["Cat"] = (lambda x, y: tg.cat([x, y.reshape(1, 3)], 0), b)
    c["MatMul"] = (lambda x, y: x @ y, lambda rng: [_float(rng, 2, 3), _float(rng, 3, 4)])
    c["LinearWeightGrad"] = (lambda g, x: tg.function.LinearWeightGrad.apply(g, x),
                             lambda rng: [_float(rng, 2, 3, 4), _float(rng, 2, 3, 2)])
    c["Softmax"] = (lambda x: x.softmax(1), u)
    c["SoftmaxBackward"] = (lambda g, y: tg.function.SoftmaxBackward.apply(g, y.softmax(0),
                                                                           axis=0),
                            lambda rng: [_float(rng, 3, 2), _float(rng, 3, 2)])
    c["LogSoftmax"] = (lambda x: x.log_softmax(1), u)
    c["LogSoftmaxBackward"] = (lambda g, y: tg.function.LogSoftmaxBackward.apply(
        g, y.log_softmax(0), axis=0), lambda rng: [_float(rng, 3, 2), _float(rng, 3, 2)])
    # nn
    c["FusedLinear"] = (lambda x, w, b: F.linear(x, w, b),
                        lambda rng: [_float(rng, 2, 3), _float(rng, 4, 3), _float(rng, 4)])
    c["Gelu"] = (lambda x: F.gelu(x), u)
    c["Silu"] = (lambda x: F.silu(x), u)
    c["Softplus"] = (lambda x: F.softplus(x, beta=2.0), u)
    c["Pad"] = (lambda x: F.pad(x, (1, 2)), u)
    c["VectorNorm"] = (lambda x: F.normalize(x, dim=1), u)
    c["FusedDropout"] = (_seeded(lambda x: F.dropout(x, 0.4)), u)
    c["FusedLayerNorm"] = (lambda x, w, b: F.layer_norm(x, (3,), w, b),
                           lambda rng: [_float(rng, 2, 3), _float(rng, 3), _float(rng, 3)])
    c["Normalize"] = (lambda y: F.Normalize.apply(y, eps=1e-5),
                      lambda rng: [_float(rng, 2, 2, 4)])
    c["NormalizeBackward"] = (lambda g, y: F.NormalizeBackward.apply(g, y, eps=1e-5),
                              lambda rng: [_float(rng, 3, 4), _float(rng, 3, 4)])
    c["Gather:tinygrad_tf.nn.functional"] = (lambda w, i: F.embedding(i, w, padding_idx=1),
                                 lambda rng: [_float(rng, 4, 3), Tensor([[0, 3, 1], [3, 2, 0]])])
    c["FusedAttention"] = (_seeded(lambda q, k, v, m: F.scaled_dot_product_attention(
        q, k, v, attn_mask=m, dropout_p=0.3)),
        lambda rng: [_float(rng, 2, 3, 4), _float(rng, 2, 5, 4), _float(rng, 2, 5, 2),
                     Tensor(rng.uniform(size=(3, 5)) > 0.3)])
    c["ResidualDropoutLayerNorm"] = (_seeded(lambda x, s, w, b: fused.residual_dropout_layer_norm(
        x, s, w, b, p=0.3)),
        lambda rng: [_float(rng, 2, 3), _float(rng, 2, 3), _float(rng, 3), _float(rng, 3)])
    c["LinearResidualLayerNorm"] = (_seeded(lambda x, a, lw, lb, w, b:
                                            fused.linear_residual_layer_norm(x, a, lw, lb, w, b,
                                                                             p=0.3)),
        lambda rng: [_float(rng, 2, 3), _float(rng, 2, 4), _float(rng, 3, 4), _float(rng, 3),
                     _float(rng, 3), _float(rng, 3)])
    c["LinearActivationDropout"] = (_seeded(lambda x, w, b: fused.linear_activation_dropout(
        x, w, b, activation="gelu", p=0.3)),
        lambda rng: [_float(rng, 2, 3), _float(rng, 4, 3), _float(rng, 4)])
    c["EmbeddingPositionDropout"] = (_seeded(lambda w, i: fused.embedding_position_dropout(
        i, w, np.linspace(-1, 1, 6).reshape(2, 3), scale=1.5, p=0.3, padding_idx=0)),
        lambda rng: [_float(rng, 4, 3), Tensor([[0, 3], [3, 2]])])
    c["PackedAttention"] = (lambda qkv, m: attention.packed_attention(qkv, mask=m),
                            lambda rng: [_float(rng, 2, 3, 3, 2, 2),
                                         Tensor(np.tril(np.ones((3, 3), bool)))])
    c["PackedAttentionGrad"] = (lambda q, kv, g: attention.PackedAttentionGrad.apply(
        q, kv, g, fill=np.array([[[[False, True, False], [False, False, True]]]]), scale=0.7),
        lambda rng: [_float(rng, 2, 2, 2, 2), _float(rng, 2, 3, 2, 2, 2), _float(rng, 2, 2, 2, 2)])
    c["AttentionWeights"] = (lambda q, k, m: attention.AttentionWeights.apply(
        q, k, fill=m.array, scale=0.7),
        lambda rng: [_float(rng, 2, 3, 2), _float(rng, 2, 4, 2),
                     Tensor(np.array([[False, True, False, False], [False] * 4,
                                      [True, False, True, False]]))])
    c["FusedCrossEntropy"] = (lambda x, w, t: F.cross_entropy(x, t, weight=w, ignore_index=1,
                                                             label_smoothing=0.2),
                              lambda rng: [_float(rng, 4, 3),
                                           _float(rng, 3, low=0.5, high=2.0, grad=False),
                                           Tensor([0, 1, 2, 2])])
    c["NllLoss"] = (lambda x, w, t: F.nll_loss(x, t, weight=w, ignore_index=0),
                    lambda rng: [_float(rng, 4, 3), _float(rng, 3, low=0.5, high=2.0, grad=False),
                                 Tensor([0, 1, 2, 2])])
    c["BinaryCrossEntropy"] = (lambda x, t, w: F.binary_cross_entropy(x, t, weight=w),
                               lambda rng: [_float(rng, 2, 3, low=0.1, high=0.9),
                                            _float(rng, 2, 3, low=0.0, high=1.0),
                                            _float(rng, 3, low=0.5, high=2.0, grad=False)])
    c["BinaryCrossEntropyWithLogits"] = (
        lambda x, t, w, pw: F.binary_cross_entropy_with_logits(x, t, weight=w, pos_weight=pw),
        lambda rng: [_float(rng, 2, 3), _float(rng, 2, 3, low=0.0, high=1.0),
                     _float(rng, 3, low=0.5, high=2.0, grad=False),
                     _float(rng, 3, low=0.5, high=2.0, grad=False)])
    for mode, gates in (("GRU", 3), ("LSTM", 4), ("RNN_TANH", 1)):
        c[f"Recurrence:{mode}"] = (
            lambda xw, h, w, b, *rest, mode=mode: rnn.recurrence(
                xw, h, w, b, c0=rest[0] if mode == "LSTM" else None, mode=mode,
                active=rest[-1].array)[0],
            lambda rng, gates=gates, mode=mode: [
                _float(rng, 3, 2, 2 * gates), _float(rng, 2, 2), _float(rng, 2 * gates, 2),
                _float(rng, 2 * gates)] + ([_float(rng, 2, 2)] if mode == "LSTM" else []) +
            [Tensor(np.array([[True, True], [True, False], [True, False]]))])
    # a module's full backward hooks (nn/hooks.py: identity Functions around the call)
    c["_IdentityBackward"] = (lambda x, y: _hooked_product()(x, y), b)
    # torch-style Functions (autograd_function.py): one output, and two (through _OutputOf)
    c["custom:Function"] = (lambda x, y: _ScaledProduct.apply(x, y, 1.5), b)
    c["custom:two outputs"] = (lambda x: _Halves.apply(x)[0] * _Halves.apply(x)[1].exp(),
                               lambda rng: [_float(rng, 2, 4)])
    return c


class _Product(nn.Module):
    def forward(self, x, y):
        return x * y


def _hooked_product():
    """x * y in a module whose backward hooks hand back the gradients they get, as new
    tensors of the same values (so the gradients stay the true ones)."""
    module = _Product()
    module.register_full_backward_pre_hook(lambda m, grad_output: tuple(
        g * 1.0 for g in grad_output))
    module.register_full_backward_hook(lambda m, grad_input, grad_output: tuple(
        g * 1.0 for g in grad_input))
    return module


class _ScaledProduct(tg.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, scale):
        ctx.save_for_backward(x, y)
        ctx.scale = scale
        return scale * x * y

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        return grad * ctx.scale * y, grad * ctx.scale * x, None


class _Halves(tg.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x[..., :2] * x[..., :2], x[..., 2:] * 3

    @staticmethod
    def backward(ctx, grad_a, grad_b):
        (x,) = ctx.saved_tensors
        return tg.cat([grad_a * 2 * x[..., :2], grad_b * 3], -1)


CASES = _cases()


def case_name(cls):
    """The catalogue key of a Function class (qualified by module when nn reuses an engine
    op's name; Recurrence by one of its modes)."""
    from tinygrad_tf import function
    if cls.__name__ == "Recurrence":
        return "Recurrence:GRU"
    if getattr(function, cls.__name__, cls) is not cls:
        return f"{cls.__name__}:{cls.__module__}"
    return cls.__name__


def build(name, seed=0):
    """(fn, inputs) of one case, fresh tensors."""
    fn, make = CASES[name]
    return fn, make(np.random.default_rng(seed))
