"""torch's top-level names that are not already tinygrad_tf's own: the function form of every
Tensor method torch also has as a function (`torch.sin(x)`, `torch.max(a, b)`,
`torch.topk(x, k)`), dtype aliases (`torch.long`, `torch.float`...), and small things torch
programs call (`randperm`, `multinomial`, `empty`, `LongTensor`, `inference_mode`,
`is_tensor`...). `tinygrad_tf/__init__.py` re-exports all of it; docs/porting.md lists the rest.
"""
import builtins
import numbers
import threading

import numpy as np

from . import autograd as _autograd
from . import random as _random
from .args import shape_arg as _shape_arg
from .device import check as _check_device
from .einsum import einsum
from .grad_mode_decorator import decorate as _decorate
from .tensor import Tensor, tensor
from .args import write_out
from .tensor_index import cat

_wrap = _autograd._wrap_array

# ---------------------------------------------------------------------------- dtypes

# torch's dtype names as numpy dtypes: the very objects a tensor's `.dtype` returns (numpy keeps
# one of each), so `t.dtype is tg.float32` holds and a dict keyed by them finds `t.dtype`, as in
# torch. `int`, `float` and `bool` would shadow Python's, so they are only set in the package
# namespace (tinygrad_tf/__init__.py), never used as names here.
DTYPES = {name: np.dtype(numpy_type) for name, numpy_type in {
    "float32": np.float32, "float": np.float32, "float64": np.float64, "double": np.float64,
    "float16": np.float16, "half": np.float16, "int64": np.int64, "long": np.int64,
    "int32": np.int32, "int": np.int32, "int16": np.int16, "short": np.int16, "int8": np.int8,
    "uint8": np.uint8, "bool": np.bool_}.items()}
dtype = np.dtype
finfo, iinfo = np.finfo, np.iinfo
Size = tuple

# torch names with no numpy dtype behind them: module __getattr__ raises this message
MISSING_DTYPES = {
    "bfloat16": "numpy has no bfloat16; use tinygrad_tf.float32 (or float16)",
    "complex32": "complex tensors are not supported", "complex64": "complex tensors are not "
    "supported", "complex128": "complex tensors are not supported", "cfloat": "complex tensors "
    "are not supported", "cdouble": "complex tensors are not supported",
    "float8_e4m3fn": "float8 is not supported; use float16 or float32",
    "float8_e5m2": "float8 is not supported; use float16 or float32",
    "qint8": "quantized tensors are not supported", "quint8": "quantized tensors are not supported",
}


def get_default_dtype():
    return np.dtype(np.float32)


def set_default_dtype(d):
    if np.dtype(d) != np.float32:
        raise NotImplementedError(f"set_default_dtype({np.dtype(d)}): the default float type is "
                                  "float32 here; pass dtype= to factories or call .double()")


# ---------------------------------------------------------------------------- function forms

# Every Tensor method torch also offers as a function (tests check the list against torch).
FUNCTION_NAMES = (
    "abs", "add", "all", "amax", "amin", "any", "argmax", "argmin", "argsort", "argwhere",
    "bmm", "broadcast_to", "ceil", "chunk", "clamp", "clamp_", "clamp_max", "clamp_min",
    "clip", "clip_", "clone", "cos", "cumsum", "detach", "div", "divide", "dot", "eq", "equal",
    "erf", "allclose", "exp", "expm1", "fill_", "flatten", "flip", "floor", "floor_divide",
    "gather",
    "ge", "greater", "greater_equal", "gt", "index_fill", "index_select", "is_floating_point",
    "isfinite", "isinf", "isnan", "le", "less", "less_equal", "log", "log10", "log1p", "log2",
    "log_softmax", "logical_and", "logical_not", "logical_or", "logical_xor", "logsumexp", "lt",
    "masked_fill", "masked_select", "matmul", "max", "maximum", "mean", "min", "minimum", "mm",
    "mul", "multiply", "narrow", "ne", "neg", "negative", "nonzero", "norm", "not_equal",
    "numel", "outer", "permute", "pow", "prod", "ravel", "reciprocal", "relu", "remainder",
    "repeat_interleave", "reshape", "roll", "round", "rsqrt", "scatter", "scatter_add",
    "sigmoid", "sign", "sin", "softmax", "sort", "split", "sqrt", "square", "squeeze", "std",
    "sub", "subtract", "sum", "swapaxes", "swapdims", "t", "tanh", "topk", "transpose",
    "tril", "triu", "true_divide", "unbind", "unsqueeze", "var", "zero_",
    "addcmul", "addcdiv", "lerp", "tile", "movedim", "moveaxis", "select", "fliplr", "flipud",
    "unflatten", "detach_", "abs_", "ceil_", "clamp_max_", "clamp_min_", "cos_", "erf_", "exp_",
    "expm1_", "floor_", "log10_", "log1p_", "log2_", "log_", "neg_", "reciprocal_", "relu_",
    "round_", "rsqrt_", "sigmoid_", "sin_", "sqrt_", "square_", "tanh_", "tensor_split",
    "diagonal", "trace", "diff", "count_nonzero", "nansum", "nanmean", "aminmax", "cumprod",
    "kthvalue", "median", "index_add", "index_copy", "take", "index_put", "trunc", "frac",
    "fmod", "fix", "frac_", "index_put_", "trunc_", "cummax", "cummin", "scatter_reduce",
)


