"""The flat parameter arena: an optimizer's parameters, gradients and state as views into a few
contiguous buffers, one per dtype and role, so an update is one kernel call per parameter group.

Layout (the same on every process that builds the same model and optimizer): dtypes in order of
first appearance; within a dtype, parameter groups in order; within a group, parameters in
order. Each (group, dtype) pair is one *segment*, a contiguous range of every buffer:

    data["float32"]  [ group 0: w0 b0 w1 ... | group 1: ... ]   parameters (p.array are views)
    grad["float32"]  [ same offsets ]                            gradients (lent to p.grad)
    state["exp_avg"]["float32"], ...                             optimizer state, same offsets

The arena only borrows memory nobody else can see (docs/autograd.md, section 10):
- a parameter's values move into the arena only if the parameter is the sole holder of its
  memory. One that views another's array (or whose array someone else holds) stays where it is
  ("loose"): each step copies it in, updates it, and writes it back in place, as torch would;
- a gradient slot is lent to backward for a new `.grad` (tinygrad_tf.plugins.grad_buffer) only
  while nothing outside the arena holds its memory. A `.grad` the user kept, or a view of one,
  keeps its values: the arena moves to a fresh gradient buffer instead (copy on share), and the
  old memory is theirs. CPython's reference counts tell (as numpy's `resize(refcheck=True)`).

Nothing outside can pin the views: a user may rebind `p.array` (`Module.to(dtype)` does), set
`p.grad` to a Tensor of their own, or load optimizer state. The arena notices each case by
identity and copies the newcomer into its slot, or asks for a re-pack when a dtype or shape
changed, so the flat buffers never silently drift from what the parameters hold.
"""
import sys
import weakref

import numpy as np

from tinygrad_tf import plugins
from tinygrad_tf.tensor import Tensor
from tinygrad_tf.versions import increment_version


def _owners(obj):
    """How many references hold `obj`, not counting this call's own. Call it on an attribute or
    item (`_owners(p.array)`), the pattern `_CALL_REFS` is measured with below."""
    return sys.getrefcount(obj) - _CALL_REFS


class _Probe:
    __slots__ = ("value",)


_CALL_REFS = 0
_probe = _Probe()
_probe.value = object()
_CALL_REFS = _owners(_probe.value) - 1  # the probe's value has exactly one owner
del _probe


class Slot:
    """Where one parameter lives: its segment's buffers at [start, stop), and its views.
    `array` is what `param.array` must be: the arena's view, or the parameter's own memory when
    the slot is `loose`."""

    __slots__ = ("param", "dtype", "start", "stop", "shape", "array", "grad", "state", "loose")

    def __init__(self, param, dtype, start, shape):
        self.param, self.dtype, self.start, self.shape = param, dtype, start, shape
        self.stop = start + int(np.prod(shape, dtype=np.int64))
        self.array = self.grad = None
        self.loose = False
        self.state = {}  # state name -> view


class Segment:
    """The parameters of one group with one dtype: a contiguous range of the flat buffers."""

    def __init__(self, group_index, dtype, slots):
        self.group_index, self.dtype, self.slots = group_index, dtype, slots
        self.start = slots[0].start
        self.stop = slots[-1].stop


