"""Optimizer: parameter groups, state_dict/load_state_dict and the arena-driven step.

A subclass says which state buffers it keeps and how one contiguous run of parameters is
updated (`_update`, one fused kernel call); this base class keeps the arena in sync with the
parameters, finds the runs, and owns the formats (torch's state_dict layout).
"""
import numpy as np

from tinygrad_tf import autograd, kernels
from tinygrad_tf.tensor import Tensor

from .arena import Arena, merged_flat

# torch's device/implementation flags: accepted (and stored, so state_dicts have torch's keys)
# with these values only; the arena always runs one fused CPU kernel per group.
TORCH_ONLY_FLAGS = {"foreach": None, "fused": None, "capturable": False, "differentiable": False}
FUSED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Optimizer:
    """Base class: parameter groups, zero_grad, step over the arena, state_dict/load_state_dict.

    params: an iterable of Parameters, or of dicts {"params": [...], "lr": ..., ...} (parameter
    groups, each with its own hyper-parameters; missing ones come from the constructor's).
    """

    def __init__(self, params, defaults):
        name = type(self).__name__
        for flag, allowed in TORCH_ONLY_FLAGS.items():
            if flag in defaults and defaults[flag] != allowed:
                raise ValueError(f"{name}: {flag}={defaults[flag]!r} is a torch device option; "
                                 f"here it must stay {allowed!r} (the update is always one "
                                 "fused CPU kernel per parameter group)")
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}  # param -> {"step": int, name: numpy view into the arena}, as torch keys it
        self._arena = None
        params = list(params)
        if not params:
            raise ValueError(f"{name}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)
        self.arena  # pack now, so the first backward already writes into the arena

    def add_param_group(self, group):
        name = type(self).__name__
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{name}: a parameter group is a dict with a 'params' list")
        group = dict(group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in group["params"]:
            if not isinstance(p, Tensor) or not p.is_leaf:
                raise TypeError(f"{name}: can only optimize leaf Tensors (such as "
                                f"Parameters), got {type(p).__name__}"
                                f"{' computed by an op' if isinstance(p, Tensor) else ''}")
            if p.array.dtype.kind != "f":
                raise TypeError(f"{name}: can only optimize floating-point Tensors, got one of "
                                f"dtype {p.array.dtype} and shape {p.array.shape}")
            if id(p) in seen:
                raise ValueError(f"{name}: a parameter appears in more than one group (or "
                                 "twice in one)")
            seen.add(id(p))
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._validate(group)
        self.param_groups.append(group)
        self._arena = None  # re-packed (with the new group) on next use

    def _validate(self, group):
        if not group["lr"] >= 0:
            raise ValueError(f"{type(self).__name__}: invalid learning rate {group['lr']}")

    # ------------------------------------------------------------------ the arena

    @property
    def arena(self):
        """The flat arena, in sync with the parameters: re-packed here when a parameter's .array
        was rebound (Module.to, a user assignment) or a group was added."""
        if self._arena is None or not self._arena.in_place():
            self._check_shapes()
            # The old arena goes first: while it lives, it holds the parameters' memory too,
            # and the new one would leave them in place (loose) instead of packing them.
            self._arena = None
            self._arena = Arena([g["params"] for g in self.param_groups])
        return self._arena

    def _check_shapes(self):
        arena = self._arena
        for group in self.param_groups:
            for p in group["params"]:
                slot = arena.slots.get(id(p)) if arena is not None else None
                state = self.state.get(p)
                if slot is not None and state and p.array.shape != slot.shape:
                    raise ValueError(
                        f"{type(self).__name__}: a parameter of shape {slot.shape} was "
                        f"given .array of shape {p.array.shape} after optimizer state was "
                        "built for it; shapes must not change (build a new optimizer)")

    def _sync_state(self, arena, slot, state):
        # Optimizer state arrays live in the arena; one loaded or re-packed elsewhere is copied in.
        for key, value in state.items():
            if isinstance(value, np.ndarray) and value is not slot.state.get(key):
                view = arena.state_view(key, slot, slot.array.dtype)
                np.copyto(view, value, casting="unsafe")
                state[key] = view

    def _runs(self, group, arena, segment):
        """Yield (start, stop, [(slot, state)]) for each stretch of the segment whose parameters
        all have a gradient (written into its arena slot) and the same run key (e.g. Adam's step
        count): normally one run per segment, so one kernel call per group."""
        run, run_key = [], None
        keeps_state = self._keeps_state(group)
        for slot in segment.slots:
            p = slot.param
            # Every parameter an update touches is visited here, once per step. Its gradient
            # is in its slot already (collect_grads); a loose parameter is a run of its own.
            if p.grad is None or slot.loose:
                if run:
                    yield self._run(run)
                run = []
                if p.grad is None:
                    continue
            state = self.state.get(p)
            if state is None:
                state = {}
                if keeps_state:
                    self.state[p] = state
            self._sync_state(arena, slot, state)
            for name in self._state_names(group):
                if name not in state:  # first step (or a state loaded without it): zeros
                    view = state[name] = arena.state_view(name, slot, slot.array.dtype)
                    view.fill(0)
            self._init_state(group, state)
            key = self._run_key(state)
            if run and key != run_key:
                yield self._run(run)
                run = []
            run.append((slot, state))
            run_key = key
            if slot.loose:
                yield self._run(run)
                run = []
        if run:
            yield self._run(run)

    @staticmethod
    def _run(run):
        return run[0][0].start, run[-1][0].stop, run

    def _keeps_state(self, group):
        return True

    def _state_names(self, group):
        """The per-parameter state arrays this optimizer keeps (zeros on the first step)."""
        return ()

    def _init_state(self, group, state):
        """Set scalar state entries on the first step (e.g. step = 0)."""
        state.setdefault("step", 0)

    def _run_key(self, state):
        return state.get("step")

    def _kernel(self, name, dtype):
        # The registry's kernel (Numba under "auto"/"numba"); its numpy twin for float16 etc.
        if dtype in FUSED_DTYPES:
            return getattr(kernels, name)
        return getattr(kernels, name).implementations["numpy"]

    @autograd.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns closure()'s loss if given."""
        loss = None
        if closure is not None:
            with autograd.enable_grad():
                loss = closure()
        arena = self.arena
        arena.collect_grads(what=f"{type(self).__name__}.step")
        for segment in arena.segments:
            group = self.param_groups[segment.group_index]
            for start, stop, entries in list(self._runs(group, arena, segment)):
                loose = entries[0][0] if entries[0][0].loose else None
                if loose is not None:  # its own memory: copied in, updated, written back
                    arena.view("data", loose)[...] = loose.param.array
                self._update(group, arena, segment.dtype, start, stop, entries)
                if loose is not None:
                    loose.param.array[...] = arena.view("data", loose)
                    autograd.increment_version(loose.param.array)
        # The parameters changed in place: a graph that saved them must not backward again
        # (torch's rule). One bump per flat buffer covers every parameter viewing it.
        autograd.increment_version(*arena.buffers["data"].values())
        return loss

    def _update(self, group, arena, dtype, start, stop, entries):
        """Update the run [start, stop) of the dtype's buffers; entries: [(slot, state)]."""
        raise NotImplementedError(f"{type(self).__name__} has no _update method")

    @staticmethod
    def _flat(arena, name, dtype, start, stop):
        return arena.buffers[name][dtype][start:stop]

    def zero_grad(self, set_to_none=True):
        """Forget the gradients: None (default; backward then writes the next ones straight into
        the arena), or zeros in place, one fill per gradient buffer."""
        if set_to_none:
            for group in self.param_groups:
                for p in group["params"]:
                    p.grad = None
            return
        grads = [p.grad.array for g in self.param_groups for p in g["params"]
                 if p.grad is not None]
        flats = merged_flat(grads)
        for flat in flats:  # in place, as torch: a kept .grad sees the zeros
            flat.fill(0)
        if flats:  # (a version belongs to the memory: one bump per run covers its grads)
            autograd.increment_version(*flats)

    # ------------------------------------------------------------------ flat gradients

    def flat_grads(self, zero_fill=True, model=None, used=None):
        """{dtype name: the flat gradient buffer}, for an in-place all-reduce across processes.

        The layout is `layout()`'s, identical on every process that builds the same model and
        optimizer. Every .grad is in its slot first (one set elsewhere is copied in). A parameter
        with no gradient keeps None and stale slot contents, or gets a zero-filled slot as its
        .grad: all of them with zero_fill=True; with `used` (one flag per `layout()` row), those
        flagged (a parameter another rank has a gradient for). After writing the buffers, call
        `scatter_flat_grads()`. With `model`, raise if the model has a trainable parameter this
        optimizer does not hold (e.g. added after the optimizer was built)."""
        if model is not None:
            held = {id(p) for g in self.param_groups for p in g["params"]}
            missing = [name for name, p in model.named_parameters()
                       if p.requires_grad and id(p) not in held]
            if missing:
                raise ValueError(f"{type(self).__name__}.flat_grads: the model's parameters "
                                 f"{', '.join(missing)} are not in this optimizer (added after "
                                 "it was built?); add them with add_param_group")
        arena = self.arena
        if used is not None:
            flagged = {id(s.param) for s, u in zip(self._layout_slots(), used) if u}
            fill = lambda slot: id(slot.param) in flagged  # noqa: E731
        else:
            fill = (lambda slot: True) if zero_fill else None
        arena.claim_grads()  # the caller writes whole buffers
        arena.collect_grads(fill, what=f"{type(self).__name__}.flat_grads")
        return {dtype.name: buffer for dtype, buffer in arena.buffers["grad"].items()}

    def scatter_flat_grads(self):
        """After an all-reduce wrote the flat buffers: each .grad that is not a view of them (one
        the user set) gets the new values in place, as torch's DDP writes into .grad."""
        self.arena.scatter_grads()

    def layout_params(self):
        """The parameters in `layout()` order."""
        return [slot.param for slot in self._layout_slots()]

    def _layout_slots(self):
        return [slot for segment in self.arena.segments for slot in segment.slots]

    def layout(self):
        """[(group index, index in group, dtype name, start, stop, shape)]: where each
        parameter sits in its dtype's flat buffers."""
        arena = self.arena
        rows = []
        for segment in arena.segments:
            params = self.param_groups[segment.group_index]["params"]
            position = {id(p): i for i, p in enumerate(params)}
            rows.extend((segment.group_index, position[id(s.param)], segment.dtype.name,
                         s.start, s.stop, s.shape) for s in segment.slots)
        return rows

    # ------------------------------------------------------------------ state

    def state_dict(self):
        """{"state": {index: {"step": n, name: Tensor}}, "param_groups": [{..., "params":
        [index, ...]}]}, parameters numbered across groups in order, as torch. Buffers are
        copies."""
        index, groups = 0, []
        state = {}
        for group in self.param_groups:
            numbered = []
            for p in group["params"]:
                if p in self.state:
                    state[index] = {k: (Tensor(v.copy()) if isinstance(v, np.ndarray) else v)
                                    for k, v in self.state[p].items()}
                numbered.append(index)
                index += 1
            groups.append({**{k: v for k, v in group.items() if k != "params"},
                           "params": numbered})
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyper-parameters and buffers saved by state_dict (also after a round trip
        through nn.state.save/load, or from torch's optimizer), so the next step is exactly the
        one that would have come."""
        groups = state_dict["param_groups"]
        name = type(self).__name__
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: the checkpoint has {len(groups)} parameter "
                             f"groups, this optimizer {len(self.param_groups)}")
        saved_state = {int(k): v for k, v in state_dict["state"].items()}
        new_state = {}
        for i, (saved, group) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{name}.load_state_dict: group {i} has {len(saved['params'])} "
                                 f"parameters in the checkpoint, {len(group['params'])} here")
            for index, p in zip(saved["params"], group["params"]):
                entry = saved_state.get(int(index))
                if entry is None:
                    continue
                restored = {}
                for key, value in entry.items():
                    array = value.array if isinstance(value, Tensor) else value
                    if key == "step":  # torch keeps it as a 0-d tensor
                        restored[key] = int(float(array))
                    elif _numpy(array) is not None:
                        array = _numpy(array)
                        if array.shape != p.array.shape:
                            raise ValueError(f"{name}.load_state_dict: state {key!r} of "
                                             f"parameter {index} has shape {array.shape}, the "
                                             f"parameter {p.array.shape}")
                        restored[key] = array.astype(p.array.dtype, copy=True)
                    else:
                        restored[key] = value
                new_state[p] = restored
        for saved, group in zip(groups, self.param_groups):
            for key, value in saved.items():
                if key != "params":
                    group[key] = tuple(value) if isinstance(value, list) else value
        self.state = new_state  # copied into the arena's state buffers on the next step
        for group in self.param_groups:
            self._validate(group)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params")
        return "\n".join(lines + [")"])


def _numpy(value):
    # A numpy array from an ndarray or a torch tensor (duck-typed: torch is never imported).
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy()
    return None
