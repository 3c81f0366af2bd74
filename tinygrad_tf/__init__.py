"""tinygrad_tf: a small autograd framework on numpy and Numba, with a Transformer built on it."""
from . import kernels
from . import autograd
from .autograd import Function, enable_grad, is_grad_enabled, no_grad
from .gradcheck import GradcheckError, GradcheckKinkError, gradcheck
from .random import manual_seed
from .factories import arange, eye, full, ones, rand, randn, zeros
from .tensor import (Tensor, cat, from_numpy, full_like, linspace, ones_like, rand_like, randint,
                     randn_like, stack, tensor, where, zeros_like)
from . import optim  # noqa: E402 (after Tensor: the optimizers build on it)

__version__ = "0.1.0"

import numpy as _np

float32, float64, int64, bool_ = _np.float32, _np.float64, _np.int64, _np.bool_

__all__ = ["Tensor", "Function", "no_grad", "enable_grad", "is_grad_enabled", "gradcheck",
           "GradcheckError", "GradcheckKinkError", "manual_seed", "cat", "stack", "where",
           "zeros_like", "ones_like", "full_like", "rand_like", "randn_like", "tensor",
           "from_numpy", "linspace", "randint", "zeros", "ones", "full", "rand", "randn", "arange",
           "eye", "autograd", "kernels", "optim"]