class Arena:
    """Flat buffers for the parameters of `param_groups` (lists of Tensors, one per group)."""

    def __init__(self, param_groups):
        self.buffers = {}  # "data" / "grad" / state name -> {dtype: 1-D array}
        self.segments = []
        self.slots = {}  # id(param) -> Slot
        sizes = {}
        dtypes = []
        for group in param_groups:
            for p in group:
                if p.array.dtype not in dtypes:
                    dtypes.append(p.array.dtype)
        for dtype in dtypes:
            offset = 0
            for index, group in enumerate(param_groups):
                slots = []
                for p in group:
                    if p.array.dtype == dtype:
                        slot = Slot(p, dtype, offset, p.array.shape)
                        offset = slot.stop
                        slots.append(slot)
                        self.slots[id(p)] = slot
                if slots:
                    self.segments.append(Segment(index, dtype, slots))
            sizes[dtype] = offset
        self.sizes = sizes
        loose = _loose_parameters([g for group in param_groups for g in group])
        self.buffers["data"] = {dtype: np.empty(n, dtype) for dtype, n in sizes.items()}
        self.buffers["grad"] = {dtype: np.zeros(n, dtype) for dtype, n in sizes.items()}
        for slot in self.slots.values():
            p = slot.param
            slot.grad = self.view("grad", slot)
            slot.loose = id(p) in loose
            if slot.loose:
                slot.array = p.array
            else:
                slot.array = self.view("data", slot)
                slot.array[...] = p.array
                p.array = slot.array
        # A flat buffer's owners when nothing outside holds it: the table, and each slot's view.
        self._own_refs = {dtype: 1 + sum(s.dtype == dtype for s in self.slots.values())
                          for dtype in sizes}
        self.lend_gradients()

    def view(self, name, slot):
        """The `name` buffer's slice for `slot`, shaped like its parameter."""
        return self.buffers[name][slot.dtype][slot.start:slot.stop].reshape(slot.shape)

    def state_buffer(self, name, dtype):
        """The flat `name` state buffer for `dtype`, zero-filled on first request."""
        table = self.buffers.setdefault(name, {})
        if dtype not in table:
            table[dtype] = np.zeros(self.sizes[dtype], dtype)
        return table[dtype]

    def state_view(self, name, slot, dtype):
        view = slot.state.get(name)
        if view is None:
            flat = self.state_buffer(name, dtype)
            view = slot.state[name] = flat[slot.start:slot.stop].reshape(slot.shape)
        return view

    def in_place(self):
        """True while every parameter's .array is still the one packed (a rebound `.array`,
        e.g. by Module.to, means the arena must be re-packed)."""
        return all(s.param.array is s.array for s in self.slots.values())

    # ------------------------------------------------------------------ gradients

    def lend_gradients(self):
        """Make backward write each parameter's next new .grad into its slot (plugins.py)."""
        plugins.grad_buffer = _lend
        me = weakref.ref(self)
        for key, slot in self.slots.items():
            _lenders[key] = (weakref.ref(slot.param), me, slot)
        weakref.finalize(self, _forget, list(self.slots))

    def writable_grad(self, slot):
        """`slot.grad`, once nothing outside the arena holds its memory (see the module doc)."""
        if _owners(slot.grad) > 1 or self._grad_shared(slot.dtype):
            self._new_grad_buffer(slot.dtype)
        return slot.grad

    def claim_grads(self):
        """Before a write over whole gradient buffers (an all-reduce): nothing outside may hold
        their memory but the current .grads (which such a write updates, as torch's DDP)."""
        for dtype in self.sizes:
            if self._grad_shared(dtype) or any(
                    _owners(s.grad) > (2 if s.param.grad is not None and s.param.grad.array is s.grad
                                       else 1)
                    for s in self.slots.values() if s.dtype == dtype):
                self._new_grad_buffer(dtype)

    def _grad_shared(self, dtype):
        return _owners(self.buffers["grad"][dtype]) > self._own_refs[dtype]

    def _new_grad_buffer(self, dtype):
        """Copy on share: someone holds memory of this dtype's gradient buffer (a kept .grad, a
        view of one). That memory stays theirs; the arena takes a fresh buffer. Gradients lent
        now are copied along, and move with it unless someone else holds them too."""
        fresh = np.zeros(self.sizes[dtype], dtype)
        for slot in self.slots.values():
            if slot.dtype != dtype:
                continue
            view = fresh[slot.start:slot.stop].reshape(slot.shape)
            grad = slot.param.grad
            if grad is not None and grad.array is slot.grad:
                view[...] = slot.grad
                if _owners(slot.grad) == 2:  # the slot and this .grad: nobody else sees it
                    grad.array = view
            elif grad is not None and grad.array.shape == slot.shape:  # (copied in, maybe)
                np.copyto(view, grad.array, casting="unsafe")
            slot.grad = view
        self.buffers["grad"][dtype] = fresh

    def collect_grads(self, fill=None, what="optimizer"):
        """Make the gradient buffers hold every parameter's current .grad (the update kernels
        and an all-reduce read them there): lent ones are there already, others are copied in.
        `fill(slot)` true: a parameter without a .grad gets a zero-filled slot as its .grad."""
        for slot in self.slots.values():
            grad = slot.param.grad
            if grad is None:
                if fill is not None and fill(slot):
                    self.writable_grad(slot).fill(0)
                    slot.param.grad = Tensor._wrap(slot.grad)
            elif grad.array is not slot.grad:
                if grad.array.shape != slot.shape:
                    raise ValueError(f"{what}: a gradient of shape {grad.array.shape} for a "
                                     f"parameter of shape {slot.shape}")
                target = self.writable_grad(slot)
                if grad.array.base is None and _owners(grad.array) == 1:
                    np.copyto(target, grad.array, casting="unsafe")  # nobody else holds this
                    grad.array = target  # array: adopt it (next time, nothing to copy)
                else:
                    np.copyto(target, grad.array, casting="unsafe")

    def scatter_grads(self):
        """After the buffers were written (an all-reduce): copy them into each .grad that is not
        lent (one the user set, or one that must keep its own memory), in place."""
        for slot in self.slots.values():
            grad = slot.param.grad
            if grad is not None and grad.array is not slot.grad:
                np.copyto(grad.array, slot.grad, casting="unsafe")
                increment_version(grad.array)