def _function_form(name):
    def function(input, *args, **kwargs):
        out = kwargs.pop("out", None)
        if out is not None:
            return write_out(function(input, *args, **kwargs), out, name)
        if not isinstance(input, Tensor):
            if isinstance(input, (numbers.Number, np.ndarray, np.generic)):
                input = tensor(input)  # torch.pow(2, t), torch.add(1, t)
            else:
                raise TypeError(f"{name}: argument 'input' must be a Tensor, not "
                                f"{type(input).__name__}")
        return getattr(input, name)(*args, **kwargs)
    function.__name__ = function.__qualname__ = name
    function.__doc__ = f"torch.{name}(input, ...): the same as input.{name}(...)."
    return function


for _name in FUNCTION_NAMES:
    globals()[_name] = _function_form(_name)


def add(input, other, alpha=1, out=None):
    """input + alpha * other (torch.add)."""
    if not isinstance(input, Tensor):
        input = tensor(input)
    return write_out(input + (other if alpha == 1 else other * alpha), out, "add")


def sub(input, other, alpha=1, out=None):
    """input - alpha * other (torch.sub)."""
    return add(input, -other if alpha == 1 else other, alpha=1 if alpha == 1 else -alpha, out=out)


def take_along_dim(input, indices, dim=None):
    return input.take_along_dim(indices, dim)


