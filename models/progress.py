"""What training shows while it runs, and the plot it leaves behind.

On a terminal with tqdm installed: a progress bar with loss, tokens/s and learning rate. Otherwise
(a pipe, a log file, a notebook without tqdm): one JSON object per line, easy to grep and parse.
The plot needs matplotlib; without it training says once that it skips the plot.
"""
import io
import json
import os

import numpy as np

from tinygrad_tf.nn.state import atomic_write


def _tqdm():
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


class Progress:
    """Training progress on `out`: a tqdm bar when `out` is a terminal, JSON lines otherwise."""

    def __init__(self, out, total=None, start=0):
        self.out = out
        tqdm = _tqdm() if getattr(out, "isatty", lambda: False)() else None
        self.bar = None
        if tqdm is not None:
            self.bar = tqdm(total=total, initial=start, file=out, unit="step", dynamic_ncols=True)
        elif getattr(out, "isatty", lambda: False)():
            self.note("(install tqdm for a progress bar: pip install 'tinygrad_tf[recipe]')")

    def _line(self, record):
        text = json.dumps(record)
        if self.bar is not None:
            self.bar.write(text, file=self.out)
        else:
            print(text, file=self.out, flush=True)

    def note(self, text):
        if self.bar is not None:
            self.bar.write(text, file=self.out)
        else:
            print(text, file=self.out, flush=True)

    def tick(self, step):
        if self.bar is not None:
            self.bar.update(step - self.bar.n)

    def train(self, step, loss, tokens_per_second, lr, epoch):
        if self.bar is not None:
            self.tick(step)
            self.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_second:,.0f}",
                                 lr=f"{lr:.2e}", epoch=epoch, refresh=False)
        else:
            self._line({"step": step, "loss": round(loss, 5), "lr": lr, "epoch": epoch,
                        "tokens_per_s": round(tokens_per_second)})

    def validation(self, record):
        if self.bar is not None:  # a person is watching: one readable line
            bleu = "" if record["bleu"] is None else f", BLEU {record['bleu']:.2f}"
            self.note(f"step {record['step']}: validation loss {record['loss']:.4f}, token "
                      f"accuracy {record['token_accuracy']:.2%}, exact match "
                      f"{record['exact_match']:.2%}{bleu}")
            return
        shown = {key: (round(value, 5) if isinstance(value, float) else value)
                 for key, value in record.items() if key != "bleu_signature"}
        self._line(shown)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def done(self, summary):
        best = summary["best"] or {}
        self.note(f"{summary['status']} at step {summary['step']} after {summary['elapsed']:.1f} s "
                  f"of training; best validation exact match {best.get('exact_match', 0):.4f} "
                  f"(step {best.get('step')}); final model {summary['final']['checkpoint']}; "
                  f"run directory {summary['run_dir']}")


_plot_warned = []


def write_plot(run_dir, history):
    """RUN/plot.png: training and validation loss, token accuracy and exact match by step.
    Returns the path, or None (saying why once) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        if not _plot_warned:
            _plot_warned.append(True)
            print("(no plot: install matplotlib, pip install 'tinygrad_tf[recipe]')")
        return None
    train = [r for r in history if r["kind"] == "train"]
    valid = [r for r in history if r["kind"] == "valid"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        steps = [r["step"] for r in train]
        losses = [r["loss"] for r in train]
        left.plot(steps, losses, color="0.75", linewidth=0.8, label="train (label-smoothed)")
        window = max(1, len(losses) // 50)
        if window > 1:
            sums = np.cumsum(np.concatenate([[0.0], losses]))
            starts = np.maximum(np.arange(len(losses)) + 1 - window, 0)
            ends = np.arange(1, len(losses) + 1)
            smooth = (sums[ends] - sums[starts]) / (ends - starts)  # trailing mean of `window`
            left.plot(steps, smooth, color="C0", label=f"train, mean of {window}")
    if valid:
        steps = [r["step"] for r in valid]
        left.plot(steps, [r["loss"] for r in valid], "o-", color="C1", label="validation")
        right.plot(steps, [r["token_accuracy"] for r in valid], "o-", label="token accuracy")
        right.plot(steps, [r["exact_match"] for r in valid], "s-", label="exact match")
    left.set(xlabel="step", ylabel="cross-entropy per token", title="loss", yscale="log")
    right.set(xlabel="step", ylabel="fraction", title="validation accuracy", ylim=(0, 1.02))
    for axes in (left, right):
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    path = os.path.join(run_dir, "plot.png")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    atomic_write(path, buffer.getvalue())
    return path
