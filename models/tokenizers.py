"""Text <-> token ids: a Vocab with the four special tokens, and char, word and BPE tokenizers.

    tokenizer = build_tokenizer("char", [s for pair in pairs for s in pair])
    ids = tokenizer.encode("hello")            # int32 array, no <bos>/<eos>
    tokenizer.decode(ids) == "hello"
    tokenizer.save("vocab.json"); load_tokenizer("vocab.json")

One tokenizer serves both sides of a pair (a shared vocabulary, as the paper's English-German
BPE), which lets the model tie its source, target and output embeddings.

Text never produces a special id: the literal text `<pad>` (or `<bos>`, `<eos>`, `<unk>`) in data
is an ordinary token. The char tokenizer sees single characters anyway; the word tokenizer keeps
such a word in its vocabulary under an escaped key (WordTokenizer.key); BPE encodes it as bytes.
Decoding gives the literal text back. Only the <unk> id itself also decodes as "<unk>".
"""
import json
from collections import Counter
from itertools import chain

import numpy as np

from tinygrad_tf.nn.state import atomic_write

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
KINDS = ("char", "word", "bpe")


class Vocab:
    """Token strings <-> ids; ids 0-3 are <pad>, <bos>, <eos>, <unk>."""

    pad_id, bos_id, eos_id, unk_id = range(4)

    def __init__(self, tokens):
        tokens = list(tokens)
        if tuple(tokens[:4]) != SPECIALS:
            tokens = list(SPECIALS) + [t for t in tokens if t not in SPECIALS]
        if len(set(tokens)) != len(tokens):
            raise ValueError("Vocab: a token appears twice")
        self.itos = tokens
        self.stoi = {token: i for i, token in enumerate(tokens)}

    def __len__(self):
        return len(self.itos)

    def __eq__(self, other):
        return isinstance(other, Vocab) and self.itos == other.itos

    def lookup(self, tokens):
        return [self.stoi.get(token, self.unk_id) for token in tokens]

    def tokens(self, ids):
        return [self.itos[i] for i in ids]


def _strip_ids(ids):
    """Ids up to the first <eos>, with <pad>/<bos> dropped: what a decoder's output means."""
    ids = [int(i) for i in ids]
    if Vocab.eos_id in ids:
        ids = ids[:ids.index(Vocab.eos_id)]
    return [i for i in ids if i not in (Vocab.pad_id, Vocab.bos_id)]


def _counted_tokens(counts, min_freq, max_size):
    # Most frequent first, ties by the token itself, so the same corpus gives the same ids.
    ranked = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
    return ranked if max_size is None else ranked[:max(0, max_size - len(SPECIALS))]


class Tokenizer:
    """What every tokenizer offers: encode_batch and decode (per kind), encode and save."""

    kind = None

    def key(self, token):
        """The vocabulary entry of a token of the text (see WordTokenizer.key)."""
        return token

    def encode(self, text):
        """One text -> int32 ids (no <bos>/<eos>)."""
        flat, _ = self.encode_batch([text])
        return flat

    def save(self, path):
        save_tokenizer(self, path)


class CharTokenizer(Tokenizer):
    """One token per Unicode character (spaces included)."""

    kind = "char"

    def __init__(self, vocab):
        self.vocab = vocab
        # For vectorized encoding: the vocabulary's single-character tokens as sorted code points.
        chars = [(ord(t), i) for i, t in enumerate(vocab.itos) if len(t) == 1]
        chars.sort()
        self._codes = np.array([c for c, _ in chars], dtype=np.int64)
        self._ids = np.array([i for _, i in chars], dtype=np.int32)

    @classmethod
    def train(cls, texts, min_freq=1, max_size=None):
        counts = Counter("".join(texts))  # counting one long string runs in C
        return cls(Vocab(_counted_tokens(counts, min_freq, max_size)))

    def split(self, text):
        return list(text)

    def encode_batch(self, texts):
        """Many texts at once -> (flat int32 ids, int64 offsets of length len(texts) + 1)."""
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        if len(self._codes) == 0:
            return np.full(len(codes), Vocab.unk_id, np.int32), offsets
        where = np.minimum(np.searchsorted(self._codes, codes), len(self._codes) - 1)
        ids = np.where(self._codes[where] == codes, self._ids[where], Vocab.unk_id)
        return ids.astype(np.int32), offsets

    def decode(self, ids):
        return "".join(self.vocab.tokens(_strip_ids(ids)))


