"""dtypes: what a Tensor's data may be, and PyTorch's rules for the dtype of a mixed op.

    float32 tensor * 0.5                 -> float32   (a Python number never widens a tensor)
    float32 tensor + float64 tensor      -> float64   (within a category, the wider type)
    float32 tensor * float64 0-d tensor  -> float32   (a 0-d tensor never widens one with dims)
    int64 tensor + 0.5                   -> float32   (a higher category wins; floats default
                                                       to float32)
    int64 tensor / int64 tensor          -> float32   (true division; handled in tensor.py)
"""
import functools
import numbers

import numpy as np

DEFAULT_FLOAT = np.dtype(np.float32)
INDEX = np.dtype(np.int64)
BOOL = np.dtype(np.bool_)


def category(dtype):
    """bool 0 < int 1 < float 2: across categories the higher one's dtype wins."""
    return 2 if dtype.kind in "fc" else 1 if dtype.kind in "iu" else 0


def scalar_category(value):
    return 0 if isinstance(value, (bool, np.bool_)) else 1 if isinstance(value, numbers.Integral) else 2


def promote_dtypes(da, db):
    """The higher category's dtype; within a category the wider type."""
    ca, cb = category(da), category(db)
    return np.promote_types(da, db) if ca == cb else da if ca > cb else db


def promote(a, b):
    """The result dtype of an op on arrays `a` and `b` (the data of two Tensors)."""
    if category(a.dtype) == category(b.dtype) and (a.ndim == 0) != (b.ndim == 0):
        return b.dtype if a.ndim == 0 else a.dtype
    return promote_dtypes(a.dtype, b.dtype)


def refuse_bool(tensor, op):
    """torch has no bool kernel for `op` (abs, floor, pow, //, softmax...): raise as it does,
    where numpy would quietly compute in int8, float16 or bool."""
    if tensor.array.dtype.kind == "b":
        raise NotImplementedError(f"{op}: not implemented for bool tensors (as in torch); "
                                  "convert with .long() or .float() first")


def is_bool(value):
    """A bool tensor, array or Python/numpy bool (torch's `-` refuses each)."""
    return isinstance(value, (bool, np.bool_)) or getattr(value, "dtype", None) == BOOL


_PYTHON_SCALARS = {bool: BOOL, int: INDEX, float: DEFAULT_FLOAT}


def _leaf_dtypes(data, found):
    """Add to `found` torch's dtype for each leaf of a (nested) list or tuple: a Python bool, int
    or float counts as bool, int64, float32; a numpy scalar or array, or a Tensor, as its own
    dtype. One check per kind of leaf in each list, so long lists of numbers stay cheap."""
    kinds = set(map(type, data))
    found.update(_PYTHON_SCALARS[kind] for kind in kinds & _PYTHON_SCALARS.keys())
    if kinds - _PYTHON_SCALARS.keys():
        for item in data:
            if isinstance(item, (list, tuple)):
                _leaf_dtypes(item, found)
            elif type(item) not in _PYTHON_SCALARS and hasattr(item, "dtype"):
                found.add(np.dtype(item.dtype))


def as_array(data, dtype=None):
    """`data` as a Tensor's array: numpy data keeps its dtype (shared, like torch.from_numpy);
    Python floats become float32, Python ints int64, and a list the promotion of its leaves'
    dtypes, as torch's (`[np.float64(1.0), 2.0]` is float64); `dtype` converts."""
    if isinstance(data, (np.ndarray, np.generic)):
        array = np.asarray(data)
    else:
        array = np.asarray(data)
        if dtype is None and array.dtype.kind in "fiu":
            found = set()
            if isinstance(data, (list, tuple)):
                _leaf_dtypes(data, found)
            if found:
                array = array.astype(functools.reduce(promote_dtypes, found), copy=False)
            else:
                array = array.astype(DEFAULT_FLOAT if array.dtype.kind == "f" else INDEX)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"Tensor: unsupported dtype {array.dtype}; expected a float, int or bool array")
    return array


class UnsupportedDtype:
    """A torch dtype name with no numpy type behind it (`tinygrad_tf.bfloat16`): the name exists,
    so code that only mentions it (a dict of dtype choices) runs; using it as a dtype raises."""
    unsupported = True

    def __init__(self, name, reason):
        self.name, self.reason = name, reason

    @property
    def dtype(self):  # numpy asks this of anything given as a dtype
        raise TypeError(f"tinygrad_tf.{self.name} is not supported: {self.reason}")

    def __repr__(self):
        return f"tinygrad_tf.{self.name}"
