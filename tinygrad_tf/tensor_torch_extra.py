"""More of torch's Tensor methods, each a short composition of the others: the in-place forms
of elementwise ops (`exp_`, `clamp_min_`, `sigmoid_`...), `add`/`sub` with `alpha=`, random fills for hand-written
initialisation (`p.data.normal_(0, 0.02)`), `addcmul`/`addcdiv`/`lerp`, more dtype conversions
(`int`, `half`...), `detach_`, and shape helpers (`tile`, `unflatten`, `movedim`, `select`...).
`TorchMethods` (tensor_torch.py) mixes in `TorchExtras`.
"""
import numbers

import numpy as np

from . import autograd as _autograd
from . import dtypes as _dtypes
from . import random as _random
from .args import normalize_dim as _normalize_dim, normalize_dims as _normalize_dims

# Ops whose in-place form `<name>_` torch has: the result is computed out of place, then written
# into the tensor under torch's in-place rules (InplaceOps in inplace.py).
INPLACE_FORMS = ("abs", "neg", "exp", "expm1", "log", "log1p", "log2", "log10", "sqrt", "rsqrt",
                 "sin", "cos", "tanh", "sigmoid", "relu", "floor", "ceil", "round", "sign",
                 "reciprocal", "square", "pow", "clamp_min", "clamp_max", "remainder",
                 "floor_divide", "erf", "addcmul", "addcdiv", "lerp")


def _inplace_form(name):
    def method(self, *args, **kwargs):
        self._check_inplace(f"{name}_", *args, *kwargs.values())
        with _autograd.no_grad():
            result = getattr(self, name)(*args, **kwargs)
        if _dtypes.category(result.dtype) > _dtypes.category(self.dtype):
            raise RuntimeError(f"{name}_: result type {result.dtype} can't be cast to the "
                               f"tensor's dtype {self.dtype} in place (as torch)")
        with _autograd.no_grad():  # the checks are done: copy_ writes and bumps the version
            return self.copy_(result)
    method.__name__ = method.__qualname__ = f"{name}_"
    method.__doc__ = f"In place: self = self.{name}(...), under torch's in-place rules."
    return method


class TorchExtras:
    __slots__ = ()  # a mixin of Tensor, which keeps its fields in slots

    # ------------------------------------------------------------------ arithmetic

    def add(self, other, *, alpha=1):
        """self + alpha * other."""
        return self + (other if alpha == 1 else other * alpha)

    def sub(self, other, *, alpha=1):
        """self - alpha * other."""
        return self - (other if alpha == 1 else other * alpha)

    def addcmul(self, tensor1, tensor2, value=1):
        """self + value * tensor1 * tensor2."""
        return self + value * tensor1 * tensor2

    def addcdiv(self, tensor1, tensor2, value=1):
        """self + value * tensor1 / tensor2."""
        return self + value * tensor1 / tensor2

    def lerp(self, end, weight):
        """self + weight * (end - self)."""
        return self + weight * (end - self)

    # ------------------------------------------------------------------ random fills

    def _fill_from(self, op, values):
        self._check_inplace(op)
        with _autograd.no_grad():
            return self.copy_(values)

    def uniform_(self, a=0.0, b=1.0, *, generator=None):
        """Fill with U(a, b) draws, in place."""
        return self._fill_from("uniform_", _random.generator_of(generator).uniform(a, b, self.shape))

    def normal_(self, mean=0.0, std=1.0, *, generator=None):
        """Fill with N(mean, std^2) draws, in place."""
        return self._fill_from("normal_", _random.generator_of(generator).normal(mean, std, self.shape))

    def bernoulli_(self, p=0.5, *, generator=None):
        """Fill with 1 (probability p) or 0, in place."""
        p = p.array if isinstance(p, _autograd._Tensor) else p
        draws = _random.generator_of(generator).random(self.shape) < p
        return self._fill_from("bernoulli_", draws)

    # ------------------------------------------------------------------ dtypes and the graph

    def int(self):
        return self.to(np.int32)

    def short(self):
        return self.to(np.int16)

    def char(self):
        return self.to(np.int8)

    def byte(self):
        return self.to(np.uint8)

    def half(self):
        return self.to(np.float16)

    def detach_(self):
        """Detach in place: the tensor becomes a leaf that does not require grad."""
        self._ctx = None
        self.requires_grad = False
        return self

    # ------------------------------------------------------------------ shapes

    def reshape_as(self, other):
        return self.reshape(other.shape)

    def tile(self, *dims):
        """Repeat along each dim; fewer dims than the tensor's are padded with 1s in front."""
        dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        dims = (1,) * (self.ndim - len(dims)) + tuple(dims)
        return self.repeat(*dims)

    def unflatten(self, dim, sizes):
        """Split dim `dim` into `sizes` (one of them may be -1)."""
        axis = _normalize_dim(dim, self.ndim, "unflatten")
        return self.reshape(*self.shape[:axis], *sizes, *self.shape[axis + 1:])

    def movedim(self, source, destination):
        """Move dim(s) `source` to position(s) `destination`, keeping the others' order."""
        def dims(arg):  # in the order given (normalize_dims would sort them)
            _normalize_dims(arg, self.ndim, "movedim")  # checks range and repeats
            arg = [arg] if isinstance(arg, numbers.Integral) else list(arg)
            return [_normalize_dim(d, self.ndim, "movedim") for d in arg]
        sources, targets = dims(source), dims(destination)
        if len(sources) != len(targets):
            raise ValueError(f"movedim: {len(sources)} source dims but {len(targets)} destinations")
        order = [d for d in range(self.ndim) if d not in sources]
        for target, source in sorted(zip(targets, sources)):
            order.insert(target, source)
        return self.permute(*order)

    moveaxis = movedim

    def select(self, dim, index):
        """The slice at `index` along `dim`, without that dim (x.select(0, i) is x[i])."""
        axis = _normalize_dim(dim, self.ndim, "select")
        return self[(slice(None),) * axis + (index,)]

    def fliplr(self):
        return self.flip(1)

    def flipud(self):
        return self.flip(0)


for _name in INPLACE_FORMS:
    setattr(TorchExtras, f"{_name}_", _inplace_form(_name))
