"""What the decoder looks at: heatmaps of its cross-attention, one per decoder layer.

    found = attention_of(model, tokenizer, "abcdef")    # weights from the cached decoding
    plot_attention(found, "maps.png", heads=False)       # needs matplotlib
    tinygrad-tf translate RUN abcdef --attention maps.png [--heads]

Row j of a map is output token j, column i source token i; a cell is how much weight the query
that produced output j gave to source position i. For `reverse` a trained model's maps show an
anti-diagonal: the first output looks at the last source character, and so on.
"""
import os

from tinygrad_tf import Tensor

from .batching import encode_pairs, make_batch
from .decoding import beam_search, greedy_decode
from .tokenizers import Vocab


def require_matplotlib():
    """matplotlib.pyplot (with the file-only backend), or an ImportError that says what to do."""
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("attention maps need matplotlib: pip install 'tinygrad_tf[recipe]' "
                          "(or pip install matplotlib)") from None
    return plt


def attention_of(model, tokenizer, text, beam_size=1, alpha=0.6):
    """Translate one text and return what each decoder layer's cross-attention looked at:
    {"source_tokens", "output_tokens" (ending in <eos> when it was produced), "output" (text),
    "attention": [(h, len(output_tokens), len(source_tokens)) per decoder layer], "source"}."""
    src = Tensor(make_batch(encode_pairs(tokenizer, [(text, "x")]), [0]).src)  # (1, S), <eos> last
    was_training = model.training
    model.eval()
    try:
        if beam_size > 1:
            out, attention = beam_search(model, src, Vocab.bos_id, Vocab.eos_id, beam_size,
                                         alpha, return_attention=True)
        else:
            out, attention = greedy_decode(model, src, Vocab.bos_id, Vocab.eos_id,
                                           return_attention=True)
    finally:
        model.train(was_training)
    ids = out.array[0].tolist()
    length = ids.index(Vocab.eos_id) + 1 if Vocab.eos_id in ids else len(ids)
    return {"source": text, "source_tokens": tokenizer.vocab.tokens(src.array[0].tolist()),
            "output_tokens": tokenizer.vocab.tokens(ids[:length]),
            "output": tokenizer.decode(ids),
            "attention": [layer[0, :, :length] for layer in attention]}


def _label_ticks(axes, source_tokens, output_tokens):
    for tokens, set_ticks, set_labels, rotation in (
            (source_tokens, axes.set_xticks, axes.set_xticklabels, 90),
            (output_tokens, axes.set_yticks, axes.set_yticklabels, 0)):
        every = max(1, len(tokens) // 40)  # long sequences: label every n-th token
        positions = list(range(0, len(tokens), every))
        set_ticks(positions)
        set_labels([repr(tokens[i])[1:-1] if tokens[i].strip() else repr(tokens[i])
                    for i in positions], rotation=rotation, fontsize=8)


def plot_attention(found, path, heads=False):
    """Draw `attention_of`'s result into the image file `path`: one panel per decoder layer
    (heads averaged), or with heads=True a row per layer and a panel per head."""
    plt = require_matplotlib()
    layers = found["attention"]
    n_heads = layers[0].shape[0]
    rows, cols = (len(layers), n_heads) if heads else (1, len(layers))
    S, L = len(found["source_tokens"]), len(found["output_tokens"])
    panel = (max(2.2, 0.22 * S + 1.0), max(2.0, 0.22 * L + 0.9))
    figure, grid = plt.subplots(rows, cols, figsize=(panel[0] * cols + 0.8, panel[1] * rows + 0.6),
                                squeeze=False, layout="constrained")
    for layer_index, weights in enumerate(layers):
        name = f"layer {layer_index + 1}"
        panels = ([(weights[h], f"{name}, head {h + 1}") for h in range(n_heads)] if heads
                  else [(weights.mean(axis=0), f"{name}, heads averaged")])
        for i, (matrix, title) in enumerate(panels):
            axes = grid[layer_index, i] if heads else grid[0, layer_index]
            image = axes.imshow(matrix, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
            axes.set_title(title, fontsize=9)
            _label_ticks(axes, found["source_tokens"], found["output_tokens"])
            if (layer_index if heads else 0) == rows - 1:
                axes.set_xlabel("source", fontsize=8)
            if (i if heads else layer_index) == 0:
                axes.set_ylabel("output", fontsize=8)
    figure.colorbar(image, ax=grid.ravel().tolist(), shrink=0.8, label="attention weight")
    figure.suptitle(f"cross-attention: {found['source']!r} -> {found['output']!r}"[:100],
                    fontsize=10)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def save_attention_maps(model, tokenizer, texts, path, beam_size=1, alpha=0.6, heads=False):
    """One map per text: `path` itself for one text, path's stem + _1, _2, ... for several.
    Returns the paths written."""
    stem, extension = os.path.splitext(path)
    paths = [path] if len(texts) == 1 else [f"{stem}_{i + 1}{extension or '.png'}"
                                            for i in range(len(texts))]
    for text, out in zip(texts, paths):
        plot_attention(attention_of(model, tokenizer, text, beam_size, alpha), out, heads)
    return paths
