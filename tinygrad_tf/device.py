"""One device, the CPU, under torch's names: `device('cpu')`, `device=` arguments, `.to(...)`.

Every tensor lives in main memory as a numpy array, so moving one to 'cpu' is a no-op; any
other device ('cuda', 'mps', ...) is refused with an error saying so, at the first place it is
named, rather than silently running on the CPU.
"""
import numbers

import numpy as np


class device:
    """torch.device: `device('cpu')`, `device('cpu', 0)`, `device('cpu:0')`, `device(other)`."""

    __slots__ = ("type", "index")

    def __init__(self, type="cpu", index=None):
        if isinstance(type, device):
            type, index = type.type, type.index
        elif isinstance(type, numbers.Integral) and not isinstance(type, bool):
            raise RuntimeError(f"device({type}): a bare index means a CUDA device in torch; "
                               "tinygrad_tf runs on the CPU only, use device('cpu')")
        if not isinstance(type, str):
            raise TypeError(f"device: expected a string like 'cpu', got {type!r}")
        name, _, suffix = type.partition(":")
        if suffix:
            if index is not None:
                raise RuntimeError(f"device({type!r}, {index}): the index is given twice")
            index = int(suffix)
        if name != "cpu":
            raise RuntimeError(
                f"device {type!r}: tinygrad_tf runs on the CPU only (no CUDA, MPS or other "
                "backend; tinygrad_tf.cuda.is_available() is False); use 'cpu'")
        self.type, self.index = name, index

    def __repr__(self):
        return f"device(type='cpu'{'' if self.index is None else f', index={self.index}'})"

    def __str__(self):
        return "cpu" if self.index is None else f"cpu:{self.index}"

    def __eq__(self, other):
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and other.index == self.index

    def __hash__(self):
        return hash(("cpu", self.index))

    def __enter__(self):  # `with torch.device('cpu'):` sets the default device: it already is
        return self

    def __exit__(self, *exc):
        return False


CPU = device("cpu")


def check(value, op):
    """Accept None, 'cpu', a device('cpu') (torch also takes an int: a CUDA index); raise for
    any other device, naming `op`."""
    if value is None or isinstance(value, device):
        return CPU
    try:
        return device(value)
    except (RuntimeError, TypeError) as error:
        raise type(error)(f"{op}: {error}") from None


def _is_dtype(value):
    if isinstance(value, (str, device)) or value is None:
        return False
    if getattr(type(value), "unsupported", False):  # dtypes.UnsupportedDtype: np.dtype says why
        return True
    try:
        np.dtype(value)
    except TypeError:
        return False
    return True


def to_args(args, kwargs, op="to"):
    """Parse torch's `to(device)`, `to(dtype)`, `to(device, dtype)`, `to(tensor)` and the
    keywords (device, dtype, non_blocking, copy, memory_format) into (dtype or None, copy)."""
    kwargs = dict(kwargs)
    dtype, copy = kwargs.pop("dtype", None), kwargs.pop("copy", False)
    check(kwargs.pop("device", None), op)
    kwargs.pop("non_blocking", None)
    if kwargs.pop("memory_format", None) not in (None, "preserve_format"):
        raise NotImplementedError(f"{op}: memory_format is not supported (one layout here)")
    if kwargs:
        raise TypeError(f"{op}: unexpected keyword argument {next(iter(kwargs))!r}")
    args = list(args)
    if args and hasattr(args[0], "array") and hasattr(args[0], "dtype"):  # to(other_tensor)
        dtype = args.pop(0).dtype
    elif args and not _is_dtype(args[0]):
        check(args.pop(0), op)
    if args and _is_dtype(args[0]):
        dtype = args.pop(0)
    if args and isinstance(args[0], bool):  # torch's positional non_blocking, copy
        args.pop(0)
        if args and isinstance(args[0], bool):
            copy = args.pop(0)
    if args:
        raise TypeError(f"{op}: could not understand the arguments {tuple(args)!r}; expected "
                        "to(device), to(dtype), to(device, dtype) or to(tensor)")
    return (None if dtype is None else np.dtype(dtype)), copy
