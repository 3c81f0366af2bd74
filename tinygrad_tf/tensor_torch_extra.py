"""More of torch's Tensor methods, each a short composition of the others: the in-place forms
of elementwise ops (`exp_`, `clamp_min_`, `sigmoid_`...), `add`/`sub` with `alpha=`, random fills for hand-written
initialisation (`p.data.normal_(0, 0.02)`), `addcmul`/`addcdiv`/`lerp`, more dtype conversions
(`int`, `half`...), `detach_`, and shape helpers (`tile`, `unflatten`, `movedim`, `select`...).
`TorchMethods` (tensor_torch.py) mixes in `TorchExtras`.
"""
import collections
import copy
import numbers

import numpy as np

from . import autograd as _autograd
from . import dtypes as _dtypes
from . import function as _function
from . import random as _random
from .args import accept_numpy_names as _accept_numpy_names, index_arg as _index_arg
from .args import normalize_dim as _normalize_dim, normalize_dims as _normalize_dims
from .tensor_index import cat as _cat

aminmax_result = collections.namedtuple("aminmax", ["min", "max"])
cummax_result = collections.namedtuple("cummax", ["values", "indices"])
cummin_result = collections.namedtuple("cummin", ["values", "indices"])
kthvalue_result = collections.namedtuple("kthvalue", ["values", "indices"])
median_result = collections.namedtuple("median", ["values", "indices"])

# Ops whose in-place form `<name>_` torch has: the result is computed out of place, then written
# into the tensor under torch's in-place rules (InplaceOps in inplace.py).
INPLACE_FORMS = ("abs", "neg", "exp", "expm1", "log", "log1p", "log2", "log10", "sqrt", "rsqrt",
                 "sin", "cos", "tanh", "sigmoid", "relu", "floor", "ceil", "round", "sign",
                 "reciprocal", "square", "pow", "clamp_min", "clamp_max", "remainder",
                 "floor_divide", "erf", "addcmul", "addcdiv", "lerp", "index_add", "index_copy",
                 "trunc", "frac", "fmod")


def _inplace_form(name):
    def method(self, *args, **kwargs):
        self._check_inplace(f"{name}_", *args, *kwargs.values())
        with _autograd.no_grad():
            result = getattr(self, name)(*args, **kwargs)
        if _dtypes.category(result.dtype) > _dtypes.category(self.dtype):
            raise RuntimeError(f"{name}_: result type {result.dtype} can't be cast to the "
                               f"tensor's dtype {self.dtype} in place (as torch)")
        with _autograd.no_grad():  # the checks are done: copy_ writes and bumps the version
            return self.copy_(result)
    method.__name__ = method.__qualname__ = f"{name}_"
    method.__doc__ = f"In place: self = self.{name}(...), under torch's in-place rules."
    return method


def _identity(reduce, dtype):
    """x with `reduce` (prod, amax or amin) leaves x unchanged: 1, the lowest or the highest."""
    if reduce == "prod":
        return 1
    lowest, highest = (-np.inf, np.inf) if dtype.kind == "f" else (np.iinfo(dtype).min,
                                                                   np.iinfo(dtype).max)
    return lowest if reduce == "amax" else highest