class WordTokenizer(Tokenizer):
    """Tokens are the whitespace-separated words; decoding joins them with single spaces.

    A word spelled like a special token (`<eos>` in the data) is stored as " <eos>": a word never
    holds a space, so the escaped key cannot clash with another word, and decoding strips it."""

    kind = "word"

    def __init__(self, vocab):
        self.vocab = vocab

    @staticmethod
    def key(word):
        return " " + word if word in SPECIALS else word

    @classmethod
    def train(cls, texts, min_freq=1, max_size=None):
        counts = Counter(map(cls.key, " ".join(texts).split()))
        return cls(Vocab(_counted_tokens(counts, min_freq, max_size)))

    def split(self, text):
        return text.split()

    def encode_batch(self, texts):
        stoi, unk, key = self.vocab.stoi, Vocab.unk_id, self.key
        words = [text.split() for text in texts]
        lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
        flat = [stoi.get(key(word), unk) for line in words for word in line]
        return np.array(flat, dtype=np.int32), np.concatenate([[0], np.cumsum(lengths)])

    def decode(self, ids):
        return " ".join(token.lstrip(" ") for token in self.vocab.tokens(_strip_ids(ids)))


def _require_tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ImportError("the 'bpe' tokenizer needs the optional 'tokenizers' package; install it "
                          "with: pip install 'tinygrad_tf[recipe]' (or pip install tokenizers), or "
                          "use --tokenizer char or word") from None
    return tokenizers


class BpeTokenizer(Tokenizer):
    """Byte-level BPE subwords from the `tokenizers` package (round-trips any text exactly)."""

    kind = "bpe"

    def __init__(self, backend):
        self.backend = backend
        # The literal text "<eos>" in data is bytes like any other, not the special token (the
        # setting is not saved with the model, so it is made here, for trained and loaded ones).
        backend.encode_special_tokens = True
        vocab = backend.get_vocab()
        self.vocab = Vocab(sorted(vocab, key=vocab.get))

    @classmethod
    def train(cls, texts, min_freq=2, max_size=8000):
        tk = _require_tokenizers()
        backend = tk.Tokenizer(tk.models.BPE(unk_token=UNK))
        backend.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = tk.decoders.ByteLevel()
        # The specials come first in the trainer's list, so they get ids 0-3 as Vocab expects.
        trainer = tk.trainers.BpeTrainer(
            vocab_size=max_size or 8000, min_frequency=min_freq, special_tokens=list(SPECIALS),
            initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        backend.train_from_iterator(texts, trainer=trainer)
        return cls(backend)

    def split(self, text):
        return self.backend.encode(text, add_special_tokens=False).tokens

    def encode_batch(self, texts):
        ids = [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=lengths.sum())
        return flat, np.concatenate([[0], np.cumsum(lengths)])

    def decode(self, ids):
        return self.backend.decode(_strip_ids(ids), skip_special_tokens=True)


_CLASSES = {"char": CharTokenizer, "word": WordTokenizer, "bpe": BpeTokenizer}


def unknown_tokens(tokenizer, texts):
    """{token: count} of the tokens of `texts` outside the vocabulary (they encode as <unk>),
    in order of first appearance: characters for char, words for word."""
    found = {}
    for text in texts:
        for token in tokenizer.split(text):
            if tokenizer.key(token) not in tokenizer.vocab.stoi:
                found[token] = found.get(token, 0) + 1
    return found


def build_tokenizer(kind, texts, min_freq=1, max_size=None):
    """Learn a vocabulary of `kind` ('char', 'word' or 'bpe') from an iterable of strings."""
    if kind not in _CLASSES:
        raise ValueError(f"build_tokenizer: unknown tokenizer {kind!r}; expected one of "
                         f"{', '.join(KINDS)}")
    if kind == "bpe":
        return BpeTokenizer.train(texts, min_freq=max(min_freq, 1), max_size=max_size)
    return _CLASSES[kind].train(texts, min_freq=min_freq, max_size=max_size)


def tokenizer_to_dict(tokenizer):
    state = {"kind": tokenizer.kind, "tokens": tokenizer.vocab.itos}
    if tokenizer.kind == "bpe":
        state["bpe"] = json.loads(tokenizer.backend.to_str())
    return state


def tokenizer_from_dict(state):
    kind = state.get("kind")
    if kind not in _CLASSES:
        raise ValueError(f"tokenizer file: unknown kind {kind!r}; expected one of "
                         f"{', '.join(KINDS)}")
    if kind == "bpe":
        tk = _require_tokenizers()
        return BpeTokenizer(tk.Tokenizer.from_str(json.dumps(state["bpe"])))
    return _CLASSES[kind](Vocab(state["tokens"]))


def save_tokenizer(tokenizer, path):
    atomic_write(path, json.dumps(tokenizer_to_dict(tokenizer), ensure_ascii=False))


def load_tokenizer(path):
    with open(path, encoding="utf-8") as file:
        return tokenizer_from_dict(json.load(file))
