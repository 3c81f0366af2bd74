"""torch.autograd names that programs mention and that need no engine support here: the legacy
`Variable` (a Tensor since torch 0.4) and anomaly detection (accepted, with a warning that no
NaN checks run). tinygrad_tf/__init__.py sets them on `autograd`."""
import contextlib
import warnings

_warned = []


def Variable(data, requires_grad=False, volatile=False):  # noqa: N802 (torch's name)
    """torch.autograd.Variable(t, requires_grad=...): the tensor itself (its flag set), as torch."""
    from .tensor import Tensor
    tensor = data if isinstance(data, Tensor) else Tensor(data)
    return tensor.requires_grad_(True) if requires_grad else tensor


class set_detect_anomaly(contextlib.ContextDecorator):  # noqa: N801 (torch's name)
    """Accepted so debugging code runs; no anomaly checks are made here (warns once)."""

    def __init__(self, mode=True, check_nan=True):
        if mode and not _warned:
            _warned.append(True)
            warnings.warn("autograd anomaly detection is not implemented in tinygrad_tf: the code "
                          "runs, but backward is not checked for NaN", stacklevel=2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class detect_anomaly(set_detect_anomaly):  # noqa: N801
    def __init__(self, check_nan=True):
        super().__init__(True, check_nan)


def is_anomaly_enabled():
    return False
