"""Tensor methods that reduce or scan along dims: sums and statistics, max/min with their
indices, softmax, cumulative sums, sorting. Mixed into `Tensor` (tensor.py)."""
import collections

import numpy as np

from . import autograd as _autograd
from . import function as F
from .args import accept_numpy_names as _accept_numpy_names
from .args import normalize_dim as _normalize_dim, normalize_dims as _normalize_dims

_wrap = _autograd._wrap_array

# torch.return_types: a named (values, indices) pair, so both `x.max(1)[1]` and `.indices` work.
max_result = collections.namedtuple("max", ["values", "indices"])
min_result = collections.namedtuple("min", ["values", "indices"])
sort_result = collections.namedtuple("sort", ["values", "indices"])
topk_result = collections.namedtuple("topk", ["values", "indices"])


def _reduced_dims(dim, ndim, op):
    """normalize_dims for sum/mean/var/amax/amin: torch reduces every dim for dim=() too
    (numpy would reduce none). any/all keep numpy's reading, as torch's do."""
    if isinstance(dim, (tuple, list)) and not dim:
        return None
    return _normalize_dims(dim, ndim, op)


def _count(tensor, axes):
    return tensor.array.size if axes is None else int(np.prod([tensor.shape[a] for a in axes]))


def _wide(tensor):
    """The input of an integer sum or product: int64, as torch's result (numpy would keep uint64
    for unsigned ints)."""
    return tensor if tensor.dtype.kind == "f" else tensor.to(np.int64)


def _root_with_zero_slope_at_zero(total, p):
    """total ** (1 / p), with the gradient 0 where total is 0, as torch defines it for norm and
    std (the root's slope there is infinite: 0 * inf = NaN): the root is taken of 1 instead and
    the result masked to 0."""
    zero = (total == 0).array
    safe = total.masked_fill(zero, 1.0)
    root = safe.sqrt() if p == 2 else safe ** (1.0 / p)
    return root.masked_fill(zero, 0.0)


def _floats_only(tensor, op):
    # torch has no integer mean, variance or norm (what dtype would it be?); neither do we.
    if tensor.dtype.kind != "f":
        raise TypeError(f"{op}: needs a float tensor, not {tensor.dtype} (as in torch); convert "
                        "with .float() first")


def _variance_args(op, dim, unbiased, correction):
    """(dim, correction) from torch's var/std arguments. Its second positional argument is
    `unbiased`, not `keepdim` (`x.var(0, False)` is the biased variance), and a bool alone is
    `unbiased` (`x.std(False)`); `correction` is keyword-only."""
    if isinstance(dim, bool):
        if unbiased is not None:
            raise TypeError(f"{op}: unbiased given twice (as a bool first argument and by name)")
        dim, unbiased = None, dim
    if unbiased is not None and correction is not None:
        raise TypeError(f"{op}: give unbiased or correction, not both (as in torch)")
    if unbiased is not None and not isinstance(unbiased, (bool, np.bool_)):
        raise TypeError(f"{op}: unbiased must be a bool, not {unbiased!r}; the second positional "
                        "argument is unbiased, as in torch (keepdim= and correction= by name)")
    if unbiased is not None:
        return dim, int(unbiased)
    return dim, 1 if correction is None else correction


