"""Tensor methods that pick, place and rearrange elements: indexing, gather/scatter, splitting,
repeating, flipping, rolling, triangles; and the module functions `where`, `cat`, `stack`.
`Tensor` (tensor.py) mixes in `IndexOps`."""
import functools
import numbers

import numpy as np

from . import autograd as _autograd
from . import dtypes as _dtypes
from . import function as F
from .args import bool_mask as _bool_mask, index_arg as _index_arg, index_tensor as _index_tensor
from .args import normalize_dim as _normalize_dim, normalize_dims as _normalize_dims
from .args import accept_numpy_names as _accept_numpy_names
from .args import shape_arg as _shape_arg, write_out as _write_out
from .dtypes import promote_dtypes as _promote_dtypes

_wrap = _autograd._wrap_array


def _check_along(op, x, index, axis, src=None):
    """torch's gather/scatter rule: index has x's number of dims and is no larger than x (or
    src) in any dim but `axis`."""
    if index.ndim != max(x.ndim, 1):
        raise ValueError(f"{op}: index of shape {index.shape} needs as many dims as the tensor "
                         f"of shape {x.shape}")
    for d, n in enumerate(index.shape):
        if (d != axis and n > x.shape[d]) or (src is not None and n > src.shape[d]):
            raise ValueError(f"{op}: index of shape {index.shape} is larger than the tensor "
                             f"{x.shape}" + (f" or src {src.shape}" if src is not None else "") +
                             f" in dim {d}")
    size = x.shape[axis]
    if index.size and not (0 <= index.min() and index.max() < size):
        raise IndexError(f"{op}: index values must be in [0, {size}) for dim {axis} of "
                         f"size {size}; got {index.min()} to {index.max()}")