def _loose_parameters(params):
    """ids of the parameters whose memory the arena must not take: anything but a parameter (or
    several, not overlapping) being the only holder of the memory its array lives in."""
    by_memory = {}
    for p in params:
        # (Expressions, not names: a local variable would be one more owner of the memory.)
        key = id(p.array if p.array.base is None else p.array.base)
        by_memory.setdefault(key, []).append(p)
    loose = set()
    for group in by_memory.values():
        if not (all(_sole_view(p) for p in group) and _disjoint(group)
                and _memory_owners(group[0]) == len(group)):  # each parameter holds it once
            loose.update(id(p) for p in group)
    return loose


def _sole_view(p):
    # The memory's owner itself, or a view of a numpy-owned array that only `p` holds.
    return p.array.base is None or (type(p.array.base) is np.ndarray
                                    and p.array.base.base is None and _owners(p.array) == 1)


def _memory_owners(p):
    return _owners(p.array) if p.array.base is None else _owners(p.array.base)


def _disjoint(group):
    bounds = sorted(_byte_bounds(p.array) for p in group)
    return all(high <= low for (_, high), (low, _) in zip(bounds, bounds[1:]))


def _byte_bounds(a):
    # [low, high) addresses of a's elements (np.byte_bounds, which numpy 2 moved).
    low = high = a.__array_interface__["data"][0]
    for n, stride in zip(a.shape, a.strides):
        if n == 0:
            return low, low
        if stride < 0:
            low += (n - 1) * stride
        else:
            high += (n - 1) * stride
    return low, high + a.itemsize


# Which arena lends each parameter's gradient: id(param) -> (weak param, weak arena, slot).
# The last arena built over a parameter lends it (an optimizer re-packs into a new one).
_lenders = {}


def _lend(tensor):
    """plugins.grad_buffer: the slot a new .grad of `tensor` goes into, or None."""
    entry = _lenders.get(id(tensor))
    if entry is None or entry[0]() is not tensor:
        return None
    arena = entry[1]()
    return None if arena is None else arena.writable_grad(entry[2])


def _forget(keys):
    for key in keys:
        entry = _lenders.get(key)
        if entry is not None and entry[1]() is None:
            del _lenders[key]


def merged_flat(arrays):
    """The arrays as few writable views as possible: C-contiguous arrays of one dtype that sit
    end to end in memory (arena gradients do) merge into one 1-D view, so a pass over them is
    one call; other arrays come back as they are."""
    arrays = tuple(arrays)
    cached = _last_merge[0]
    # The same array objects (arena gradients are, step after step) give the same answer. The
    # cache holds weak references only: a view kept here would count as someone holding the
    # arena's memory (and keep it from being lent).
    if cached is not None and len(cached[0]) == len(arrays) and all(
            ref() is a for ref, a in zip(cached[0], arrays)):
        plan = cached[1]
        roots = [ref() for ref, _, _ in plan]
        if all(root is not None for root in roots):
            merged = [root.reshape(-1)[a:b] for root, (_, a, b) in zip(roots, plan)]
            return merged + [a for a, used in zip(arrays, cached[2]) if not used]
    merged, plan, used = _merge(arrays)
    _last_merge[0] = ([weakref.ref(a) for a in arrays], plan, used)
    return merged + [a for a, u in zip(arrays, used) if not u]


_last_merge = [None]


def _merge(arrays):
    located = []
    roots = {}  # id(root) -> (root, its address)
    used = [False] * len(arrays)
    for i, array in enumerate(arrays):
        root = array
        while isinstance(root.base, np.ndarray):
            root = root.base
        if not (array.flags.c_contiguous and root.flags.c_contiguous) or array.dtype != root.dtype:
            continue  # (a reinterpreting view is kept whole)
        if id(root) not in roots:
            roots[id(root)] = (root, root.__array_interface__["data"][0])
        address = array.__array_interface__["data"][0]
        located.append((address, id(root), i))
    located.sort(key=lambda entry: entry[0])
    runs = []  # [root id, start element, stop element]
    for address, root_id, i in located:
        root, root_address = roots[root_id]
        start = (address - root_address) // root.itemsize
        used[i] = True
        if runs and runs[-1][0] == root_id and runs[-1][2] == start:
            runs[-1][2] = start + arrays[i].size
        else:
            runs.append([root_id, start, start + arrays[i].size])
    merged = [roots[r][0].reshape(-1)[a:b] for r, a, b in runs]
    plan = [(weakref.ref(roots[r][0]), a, b) for r, a, b in runs]
    return merged, plan, used
