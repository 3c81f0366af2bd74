"""Tokenized corpora and length-bucketed batches, sized by sentences or by tokens.

    corpus = encode_pairs(tokenizer, pairs)                 # ragged ids in flat numpy arrays
    batcher = Batcher(corpus, max_tokens=4096, seed=0)      # or batch_size=64
    for epoch, index, batch in batcher.stream(): ...        # batch.src, batch.tgt_in, batch.tgt_out

Sorting by length before cutting batches keeps padding small (pairs in a batch have nearly the
same lengths); shuffling the batch order and the pairs within equal lengths, seeded per epoch,
keeps the order random yet reproducible from (seed, epoch, index), which is what --resume restores.
"""
from dataclasses import dataclass

import numpy as np

from .tokenizers import Vocab


@dataclass
class Corpus:
    """Token ids of many pairs: side i of pair k is ids[offsets[k]:offsets[k + 1]]."""
    src: np.ndarray
    src_offsets: np.ndarray
    tgt: np.ndarray
    tgt_offsets: np.ndarray

    def __len__(self):
        return len(self.src_offsets) - 1

    @property
    def src_lengths(self):
        return np.diff(self.src_offsets)

    @property
    def tgt_lengths(self):
        return np.diff(self.tgt_offsets)


def encode_pairs(tokenizer, pairs):
    """(source, target) strings -> a Corpus of ids (no <bos>/<eos>; batches add them)."""
    src, src_offsets = tokenizer.encode_batch([s for s, _ in pairs])
    tgt, tgt_offsets = tokenizer.encode_batch([t for _, t in pairs])
    return Corpus(src, src_offsets, tgt, tgt_offsets)


@dataclass
class Batch:
    """Padded int64 ids: src ends in <eos>; tgt_in = <bos> + target, tgt_out = target + <eos>."""
    src: np.ndarray        # (B, S)
    tgt_in: np.ndarray     # (B, T)
    tgt_out: np.ndarray    # (B, T)
    indices: np.ndarray    # (B,) the pairs' positions in the corpus

    @property
    def n_tokens(self):
        """Target tokens that count in the loss (not padding)."""
        return int((self.tgt_out != Vocab.pad_id).sum())


def _padded(flat, offsets, indices, bos, eos):
    """Rows flat[offsets[i]:offsets[i+1]] for i in indices, padded, with optional <bos>/<eos>."""
    starts = offsets[indices]
    lengths = offsets[indices + 1] - starts
    width = int(lengths.max(initial=0))
    columns = np.arange(width)
    real = columns[None, :] < lengths[:, None]                    # (B, width)
    out = np.full((len(indices), width + bos + eos), Vocab.pad_id, np.int64)
    body = out[:, bos:bos + width]
    body[real] = flat[(starts[:, None] + columns[None, :])[real]]
    if bos:
        out[:, 0] = Vocab.bos_id
    if eos:
        out[np.arange(len(indices)), lengths + bos] = Vocab.eos_id
    return out


def make_batch(corpus, indices):
    indices = np.asarray(indices, dtype=np.int64)
    return Batch(src=_padded(corpus.src, corpus.src_offsets, indices, bos=0, eos=1),
                 tgt_in=_padded(corpus.tgt, corpus.tgt_offsets, indices, bos=1, eos=0),
                 tgt_out=_padded(corpus.tgt, corpus.tgt_offsets, indices, bos=0, eos=1),
                 indices=indices)


def _cut(order, src_len, tgt_len, batch_size, max_tokens):
    """Cut `order` (sorted by source length) into consecutive batches within both limits."""
    if max_tokens is None:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    # A padded batch costs rows x longest row on each side; with the source sorted, the longest
    # source is the newest one, and the target's maximum is tracked as we go.
    src_sorted = src_len[order].tolist()
    tgt_sorted = tgt_len[order].tolist()
    limit = batch_size or len(order)
    cuts, start, longest_tgt = [0], 0, 0
    for i, (s, t) in enumerate(zip(src_sorted, tgt_sorted)):
        grown_tgt = max(longest_tgt, t)
        rows = i - start + 1
        if rows > 1 and (rows > limit or rows * max(s, grown_tgt) > max_tokens):
            cuts.append(i)
            start, grown_tgt = i, t
        longest_tgt = grown_tgt
    cuts.append(len(order))
    return [order[a:b] for a, b in zip(cuts[:-1], cuts[1:])]


class Batcher:
    """Length-bucketed batches of a Corpus; batch_size caps sentences, max_tokens padded tokens
    per side (the paper used about 25,000). At least one of the two must be given."""

    def __init__(self, corpus, batch_size=None, max_tokens=None, shuffle=True, seed=0):
        if batch_size is None and max_tokens is None:
            raise ValueError("Batcher: give batch_size (sentences) or max_tokens (tokens), or both")
        if any(size is not None and size < 1 for size in (batch_size, max_tokens)):
            raise ValueError(f"Batcher: batch_size={batch_size} and max_tokens={max_tokens} must be "
                             "positive")
        if len(corpus) == 0:
            raise ValueError("Batcher: the corpus is empty")
        self.corpus, self.batch_size, self.max_tokens = corpus, batch_size, max_tokens
        self.shuffle, self.seed = shuffle, seed
        # Lengths with the <eos>/<bos> the batches add.
        self._src_len = corpus.src_lengths + 1
        self._tgt_len = corpus.tgt_lengths + 1
        self._cache = (None, None)

    def epoch_batches(self, epoch=0):
        """The index arrays of every batch of `epoch`, in the order they are served."""
        if self._cache[0] == epoch:
            return self._cache[1]
        n = len(self.corpus)
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(n)
            # Stable sort by (source, target) length: ties stay in their random order.
            order = order[np.lexsort((self._tgt_len[order], self._src_len[order]))]
        else:
            order = np.lexsort((self._tgt_len, self._src_len))
        batches = _cut(order, self._src_len, self._tgt_len, self.batch_size, self.max_tokens)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        self._cache = (epoch, batches)
        return batches

    def __len__(self):
        return len(self.epoch_batches(0))

    def __iter__(self):
        for indices in self.epoch_batches(0):
            yield make_batch(self.corpus, indices)

    def stream(self, epoch=0, index=0):
        """Batches forever, from batch `index` of `epoch` on: yields (epoch, index, Batch)."""
        while True:
            batches = self.epoch_batches(epoch)
            for i in range(index, len(batches)):
                yield epoch, i, make_batch(self.corpus, batches[i])
            epoch, index = epoch + 1, 0
