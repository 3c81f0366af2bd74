"""Helpers the nn op modules share (functional, normalization, attention, fused): argument
checks, the (rows, width) view of an array, and dropout's keep mask."""
import math

import numpy as np

from tinygrad_tf import Tensor
from tinygrad_tf.random import generator


def _rows(array, width):
    """`array` as a C-contiguous (rows, width) matrix (a view when it already is one)."""
    return np.ascontiguousarray(array).reshape(-1, width)


def _check_float(op, **tensors):
    dtypes = {name: t.dtype for name, t in tensors.items() if t is not None}
    for name, dtype in dtypes.items():
        if dtype.kind != "f":
            raise TypeError(f"{op}: {name} must be a float tensor, not {dtype}")
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{name} {dtype}" for name, dtype in dtypes.items())
        raise TypeError(f"{op}: dtypes differ ({listed}); convert with .to(dtype) or "
                        "model.double()/.float()")


def _index_array(ids, op):
    array = ids.array if isinstance(ids, Tensor) else np.asarray(ids)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{op}: indices must be an integer tensor, not {array.dtype}")
    return array


def _check_range(op, what, values, low, high, allowed=None):
    bad = (values < low) | (values >= high)
    if allowed is not None:
        bad &= values != allowed
    if bad.any():
        value = int(values[bad].flat[0])
        extra = f" (or ignore_index={allowed})" if allowed is not None else ""
        raise IndexError(f"{op}: {what} {value} is outside the valid range [{low}, {high}){extra}")


def _keep_mask(shape, p):
    """A boolean mask, True with probability 1 - p, drawn from the seeded generator.

    Raw 32-bit draws compared with p * 2^32 measured about 40% cheaper here than
    `random(dtype=float32)` (which spends time turning bits into floats), and they resolve p to
    2^-32 rather than float32's 2^-24.
    """
    size = math.prod(shape)
    bits = generator().bit_generator.random_raw((size + 1) // 2).view(np.uint32)[:size]
    threshold = np.uint32(min(round(p * 2.0 ** 32), 2 ** 32 - 1))
    return (bits >= threshold).reshape(shape)
