"""Turning a trained Transformer into translations: greedy decoding and beam search (section 6.1).

Both are batched and stop a sentence at end-of-sequence, or at its source length + 50 tokens as
in the paper. Both run the decoder incrementally by default: a `DecoderCache` keeps every decoder
layer's self-attention keys and values of the positions already decoded (appended in place into
buffers allocated once) and the cross-attention keys and values of the encoder output (computed
once), so a step costs one position's work instead of re-running the whole prefix.

    tokens = greedy_decode(model, src, bos_id=1, eos_id=2)            # (B, L) ids, pad after EOS
    tokens = beam_search(model, src, bos_id=1, eos_id=2, beam_size=4, alpha=0.6)

With return_attention=True both also return each decoder layer's cross-attention weights
(B, h, L, S): row j is what output token j looked at in the source. The cache records them as
it decodes, so they cost no second forward pass.
"""
import numpy as np

from tinygrad_tf import Tensor, is_grad_enabled, no_grad


# ---------------------------------------------------------------------------- the key/value cache

class LayerCache:
    """One decoder layer's cached keys and values, each (N, h, positions, d_k), and optionally
    its cross-attention weights (N, h, positions, S)."""

    def __init__(self, memory_kv, n_heads, d_k, max_len, keep_attention=False):
        self.memory_kv = memory_kv  # cross-attention: projected once from the encoder output
        rows, dtype, source = memory_kv[0].shape[0], memory_kv[0].dtype, memory_kv[0].shape[2]
        self.keys = np.zeros((rows, n_heads, max_len, d_k), dtype)
        self.values = np.zeros((rows, n_heads, max_len, d_k), dtype)
        self.attention = np.zeros((rows, n_heads, max_len, source), dtype) if keep_attention \
            else None
        self.length = 0

    def append(self, k, v):
        """Write the new positions' k, v (N, h, n, d_k); return views of all so far."""
        start, end = self.length, self.length + k.shape[2]
        self.keys[:, :, start:end] = k.array
        self.values[:, :, start:end] = v.array
        self.length = end
        return Tensor._wrap(self.keys[:, :, :end]), Tensor._wrap(self.values[:, :, :end])

    def cross_attend(self, attention, y, src_mask):
        """The layer's cross-attention `attention` for the new positions y (N, n, d_model),
        over the cached memory keys and values; records the weights when keeping them."""
        if self.attention is None:
            return attention(y, None, None, src_mask, kv=self.memory_kv)
        out, weights = attention(y, None, None, src_mask, kv=self.memory_kv, need_weights=True)
        # append() ran first in this layer, so the new positions end at self.length.
        self.attention[:, :, self.length - y.shape[1]:self.length] = weights.array
        return out

    def reorder(self, moved, sources):
        """Row moved[i] takes the contents of row sources[i] (beam search reshuffling a
        sentence's beams; those share one source, so memory_kv needs no reordering)."""
        # The right-hand side is gathered into a temporary first, so overlaps are safe.
        self.keys[moved, :, :self.length] = self.keys[sources, :, :self.length]
        self.values[moved, :, :self.length] = self.values[sources, :, :self.length]
        if self.attention is not None:
            self.attention[moved, :, :self.length] = self.attention[sources, :, :self.length]


