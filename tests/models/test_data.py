"""Built-in tasks, TSV loading, tokenizers and batching of the seq2seq recipe."""
import datetime

import numpy as np
import pytest

from tinygrad_tf.models import batching, data, metrics, tokenizers
from tinygrad_tf.models.tokenizers import Vocab


# ---------------------------------------------------------------------------- built-in tasks

@pytest.mark.parametrize("name", sorted(data.TASKS))
def test_task_is_deterministic_and_splits_are_disjoint(name):
    first = data.make_task(name, seed=3, n_train=300, n_valid=50, n_test=50)
    again = data.make_task(name, seed=3, n_train=300, n_valid=50, n_test=50)
    other = data.make_task(name, seed=4, n_train=300, n_valid=50, n_test=50)
    assert first == again
    assert first.train != other.train
    assert (len(first.train), len(first.valid), len(first.test)) == (300, 50, 50)
    sources = [s for split in (first.train, first.valid, first.test) for s, _ in split]
    assert len(set(sources)) == len(sources)


def test_symbol_tasks_follow_their_rule_and_options():
    splits = data.make_task("reverse", seed=0, n_train=200, vocab=5, min_len=3, max_len=7)
    for source, target in splits.train:
        assert target == source[::-1] and 3 <= len(source) <= 7 and set(source) <= set("abcde")
    for source, target in data.make_task("copy", n_train=50, n_valid=5, n_test=5).train:
        assert source == target
    for source, target in data.make_task("sort", n_train=50, n_valid=5, n_test=5, vocab=40).train:
        assert target == "".join(sorted(source, key=data.SYMBOLS.index))
        assert sorted(source) == sorted(target)


def test_add_is_correct_decimal_addition():
    for source, target in data.make_task("add", seed=1, n_train=500, max_digits=5).train:
        a, b = source.split("+")
        assert int(target) == int(a) + int(b) and len(a) <= 5 and len(b) <= 5


def test_dates_map_every_format_to_the_same_iso_date():
    day = datetime.date(2021, 3, 5)
    written = [fmt(day) for fmt in data._DATE_FORMATS]
    assert "March 5, 2021" in written and "05/03/2021" not in written  # US order: 03/05/2021
    assert "03/05/2021" in written and "the 5th of March 2021" in written
    assert len(set(written)) == len(written)
    for source, target in data.make_task("dates", seed=2, n_train=300).train:
        parsed = datetime.date.fromisoformat(target)
        assert str(parsed.year) in source and 1900 <= parsed.year <= 2099


def test_task_errors_are_clear():
    with pytest.raises(ValueError, match="unknown task 'copyy'"):
        data.make_task("copyy")
    with pytest.raises(ValueError, match="distinct examples"):
        data.make_task("copy", n_train=100, vocab=2, min_len=1, max_len=2)
    with pytest.raises(ValueError, match="vocab=99"):
        data.make_task("copy", vocab=99)


# ---------------------------------------------------------------------------- TSV files

def test_tsv_round_trip(tmp_path):
    pairs = [("héllo wörld", "bonjour"), ("a b", "c\u00a0d")]
    data.save_tsv(tmp_path / "ok.tsv", pairs)
    assert data.load_tsv(tmp_path / "ok.tsv") == pairs
    (tmp_path / "crlf.tsv").write_bytes(b"\xef\xbb\xbfx\ty\r\nz\tw\r\n")
    assert data.load_tsv(tmp_path / "crlf.tsv") == [("x", "y"), ("z", "w")]


@pytest.mark.parametrize("content, line, reason", [
    (b"a\tb\nno tab here\nc\td\n", 2, "no tab"),
    (b"a\tb\n\tmissing source\n", 2, "the source .* is empty"),
    (b"a\tb\nc\td\nmissing target\t  \n", 3, "the target .* is empty"),
    (b"a\tb\tc\n", 1, "more than one tab"),
    (b"a\tb\nc\td\ne\t\xff\xfe\n", 3, "not valid UTF-8"),
])
def test_malformed_tsv_names_file_line_and_reason(tmp_path, content, line, reason):
    path = tmp_path / "bad.tsv"
    path.write_bytes(content)
    with pytest.raises(data.DataError, match=f"bad.tsv:{line}: {reason}"):
        data.load_tsv(path)


def test_blank_lines_are_skipped_and_counted(tmp_path):
    path = tmp_path / "blank.tsv"
    path.write_bytes(b"a\tb\n\n  \r\nc\td\n\n")  # a blank line inside and one at the end
    messages = []
    assert data.load_tsv(path, report=messages.append) == [("a", "b"), ("c", "d")]
    assert messages == [f"{path}: skipped 3 blank lines"]
    path.write_bytes(b"a\tb\n")
    data.load_tsv(path, report=messages.append)
    assert len(messages) == 1  # nothing skipped, nothing said


