"""Version counters: how backward notices that an array it saved was changed in place.

As in torch, every in-place write bumps the version of the memory it writes to, and views share
that version with their base (a write through `x[0]` changes `x`). Here "the memory" is the root
numpy array of the `.base` chain, so a tensor, its views and its `detach()`es share one counter.

The check must cost nothing per op, since in-place writes are rare and ops are not. So nothing
is recorded per array at save time: `Function.save_for_backward` stores only the value of a
process-wide write `clock` (one attribute). When backward unpacks `ctx.saved_tensors`, a stamp
that still equals the clock (no in-place write anywhere since the op ran: the usual case) costs
one comparison; otherwise each saved array is looked up, and an error is raised if its memory
was written after the stamp. Ops that save nothing (Add) never check, as in torch.

Code that updates parameters in place under `no_grad` (an optimizer, a flat parameter arena)
must call `increment_version(array_or_tensor)` after writing, so a later backward through a
graph that saved the old values fails loudly instead of silently using the new ones.
"""
import bisect
import weakref

import numpy as np

clock = 0        # in-place writes so far in this process (the stamp saved ops compare with)
_records = {}    # id(root array) -> [version, [clock value of each recent write]]
_KEPT_WRITES = 64  # write times kept per array, enough to name the saved version exactly


def _root(array):
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def increment_version(*arrays):
    """Record an in-place write to each argument (a Tensor or a numpy array, or several).

    Call it after mutating data in place outside the Tensor API (`p.array -= lr * g` under
    no_grad). One call on a flat buffer covers every view of it (all parameters of an arena)."""
    global clock
    for array in arrays:
        if not isinstance(array, np.ndarray):  # a Tensor
            array = getattr(array, "array", array)
        if not isinstance(array, np.ndarray):
            raise TypeError(f"increment_version: expected a Tensor or a numpy array, got "
                            f"{type(array).__name__}")
        root = _root(array)
        key = id(root)
        record = _records.get(key)
        if record is None:
            record = _records[key] = [0, []]
            weakref.finalize(root, _records.pop, key, None)  # ids are reused after death
        clock += 1
        record[0] += 1
        times = record[1]
        times.append(clock)
        if len(times) > _KEPT_WRITES:
            del times[:_KEPT_WRITES // 2]


def version(array):
    """How many in-place writes the memory under `array` has had (torch's `tensor._version`)."""
    record = _records.get(id(_root(array)))
    return 0 if record is None else record[0]


def _arrays(saved):
    # The saved arrays, looking one level into tuples (an index: arrays and slices).
    for item in saved:
        if isinstance(item, np.ndarray):
            yield item
        elif isinstance(item, tuple):
            yield from (a for a in item if isinstance(a, np.ndarray))


def check_saved(ctx):
    """Raise if an array `ctx` saved for backward was written in place after it was saved."""
    stamp = ctx.saved_clock
    for array in _arrays(ctx._saved):
        record = _records.get(id(_root(array)))
        if record is None or record[1][-1] <= stamp:
            continue
        current, times = record
        later = len(times) - bisect.bisect_right(times, stamp)
        kept_all = len(times) == current or times[0] <= stamp
        saved = f"{current - later}" if kept_all else f"at most {current - later}"
        raise RuntimeError(
            f"backward through {type(ctx).__name__}: an array of shape {array.shape} that it "
            f"saved was modified by an in-place operation after the forward pass (its tensor is "
            f"at version {current}; backward needs version {saved}). Use the out-of-place op "
            "(x = x + y rather than x += y), or clone() the tensor before changing it.")