class DecoderCache:
    """Everything `Transformer.decode` needs to take one step at a time, for N rows."""

    def __init__(self, model, memory, max_len, keep_attention=False):
        if is_grad_enabled():
            # The buffers are written in place, outside the graph: gradients would be wrong.
            raise RuntimeError("DecoderCache: incremental decoding must run under no_grad()")
        if max_len > model.config.max_len:
            raise ValueError(f"DecoderCache: max_len {max_len} exceeds the model's positional "
                             f"table ({model.config.max_len}); raise TransformerConfig.max_len")
        self.pad_id = model.config.pad_id
        self.tokens = np.full((memory.shape[0], max_len), self.pad_id, dtype=np.int64)
        self.length = 0
        self.layers = [LayerCache(layer.cross_attn.project_kv(memory, memory),
                                  layer.cross_attn.n_heads, layer.cross_attn.d_k, max_len,
                                  keep_attention)
                       for layer in model.decoder.layers]

    def attention(self, rows, length):
        """Cross-attention weights of `rows` at the first `length` positions, per layer:
        [(len(rows), h, length, S)]. Needs keep_attention=True."""
        if self.layers and self.layers[0].attention is None:
            raise RuntimeError("DecoderCache: built without keep_attention=True")
        return [layer.attention[rows, :, :length].copy() for layer in self.layers]

    def record(self, tgt_in):
        """Note the new target ids (N, n); return their first position and every id so far."""
        ids = tgt_in.array if isinstance(tgt_in, Tensor) else np.asarray(tgt_in)
        start, end = self.length, self.length + ids.shape[1]
        if end > self.tokens.shape[1]:
            raise ValueError(f"DecoderCache: {end} positions exceed the cache's max_len "
                             f"{self.tokens.shape[1]}")
        self.tokens[:, start:end] = ids
        self.length = end
        return start, self.tokens[:, :end]

    def reorder(self, rows):
        """Row i takes the contents of row rows[i]; only rows that change are copied."""
        moved = np.nonzero(rows != np.arange(len(rows)))[0]
        if moved.size:
            self.tokens[moved, :self.length] = self.tokens[rows[moved], :self.length]
            for layer in self.layers:
                layer.reorder(moved, rows[moved])


# ---------------------------------------------------------------------------- next-token scores

class _NextTokenLogits:
    """Logits of the next token for N rows of prefixes: each source repeated `copies` times."""

    def __init__(self, model, src, copies, max_steps, use_cache, keep_attention=False):
        self.model = model
        src_mask = model.source_mask(src)
        memory = model.encode(src, src_mask)
        if copies > 1:
            rows = np.repeat(np.arange(src.shape[0]), copies)
            memory, src_mask = memory[rows], src_mask[rows]  # (B * copies, S, d_model)
        self.memory, self.src_mask = memory, src_mask
        if keep_attention and not use_cache:
            raise ValueError("decoding: return_attention needs use_cache=True (the cache "
                             "records the weights)")
        self.cache = None
        if use_cache:  # a model with its own kind of state (models/recurrent.py) makes its cache
            make_cache = getattr(model, "decoder_cache", None)
            self.cache = (make_cache(memory, max_steps + 1, keep_attention) if make_cache
                          else DecoderCache(model, memory, max_steps + 1, keep_attention))

    def __call__(self, prefixes):
        """prefixes (N, t) ids, BOS first -> logits (N, V) for position t."""
        if self.cache is None:
            logits = self.model.decode(self.memory, self.src_mask, Tensor(prefixes))
        else:
            assert self.cache.length == prefixes.shape[1] - 1, "cache and prefix out of step"
            logits = self.model.decode(self.memory, self.src_mask, Tensor(prefixes[:, -1:]),
                                       self.cache)
        return logits.array[:, -1]

    def reorder(self, rows):
        if self.cache is not None:
            self.cache.reorder(rows)


def _output_limits(src, pad_id, max_extra_len, max_len):
    """Each sentence's longest output: source length + max_extra_len (section 6.1), at least one
    token and within the positional table (position 0 is BOS)."""
    ids = src.array if isinstance(src, Tensor) else np.asarray(src)
    lengths = (ids != pad_id).sum(axis=1)
    return np.clip(lengths + max_extra_len, 1, max_len - 1)


# ---------------------------------------------------------------------------- greedy