def test_unreadable_paths_are_data_errors(tmp_path):
    with pytest.raises(data.DataError, match="is a directory"):
        data.load_tsv(tmp_path)
    with pytest.raises(data.DataError, match="no such file"):
        data.load_tsv(tmp_path / "missing.tsv")


# ---------------------------------------------------------------------------- tokenizers

TEXTS = ["the cat sat", "on the mat", "Grüße, 世界!", "  spaced   out  "]


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_tokenizer_round_trip_and_save(tmp_path, kind):
    if kind == "bpe":
        pytest.importorskip("tokenizers")
    tokenizer = tokenizers.build_tokenizer(kind, TEXTS * 5, max_size=300 if kind == "bpe" else None)
    assert tokenizer.vocab.itos[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    for text in TEXTS:
        ids = tokenizer.encode(text)
        assert ids.dtype == np.int32 and ids.min() >= 4
        expected = " ".join(text.split()) if kind == "word" else text
        assert tokenizer.decode(ids) == expected
        # Decoding stops at <eos> and ignores <bos>/<pad>, as a decoder's output needs.
        assert tokenizer.decode([Vocab.bos_id, *ids, Vocab.eos_id, 5, Vocab.pad_id]) == expected
    tokenizer.save(tmp_path / "vocab.json")
    loaded = tokenizers.load_tokenizer(tmp_path / "vocab.json")
    assert loaded.kind == kind and loaded.vocab == tokenizer.vocab
    assert np.array_equal(loaded.encode(TEXTS[2]), tokenizer.encode(TEXTS[2]))


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_special_token_spellings_in_text_stay_ordinary_tokens(tmp_path, kind):
    # Regression: the word tokenizer read the text "<eos>" as the <eos> id (decoding stopped
    # there) and "<pad>" as padding; BPE did the same through its special tokens.
    if kind == "bpe":
        pytest.importorskip("tokenizers")
    text = "a <pad> b <eos> c <bos> <unk> d"
    tokenizer = tokenizers.build_tokenizer(kind, [text, "a b c d"] * 5,
                                           max_size=300 if kind == "bpe" else None)
    for loaded in (tokenizer, tokenizers.load_tokenizer(_saved(tokenizer, tmp_path))):
        ids = loaded.encode(text)
        assert ids.min() >= 4, ids  # no special id, not even <unk>: they are in the vocabulary
        assert loaded.decode(ids) == text
        assert not tokenizers.unknown_tokens(loaded, [text])
    if kind == "word":  # unseen, they are unknown words like any other
        other = tokenizers.build_tokenizer("word", ["a b"])
        assert other.encode("a <eos> b").tolist() == [*other.encode("a"), Vocab.unk_id,
                                                      *other.encode("b")]
        assert tokenizers.unknown_tokens(other, ["a <eos>"]) == {"<eos>": 1}


def _saved(tokenizer, tmp_path):
    tokenizer.save(tmp_path / "vocab.json")
    return tmp_path / "vocab.json"


def test_unknown_tokens_and_batch_encoding_agree():
    tokenizer = tokenizers.build_tokenizer("char", ["abc"])
    assert tokenizer.encode("abz").tolist() == [*tokenizer.encode("ab").tolist(), Vocab.unk_id]
    flat, offsets = tokenizer.encode_batch(["ab", "", "cba"])
    assert offsets.tolist() == [0, 2, 2, 5]
    assert flat[2:5].tolist() == tokenizer.encode("cba").tolist()


def test_vocab_limits_are_deterministic():
    counts_text = ["aaab", "bbc", "d"]
    tokenizer = tokenizers.build_tokenizer("char", counts_text, max_size=6)
    assert tokenizer.vocab.itos[4:] == ["a", "b"]  # most frequent first, ties by token
    assert tokenizers.build_tokenizer("char", counts_text, min_freq=2).vocab.itos[4:] == ["a", "b"]
    with pytest.raises(ValueError, match="unknown tokenizer 'sentencepiece'"):
        tokenizers.build_tokenizer("sentencepiece", counts_text)


def test_bpe_without_the_package_says_how_to_install(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name == "tokenizers":
            raise ImportError("No module named 'tokenizers'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    with pytest.raises(ImportError, match=r"pip install 'tinygrad_tf\[recipe\]'"):
        tokenizers.build_tokenizer("bpe", TEXTS)


# ---------------------------------------------------------------------------- batching

def _corpus(n=500, seed=0):
    splits = data.make_task("reverse", seed=seed, n_train=n, n_valid=1, n_test=1, max_len=20)
    tokenizer = tokenizers.build_tokenizer("char", [s for s, _ in splits.train])
    return batching.encode_pairs(tokenizer, splits.train), tokenizer, splits.train


def test_batches_hold_the_right_padded_ids():
    corpus, tokenizer, pairs = _corpus(50)
    batch = batching.make_batch(corpus, [3, 7])
    for row, k in enumerate([3, 7]):
        source, target = pairs[k]
        n_src, n_tgt = len(source), len(target)
        assert batch.src[row, :n_src].tolist() == tokenizer.encode(source).tolist()
        assert batch.src[row, n_src] == Vocab.eos_id and (batch.src[row, n_src + 1:] == 0).all()
        assert batch.tgt_in[row, 0] == Vocab.bos_id
        assert batch.tgt_in[row, 1:n_tgt + 1].tolist() == batch.tgt_out[row, :n_tgt].tolist()
        assert batch.tgt_out[row, n_tgt] == Vocab.eos_id
        assert tokenizer.decode(batch.tgt_out[row]) == target
    assert batch.src.dtype == np.int64 and batch.tgt_in.shape == batch.tgt_out.shape
    assert batch.n_tokens == len(pairs[3][1]) + len(pairs[7][1]) + 2


@pytest.mark.parametrize("batch_size, max_tokens", [(32, None), (None, 200), (16, 150), (None, 5)])
def test_every_pair_served_once_per_epoch_within_budget(batch_size, max_tokens):
    corpus, _, _ = _corpus(500)
    batcher = batching.Batcher(corpus, batch_size=batch_size, max_tokens=max_tokens, seed=1)
    for epoch in range(2):
        seen = []
        for indices in batcher.epoch_batches(epoch):
            batch = batching.make_batch(corpus, indices)
            seen.extend(indices.tolist())
            if batch_size:
                assert len(indices) <= batch_size
            if max_tokens and len(indices) > 1:  # a single over-long pair is its own batch
                assert batch.src.size <= max_tokens and batch.tgt_out.size <= max_tokens
        assert sorted(seen) == list(range(len(corpus)))


def test_bucketing_keeps_padding_small_and_order_is_seeded():
    corpus, _, _ = _corpus(2000)
    batcher = batching.Batcher(corpus, max_tokens=400, seed=5)
    padded = real = 0
    for indices in batcher.epoch_batches(0):
        batch = batching.make_batch(corpus, indices)
        padded, real = padded + batch.src.size, real + (batch.src != 0).sum()
    assert real / padded > 0.9  # random batches of lengths 1-20 would be about half padding
    again = batching.Batcher(corpus, max_tokens=400, seed=5)
    same = [b.tolist() for b in again.epoch_batches(1)]
    assert same == [b.tolist() for b in batcher.epoch_batches(1)]
    assert same != [b.tolist() for b in batcher.epoch_batches(0)]
    assert same != [b.tolist() for b in batching.Batcher(corpus, max_tokens=400, seed=6)
                    .epoch_batches(1)]


def test_stream_resumes_mid_epoch():
    corpus, _, _ = _corpus(100)
    batcher = batching.Batcher(corpus, batch_size=16, seed=2)
    full = [(e, i, b.indices.tolist()) for (e, i, b), _ in zip(batcher.stream(), range(12))]
    resumed = [(e, i, b.indices.tolist()) for (e, i, b), _ in
               zip(batching.Batcher(corpus, batch_size=16, seed=2).stream(*full[5][:2]), range(7))]
    assert resumed == full[5:]


def test_batcher_refuses_bad_sizes():
    corpus, _, _ = _corpus(10)
    with pytest.raises(ValueError, match="batch_size .* or max_tokens"):
        batching.Batcher(corpus)
    with pytest.raises(ValueError, match="must be positive"):
        batching.Batcher(corpus, batch_size=0)


# ---------------------------------------------------------------------------- metrics

def test_metrics():
    assert metrics.exact_match(["ab", "c", "d"], ["ab", "c", "e"]) == pytest.approx(2 / 3)
    assert metrics.token_accuracy([[5, 6, 7]], [[5, 9, 0]]) == (1, 2)
    if metrics.bleu_available():
        sentence = "the cat sat on the mat"
        score, signature = metrics.corpus_bleu([sentence], [sentence])
        assert score == pytest.approx(100.0) and "nrefs:1" in signature
        low, _ = metrics.corpus_bleu(["a dog ran in a park"], ["the cat sat on the mat"])
        assert low < 5
