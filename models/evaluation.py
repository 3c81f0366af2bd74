"""Scoring a model on pairs: the teacher-forced loss of a batch, decoding texts, exact match and
BLEU with timings. Used by training's validation, the final report and the CLI; `train` re-exports
these names."""
import time

from tinygrad_tf import Tensor, no_grad
from tinygrad_tf.nn import functional as F

from .batching import Batcher, encode_pairs, make_batch
from .decoding import beam_search, greedy_decode
from .metrics import corpus_bleu, exact_match
from .tokenizers import Vocab


def loss_of(model, batch, label_smoothing):
    """Mean cross-entropy per target token of a batch (teacher forcing), and the logits."""
    # from_numpy: the batch arrays are fresh and only read, so they are shared, not copied
    logits = model(Tensor.from_numpy(batch.src), Tensor.from_numpy(batch.tgt_in))   # (B, T, V)
    targets = Tensor.from_numpy(batch.tgt_out.reshape(-1))
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets,
                           ignore_index=Vocab.pad_id, label_smoothing=label_smoothing)
    return loss, logits


def _reference(tokenizer, text):
    return " ".join(text.split()) if tokenizer.kind == "word" else text


def decode_texts(model, tokenizer, sources, beam_size=1, alpha=0.6, use_cache=True,
                 batch_size=64):
    """Translate source strings, batched by length; returns the outputs in input order."""
    if not sources:
        return []
    encoded = encode_pairs(tokenizer, [(s, "x") for s in sources])
    outputs = [None] * len(sources)
    was_training = model.training
    model.eval()
    try:
        for indices in Batcher(encoded, batch_size=batch_size, shuffle=False).epoch_batches(0):
            src = Tensor(make_batch(encoded, indices).src)
            if beam_size > 1:
                ids = beam_search(model, src, Vocab.bos_id, Vocab.eos_id, beam_size=beam_size,
                                  alpha=alpha, use_cache=use_cache)
            else:
                ids = greedy_decode(model, src, Vocab.bos_id, Vocab.eos_id, use_cache=use_cache)
            for row, index in zip(ids.array, indices):
                outputs[index] = tokenizer.decode(row)
    finally:
        model.train(was_training)
    return outputs


def describe_decoding(beam_size, alpha):
    return "greedy" if beam_size == 1 else f"beam {beam_size}, alpha {alpha}"


def score_decoding(model, tokenizer, pairs, beam_size, alpha):
    """Exact match and BLEU of decoding the sources of `pairs`, and how long decoding took."""
    started = time.perf_counter()
    hypotheses = decode_texts(model, tokenizer, [s for s, _ in pairs], beam_size, alpha)
    seconds = time.perf_counter() - started
    references = [_reference(tokenizer, t) for _, t in pairs]
    bleu, _ = corpus_bleu(hypotheses, references,
                          tokenize="char" if tokenizer.kind == "char" else "13a")
    words = sum(len(h.split()) for h in hypotheses)
    tokens = sum(len(tokenizer.split(h)) + 1 for h in hypotheses)  # + <eos>
    return {"exact_match": exact_match(hypotheses, references), "bleu": bleu,
            "seconds": round(seconds, 3), "sentences_per_s": round(len(pairs) / seconds, 1),
            "words_per_s": round(words / seconds, 1), "tokens_per_s": round(tokens / seconds, 1)}


def format_decoding_score(score):
    bleu = "" if score["bleu"] is None else f", BLEU {score['bleu']:.2f}"
    return (f"exact match {score['exact_match']:.2%}{bleu}; {score['seconds']:.2f} s "
            f"({score['sentences_per_s']:.0f} sentences/s, {score['tokens_per_s']:.0f} "
            f"output tokens/s)")


def evaluate_pairs(model, tokenizer, pairs, max_tokens=4096, decode_limit=None, beam_size=1,
                   alpha=0.6, n_samples=5):
    """Teacher-forced loss and token accuracy on all pairs; exact match, BLEU and samples from
    decoding the first `decode_limit` pairs (all by default)."""
    corpus = encode_pairs(tokenizer, pairs)
    total_loss = correct = counted = 0.0
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            for batch in Batcher(corpus, max_tokens=max_tokens, shuffle=False):
                loss, logits = loss_of(model, batch, 0.0)
                n = batch.n_tokens
                total_loss += loss.item() * n
                real = batch.tgt_out != Vocab.pad_id
                correct += int((logits.array.argmax(-1) == batch.tgt_out)[real].sum())
                counted += n
    finally:
        model.train(was_training)
    decoded = pairs[:decode_limit] if decode_limit else pairs
    hypotheses = decode_texts(model, tokenizer, [s for s, _ in decoded], beam_size, alpha)
    references = [_reference(tokenizer, t) for _, t in decoded]
    bleu, signature = corpus_bleu(hypotheses, references,
                                  tokenize="char" if tokenizer.kind == "char" else "13a")
    return {"loss": total_loss / counted, "token_accuracy": correct / counted,
            "exact_match": exact_match(hypotheses, references), "bleu": bleu,
            "bleu_signature": signature, "n_pairs": len(pairs), "n_decoded": len(decoded),
            "samples": [{"source": s, "reference": r, "output": h}
                        for (s, _), r, h in zip(decoded[:n_samples], references, hypotheses)]}