def meshgrid(*tensors, indexing="ij"):
    """Coordinate grids from 1-D tensors: with indexing 'ij' the i-th grid varies along dim i;
    'xy' swaps the first two dims (torch's default is 'ij', with a warning to choose)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    sizes = [t.numel() for t in tensors]
    if indexing == "xy" and len(sizes) >= 2:
        sizes[0], sizes[1] = sizes[1], sizes[0]
    grids = []
    for i, t in enumerate(tensors):
        position = (1 - i if i < 2 else i) if indexing == "xy" and len(tensors) >= 2 else i
        shape = [1] * len(tensors)
        shape[position] = -1
        grids.append(t.reshape(*shape).expand(*sizes))
    return tuple(grids)


def broadcast_shapes(*shapes):
    return tuple(np.broadcast_shapes(*[(s,) if isinstance(s, int) else tuple(s) for s in shapes]))


def broadcast_tensors(*tensors):
    """Each tensor expanded to the shape they broadcast to (views, as torch's)."""
    shape = broadcast_shapes(*[t.shape for t in tensors])
    return tuple(t.expand(*shape) for t in tensors)


def diag(input, diagonal=0):
    """A 1-D tensor's square diagonal matrix, or a matrix's diagonal (offset `diagonal`)."""
    if input.ndim == 2:
        return input.diagonal(diagonal)
    if input.ndim != 1:
        raise ValueError(f"diag: expects 1 or 2 dims, got shape {input.shape}")
    n = input.shape[0] + builtins.abs(diagonal)
    padded = cat([input, input.new_zeros(n - input.shape[0])])
    ones = Tensor(np.eye(n, k=diagonal, dtype=input.dtype))
    # offset >= 0: row i holds x[i] at column i + offset; below the diagonal column j holds x[j]
    return padded.unsqueeze(1) * ones if diagonal >= 0 else padded.unsqueeze(0) * ones


def atleast_1d(*tensors):
    return _each(tensors, lambda t: t.reshape(1) if t.ndim == 0 else t)


def atleast_2d(*tensors):
    return _each(tensors, lambda t: t.reshape(1, -1) if t.ndim < 2 else t)


def atleast_3d(*tensors):
    def lift(t):  # torch's (and numpy's) placement: (n,) -> (1, n, 1), (m, n) -> (m, n, 1)
        if t.ndim == 0:
            return t.reshape(1, 1, 1)
        if t.ndim == 1:
            return t.reshape(1, -1, 1)
        return t.unsqueeze(-1) if t.ndim == 2 else t
    return _each(tensors, lift)


def _each(tensors, fn):
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        return tuple(fn(t) for t in tensors[0])
    return fn(tensors[0]) if len(tensors) == 1 else tuple(fn(t) for t in tensors)


def hstack(tensors):
    tensors = atleast_1d(*tensors) if len(tensors) > 1 else (atleast_1d(tensors[0]),)
    return cat(list(tensors), 0 if tensors[0].ndim == 1 else 1)


def vstack(tensors):
    return cat([t.reshape(1, -1) if t.ndim < 2 else t for t in tensors], 0)


def column_stack(tensors):
    return cat([t.reshape(-1, 1) if t.ndim < 2 else t for t in tensors], 1)


def searchsorted(sorted_sequence, values, *, out_int32=False, right=False, side=None,
                 sorter=None):
    """Where `values` would be inserted into the last dim of `sorted_sequence` to keep it sorted
    (no gradient)."""
    side = side or ("right" if right else "left")
    boundaries = sorted_sequence.array
    queries = values.array if isinstance(values, Tensor) else np.asarray(values)
    if boundaries.ndim == 1:
        found = np.searchsorted(boundaries, queries, side=side)
    else:
        found = np.stack([np.searchsorted(b, q, side=side) for b, q in
                          zip(boundaries.reshape(-1, boundaries.shape[-1]),
                              queries.reshape(-1, queries.shape[-1]))]).reshape(queries.shape)
    return tensor(found.astype(np.int32 if out_int32 else np.int64))


def bucketize(input, boundaries, *, out_int32=False, right=False):
    """The bucket of each value among the 1-D sorted `boundaries` (torch's `right` is the
    opposite of searchsorted's)."""
    return searchsorted(boundaries, input, out_int32=out_int32, right=right)


def cdist(x1, x2, p=2.0, compute_mode=None):
    """The p-norm distance between each row of x1 (..., P, M) and each row of x2 (..., R, M)."""
    return (x1.unsqueeze(-2) - x2.unsqueeze(-3)).norm(p, dim=-1)


def dist(input, other, p=2):
    """The p-norm of input - other."""
    return (input - other).reshape(-1).norm(p)


def diag_embed(input, offset=0, dim1=-2, dim2=-1):
    """Matrices whose `offset` diagonal holds the last dim of `input`, placed at dims (dim1, dim2)
    of the result."""
    n = input.shape[-1] + builtins.abs(offset)
    padded = cat([input, input.new_zeros(*input.shape[:-1], n - input.shape[-1])], -1)
    ones = Tensor(np.eye(n, k=offset, dtype=input.dtype))
    out = padded.unsqueeze(-1) * ones if offset >= 0 else padded.unsqueeze(-2) * ones
    return out.movedim((-2, -1), (dim1, dim2))


def unique(input, sorted=True, return_inverse=False, return_counts=False, dim=None):
    """The distinct values, sorted (torch.unique; no gradient), with optionally each element's
    index into them and each value's count."""
    if dim is not None:
        raise NotImplementedError("unique: dim= is not supported; flatten first")
    values, inverse, counts = np.unique(input.array, return_inverse=True, return_counts=True)
    out = [tensor(values)]
    if return_inverse:
        out.append(tensor(inverse.reshape(input.shape).astype(np.int64)))
    if return_counts:
        out.append(tensor(counts.astype(np.int64)))
    return out[0] if len(out) == 1 else tuple(out)


def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """(var, mean) over `dim`, with var's arguments (torch.var_mean)."""
    variance = input.var(dim, unbiased, keepdim, correction=correction)
    return variance, input.mean(None if isinstance(dim, bool) else dim, keepdim)


def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """(std, mean) over `dim`, with std's arguments (torch.std_mean)."""
    deviation = input.std(dim, unbiased, keepdim, correction=correction)
    return deviation, input.mean(None if isinstance(dim, bool) else dim, keepdim)


def numel(input):
    return input.numel()


def is_tensor(obj):
    return isinstance(obj, Tensor)


def is_floating_point(input):
    return input.dtype.kind == "f"


def as_tensor(data, dtype=None, device=None):
    """Shares memory with a numpy array or Tensor of the same dtype, else copies (torch)."""
    _check_device(device, "as_tensor")
    if isinstance(data, Tensor) and (dtype is None or np.dtype(dtype) == data.dtype):
        return data
    if isinstance(data, np.ndarray) and (dtype is None or np.dtype(dtype) == data.dtype):
        return Tensor.from_numpy(data)
    return tensor(data, dtype=dtype)


# ---------------------------------------------------------------------------- making tensors

def empty(*size, dtype=None, device=None, requires_grad=False, **_ignored):
    """torch.empty: zeros here (numpy's uninitialised memory would only hide bugs)."""
    _check_device(device, "empty")
    out = _wrap(np.zeros(_shape_arg(size), np.float32 if dtype is None else dtype))
    return out.requires_grad_(True) if requires_grad else out


def empty_like(input, dtype=None, device=None, requires_grad=False):
    _check_device(device, "empty_like")
    out = _wrap(np.zeros_like(input.array, dtype=dtype))
    return out.requires_grad_(True) if requires_grad else out


def randperm(n, generator=None, dtype=np.int64, device=None, requires_grad=False):
    """A random permutation of 0..n-1 (int64)."""
    _check_device(device, "randperm")
    out = _wrap(_random.generator_of(generator).permutation(n).astype(dtype))
    return out.requires_grad_(True) if requires_grad else out


def multinomial(input, num_samples, replacement=False, generator=None):
    """Draw `num_samples` indices per row of `input` (1-D or 2-D non-negative weights, need not
    sum to 1), with or without replacement: an int64 tensor of shape (num_samples,) or
    (rows, num_samples)."""
    weights = np.asarray(input.array if isinstance(input, Tensor) else input, np.float64)
    if weights.ndim not in (1, 2):
        raise ValueError(f"multinomial: input must be 1-D or 2-D, got shape {weights.shape}")
    rows = weights.reshape(-1, weights.shape[-1])
    if not np.all(np.isfinite(rows)) or np.any(rows < 0):
        raise RuntimeError("multinomial: probabilities must be finite and non-negative")
    totals = rows.sum(axis=1, keepdims=True)
    if np.any(totals <= 0):
        raise RuntimeError("multinomial: every row needs a positive sum of probabilities")
    if not replacement and num_samples > rows.shape[1]:
        raise RuntimeError(f"multinomial: cannot draw {num_samples} samples without replacement "
                           f"from {rows.shape[1]} categories")
    if not replacement and np.any((rows > 0).sum(axis=1) < num_samples):
        raise RuntimeError("multinomial: fewer non-zero-probability categories than samples "
                           "without replacement")
    rng = _random.generator_of(generator)
    probs = rows / totals
    out = np.stack([rng.choice(len(p), size=num_samples, replace=replacement, p=p) for p in probs])
    return _wrap(out.astype(np.int64).reshape(weights.shape[:-1] + (num_samples,)))


def _legacy_type(name, dtype_):
    def make(*args, **kwargs):
        if kwargs.pop("device", None) not in (None, "cpu"):
            raise RuntimeError(f"{name}: tinygrad_tf runs on the CPU only")
        if args and builtins.all(isinstance(a, numbers.Integral) for a in args) and not kwargs:
            return _wrap(np.zeros(args, dtype_))  # LongTensor(2, 3): a shape
        if len(args) != 1 or kwargs:
            raise TypeError(f"{name}: expected data (a list, array or tensor) or sizes")
        return tensor(args[0], dtype=dtype_)
    make.__name__ = make.__qualname__ = name
    make.__doc__ = f"torch.{name}(data) or torch.{name}(*sizes): a {np.dtype(dtype_)} tensor."
    return make


LongTensor = _legacy_type("LongTensor", np.int64)
FloatTensor = _legacy_type("FloatTensor", np.float32)
DoubleTensor = _legacy_type("DoubleTensor", np.float64)
IntTensor = _legacy_type("IntTensor", np.int32)
BoolTensor = _legacy_type("BoolTensor", np.bool_)
ByteTensor = _legacy_type("ByteTensor", np.uint8)


# ---------------------------------------------------------------------------- grad modes, seeds

class inference_mode(_autograd.no_grad):
    """no_grad here (there is no version-free fast path); `inference_mode(False)` is
    enable_grad, as torch's. A decorator with or without parentheses."""
    _depth = threading.local()  # inference_mode blocks open in this thread

    def __new__(cls, mode=True):
        if not isinstance(mode, bool):  # @inference_mode without parentheses
            return inference_mode(True)(mode)
        self = object.__new__(cls)
        self.on = mode
        return self

    def __enter__(self):
        self._previous = _autograd._GradMode.enabled
        self._depth_before = getattr(self._depth, "n", 0)
        _autograd._GradMode.enabled = not self.on  # torch's inference_mode(False) enables grad
        self._depth.n = self._depth_before + 1 if self.on else 0

    def __exit__(self, *exc):
        self._depth.n = self._depth_before
        return super().__exit__(*exc)

    def __call__(self, function):
        return _decorate(lambda: inference_mode(self.on), function)


def is_inference_mode_enabled():
    return getattr(inference_mode._depth, "n", 0) > 0


class set_grad_enabled:
    """Switch grad recording on or off now (a plain call, as torch's); as a context manager the
    previous mode comes back at the end of the block; as a decorator it changes nothing until
    the function runs, then runs it in that mode."""

    def __init__(self, mode):
        self.mode = bool(mode)
        self._previous = _autograd._GradMode.enabled
        _autograd._GradMode.enabled = self.mode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _autograd._GradMode.enabled = self._previous
        return False

    def __call__(self, function):
        _autograd._GradMode.enabled = self._previous  # undo the switch made on construction
        return _decorate(lambda: set_grad_enabled(self.mode), function)


def seed():
    """Reseed the global generator from fresh entropy; returns the seed."""
    value = int(np.random.SeedSequence().entropy % 2**63)
    _random.manual_seed(value)
    return value


def get_rng_state():
    return _random.get_state()


def set_rng_state(state):
    _random.set_state(state)


def set_num_threads(n):
    from .kernels import threads
    threads.set_threads(n)


def get_num_threads():
    from .kernels import threads
    return threads.current()


def set_printoptions(precision=None, threshold=None, edgeitems=None, linewidth=None,
                     profile=None, sci_mode=None):
    """Passed on to numpy's print options (tensors print through numpy)."""
    options = {k: v for k, v in dict(precision=precision, threshold=threshold,
                                     edgeitems=edgeitems, linewidth=linewidth).items()
               if v is not None}
    if sci_mode is not None:
        options["suppress"] = not sci_mode
    np.set_printoptions(**options)


def compile(model=None, **kwargs):
    """torch.compile: returns the model unchanged (there is no compiler here)."""
    if model is None:
        return lambda m: m
    return model


__all__ = (["dtype", "finfo", "iinfo", "Size", "get_default_dtype", "set_default_dtype", "numel", "is_tensor",
            "is_floating_point", "as_tensor", "empty", "empty_like", "randperm", "multinomial",
            "LongTensor", "FloatTensor", "DoubleTensor", "IntTensor", "BoolTensor", "ByteTensor",
            "inference_mode", "is_inference_mode_enabled", "set_grad_enabled", "seed", "get_rng_state", "set_rng_state",
            "set_num_threads", "get_num_threads", "set_printoptions", "compile", "var_mean", "einsum",
            "take_along_dim", "meshgrid", "broadcast_shapes", "broadcast_tensors", "diag", "unique",
            "atleast_1d", "atleast_2d", "atleast_3d", "hstack", "vstack", "column_stack",
            "searchsorted", "bucketize", "cdist", "dist", "diag_embed",
            "std_mean"]
           + [n for n in FUNCTION_NAMES if n not in ("numel", "is_floating_point")])