class IndexOps:
    __slots__ = ()  # a mixin of Tensor, which keeps its fields in slots

    def __getitem__(self, index):
        index, advanced = _index_arg(index)
        try:
            return F.GetItem.apply(self, index=index, advanced=advanced)
        except IndexError as error:
            raise IndexError(f"getitem: index {index!r} does not fit shape {self.shape}: "
                             f"{error}") from None

    def masked_fill(self, mask, value):
        """A copy with `value` wherever the boolean `mask` (broadcast to self) is True."""
        mask = _bool_mask(mask, "masked_fill")
        try:
            shape = np.broadcast_shapes(self.shape, mask.shape)
        except ValueError:
            shape = None
        if shape != self.shape:  # torch never grows the tensor to the mask's shape
            raise ValueError(f"masked_fill: mask of shape {mask.shape} does not broadcast to the "
                             f"tensor's shape {self.shape}")
        if isinstance(value, _autograd._Tensor):
            if value.ndim:
                raise ValueError(f"masked_fill: a tensor value must be 0-d (as torch), got shape "
                                 f"{value.shape}")
            if value.requires_grad:  # an input of the op: it gets the filled positions' grad
                return F.MaskedFill.apply(self, value.to(self.dtype), mask=mask)
            value = value.array
        return F.MaskedFill.apply(self, mask=mask, value=value)

    # ------------------------------------------------------------------ gather and scatter

    def gather(self, dim, index):
        """out[i][j] = self[index[i][j]][j] for dim 0 (torch.gather); index is an int tensor."""
        axis = _normalize_dim(dim, self.ndim, "gather")
        index = _index_tensor(index, "gather")
        if self.ndim == 0:
            return self.reshape(1).gather(0, index.reshape(-1)).reshape(index.shape)
        _check_along("gather", self, index, axis)
        return F.Gather.apply(self, index=index, axis=axis)

    def _scatter(self, op, dim, index, src, add):
        axis = _normalize_dim(dim, self.ndim, op)
        index = _index_tensor(index, op)
        if not isinstance(src, _autograd._Tensor):  # torch's scatter(dim, index, value)
            src = _wrap(np.full(index.shape, src, dtype=self.dtype))
        if src.dtype != self.dtype:
            raise TypeError(f"{op}: src of dtype {src.dtype} into a tensor of dtype {self.dtype}")
        _check_along(op, self, index, axis, src)
        src = src[tuple(slice(n) for n in index.shape)]  # only the part the index covers
        return F.Scatter.apply(self, src, index=index, axis=axis, add=add)

    def scatter(self, dim, index, src):
        """A copy with src[i][j] written to position index[i][j] along `dim` (torch.scatter)."""
        return self._scatter("scatter", dim, index, src, add=False)

    def scatter_add(self, dim, index, src):
        """A copy with src[i][j] added at position index[i][j] along `dim`; repeats add up."""
        return self._scatter("scatter_add", dim, index, src, add=True)

    def index_select(self, dim, index):
        """The slices at the 1-D int `index` along `dim`."""
        axis = _normalize_dim(dim, self.ndim, "index_select")
        index = _index_tensor(index, "index_select")
        if index.ndim > 1:
            raise ValueError(f"index_select: index must be 1-D, got shape {index.shape}")
        size = self.shape[axis] if self.ndim else 1
        if index.size and not (0 <= index.min() and index.max() < size):  # no negatives: torch's
            raise IndexError(f"index_select: index values must be in [0, {size}) for dim {dim}; "
                             f"got {index.min()} to {index.max()}")
        if self.ndim == 0:  # as torch: a 0-d tensor takes one index and stays 0-d
            if index.size != 1:
                raise IndexError(f"index_select: a 0-d tensor takes one index, got {index.size}")
            return self.reshape(1)[index.reshape(-1)].reshape(())
        return self[(slice(None),) * axis + (index.reshape(-1),)]

    # ------------------------------------------------------------------ splitting

    def split(self, split_size_or_sections, dim=0):
        """Pieces along `dim`: of one size (the last may be smaller) or of the listed sizes."""
        axis = _normalize_dim(dim, self.ndim, "split")
        size = self.shape[axis]
        if isinstance(split_size_or_sections, numbers.Integral):
            step = split_size_or_sections
            if step <= 0:
                raise ValueError(f"split: split size must be positive, got {step}")
            sizes = [min(step, size - start) for start in range(0, size, step)] or [0]
        else:
            sizes = list(split_size_or_sections)
            if sum(sizes) != size:
                raise ValueError(f"split: sections {sizes} do not add up to dim {dim}'s size "
                                 f"{size}")
        starts = np.cumsum([0] + sizes[:-1])
        lead = (slice(None),) * axis
        return tuple(self[lead + (slice(int(s), int(s) + n),)] for s, n in zip(starts, sizes))

    def chunk(self, chunks, dim=0):
        """At most `chunks` pieces of ceil(size / chunks) along `dim`, as torch.chunk."""
        if chunks <= 0:
            raise ValueError(f"chunk: chunks must be positive, got {chunks}")
        axis = _normalize_dim(dim, self.ndim, "chunk")
        size = self.shape[axis] if self.ndim else 1
        if size == 0:  # torch gives `chunks` empty pieces of an empty dim
            return tuple(self[(slice(None),) * axis + (slice(0, 0),)] for _ in range(chunks))
        return self.split(max(-(-size // chunks), 1), dim)

    def unbind(self, dim=0):
        """The slices along `dim`, each without that dim."""
        axis = _normalize_dim(dim, self.ndim, "unbind")
        return tuple(self[(slice(None),) * axis + (i,)] for i in range(self.shape[axis]))

    # ------------------------------------------------------------------ movement (numpy views)

    def reshape(self, *shape):
        shape = _shape_arg(shape)
        if any(n < -1 for n in shape):  # numpy would take any negative size as -1
            raise ValueError(f"reshape: invalid size in {shape}: sizes are >= 0, or one -1")
        try:
            return F.Reshape.apply(self, shape=shape)
        except ValueError:
            raise ValueError(f"reshape: cannot view a tensor of shape {self.shape} "
                             f"({self.array.size} elements) as {shape}") from None

    def view(self, *shape):
        """reshape that must not copy, as torch's: a strided tensor (an expand, a transpose)
        whose layout cannot take the new shape raises instead of silently detaching."""
        out = self.reshape(*shape)
        if out.array.size and not np.may_share_memory(out.array, self.array):
            raise RuntimeError(f"view: a tensor of shape {self.shape} with strides "
                               f"{self.array.strides} cannot be viewed as {out.shape} without "
                               "a copy (as torch); use .reshape(...) or .contiguous() first")
        return out

    def flatten(self, start_dim=0, end_dim=-1):
        if self.ndim == 0:
            return self.reshape(1)
        start = _normalize_dim(start_dim, self.ndim, "flatten")
        end = _normalize_dim(end_dim, self.ndim, "flatten")
        if start > end:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} "
                             f"(shape {self.shape})")
        return self.reshape(self.shape[:start] + (-1,) + self.shape[end + 1:])

    def permute(self, *dims):
        dims = _shape_arg(dims)
        axes = tuple(_normalize_dim(d, self.ndim, "permute") for d in dims)
        if sorted(axes) != list(range(self.ndim)):
            raise ValueError(f"permute: {dims} is not a permutation of the {self.ndim} dims of a "
                             f"tensor of shape {self.shape}")
        return F.Permute.apply(self, dims=axes)

    def transpose(self, dim0, dim1):
        dims = list(range(self.ndim))
        a, b = _normalize_dim(dim0, self.ndim, "transpose"), _normalize_dim(dim1, self.ndim, "transpose")
        if a != b:  # (a 0-d tensor has no dims to swap)
            dims[a], dims[b] = dims[b], dims[a]
        return F.Permute.apply(self, dims=tuple(dims))

    @property
    def T(self):
        """The dims reversed, as torch's (which deprecates it for other than 2-D)."""
        return self.permute(*reversed(range(self.ndim)))

    def unsqueeze(self, dim):
        axis = _normalize_dim(dim, self.ndim + 1, "unsqueeze")
        return self.reshape(self.shape[:axis] + (1,) + self.shape[axis:])

    def squeeze(self, dim=None):
        if dim is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        axes = _normalize_dims(dim, self.ndim, "squeeze") or ()
        return self.reshape(tuple(n for i, n in enumerate(self.shape) if not (i in axes and n == 1)))

    def expand(self, *shape):
        shape = _shape_arg(shape)
        # -1 keeps a dim's size, as in torch.
        lead = len(shape) - self.ndim
        if lead < 0 or -1 in shape[:lead]:
            raise ValueError(f"expand: cannot expand shape {self.shape} to {shape} (the target "
                             "needs at least as many dims, and -1 only for existing dims)")
        full = tuple(self.shape[i - lead] if n == -1 else n for i, n in enumerate(shape))
        try:
            return F.Expand.apply(self, shape=full)
        except ValueError:
            raise ValueError(f"expand: cannot expand shape {self.shape} to {shape}") from None

    def contiguous(self):
        return self if self.array.flags.c_contiguous else F.Contiguous.apply(self)

    def expand_as(self, other):
        return self.expand(other.shape)

    def view_as(self, other):
        return self.reshape(other.shape)

    # ------------------------------------------------------------------ rearranging

    def repeat(self, *sizes):
        """Tile the tensor `sizes[d]` times along each dim d (torch.repeat, numpy's tile)."""
        sizes = tuple(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)) \
            else sizes
        if len(sizes) < self.ndim:
            raise ValueError(f"repeat: {len(sizes)} repeat counts for a tensor with {self.ndim} "
                             "dims; give at least one per dim")
        shape = (1,) * (len(sizes) - self.ndim) + self.shape
        spread = self.reshape(tuple(n for size in shape for n in (1, size)))  # (1, s0, 1, s1, ...)
        tiled = spread.expand(tuple(n for r, size in zip(sizes, shape) for n in (r, size)))
        return tiled.reshape(tuple(r * size for r, size in zip(sizes, shape)))

    def flip(self, dims):
        """Reverse the order of elements along each of `dims`: a copy, as torch's (numpy's
        reversed view would let a write into the result change self)."""
        axes = _normalize_dims(dims, self.ndim, "flip") or ()
        index = tuple(slice(None, None, -1) if d in axes else slice(None) for d in range(self.ndim))
        return F.GetItem.apply(self, index=index, advanced=False).clone()

    def roll(self, shifts, dims=None):
        """Shift elements along `dims` (wrapping around); dims=None rolls the flattened tensor."""
        if dims is None:
            return self.reshape(-1).roll(shifts, 0).reshape(self.shape)
        shifts = (shifts,) if isinstance(shifts, numbers.Integral) else tuple(shifts)
        dims = (dims,) if isinstance(dims, numbers.Integral) else tuple(dims)
        if len(shifts) != len(dims):
            raise ValueError(f"roll: {len(shifts)} shifts for {len(dims)} dims")
        out = self
        for shift, dim in zip(shifts, dims):
            axis = _normalize_dim(dim, self.ndim, "roll")
            source = (np.arange(self.shape[axis]) - shift) % max(self.shape[axis], 1)
            out = out[(slice(None),) * axis + (source,)]
        return out

    def _triangle(self, op, diagonal, lower):
        if self.ndim < 2:
            raise ValueError(f"{op}: needs at least 2 dims, got shape {self.shape}")
        rows, cols = self.shape[-2:]
        keep = np.tri(rows, cols, diagonal - (0 if lower else 1), dtype=bool)
        return self.masked_fill(keep if not lower else ~keep, 0)

    def tril(self, diagonal=0):
        """Zero above the `diagonal`-th diagonal of the last two dims."""
        return self._triangle("tril", diagonal, lower=True)

    def triu(self, diagonal=0):
        """Zero below the `diagonal`-th diagonal of the last two dims."""
        return self._triangle("triu", diagonal, lower=False)