@no_grad()
def greedy_decode(model, src, bos_id, eos_id, max_extra_len=50, use_cache=True,
                  return_logits=False, return_attention=False):
    """Pick the most likely token at every step, for every sentence of the batch at once.

    src: source ids (B, S), padded with config.pad_id. Returns the output ids (B, L) without BOS,
    each row ending at its EOS (included) or its length limit, padded with pad_id; L is the
    longest row. return_logits: also return every step's logits (B, L, V) (for tests).
    return_attention: also return the cross-attention weights, a list with one (B, h, L, S)
    array per decoder layer (zeros after a row's EOS). Extras come in this order.
    Dropout is the caller's business, as in torch: call model.eval() first.
    """
    pad_id = model.config.pad_id
    limits = _output_limits(src, pad_id, max_extra_len, model.config.max_len)
    steps = int(limits.max())
    next_logits = _NextTokenLogits(model, src, 1, steps, use_cache, return_attention)
    B = src.shape[0]
    tokens = np.full((B, steps + 1), pad_id, dtype=np.int64)
    tokens[:, 0] = bos_id
    finished = np.zeros(B, dtype=bool)
    all_logits = []
    for t in range(steps):
        logits = next_logits(tokens[:, :t + 1])  # (B, V)
        all_logits.append(logits)
        tokens[:, t + 1] = np.where(finished, pad_id, logits.argmax(axis=-1))
        finished |= (tokens[:, t + 1] == eos_id) | (t + 1 >= limits)
        if finished.all():
            break
    out = Tensor(tokens[:, 1:t + 2])
    extras = [Tensor(np.stack(all_logits, axis=1))] if return_logits else []
    if return_attention:
        attention = next_logits.cache.attention(np.arange(B), t + 1)
        decoded = _decoded_positions(tokens[:, 1:t + 2], eos_id, limits)  # (B, L)
        extras.append([np.where(decoded[:, None, :, None], a, 0.0) for a in attention])
    return (out, *extras) if extras else out


def _decoded_positions(out, eos_id, limits):
    """(B, L) True up to and including each row's first EOS, within its length limit."""
    is_eos = out == eos_id
    first = np.where(is_eos.any(axis=1), is_eos.argmax(axis=1), out.shape[1])
    positions = np.arange(out.shape[1])[None, :]
    return (positions <= first[:, None]) & (positions < limits[:, None])


# ---------------------------------------------------------------------------- beam search

def length_penalty(length, alpha):
    """lp(Y) = ((5 + |Y|) / 6)^alpha, Wu et al. 2016 (GNMT), used by the paper in section 6.1."""
    return ((5.0 + length) / 6.0) ** alpha


@no_grad()
def beam_search(model, src, bos_id, eos_id, beam_size=4, alpha=0.6, max_extra_len=50,
                use_cache=True, return_scores=False, return_attention=False):
    """Keep the `beam_size` best prefixes of each sentence; return the best finished hypothesis.

    A hypothesis Y scores log P(Y | X) / lp(Y) (see `length_penalty`; |Y| counts EOS). Returns
    ids (B, L) as `greedy_decode` does; return_scores: also the chosen hypotheses' scores (B,);
    return_attention: also the chosen hypotheses' cross-attention, as `greedy_decode` gives it.
    """
    if beam_size < 1:
        raise ValueError(f"beam_search: beam_size must be at least 1, got {beam_size}")
    limits = _output_limits(src, model.config.pad_id, max_extra_len, model.config.max_len)
    next_logits = _NextTokenLogits(model, src, beam_size, int(limits.max()), use_cache,
                                   return_attention)

    def next_log_probs(prefixes):
        return Tensor._wrap(next_logits(prefixes)).log_softmax(-1).array

    snapshot = None
    if return_attention:  # a hypothesis's weights, copied when it finishes (rows get reused)
        def snapshot(row, length):
            return next_logits.cache.attention([row], length)

    found = search_beams(next_log_probs, next_logits.reorder, limits, bos_id, eos_id,
                         model.config.pad_id, beam_size, alpha, snapshot)
    extras = [found[1]] if return_scores else []
    if return_attention:  # per sentence and layer (1, h, n, S) -> per layer (B, h, L, S)
        B, L = found[0].shape
        layers = []
        for i in range(len(model.decoder.layers)):
            _, h, _, S = found[2][0][i].shape
            layer = np.zeros((B, h, L, S), found[2][0][i].dtype)
            for b, kept in enumerate(found[2]):
                layer[b, :, :kept[i].shape[2]] = kept[i][0]
            layers.append(layer)
        extras.append(layers)
    return (found[0], *extras) if extras else found[0]


