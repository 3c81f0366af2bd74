"""The kernel layer: the engine's hot loops behind one small interface.

Each family module holds a plain-numpy function and (where it pays) a Numba kernel with the same
signature. The engine calls the names below (`kernels.matmul(a, b)`, ...) through this module, so
`use("numba" | "numpy")` switches every op at once.
"""
import contextlib
import os

from . import matmul as _matmul
from . import softmax as _softmax

KERNEL_NAMES = ("matmul", "softmax", "softmax_backward", "log_softmax", "log_softmax_backward")

_IMPLEMENTATIONS = {
    "numpy": {
        "matmul": _matmul.matmul_numpy,
        "softmax": _softmax.softmax_numpy,
        "softmax_backward": _softmax.softmax_backward_numpy,
        "log_softmax": _softmax.log_softmax_numpy,
        "log_softmax_backward": _softmax.log_softmax_backward_numpy,
    },
}

_active = None


def available():
    """The kernel sets this install can run."""
    return tuple(_IMPLEMENTATIONS)


def active():
    """The name of the kernel set in use."""
    return _active


def _switch(name):
    global _active
    if name not in _IMPLEMENTATIONS:
        raise ValueError(f"kernels.use: unknown kernel set {name!r}; expected one of "
                         f"{', '.join(map(repr, _IMPLEMENTATIONS))}")
    globals().update(_IMPLEMENTATIONS[name])
    previous, _active = _active, name
    return previous


@contextlib.contextmanager
def _restoring(previous):
    try:
        yield
    finally:
        _switch(previous)


def use(name):
    """Make `name` the kernel set for every op. Also a context manager that switches back:

        with kernels.use("numpy"): ...
    """
    return _restoring(_switch(name))


_switch(os.environ.get("TINYGRAD_TF_KERNELS", "numpy"))