# ---------------------------------------------------------------------------- module-level ops

_NOTHING = object()


def where(condition, a=_NOTHING, b=_NOTHING):
    """Elementwise `a` where `condition` is True, else `b` (all three broadcast together);
    where(condition) alone is condition.nonzero(as_tuple=True), as torch's."""
    Tensor = _autograd._Tensor
    if a is _NOTHING and b is _NOTHING:
        condition = condition if isinstance(condition, Tensor) else Tensor(condition)
        return condition.nonzero(as_tuple=True)
    if a is _NOTHING or b is _NOTHING:
        raise TypeError("where: give a condition alone, or a condition and both values")
    cond = _bool_mask(condition, "where")
    if isinstance(a, Tensor):
        a, b = a._operands(b, "where")
    elif isinstance(b, Tensor):
        b, a = b._operands(a, "where")  # a scalar `a` follows b's dtype, as in torch
    else:
        a, b = Tensor._wrap(_dtypes.as_array(a))._operands(b, "where")  # read only: shared
    try:
        np.broadcast_shapes(cond.shape, a.shape, b.shape)
    except ValueError:
        raise ValueError(f"where: condition {cond.shape}, a {a.shape} and b {b.shape} do not "
                         "broadcast") from None
    return F.Where.apply(a, b, cond=cond)


