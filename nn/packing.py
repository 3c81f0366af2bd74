"""torch.nn.utils.rnn: PackedSequence, pack_padded_sequence, pad_packed_sequence, pack_sequence,
pad_sequence (reachable as `nn.utils.rnn`).

A PackedSequence holds torch's fields: `data` (sum of lengths, *) is the steps of every sequence
interleaved time-major, longest sequence first; `batch_sizes[t]` how many sequences reach step t;
`sorted_indices` / `unsorted_indices` the permutation from the caller's batch order (None when
the input was already sorted, enforce_sorted=True). Packing and unpacking are each one gather on
the graph, so gradients flow through both. The recurrent layers take a PackedSequence by
unpacking it to a padded batch with lengths (nn/rnn.py), which gives the same results.
"""
from collections import namedtuple

import numpy as np

from tinygrad_tf import Tensor, cat, stack

from . import functional as F


class PackedSequence(namedtuple("PackedSequence",
                                ["data", "batch_sizes", "sorted_indices", "unsorted_indices"])):
    """torch's PackedSequence fields; build it with pack_padded_sequence or pack_sequence."""

    def __new__(cls, data, batch_sizes=None, sorted_indices=None, unsorted_indices=None):
        if unsorted_indices is None and sorted_indices is not None:
            unsorted_indices = Tensor(_inverse(_ints(sorted_indices)))
        return super().__new__(cls, data, batch_sizes, sorted_indices, unsorted_indices)

    @property
    def is_cuda(self):
        return False

    def to(self, *args, **kwargs):
        return self._replace(data=self.data.to(*args, **kwargs))


def _ints(values):
    array = values.array if isinstance(values, Tensor) else np.asarray(values)
    return array.astype(np.int64)


def _inverse(order):
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    return inverse


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    """input (T, B, *) ((B, T, *) with batch_first), lengths (B,) -> PackedSequence.

    enforce_sorted=True requires lengths in decreasing order (as torch); False sorts them (a
    stable sort) and records the permutation."""
    lengths = _ints(lengths)
    if lengths.ndim != 1:
        raise ValueError(f"pack_padded_sequence: lengths must be 1-D, got shape {lengths.shape}")
    x = input.transpose(0, 1) if batch_first else input
    if lengths.size != x.shape[1]:
        raise ValueError(f"pack_padded_sequence: Expected `len(lengths)` to be equal to "
                         f"batch_size, but got {lengths.size} (batch_size={x.shape[1]})")
    if lengths.size and (lengths.min() <= 0 or lengths.max() > x.shape[0]):
        raise RuntimeError(f"pack_padded_sequence: lengths must be in [1, {x.shape[0]}] (the "
                           f"padded length), got {lengths.tolist()}")
    if enforce_sorted:
        if np.any(np.diff(lengths) > 0):
            raise RuntimeError("pack_padded_sequence: `lengths` array must be sorted in "
                               "decreasing order when `enforce_sorted` is True. You can pass "
                               "`enforce_sorted=False` to pack_padded_sequence and/or "
                               "pack_sequence to sidestep this requirement if you do not need "
                               "ONNX exportability.")
        order = None
    else:
        order = np.argsort(-lengths, kind="stable")
    sorted_lengths = lengths if order is None else lengths[order]
    batch_sizes = (sorted_lengths[None, :] > np.arange(sorted_lengths[0])[:, None]).sum(axis=1)
    return _pack(x, batch_sizes, order)


def _pack(x, batch_sizes, order):
    """x (T, B, *) in the caller's batch order -> PackedSequence with these batch sizes."""
    steps, batch = x.shape[0], x.shape[1]
    columns = np.arange(batch) if order is None else order
    rows = [t * batch + columns[:size] for t, size in enumerate(batch_sizes)]
    flat = x.reshape((steps * batch,) + tuple(x.shape[2:]))
    data = flat[np.concatenate(rows)]
    sorted_indices = None if order is None else Tensor(order.astype(np.int64))
    return PackedSequence(data, Tensor(np.asarray(batch_sizes, dtype=np.int64)), sorted_indices)


def pack_like(x, template):
    """x (T, B, *) in the caller's batch order, packed as PackedSequence `template` is."""
    order = None if template.sorted_indices is None else _ints(template.sorted_indices)
    return _pack(x, _ints(template.batch_sizes), order)


def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    """PackedSequence -> (padded (T, B, *) ((B, T, *) with batch_first), lengths (B,) int64),
    in the batch order the sequence was packed from."""
    data = sequence.data
    batch_sizes = _ints(sequence.batch_sizes)
    steps, batch = batch_sizes.size, int(batch_sizes[0])
    if total_length is not None:
        if total_length < steps:
            raise ValueError(f"pad_packed_sequence: Expected total_length to be at least the "
                             f"length of the longest sequence in input, but got "
                             f"total_length={total_length} and max sequence length being "
                             f"{steps}")
        steps_out = total_length
    else:
        steps_out = steps
    offsets = np.concatenate([[0], np.cumsum(batch_sizes)])
    padding_row = offsets[-1]  # one extra row of padding_value after the data
    index = np.full((steps_out, batch), padding_row, dtype=np.int64)
    for t, size in enumerate(batch_sizes):
        index[t, :size] = offsets[t] + np.arange(size)
    lengths = (batch_sizes[None, :] > np.arange(batch)[:, None]).sum(axis=1)  # sorted order
    if sequence.unsorted_indices is not None:
        unsorted = _ints(sequence.unsorted_indices)
        index, lengths = index[:, unsorted], lengths[unsorted]
    pad = Tensor(np.full((1,) + tuple(data.shape[1:]), padding_value, dtype=data.dtype))
    padded = cat([data, pad])[index]  # (T, B, *)
    if batch_first:
        padded = padded.transpose(0, 1)
    return padded, Tensor(lengths.astype(np.int64))


def pack_sequence(sequences, enforce_sorted=True):
    """A list of (L_i, *) tensors -> PackedSequence."""
    lengths = [s.shape[0] for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right"):
    """A list of (L_i, *) tensors -> (T, B, *) ((B, T, *) with batch_first), T = max L_i."""
    if padding_side not in ("right", "left"):
        raise ValueError(f"pad_sequence: padding_side must be 'left' or 'right', got "
                         f"{padding_side!r}")
    sequences = [s if isinstance(s, Tensor) else Tensor(s) for s in sequences]
    longest = max(s.shape[0] for s in sequences)
    padded = []
    for s in sequences:
        extra = longest - s.shape[0]
        widths = [0, 0] * (s.ndim - 1) + ([0, extra] if padding_side == "right" else [extra, 0])
        padded.append(F.pad(s, tuple(widths), value=padding_value) if extra else s)
    return stack(padded, dim=0 if batch_first else 1)


__all__ = ["PackedSequence", "pack_padded_sequence", "pad_packed_sequence", "pack_sequence",
           "pad_sequence"]
