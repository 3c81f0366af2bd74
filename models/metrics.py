"""Scores for a seq2seq model: token accuracy, exact match and corpus BLEU (sacrebleu)."""
import numpy as np

from .tokenizers import Vocab


def token_accuracy(predicted, target, pad_id=Vocab.pad_id):
    """(correct, counted): predicted ids equal to the target's, over its non-pad positions."""
    predicted, target = np.asarray(predicted), np.asarray(target)
    if predicted.shape != target.shape:
        raise ValueError(f"token_accuracy: predicted shape {predicted.shape} != target shape "
                         f"{target.shape}")
    counted = target != pad_id
    return int((predicted == target)[counted].sum()), int(counted.sum())


def exact_match(hypotheses, references):
    """The fraction of hypotheses identical to their reference string."""
    if len(hypotheses) != len(references):
        raise ValueError(f"exact_match: {len(hypotheses)} hypotheses for {len(references)} "
                         "references")
    if not references:
        return 0.0
    return sum(h == r for h, r in zip(hypotheses, references)) / len(references)


def bleu_available():
    try:
        import sacrebleu  # noqa: F401
    except ImportError:
        return False
    return True


def corpus_bleu(hypotheses, references, tokenize="13a"):
    """Corpus BLEU (0-100) and sacrebleu's signature, or (None, reason) without sacrebleu.

    tokenize: sacrebleu's tokenizer; '13a' for words, 'char' for character-level tasks."""
    try:
        import sacrebleu
    except ImportError:
        return None, "BLEU skipped: install sacrebleu (pip install 'tinygrad_tf[recipe]')"
    metric = sacrebleu.metrics.BLEU(tokenize=tokenize)
    score = metric.corpus_score(list(hypotheses), [list(references)])
    return float(score.score), str(metric.get_signature())