def _tensor_list(tensors, op):
    if isinstance(tensors, IndexOps):  # a Tensor would be read as the list of its rows
        raise TypeError(f"{op}: expected a list or tuple of tensors, not a Tensor (as torch)")
    return list(tensors)


def cat(tensors, dim=0, *, out=None):
    """Join tensors along an existing dim (into `out`, if given)."""
    if out is not None:
        return _write_out(cat(tensors, dim), out, "cat")
    tensors = _tensor_list(tensors, "cat")
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    if any(getattr(t, "shape", None) == (0,) for t in tensors):
        # torch's legacy rule: a 1-D empty tensor joins anything (it only counts for the dtype)
        kept = [t for t in tensors if t.shape != (0,)]
        if kept and kept != tensors:
            dtype = functools.reduce(_promote_dtypes, [t.dtype for t in tensors])
            return cat([t.to(dtype) for t in kept], dim)
    first = tensors[0]
    if first.ndim == 0:
        raise ValueError("cat: 0-d tensors cannot be joined; use stack")
    axis = _normalize_dim(dim, first.ndim, "cat")
    dtype = first.dtype
    for t in tensors[1:]:
        if not isinstance(t, _autograd._Tensor):
            raise TypeError(f"cat: expected Tensors, got a {type(t).__name__}")
        if t.ndim != first.ndim or any(
                a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != axis):
            raise ValueError(f"cat: shapes {[tuple(x.shape) for x in tensors]} must match except "
                             f"in dim {dim}")
        dtype = _promote_dtypes(dtype, t.dtype)
    return F.Cat.apply(*[t.to(dtype) for t in tensors], axis=axis)


def stack(tensors, dim=0, *, out=None):
    """Join tensors of one shape along a new dim (into `out`, if given)."""
    if out is not None:
        return _write_out(stack(tensors, dim), out, "stack")
    tensors = _tensor_list(tensors, "stack")
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack: all tensors need the same shape, got {sorted(shapes)}")
    axis = _normalize_dim(dim, tensors[0].ndim + 1, "stack")
    return cat([t.unsqueeze(axis) for t in tensors], dim=axis)


_accept_numpy_names(IndexOps, (
    "squeeze", "unsqueeze", "unbind", "chunk", "gather"))
