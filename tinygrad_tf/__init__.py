"""tinygrad_tf: a small autograd framework on numpy and Numba, with a Transformer built on it."""
from . import kernels
from . import autograd
from .autograd import Function, enable_grad, is_grad_enabled, no_grad
from .gradcheck import GradcheckError, GradcheckKinkError, gradcheck, gradgradcheck
from .random import manual_seed
from .factories import arange, eye, full, ones, rand, randn, zeros
from .tensor import (Tensor, cat, from_numpy, full_like, linspace, ones_like, rand_like, randint,
                     randn_like, stack, tensor, where, zeros_like)
from . import optim  # noqa: E402 (after Tensor: the optimizers build on it)
from . import autograd_functional as _autograd_functional  # noqa: E402

# torch's `autograd.functional` (vjp, jvp, hvp, ...): autograd is a module here, so its
# `functional` is set on it and registered under the dotted name for `import ... as`.
autograd.functional = _autograd_functional
__import__("sys").modules[f"{__name__}.autograd.functional"] = _autograd_functional
from . import autograd_function as _autograd_function  # noqa: E402
autograd.function = _autograd_function  # torch.autograd.function.once_differentiable
__import__("sys").modules[f"{__name__}.autograd.function"] = _autograd_function
from .autograd_extras import (Variable as _Variable, detect_anomaly as _detect_anomaly,  # noqa: E402
                              is_anomaly_enabled as _is_anomaly_enabled,
                              set_detect_anomaly as _set_detect_anomaly)
autograd.Variable, autograd.detect_anomaly = _Variable, _detect_anomaly
autograd.set_detect_anomaly, autograd.is_anomaly_enabled = _set_detect_anomaly, _is_anomaly_enabled
autograd.gradcheck, autograd.gradgradcheck = gradcheck, gradgradcheck  # torch.autograd's names

__version__ = "0.1.0"

import numpy as _np

float32, float64, int64, bool_ = map(_np.dtype, (_np.float32, _np.float64, _np.int64, _np.bool_))

# torch's names (docs/porting.md): the device, Generator, mixed precision and CUDA stand-ins,
# and the function forms of Tensor methods. Last: `max`, `sum`, `int`, `float`, `bool`... now
# shadow Python's in this file.
from .device import device  # noqa: E402
from .random import Generator  # noqa: E402
from . import amp, backends, cuda  # noqa: E402
from .serialization import load, save  # noqa: E402
from .torch_names import *  # noqa: E402,F401,F403
from .torch_names import DTYPES as _DTYPES, MISSING_DTYPES as _MISSING_DTYPES  # noqa: E402
from .torch_names import __all__ as _torch_names  # noqa: E402

globals().update(_DTYPES)

# Submodules loaded on first use, as `torch.distributed` or `torch.utils.data` are reachable
# after `import torch`.
_LAZY = ("distributed", "multiprocessing", "onnx", "utils", "profiler", "testing", "nn", "models", "linalg")


def __getattr__(name):
    if name in _MISSING_DTYPES:  # the name exists; using it as a dtype raises, saying why
        from .dtypes import UnsupportedDtype
        return UnsupportedDtype(name, _MISSING_DTYPES[name])
    if name in _LAZY:
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'tinygrad_tf' has no attribute {name!r}")

__all__ = ["Tensor", "Function", "no_grad", "enable_grad", "is_grad_enabled", "gradcheck",
           "gradgradcheck", "GradcheckError", "GradcheckKinkError", "manual_seed", "cat", "stack",
           "where",
           "zeros_like", "ones_like", "full_like", "rand_like", "randn_like", "tensor",
           "from_numpy", "linspace", "randint", "zeros", "ones", "full", "rand", "randn", "arange",
           "eye", "autograd", "kernels", "optim", "device", "Generator", "amp", "backends", "cuda",
           "save", "load",
           *_torch_names, *_DTYPES]
