"""More of torch's activations and similarities, functional forms and their layers, each
composed of Tensor ops (so their gradients, and the gradients of those, come with them). Where
torch's backward picks a side at a kink (hardtanh's bounds, hardswish at +-3, elu at 0), the
`where` conditions below pick the same side. `functional` re-exports the functions, `nn` the
layers.
"""
import numpy as np

from tinygrad_tf import where

from .module import Module, Parameter

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


# ---------------------------------------------------------------------------- functions

def elu(input, alpha=1.0):
    """x where x > 0, else alpha * (exp(x) - 1)."""
    # exp of the clamped input: the unused branch must not overflow (inf * 0 = NaN in backward)
    return where(input > 0, input, alpha * input.clamp(max=0).expm1())


def selu(input):
    """scale * elu(x, alpha) with the self-normalising constants (Klambauer et al., 2017)."""
    return SELU_SCALE * elu(input, SELU_ALPHA)


def celu(input, alpha=1.0):
    """x where x > 0, else alpha * (exp(x / alpha) - 1)."""
    return where(input > 0, input, alpha * (input.clamp(max=0) / alpha).expm1())


def hardtanh(input, min_val=-1.0, max_val=1.0):
    """x clipped to [min_val, max_val], with a zero gradient at the bounds (as torch's; clamp's
    is one there)."""
    inside = (input > min_val) & (input < max_val)
    return where(inside, input, input.detach().clamp(min_val, max_val))


def relu6(input):
    """min(max(x, 0), 6)."""
    return hardtanh(input, 0.0, 6.0)


def hardsigmoid(input):
    """relu6(x + 3) / 6."""
    return hardtanh(input, -3.0, 3.0) / 6 + 0.5


def hardswish(input):
    """x * relu6(x + 3) / 6; torch's gradient is the middle piece's on (-3, 3), 0 at -3, 1 at 3."""
    middle = input * (input + 3) / 6
    return where(input <= -3, 0.0, where(input < 3, middle, input))


def mish(input):
    """x * tanh(softplus(x)) (Misra, 2019)."""
    from .functional import softplus
    return input * softplus(input).tanh()


def logsigmoid(input):
    """log(sigmoid(x)) = -softplus(-x), stable for large |x|."""
    from .functional import softplus
    return -softplus(-input)


def softsign(input):
    """x / (1 + |x|)."""
    return input / (1 + input.abs())


def tanhshrink(input):
    """x - tanh(x)."""
    return input - input.tanh()


def softmin(input, dim, _stacklevel=3, dtype=None):
    """softmax(-x) along dim."""
    return (-input).softmax(dim, dtype=dtype)


def glu(input, dim=-1):
    """a * sigmoid(b), a and b the two halves of `dim` (Dauphin et al., 2017)."""
    if input.shape[dim] % 2:
        raise ValueError(f"glu: dim {dim} has odd size {input.shape[dim]}; it must halve")
    first, second = input.chunk(2, dim)
    return first * second.sigmoid()


def prelu(input, weight):
    """x where x > 0, else weight * x; weight has one value or one per channel (dim 1)."""
    if weight.numel() > 1:
        if input.ndim < 2 or input.shape[1] != weight.numel():
            raise ValueError(f"prelu: {weight.numel()} weights for an input of shape "
                             f"{input.shape} (one per channel, dim 1)")
        weight = weight.reshape(-1, *[1] * (input.ndim - 2))
    return where(input > 0, input, weight * input)


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """x1 . x2 / (max(|x1|, eps) * max(|x2|, eps)) along dim (the inputs broadcast)."""
    norms = [x.norm(dim=dim).clamp(min=eps) for x in (x1, x2)]
    return (x1 * x2).sum(dim) / (norms[0] * norms[1])


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """The p-norm of x1 - x2 + eps along the last dim."""
    return (x1 - x2 + eps).norm(p, dim=-1, keepdim=keepdim)


FUNCTIONS = ["elu", "selu", "celu", "hardtanh", "relu6", "hardsigmoid", "hardswish", "mish",
             "logsigmoid", "softsign", "tanhshrink", "softmin", "glu", "prelu",
             "cosine_similarity", "pairwise_distance"]


# ---------------------------------------------------------------------------- layers

def _layer(name, function, doc, **defaults):
    """A parameter-free layer calling `function(x, **its arguments)`, torch's argument order."""
    def __init__(self, *args, **kwargs):
        Module.__init__(self)
        if len(args) > len(defaults):
            raise TypeError(f"{name} takes at most {len(defaults)} arguments")
        values = dict(defaults, **dict(zip(defaults, args)))
        unknown = set(kwargs) - set(defaults)
        if unknown:
            raise TypeError(f"{name}: unexpected argument(s) {sorted(unknown)}")
        values.update(kwargs)
        for key, value in values.items():
            setattr(self, key, value)

    def forward(self, input):
        return function(input, **{key: getattr(self, key) for key in defaults})

    def extra_repr(self):
        return ", ".join(f"{key}={getattr(self, key)}" for key in defaults)
    return type(name, (Module,), {"__init__": __init__, "forward": forward, "__doc__": doc,
                                  "extra_repr": extra_repr})


ELU = _layer("ELU", elu, "elu(x, alpha).", alpha=1.0)
SELU = _layer("SELU", selu, "selu(x).")
CELU = _layer("CELU", celu, "celu(x, alpha).", alpha=1.0)
Hardtanh = _layer("Hardtanh", hardtanh, "hardtanh(x, min_val, max_val).", min_val=-1.0,
                  max_val=1.0)
ReLU6 = _layer("ReLU6", relu6, "relu6(x).")
Hardsigmoid = _layer("Hardsigmoid", hardsigmoid, "hardsigmoid(x).")
Hardswish = _layer("Hardswish", hardswish, "hardswish(x).")
Mish = _layer("Mish", mish, "mish(x).")
LogSigmoid = _layer("LogSigmoid", logsigmoid, "logsigmoid(x).")
Softsign = _layer("Softsign", softsign, "softsign(x).")
Tanhshrink = _layer("Tanhshrink", tanhshrink, "tanhshrink(x).")
Softmin = _layer("Softmin", softmin, "softmin(x, dim).", dim=None)
GLU = _layer("GLU", glu, "glu(x, dim).", dim=-1)


class PReLU(Module):
    """prelu(x, weight) with a learned weight: one, or one per channel (num_parameters)."""

    def __init__(self, num_parameters=1, init=0.25, device=None, dtype=None):
        super().__init__()
        self.num_parameters = num_parameters
        self.weight = Parameter(np.full(num_parameters, init, dtype=dtype or np.float32))

    def forward(self, input):
        return prelu(input, self.weight)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


class CosineSimilarity(Module):
    """cosine_similarity(x1, x2, dim, eps)."""

    def __init__(self, dim=1, eps=1e-8):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x1, x2):
        return cosine_similarity(x1, x2, self.dim, self.eps)


class PairwiseDistance(Module):
    """pairwise_distance(x1, x2, p, eps, keepdim)."""

    def __init__(self, p=2.0, eps=1e-6, keepdim=False):
        super().__init__()
        self.norm, self.eps, self.keepdim = p, eps, keepdim

    def forward(self, x1, x2):
        return pairwise_distance(x1, x2, self.norm, self.eps, self.keepdim)


LAYERS = ["ELU", "SELU", "CELU", "Hardtanh", "ReLU6", "Hardsigmoid", "Hardswish", "Mish",
          "LogSigmoid", "Softsign", "Tanhshrink", "Softmin", "GLU", "PReLU", "CosineSimilarity",
          "PairwiseDistance"]