class ReduceOps:
    __slots__ = ()  # a mixin of Tensor, which keeps its fields in slots

    # ------------------------------------------------------------------ sums and statistics

    def sum(self, dim=None, keepdim=False, dtype=None):
        """Sum over `dim` (an int, a tuple, or None for every dim); integers and bools sum to
        int64, as in torch; `dtype` converts first."""
        if (dtype is not None and np.dtype(dtype).kind != "f" and self.requires_grad
                and _autograd.is_grad_enabled()):
            raise RuntimeError(f"sum: a sum of dtype {np.dtype(dtype)} cannot carry a gradient "
                               "(as torch); sum in float, or detach() first")
        x = _wide(self) if dtype is None else self.to(dtype)
        out = F.Sum.apply(x, axes=_reduced_dims(dim, self.ndim, "sum"), keepdim=keepdim)
        # numpy adds bools as ints: sum(dtype=bool) converts the sum
        return out if dtype is None or out.dtype == dtype else out.to(dtype)

    def mean(self, dim=None, keepdim=False, *, dtype=None):
        """sum / n over `dim` (converted to `dtype` first, if given); the mean of no elements is
        NaN, as in torch."""
        if dtype is not None:
            return self.to(dtype).mean(dim, keepdim)
        axes = _reduced_dims(dim, self.ndim, "mean")
        _floats_only(self, "mean")
        count = _count(self, axes)
        return self.sum(axes, keepdim) * (1.0 / count if count else float("nan"))

    def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        """sum((x - mean)^2) / (n - correction) over `dim`: correction=1 (unbiased=True) is the
        unbiased estimate. torch's two forms: var(dim, unbiased, keepdim) and var(dim, *,
        correction, keepdim); var(False) is every element's biased variance. As in torch,
        n <= correction gives NaN (there is no spread to estimate)."""
        dim, correction = _variance_args("var", dim, unbiased, correction)
        axes = _reduced_dims(dim, self.ndim, "var")
        _floats_only(self, "var")
        count = _count(self, axes)
        centered = self - self.mean(axes, keepdim=True)
        scale = 1.0 / (count - correction) if count > correction else float("nan")
        return (centered * centered).sum(axes, keepdim) * scale

    def std(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        """sqrt(var), with var's arguments: the standard deviation over `dim`. Where the spread
        is 0 the gradient is 0, as torch's (the root's infinite slope would give 0 * inf = NaN):
        as in norm."""
        dim, correction = _variance_args("std", dim, unbiased, correction)
        return _root_with_zero_slope_at_zero(self.var(dim, keepdim=keepdim, correction=correction), 2)

    def prod(self, dim=None, keepdim=False, dtype=None):
        """Product over one dim (or every element if dim is None), converted to `dtype` first if
        given; integers give int64."""
        if dtype is not None:
            return self.to(dtype).prod(dim, keepdim)
        self = _wide(self)
        if dim is None:
            out = F.Prod.apply(self.reshape(-1), axis=0, keepdim=False)
            return out.reshape((1,) * self.ndim) if keepdim else out
        axis = _normalize_dim(dim, self.ndim, "prod")
        if self.ndim == 0:
            return self.reshape(1).prod(0).reshape(())
        return F.Prod.apply(self, axis=axis, keepdim=keepdim)

    def norm(self, p=2, dim=None, keepdim=False, dtype=None):
        """The p-norm (sum |x|^p)^(1/p) over `dim`; p may be float('inf'), or 'fro' (the 2-norm
        of the elements, as torch's). Converted to `dtype` first, if given."""
        if dtype is not None:
            return self.to(dtype).norm(p, dim, keepdim)
        if p == "fro":
            p = 2
        elif isinstance(p, str):
            raise NotImplementedError(f"norm: p={p!r} is not supported (only numbers and 'fro')")
        _floats_only(self, "norm")
        x = self
        if p == float("inf"):
            return x.abs().amax(dim, keepdim)
        if p == float("-inf"):
            return x.abs().amin(dim, keepdim)
        if p == 0:  # the count of nonzero elements; piecewise constant: no gradient, as torch
            return (x != 0).to(x.dtype).sum(dim, keepdim).detach()
        if p == 1:
            return x.abs().sum(dim, keepdim)
        total = (x * x).sum(dim, keepdim) if p == 2 else (x.abs() ** p).sum(dim, keepdim)
        return _root_with_zero_slope_at_zero(total, p)

    def logsumexp(self, dim, keepdim=False):
        """log(sum(exp(x))) over `dim`, computed stably (the max is subtracted first)."""
        axes = _normalize_dims(dim, self.ndim, "logsumexp")
        x = self._float_input()
        if x.array.size == 0:  # nothing to shift by: log of an empty sum is -inf, as torch
            with np.errstate(divide="ignore"):
                return x.exp().sum(axes, keepdim).log()
        shift = x.detach().amax(axes, keepdim=True)
        shift = shift.masked_fill(~shift.isfinite(), 0.0)  # an all -inf row stays -inf, not NaN
        out = (x - shift).exp().sum(axes, keepdim=True).log() + shift
        return out if keepdim else out.squeeze(axes) if axes is not None else out.reshape(())

    def cumsum(self, dim, dtype=None):
        """Running sum along `dim` (converted to `dtype` first, if given); integers give int64,
        as in torch."""
        if dtype is not None:
            return self.to(dtype).cumsum(dim)
        axis = _normalize_dim(dim, self.ndim, "cumsum")
        if self.ndim == 0:
            return self.reshape(1).cumsum(0).reshape(())
        return F.CumSum.apply(_wide(self), axis=axis)

    # ------------------------------------------------------------------ max and min

    def _extreme_axes(self, op, dim):
        """The dims `op` (max, min, argmax, ...) reduces. There is no largest element of nothing:
        as torch, a reduced dim of size 0 raises, while other empty dims give empty results."""
        axes = _reduced_dims(dim, self.ndim, op)
        if self.dtype.kind == "b" and op in ("argmax", "argmin"):
            raise TypeError(f"{op}: bool tensors are not supported (as in torch); convert with "
                            ".long() first")
        if self.array.size == 0:
            empty = [a for a in (range(self.ndim) if axes is None else axes) if self.shape[a] == 0]
            if empty:
                raise IndexError(f"{op}: cannot reduce dim {empty[0]} of size 0 (tensor of shape "
                                 f"{self.shape}): there is no {op} of no elements")
        return axes

    def amax(self, dim=None, keepdim=False):
        """Largest value over `dim` (an int, a tuple or None); NaN wins, as in torch. The gradient
        is split evenly between ties, as torch's."""
        axes = self._extreme_axes("amax", dim)
        return F.AMax.apply(self, axes=axes, keepdim=keepdim, largest=True)

    def amin(self, dim=None, keepdim=False):
        """Smallest value over `dim`; NaN wins, as in torch."""
        axes = self._extreme_axes("amin", dim)
        return F.AMax.apply(self, axes=axes, keepdim=keepdim, largest=False)

    def _winner(self, dim, keepdim, largest):
        # max(dim) / min(dim): the gradient goes to the index returned, as torch's
        axes = self._extreme_axes("max" if largest else "min", dim)
        return F.Max.apply(self, axes=axes, keepdim=keepdim, largest=largest)

    def max(self, dim=None, keepdim=False):
        """max() -> the largest value; max(dim) -> (values, indices) along dim, as in torch;
        max(other_tensor) -> the elementwise maximum."""
        if isinstance(dim, _autograd._Tensor):
            return self.maximum(dim)
        if dim is None:
            return self.amax()
        _normalize_dim(dim, self.ndim, "max")
        return max_result(self._winner(dim, keepdim, True), self._arg("max", dim, keepdim))

    def min(self, dim=None, keepdim=False):
        """min() -> the smallest value; min(dim) -> (values, indices) along dim."""
        if isinstance(dim, _autograd._Tensor):
            return self.minimum(dim)
        if dim is None:
            return self.amin()
        _normalize_dim(dim, self.ndim, "min")
        return min_result(self._winner(dim, keepdim, False), self._arg("min", dim, keepdim))

    def _arg(self, op, dim, keepdim):
        # The first NaN, or else the first extreme, as torch (numpy's argmax/argmin agree).
        find = np.argmax if op in ("argmax", "max") else np.argmin
        if op in ("argmax", "argmin"):
            self._extreme_axes(op, dim)
        if dim is None:
            out = np.asarray(find(self.array))
            return _wrap(out.reshape((1,) * self.ndim) if keepdim else out)
        axis = _normalize_dim(dim, self.ndim, op)
        if self.ndim == 0:
            return _wrap(np.asarray(0))
        return _wrap(find(self.array, axis=axis, keepdims=keepdim))

    def argmax(self, dim=None, keepdim=False):
        """Index of the largest value along `dim` (of the flattened tensor if dim is None)."""
        return self._arg("argmax", dim, keepdim)

    def argmin(self, dim=None, keepdim=False):
        return self._arg("argmin", dim, keepdim)

    def any(self, dim=None, keepdim=False):
        """True where any element over `dim` is nonzero; bool, or uint8 for uint8 (torch's)."""
        axes = _normalize_dims(dim, self.ndim, "any")
        out = np.asarray(self.array.any(axis=axes, keepdims=keepdim))
        return _wrap(out.astype(np.uint8) if self.dtype == np.uint8 else out)

    def all(self, dim=None, keepdim=False):
        """True where every element over `dim` is nonzero; bool, or uint8 for uint8 (torch's)."""
        axes = _normalize_dims(dim, self.ndim, "all")
        out = np.asarray(self.array.all(axis=axes, keepdims=keepdim))
        return _wrap(out.astype(np.uint8) if self.dtype == np.uint8 else out)

    # ------------------------------------------------------------------ softmax

    def softmax(self, dim, dtype=None):
        """exp(x) / sum(exp(x)) along `dim` (converted to `dtype` first, if given); a row of all
        -inf gives zeros, never NaN."""
        if dtype is not None:
            return self.to(dtype).softmax(dim)
        axis = _normalize_dim(dim, self.ndim, "softmax")
        _floats_only(self, "softmax")
        if self.ndim == 0:  # the kernels work along a real axis
            return self.reshape(1).softmax(0).reshape(())
        if self.array.size == 0:  # an empty batch: nothing to normalise (the kernels need rows)
            return self._float_input().clone()
        return F.Softmax.apply(self._float_input(), axis=axis)

    def log_softmax(self, dim, dtype=None):
        """x - log(sum(exp(x))) along `dim` (converted to `dtype` first, if given), computed
        stably; a row of all -inf gives -inf (log of probability 0) and a finite gradient."""
        if dtype is not None:
            return self.to(dtype).log_softmax(dim)
        axis = _normalize_dim(dim, self.ndim, "log_softmax")
        _floats_only(self, "log_softmax")
        if self.ndim == 0:
            return self.reshape(1).log_softmax(0).reshape(())
        if self.array.size == 0:
            return self._float_input().clone()
        return F.LogSoftmax.apply(self._float_input(), axis=axis)

    # ------------------------------------------------------------------ sorting

    def argsort(self, dim=-1, descending=False, stable=False):
        """Indices that sort along `dim`. Always stable (equal values keep their order, also
        descending); NaN counts as the largest value, as in torch."""
        axis = _normalize_dim(dim, self.ndim, "argsort")
        if self.ndim == 0:
            return _wrap(np.asarray(0))
        if not descending:  # numpy's sort puts NaN last, too
            return _wrap(np.argsort(self.array, axis=axis, kind="stable"))
        # Descending without negating (wrong for unsigned ints, INT64_MIN and NaN): sort the
        # reversed array ascending and read it backwards; ties then keep their original order.
        n = self.shape[axis]
        backwards = np.flip(np.argsort(np.flip(self.array, axis), axis=axis, kind="stable"), axis)
        return _wrap(n - 1 - backwards)

    def sort(self, dim=-1, descending=False, stable=False):
        """(values, indices) sorted along `dim` (stable, NaN largest); the gradient flows back
        through the indices."""
        indices = self.argsort(dim, descending)
        if self.ndim == 0:
            return sort_result(self, indices)
        return sort_result(self.gather(dim, indices), indices)

    def topk(self, k, dim=-1, largest=True, sorted=True):
        """The k largest (or smallest) values along `dim` and their indices, largest (smallest)
        first; NaN counts as the largest value. Which of several equal values is taken is not
        specified (torch's choice differs between builds)."""
        axis = _normalize_dim(dim, self.ndim, "topk")
        if self.dtype.kind == "b":
            raise TypeError("topk: bool tensors are not supported (as in torch); convert with "
                            ".long() first")
        size = self.shape[axis] if self.ndim else 1
        if not 0 <= k <= size:
            raise ValueError(f"topk: k={k} is out of range for dim {dim} of size {size}")
        indices = self.argsort(dim, descending=largest)
        if self.ndim == 0:
            return topk_result(self, indices)
        indices = _wrap(np.take(indices.array, np.arange(k), axis=axis))
        return topk_result(self.gather(dim, indices), indices)


_accept_numpy_names(ReduceOps, (
    "sum", "mean", "std", "var", "prod", "max", "min", "amax", "amin", "argmax",
    "argmin", "any", "all", "logsumexp", "cumsum", "softmax", "log_softmax", "sort", "argsort", "topk"))