class TorchExtras:
    __slots__ = ()  # a mixin of Tensor, which keeps its fields in slots

    # ------------------------------------------------------------------ arithmetic

    def add(self, other, *, alpha=1):
        """self + alpha * other."""
        return self + (other if alpha == 1 else other * alpha)

    def sub(self, other, *, alpha=1):
        """self - alpha * other."""
        return self - (other if alpha == 1 else other * alpha)

    def addcmul(self, tensor1, tensor2, value=1):
        """self + value * tensor1 * tensor2."""
        return self + value * tensor1 * tensor2

    def addcdiv(self, tensor1, tensor2, value=1):
        """self + value * tensor1 / tensor2."""
        return self + value * tensor1 / tensor2

    def lerp(self, end, weight):
        """self + weight * (end - self)."""
        return self + weight * (end - self)

    # ------------------------------------------------------------------ index writes

    def _spread_index(self, op, dim, index, source):
        """`index` (1-D, along `dim`) shaped like `source` for scatter."""
        axis = _normalize_dim(dim, self.ndim, op)
        index = index if isinstance(index, _autograd._Tensor) else _autograd._Tensor(index)
        if index.ndim != 1 or index.dtype.kind not in "iu":
            raise ValueError(f"{op}: index must be a 1-D integer tensor, got {index.dtype} of "
                             f"shape {index.shape}")
        expected = self.shape[:axis] + (index.shape[0],) + self.shape[axis + 1:]
        if tuple(source.shape) != expected:
            raise ValueError(f"{op}: source has shape {tuple(source.shape)}, expected {expected}")
        shape = [1] * self.ndim
        shape[axis] = -1
        return axis, index.reshape(*shape).expand(*source.shape)

    def index_add(self, dim, index, source, *, alpha=1):
        """A copy with alpha * source's slices added at `index` along `dim` (repeats add up)."""
        axis, spread = self._spread_index("index_add", dim, index, source)
        return self.scatter_add(axis, spread, source if alpha == 1 else source * alpha)

    def index_copy(self, dim, index, source):
        """A copy with source's slices written at `index` along `dim`."""
        axis, spread = self._spread_index("index_copy", dim, index, source)
        return self.scatter(axis, spread, source)

    def scatter_reduce(self, dim, index, src, reduce, *, include_self=True):
        """A copy with src's elements reduced ('sum', 'prod', 'mean', 'amax', 'amin') into the
        positions `index` names along `dim` (torch.scatter_reduce); include_self=False leaves
        self's values out where something is scattered. amax/amin share the gradient evenly
        among ties, as torch's; 'prod' has no gradient here."""
        if reduce not in ("sum", "prod", "mean", "amax", "amin"):
            raise ValueError(f"scatter_reduce: reduce must be sum, prod, mean, amax or amin, "
                             f"got {reduce!r}")
        axis = _normalize_dim(dim, self.ndim, "scatter_reduce")
        index = index if isinstance(index, _autograd._Tensor) else _autograd._Tensor(index)
        grids = list(np.indices(index.shape, sparse=True))
        grids[axis] = index.array
        target = tuple(np.broadcast_arrays(*grids))
        values = src.array[tuple(slice(0, n) for n in index.shape)]
        hit = np.zeros(self.shape, bool)
        hit[target] = True
        Tensor = _autograd._Tensor
        keep = Tensor(~hit | include_self)  # where self's own value takes part
        if reduce in ("sum", "mean"):
            total = self.masked_fill(~keep, 0).scatter_add(axis, index, src)
            if reduce == "sum":
                return total
            counts = keep.to(self.dtype).scatter_add(axis, index, src.new_ones(*index.shape))
            return total / counts if self.dtype.kind == "f" else total // counts
        ufunc = {"prod": np.multiply, "amax": np.maximum, "amin": np.minimum}[reduce]
        out = self.array.copy()
        if not include_self:  # start from the reduction's identity where something lands
            out[hit] = _identity(reduce, out.dtype)
        ufunc.at(out, target, values)
        result = _autograd._wrap_array(out)
        if not (_autograd.is_grad_enabled() and (self.requires_grad or src.requires_grad)):
            return result
        if reduce == "prod":
            raise NotImplementedError("scatter_reduce: 'prod' has no gradient here")
        equal_self = self == result
        ties_src = src == result.gather(axis, index)
        # torch counts self's tie even with include_self=False (then self gets no share)
        count = equal_self.to(self.dtype).scatter_add(axis, index, ties_src.to(self.dtype))
        shared = self.masked_fill(~(equal_self & keep), 0).scatter_add(
            axis, index, src.masked_fill(~ties_src, 0)) / count
        return result + (shared - shared.detach())  # result's values, shared's gradient

    def take(self, index):
        """The elements at `index` of the flattened tensor, in index's shape."""
        return self.reshape(-1)[index]

    def _write_array(self, op, values, edit):
        """In place: `edit(array)` applied to a copy of the data, written back under the
        in-place rules (one version bump)."""
        self._check_inplace(op, values)
        data = self.array.copy()
        edit(data)
        with _autograd.no_grad():
            return self.copy_(_autograd._wrap_array(data))

    def index_put_(self, indices, values, accumulate=False):
        """self[indices] = values in place; accumulate=True adds, repeated indices adding up."""
        index = tuple(i.array if isinstance(i, _autograd._Tensor) else i for i in indices)
        source = values.array if isinstance(values, _autograd._Tensor) else np.asarray(values)

        def edit(data):
            if accumulate:
                np.add.at(data, index, source)
            else:
                data[index] = source
        return self._write_array("index_put_", values, edit)

    def index_put(self, indices, values, accumulate=False):
        """A copy with `values` written at `indices` (a tuple of index tensors, as in
        self[indices]), or added with accumulate=True (repeats adding up); differentiable in
        self and values. Without accumulate a repeated position keeps the last write."""
        index, advanced = _index_arg(tuple(indices), "index_put")
        Tensor = _autograd._Tensor
        values = values if isinstance(values, Tensor) else Tensor(values, dtype=self.dtype)
        target = self.array[index].shape
        values = values.to(self.dtype).expand(*target)
        placed = _function.AddAt.apply(values, index=index, shape=self.shape, advanced=advanced)
        if accumulate:
            return self + placed
        order = np.full(self.shape, -1)  # which value lands at each position: the last write
        order[index] = np.arange(values.numel()).reshape(target)
        base = self.masked_fill(Tensor(order >= 0), 0)
        landed = np.zeros(values.numel(), bool)
        landed[order[order >= 0]] = True
        if landed.all():
            return base + placed
        # a repeated position: its last value, but every value gets grad[indices] (as torch)
        kept = _function.AddAt.apply(values.masked_fill(Tensor(~landed.reshape(target)), 0),
                                     index=index, shape=self.shape, advanced=advanced)
        return base + kept.detach() + (placed - placed.detach())

    def masked_scatter_(self, mask, source):
        """Fill the positions where `mask` (broadcast) is True with source's elements in order."""
        where = np.broadcast_to(_autograd._Tensor(mask).array if not isinstance(
            mask, _autograd._Tensor) else mask.array, self.shape)
        if where.dtype != np.bool_:
            raise TypeError(f"masked_scatter_: mask must be bool, not {where.dtype}")
        count = int(where.sum())
        if count > source.numel():
            raise ValueError(f"masked_scatter_: {count} positions but source has only "
                             f"{source.numel()} elements")

        def edit(data):
            data[where] = source.array.reshape(-1)[:count]
        return self._write_array("masked_scatter_", source, edit)

    def put_(self, index, source, accumulate=False):
        """Write (or add) source into the flattened tensor at `index`."""
        flat_index = np.unravel_index(np.asarray(index.array if isinstance(
            index, _autograd._Tensor) else index).reshape(-1) % max(self.numel(), 1), self.shape)
        flat_source = source.array.reshape(-1) if isinstance(source, _autograd._Tensor) else \
            np.asarray(source).reshape(-1)
        return self.index_put_(tuple(_autograd._wrap_array(i) for i in flat_index),
                               _autograd._wrap_array(flat_source), accumulate)

    # ------------------------------------------------------------------ random fills

    def _fill_from(self, op, values):
        self._check_inplace(op)
        with _autograd.no_grad():
            return self.copy_(values)

    def uniform_(self, a=0.0, b=1.0, *, generator=None):
        """Fill with U(a, b) draws, in place."""
        return self._fill_from("uniform_", _random.generator_of(generator).uniform(a, b, self.shape))

    def normal_(self, mean=0.0, std=1.0, *, generator=None):
        """Fill with N(mean, std^2) draws, in place."""
        return self._fill_from("normal_", _random.generator_of(generator).normal(mean, std, self.shape))

    def bernoulli_(self, p=0.5, *, generator=None):
        """Fill with 1 (probability p) or 0, in place."""
        p = p.array if isinstance(p, _autograd._Tensor) else p
        draws = _random.generator_of(generator).random(self.shape) < p
        return self._fill_from("bernoulli_", draws)

    # ------------------------------------------------------------------ dtypes and the graph

    def int(self):
        return self.to(np.int32)

    def short(self):
        return self.to(np.int16)

    def char(self):
        return self.to(np.int8)

    def byte(self):
        return self.to(np.uint8)

    def half(self):
        return self.to(np.float16)

    @property
    def retains_grad(self):
        """Whether backward keeps this non-leaf's gradient in .grad (retain_grad()); a leaf's
        is always kept, and this is False for it, as torch's."""
        return bool(self._retains_grad) and self._ctx is not None

    @property
    def mT(self):  # noqa: N802 (torch's name)
        """The last two dims swapped (a batch of matrices transposed)."""
        return self.transpose(-2, -1)

    def __deepcopy__(self, memo):
        """A copy of a leaf (its data, flags and grad), as torch's; a non-leaf refuses."""
        if self._ctx is not None:
            raise RuntimeError("Only Tensors created explicitly by the user (graph leaves) "
                               "support the deepcopy protocol (as torch); deepcopy "
                               "t.detach() instead")
        return copy._reconstruct(self, memo, *self.__reduce_ex__(4))

    def detach_(self):
        """Detach in place: the tensor becomes a leaf that does not require grad."""
        self._ctx = None
        self._requires_grad = False
        return self

    # ------------------------------------------------------------------ shapes

    def reshape_as(self, other):
        return self.reshape(other.shape)

    def tile(self, *dims):
        """Repeat along each dim; fewer dims than the tensor's are padded with 1s in front."""
        dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        dims = (1,) * (self.ndim - len(dims)) + tuple(dims)
        return self.repeat(*dims)

    def unflatten(self, dim, sizes):
        """Split dim `dim` into `sizes` (one of them may be -1)."""
        axis = _normalize_dim(dim, self.ndim, "unflatten")
        return self.reshape(*self.shape[:axis], *sizes, *self.shape[axis + 1:])

    def movedim(self, source, destination):
        """Move dim(s) `source` to position(s) `destination`, keeping the others' order."""
        def dims(arg):  # in the order given (normalize_dims would sort them)
            _normalize_dims(arg, self.ndim, "movedim")  # checks range and repeats
            arg = [arg] if isinstance(arg, numbers.Integral) else list(arg)
            return [_normalize_dim(d, self.ndim, "movedim") for d in arg]
        sources, targets = dims(source), dims(destination)
        if len(sources) != len(targets):
            raise ValueError(f"movedim: {len(sources)} source dims but {len(targets)} destinations")
        order = [d for d in range(self.ndim) if d not in sources]
        for target, source in sorted(zip(targets, sources)):
            order.insert(target, source)
        return self.permute(*order)

    moveaxis = movedim

    def select(self, dim, index):
        """The slice at `index` along `dim`, without that dim (x.select(0, i) is x[i])."""
        axis = _normalize_dim(dim, self.ndim, "select")
        return self[(slice(None),) * axis + (index,)]

    def tensor_split(self, indices_or_sections, dim=0):
        """Split into n nearly equal parts (the first ones one longer) or at the given indices."""
        axis = _normalize_dim(dim, self.ndim, "tensor_split")
        length = self.shape[axis]
        if isinstance(indices_or_sections, numbers.Integral):
            n = int(indices_or_sections)
            if n <= 0:
                raise ValueError(f"tensor_split: the number of sections must be positive, got {n}")
            bounds = [i * (length // n) + min(i, length % n) for i in range(n + 1)]
        else:
            bounds = [0, *(min(max(int(i) + length * (i < 0), 0), length)
                           for i in indices_or_sections), length]
        return tuple(self.narrow(axis, start, max(stop, start) - start)
                     for start, stop in zip(bounds, bounds[1:]))

    def take_along_dim(self, indices, dim=None):
        """Values at `indices` along `dim` (argsort/argmax's results pick from it); dim=None
        reads both flattened. The other dims broadcast, as torch's."""
        if dim is None:
            return self.reshape(-1).gather(0, indices.reshape(-1))
        axis = _normalize_dim(dim, self.ndim, "take_along_dim")
        shape = list(np.broadcast_shapes(self.shape[:axis] + (1,) + self.shape[axis + 1:],
                                         indices.shape[:axis] + (1,) + indices.shape[axis + 1:]))
        source, index = list(shape), list(shape)
        source[axis], index[axis] = self.shape[axis], indices.shape[axis]
        return self.expand(*source).gather(axis, indices.expand(*index))

    def diagonal(self, offset=0, dim1=0, dim2=1):
        """The diagonal of the matrices in dims (dim1, dim2) (`offset` above it), as the last dim."""
        first = _normalize_dim(dim1, self.ndim, "diagonal")
        second = _normalize_dim(dim2, self.ndim, "diagonal")
        x = self.movedim((first, second), (-2, -1))
        rows = np.arange(max(0, -offset), min(x.shape[-2], x.shape[-1] - offset))
        if rows.size == 0:
            return x[..., :0, 0]
        return x[..., rows, rows + offset]

    def trace(self):
        """The sum of the diagonal of a matrix."""
        if self.ndim != 2:
            raise ValueError(f"trace: expects a matrix, got shape {self.shape}")
        return self.diagonal().sum()

    def diff(self, n=1, dim=-1, prepend=None, append=None):
        """The n-th forward difference along `dim` (after joining prepend and append)."""
        axis = _normalize_dim(dim, self.ndim, "diff")
        x = self
        if prepend is not None or append is not None:
            parts = [t if isinstance(t, _autograd._Tensor) else _autograd._Tensor(t)
                     for t in (prepend, self, append) if t is not None]
            x = _cat(parts, axis)
        for _ in range(n):
            x = x.narrow(axis, 1, x.shape[axis] - 1) - x.narrow(axis, 0, x.shape[axis] - 1)
        return x

    def count_nonzero(self, dim=None):
        """How many elements are not zero (over `dim`), as int64."""
        return (self != 0).sum(dim)

    def nansum(self, dim=None, keepdim=False):
        """sum, with NaN counted as 0."""
        return self.masked_fill(self.isnan(), 0).sum(dim, keepdim)

    def nanmean(self, dim=None, keepdim=False):
        """mean of the elements that are not NaN."""
        present = (~self.isnan()).sum(dim, keepdim)
        return self.nansum(dim, keepdim) / present.to(self.dtype)

    def aminmax(self, *, dim=None, keepdim=False):
        """(min, max) over `dim` (named fields `min`, `max`)."""
        return aminmax_result(self.amin(dim, keepdim), self.amax(dim, keepdim))

    def kthvalue(self, k, dim=-1, keepdim=False):
        """(values, indices) of the k-th smallest element along `dim` (k counts from 1; NaN is
        the largest). Which of equal values' indices is returned can differ from torch's, and
        the gradient goes to that element."""
        axis = _normalize_dim(dim, self.ndim, "kthvalue")
        size = self.shape[axis] if self.ndim else 1
        if not 1 <= k <= size:
            raise IndexError(f"kthvalue: k = {k} is out of range for a dim of size {size}")
        order = self.argsort(axis)
        index = order.narrow(axis, k - 1, 1) if self.ndim else order
        return self._picked(kthvalue_result, axis, index, keepdim)

    def median(self, dim=None, keepdim=False):
        """The lower median (the ((n + 1) // 2)-th smallest), NaN if the values hold one. With
        `dim`, (values, indices) as kthvalue; without, one value whose gradient is shared evenly
        by the elements equal to it, as torch's."""
        if dim is None:
            flat = self.reshape(-1)
            if flat.shape[0] == 0:
                return self.new_full((), float("nan")) if self.dtype.kind == "f" else flat.sum()
            if self.dtype.kind == "f" and bool(flat.isnan().any()):
                return flat.detach()[flat.isnan().to(np.int8).argmax()].clone()
            value = flat.kthvalue((flat.shape[0] + 1) // 2).values.detach()
            ties = (flat == value).to(self.dtype) if self.dtype.kind == "f" else None
            return value if ties is None else (flat * ties).sum() / ties.sum()
        axis = _normalize_dim(dim, self.ndim, "median")
        size = self.shape[axis] if self.ndim else 1
        index = self.argsort(axis)
        index = index.narrow(axis, (size - 1) // 2, 1) if self.ndim else index
        if self.dtype.kind == "f" and self.ndim:  # a NaN in a slice is its median
            nan = self.isnan()
            first_nan = nan.to(np.int8).argmax(axis, keepdim=True)
            index = _autograd._wrap_array(np.where(nan.any(axis, keepdim=True).array,
                                                   first_nan.array, index.array))
        return self._picked(median_result, axis, index, keepdim)

    def _picked(self, result_type, axis, index, keepdim):
        if self.ndim == 0:
            return result_type(self.clone(), index.reshape(()))
        values = self.gather(axis, index)
        if not keepdim:
            values, index = values.squeeze(axis), index.squeeze(axis)
        return result_type(values, index)

    def cummax(self, dim):
        """(values, indices) of the running maximum along `dim`; at ties the later index, as
        torch's; the gradient goes to that element."""
        return self._running_extreme("cummax", dim, np.maximum, cummax_result)

    def cummin(self, dim):
        """(values, indices) of the running minimum along `dim` (ties: the later index)."""
        return self._running_extreme("cummin", dim, np.minimum, cummin_result)

    def _running_extreme(self, op, dim, extreme, result_type):
        axis = _normalize_dim(dim, self.ndim, op)
        data = self.array.reshape(self.shape or (1,))
        running = extreme.accumulate(data, axis=axis)
        positions = np.arange(data.shape[axis]).reshape([-1 if d == axis else 1
                                                         for d in range(data.ndim)])
        held = np.where(data == running, positions, -1)  # where the extreme was (re)set
        index = np.maximum.accumulate(held, axis=axis).reshape(self.shape)
        index = _autograd._wrap_array(index.astype(np.int64))
        if self.ndim == 0:
            return result_type(self.clone(), index)
        return result_type(self.gather(axis, index), index)

    def stride(self, dim=None):
        """Steps in elements between neighbours along each dim (numpy's byte strides / itemsize)."""
        steps = tuple(s // self.array.itemsize for s in self.array.strides)
        return steps if dim is None else steps[dim]

    def storage_offset(self):
        """Where this view starts in its buffer, in elements."""
        root = self.array
        while isinstance(root.base, np.ndarray):
            root = root.base
        start = self.array.__array_interface__["data"][0] - root.__array_interface__["data"][0]
        return start // self.array.itemsize

    def data_ptr(self):
        return self.array.__array_interface__["data"][0]

    def cumprod(self, dim, dtype=None):
        """Running product along `dim`. With a graph it is a scan of log2(n) multiplications by
        the product so far, shifted (exact gradients at zeros, from the product rule)."""
        x = self if dtype is None else self.to(dtype)
        axis = _normalize_dim(dim, x.ndim, "cumprod")
        if x.dtype.kind != "f":
            x = x.to(np.int64)
        if x.ndim == 0 or not (x.requires_grad and _autograd.is_grad_enabled()):
            return _autograd._wrap_array(np.cumprod(x.array.reshape(x.shape or (1,)), axis)
                                         .reshape(x.shape).astype(x.dtype, copy=False))
        out, shift, length = x, 1, x.shape[axis]
        while shift < length:
            ones = x.new_ones(*x.shape[:axis], shift, *x.shape[axis + 1:])
            earlier = _cat([ones, out.narrow(axis, 0, length - shift)], axis)
            out, shift = out * earlier, shift * 2
        return out

    # ------------------------------------------------------------------ rounding toward zero

    def trunc(self):
        """Round toward zero (zero gradient, as floor)."""
        return self._step(np.trunc)

    fix = trunc

    def frac(self):
        """x - trunc(x), with x's sign."""
        return self - self.trunc()

    def fmod(self, other):
        """The remainder of a / b with a's sign (C's fmod; `%` has b's sign)."""
        if self.dtype.kind != "f" and not (isinstance(other, _autograd._Tensor)
                                           and other.dtype.kind == "f") and not isinstance(other, float):
            divisor = other.array if isinstance(other, _autograd._Tensor) else other
            if np.any(np.asarray(divisor) == 0):
                raise ZeroDivisionError("fmod: integer division by zero (as torch)")
            return _autograd._wrap_array(np.fmod(self.array, divisor))
        return self - other * (self / other).trunc()

    def fliplr(self):
        return self.flip(1)

    def flipud(self):
        return self.flip(0)


for _name in INPLACE_FORMS:
    setattr(TorchExtras, f"{_name}_", _inplace_form(_name))


_accept_numpy_names(TorchExtras, (
    "nansum", "nanmean", "median", "count_nonzero", "cumprod", "kthvalue", "cummax",
    "cummin"))
