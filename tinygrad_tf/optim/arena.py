"""The flat parameter arena: an optimizer's parameters, gradients and state as views into a few
contiguous buffers, one per dtype and role, so an update is one kernel call per parameter group.

Layout (the same on every process that builds the same model and optimizer): dtypes in order of
first appearance; within a dtype, parameter groups in order; within a group, parameters in
order. Each (group, dtype) pair is one *segment*, a contiguous range of every buffer:

    data["float32"]  [ group 0: w0 b0 w1 ... | group 1: ... ]   parameters (p.array are views)
    grad["float32"]  [ same offsets ]                            gradients (p.grad.array views)
    state["exp_avg"]["float32"], ...                             optimizer state, same offsets

Nothing outside can pin the views: a user may rebind `p.array` (`Module.to(dtype)` does), set
`p.grad` to a fresh Tensor, or load optimizer state. `Arena.sync` notices each case by identity
(`p.array is view`) and copies the newcomer into its slot, or asks for a re-pack when a dtype or
shape changed, so the flat buffers never silently drift from what the parameters hold.
"""
import weakref

import numpy as np

from tinygrad_tf import autograd

class Slot:
    """Where one parameter lives: its segment's buffers at [start, stop), and its views."""

    __slots__ = ("param", "start", "stop", "shape", "array", "grad", "state")

    def __init__(self, param, start, shape):
        self.param, self.start, self.shape = param, start, shape
        self.stop = start + int(np.prod(shape, dtype=np.int64))
        self.array = self.grad = None
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
                        slot = Slot(p, offset, p.array.shape)
                        offset = slot.stop
                        slots.append(slot)
                        self.slots[id(p)] = slot
                if slots:
                    self.segments.append(Segment(index, dtype, slots))
            sizes[dtype] = offset
        self.sizes = sizes
        self.buffers["data"] = {dtype: np.empty(n, dtype) for dtype, n in sizes.items()}
        self.buffers["grad"] = {dtype: np.zeros(n, dtype) for dtype, n in sizes.items()}
        for segment in self.segments:
            for slot in segment.slots:
                p = slot.param
                slot.array = self.view("data", slot, segment.dtype)
                slot.grad = self.view("grad", slot, segment.dtype)
                slot.array[...] = p.array
                p.array = slot.array
                if p.grad is not None and p.grad.array.shape == slot.shape:
                    slot.grad[...] = p.grad.array  # (a wrong shape is reported by the step)
                    p.grad = autograd._wrap_array(slot.grad)
                autograd.set_grad_slot(p, slot.grad)
        # The engine's slot table must not outlive this arena (nor keep its buffers alive).
        weakref.finalize(self, _forget, [weakref.ref(s.param) for s in self.slots.values()],
                         [s.grad for s in self.slots.values()])

    def view(self, name, slot, dtype):
        """The `name` buffer's slice for `slot`, shaped like its parameter."""
        return self.buffers[name][dtype][slot.start:slot.stop].reshape(slot.shape)

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
        """True while every parameter's .array is still its arena view with its packed shape and
        dtype (a rebound `.array`, e.g. by Module.to, means the arena must be re-packed)."""
        return all(s.param.array is s.array for s in self.slots.values())


def _forget(params, grads):
    for ref, grad in zip(params, grads):
        p = ref()
        if p is not None:
            autograd.clear_grad_slot(p, grad)


def merged_flat(arrays):
    """The arrays as few writable views as possible: C-contiguous arrays of one dtype that sit
    end to end in memory (arena gradients do) merge into one 1-D view, so a pass over them is
    one call; other arrays come back as they are."""
    arrays = tuple(arrays)
    cached = _last_merge[0]
    # The same array objects (arena gradients are, step after step) give the same answer.
    if cached is not None and len(cached[0]) == len(arrays) and all(
            a is b for a, b in zip(cached[0], arrays)):
        return list(cached[1])
    result = _merge(arrays)
    _last_merge[0] = (arrays, result)
    return list(result)


_last_merge = [None]


def _merge(arrays):
    located, others = [], []
    roots = {}  # id(root) -> (root, its address)
    for array in arrays:
        root = array
        while isinstance(root.base, np.ndarray):
            root = root.base
        if not (array.flags.c_contiguous and root.flags.c_contiguous):
            others.append(array)
            continue
        if id(root) not in roots:
            roots[id(root)] = (root, root.__array_interface__["data"][0])
        address = array.__array_interface__["data"][0]
        located.append((address, id(root), array))
    located.sort(key=lambda entry: entry[0])
    runs = []  # [root id, start element, stop element, dtype]
    for address, root_id, array in located:
        root, root_address = roots[root_id]
        start = (address - root_address) // root.itemsize
        if (runs and runs[-1][0] == root_id and runs[-1][2] == start
                and array.dtype == root.dtype):
            runs[-1][2] = start + array.size
        else:
            if array.dtype != root.dtype:  # a reinterpreting view: keep it whole
                others.append(array)
                continue
            runs.append([root_id, start, start + array.size])
    return [roots[r][0].reshape(-1)[a:b] for r, a, b in runs] + others
