"""torch.testing.assert_close: compare a custom op's values or gradients with a reference.

`tinygrad_tf.testing.assert_close(actual, expected)` checks, as torch's, that both are of one kind
(Tensors, numpy arrays, Python numbers, or sequences/mappings of them, compared item by item),
have the same shape and (check_dtype=True) dtype, and that every element satisfies
|actual - expected| <= atol + rtol * |expected|, with tolerances from the dtype when not given
(float32: rtol 1.3e-6, atol 1e-5; float64: 1e-7 and 1e-7; integers and bools: exact).
NaNs are equal only with equal_nan=True. Raises AssertionError with torch's message.
"""
import numbers

import numpy as np

# torch's defaults, per dtype: (rtol, atol)
_TOLERANCES = {np.dtype(np.float16): (1e-3, 1e-5), np.dtype(np.float32): (1.3e-6, 1e-5),
               np.dtype(np.float64): (1e-7, 1e-7)}


def _kind(value):
    from .tensor import Tensor
    if isinstance(value, Tensor):
        return "tensor"
    if isinstance(value, np.ndarray):
        return "array"
    if isinstance(value, (numbers.Number, np.generic)):
        return "number"
    if isinstance(value, (list, tuple)):
        return "sequence"
    if isinstance(value, dict):
        return "mapping"
    return None


def _type_name(value):
    return f"<class '{type(value).__module__}.{type(value).__qualname__}'>".replace(
        "builtins.", "")


def assert_close(actual, expected, *, allow_subclasses=True, rtol=None, atol=None,
                 equal_nan=False, check_device=True, check_dtype=True, check_layout=True,
                 check_stride=False, msg=None):
    """Raise AssertionError unless `actual` and `expected` are close (torch.testing's)."""
    if (rtol is None) != (atol is None):
        raise ValueError("Both 'rtol' and 'atol' must be either specified or omitted, but got "
                         f"no {'rtol' if rtol is None else 'atol'}.")
    _compare(actual, expected, rtol, atol, equal_nan, check_dtype, msg, where="")


def _compare(actual, expected, rtol, atol, equal_nan, check_dtype, msg, where):
    kind = _kind(actual)
    if kind is None or kind != _kind(expected):
        raise TypeError(f"No comparison pair was able to handle inputs of type "
                        f"{_type_name(actual)} and {_type_name(expected)}.")
    if kind == "sequence":
        if len(actual) != len(expected):
            raise AssertionError(f"The length of the sequences mismatch: {len(actual)} != "
                                 f"{len(expected)}{where}")
        for i, (a, e) in enumerate(zip(actual, expected)):
            _compare(a, e, rtol, atol, equal_nan, check_dtype, msg, f"{where}[{i}]")
        return
    if kind == "mapping":
        if set(actual) != set(expected):
            raise AssertionError(f"The keys of the mappings do not match: {sorted(actual)} != "
                                 f"{sorted(expected)}{where}")
        for key in expected:
            _compare(actual[key], expected[key], rtol, atol, equal_nan, check_dtype, msg,
                     f"{where}[{key!r}]")
        return
    a = np.asarray(actual.array if kind == "tensor" else actual)
    e = np.asarray(expected.array if kind == "tensor" else expected)
    suffix = f"\n\nThe failure occurred for item {where}" if where else ""
    if kind == "number" and check_dtype and type(actual) is not type(expected):
        raise AssertionError(msg or f"The (d)types do not match: {_type_name(actual)} != "
                                    f"{_type_name(expected)}.{suffix}")
    if kind != "number":
        if a.shape != e.shape:
            raise AssertionError(msg or f"The values for attribute 'shape' do not match: "
                                        f"{a.shape} != {e.shape}.{suffix}")
        if check_dtype and a.dtype != e.dtype:
            raise AssertionError(msg or f"The values for attribute 'dtype' do not match: "
                                        f"{a.dtype} != {e.dtype}.{suffix}")
    if rtol is None:  # the looser of the two dtypes' defaults, exact for integers and bools
        rtol, atol = map(max, zip(*(_TOLERANCES.get(d, (0.0, 0.0)) for d in (a.dtype, e.dtype))))
        if kind == "number" and a.dtype.kind == "f":
            rtol, atol = _TOLERANCES[np.dtype(np.float64)]  # Python floats are doubles
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.abs(a64 - e64)
        finite = np.isfinite(a64) & np.isfinite(e64)  # infinities: equal or not close
        close = (a64 == e64) | (finite & (diff <= atol + rtol * np.abs(e64)))
        if equal_nan:
            close |= np.isnan(a64) & np.isnan(e64)
        if close.all():
            return
        # torch's relative difference is in the tensors' float dtype (float32 for integers)
        floats = [d for d in (a.dtype, e.dtype) if d.kind == "f"] or [np.float32]
        relative = (diff / np.abs(e64)).astype(np.result_type(*floats))
    if msg is not None:
        raise AssertionError(msg)
    exact = rtol == 0 and atol == 0
    if kind == "number" or a.ndim == 0:
        raise AssertionError(
            f"Scalars are not {'equal' if exact else 'close'}!\n\nExpected {e.item()} but got "
            f"{a.item()}.\nAbsolute difference: {float(diff)}"
            + ("" if exact else f" (up to {atol} allowed)") + f"\nRelative difference: "
            f"{float(diff) / abs(float(e64))}" + ("" if exact else f" (up to {rtol} allowed)") + suffix)
    bad = ~close
    worst_abs = np.unravel_index(np.argmax(np.where(bad, np.nan_to_num(diff, nan=np.inf), -1)),
                                 a.shape)
    worst_rel = np.unravel_index(np.argmax(np.where(bad, np.nan_to_num(relative, nan=np.inf),
                                                    -1)), a.shape)
    count, total = int(bad.sum()), bad.size

    def number(x):  # integers print as integers
        return int(x) if a.dtype.kind in "iub" and e.dtype.kind in "iub" and x == int(x) else x

    index = lambda i: tuple(int(k) for k in i)  # noqa: E731
    raise AssertionError(
        f"Tensor-likes are not {'equal' if exact else 'close'}!\n\n"
        f"Mismatched elements: {count} / {total} ({100 * count / total:.1f}%)\n"
        f"Greatest absolute difference: {number(diff[worst_abs])} at index "
        f"{index(worst_abs)}" + ("" if exact else f" (up to {atol} allowed)") + "\n"
        f"Greatest relative difference: {relative[worst_rel]} at index {index(worst_rel)}"
        + ("" if exact else f" (up to {rtol} allowed)") + suffix)