def search_beams(next_log_probs, reorder, limits, bos_id, eos_id, pad_id, beam_size, alpha,
                 snapshot=None):
    """Batched beam search over any next-token model.

    next_log_probs(prefixes (B * K, t) ids) -> (B * K, V) log-probabilities; rows b*K .. b*K+K-1
    are sentence b's beams. reorder(rows): the model's state must follow a reshuffle of rows.
    limits (B,): each sentence's longest output. Returns (ids (B, L) Tensor, scores (B,) numpy),
    and with snapshot(row, length) -> anything: also, per sentence, what it returned for the
    chosen hypothesis's row when that hypothesis finished.

    Each step expands every beam by every token and keeps the 2K best candidates per sentence: the
    ones that end in EOS and rank in the top K become finished hypotheses; the K best others
    stay alive. A sentence is done once no live beam can still beat its best finished
    hypothesis (or at its limit, when its live beams count as finished): log P only falls as a
    beam grows, so for alpha >= 0 a live beam's best possible score is log P(prefix) / lp(limit)
    (the test of the paper's tensor2tensor). Stopping at the first K finished hypotheses instead
    loses the answer when the model gives early EOS a little probability (label smoothing does):
    on the demo task that rule made beam 4 worse than greedy. beam_size=1 with alpha=0 is
    exactly greedy decoding.
    """
    B, K = len(limits), beam_size
    steps = int(np.max(limits))
    tokens = np.full((B * K, steps + 1), pad_id, dtype=np.int64)
    tokens[:, 0] = bos_id
    cum = np.full((B, K), -np.inf)  # log P(prefix) of each live beam
    cum[:, 0] = 0.0  # the K beams start equal: expand only one, or we would pick K copies
    finished = [[] for _ in range(B)]  # (score, ids) per sentence
    done = np.zeros(B, dtype=bool)
    sentence = np.arange(B)[:, None]
    for t in range(steps):
        log_probs = next_log_probs(tokens[:, :t + 1])  # (B * K, V)
        V = log_probs.shape[1]
        scores = (cum.reshape(B * K, 1) + log_probs).reshape(B, K * V)
        n_cand = min(2 * K, K * V)
        top = np.argpartition(-scores, n_cand - 1, axis=1)[:, :n_cand]  # (B, 2K), unordered
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1)
        cand_score = np.take_along_axis(scores, top, axis=1)  # (B, 2K), best first
        cand_beam, cand_token = top // V, top % V
        is_eos = cand_token == eos_id
        for b, rank in zip(*np.nonzero(is_eos[:, :K] & np.isfinite(cand_score[:, :K]))):
            if not done[b]:
                row = b * K + cand_beam[b, rank]
                ids = np.append(tokens[row, 1:t + 1], eos_id)
                finished[b].append((cand_score[b, rank] / length_penalty(t + 1, alpha), ids,
                                    snapshot(row, t + 1) if snapshot else None))
        # The K best candidates that do not end here (at most K of the 2K end in EOS).
        alive = np.argsort(is_eos, axis=1, kind="stable")[:, :K]  # (B, K)
        rows = (sentence * K + np.take_along_axis(cand_beam, alive, 1)).reshape(-1)
        tokens = tokens[rows]
        tokens[:, t + 1] = np.take_along_axis(cand_token, alive, 1).reshape(-1)
        cum = np.take_along_axis(cand_score, alive, 1)
        reorder(rows)
        for b in np.nonzero(~done & (t + 1 >= limits))[0]:  # out of length: live beams finish
            for k in range(K):
                if np.isfinite(cum[b, k]):
                    finished[b].append((cum[b, k] / length_penalty(t + 1, alpha),
                                        tokens[b * K + k, 1:t + 2].copy(),
                                        snapshot(b * K + k, t + 1) if snapshot else None))
        # The best score a live beam could still reach (see the docstring); lp is monotone.
        reach = np.max(cum / np.maximum(length_penalty(limits, alpha),
                                        length_penalty(t + 2, alpha))[:, None], axis=1)
        best_done = np.array([max((hyp[0] for hyp in f), default=-np.inf) for f in finished])
        done |= (best_done >= reach) | (t + 1 >= limits)
        if done.all():
            break
    best = [max(f, key=lambda hyp: hyp[0]) for f in finished]
    out = np.full((B, max(len(ids) for _, ids, _ in best)), pad_id, dtype=np.int64)
    for b, (_, ids, _) in enumerate(best):
        out[b, :len(ids)] = ids
    scores = np.array([score for score, _, _ in best])
    if snapshot is None:
        return Tensor(out), scores
    return Tensor(out), scores, [kept for _, _, kept in best]
