"""The seq2seq training recipe of "Attention Is All You Need" (section 5), every part a setting.

    summary = train(TrainConfig(run_dir="runs/rev", task="reverse", steps=2000))

Defaults are the paper's: Adam(beta1=0.9, beta2=0.98, eps=1e-9), the warm-up learning rate
lr = factor * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5), label smoothing 0.1, dropout
0.1; gradient clipping (not in the paper) is off unless --clip-norm is given. Batches hold about
`max_tokens` padded tokens per side (the paper: 25,000).

A run directory holds everything (see docs/recipe.md): config.json, vocab.json, metrics.jsonl,
plot.png, samples.txt and checkpoints/. `train(config, resume=True)` continues the run from its
newest readable checkpoint; the losses then match those of an uninterrupted run with the same seed,
since the checkpoint restores the parameters, the optimizer, the schedule, the random generator
and the position in the data.
"""
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time

import numpy as np

import tinygrad_tf
from tinygrad_tf import Tensor, distributed, nn
from tinygrad_tf import random as tg_random

from . import checkpoint, data, parallel
from .batching import Batcher, encode_pairs
from .evaluation import (decode_texts, describe_decoding, evaluate_pairs,  # noqa: F401
                         format_decoding_score, loss_of, score_decoding)
from .progress import Progress, write_plot
from .tokenizers import Vocab, build_tokenizer, load_tokenizer
from .recurrent import GRUConfig
from .transformer import TransformerConfig
from .config import ARCHS, PRESETS, TrainConfig  # noqa: F401 (re-exported)

# Decoding of `evaluate`, `translate` and the final test report: the paper's beam (section 6.1).
BEAM_SIZE, ALPHA = 4, 0.6
SIZE_FIELDS = ("d_model", "n_heads", "n_encoder_layers", "n_decoder_layers", "d_ff")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


# ---------------------------------------------------------------------------- data and model

def load_splits(config):
    """The run's pairs: the built-in task from its seed, or the TSV files."""
    if config.train_file is None:
        return data.make_task(config.task, seed=config.seed, n_train=config.n_train,
                              n_valid=config.n_valid, n_test=config.n_test, **config.task_options)
    train_pairs = data.load_tsv(config.train_file)
    valid = data.load_tsv(config.valid_file) if config.valid_file else []
    if not valid and len(train_pairs) < 2:
        raise data.DataError(
            f"{config.train_file}: only {len(train_pairs)} pair; without --valid-file a "
            "validation pair is held out of the training file, which needs at least 2 pairs (one "
            "to train on, one to validate): add pairs or give --valid-file FILE.tsv")
    if not valid:
        # No validation file: hold out a seeded 2% of the training pairs (at most 1000).
        n_valid = min(1000, max(1, len(train_pairs) // 50))
        order = np.random.default_rng(config.seed).permutation(len(train_pairs))
        valid = [train_pairs[i] for i in sorted(order[:n_valid])]
        train_pairs = [train_pairs[i] for i in sorted(order[n_valid:])]
    test = data.load_tsv(config.test_file) if config.test_file else []
    return data.Splits(train_pairs, valid, test)


def model_config(config, vocab_size):
    sizes = {name: getattr(config, name) for name in SIZE_FIELDS
             if getattr(config, name) is not None}
    if config.arch == "gru":
        settings = dict(sizes, dropout=config.dropout, pad_id=Vocab.pad_id)
        if config.max_len is not None:
            settings["max_len"] = config.max_len
        if config.preset is None:
            return GRUConfig(vocab_size, vocab_size, share_embeddings=True, **settings)
        return getattr(GRUConfig, config.preset)(vocab_size, **settings)
    settings = dict(sizes, dropout=config.dropout, norm_first=config.norm_first,
                    pad_id=Vocab.pad_id)
    if config.max_len is not None:
        settings["max_len"] = config.max_len
    if config.preset is None:
        return TransformerConfig(vocab_size, vocab_size, share_embeddings=True, **settings)
    return PRESETS[config.preset](vocab_size, **settings)


def build_model(model_config):
    """The model a TransformerConfig or GRUConfig describes."""
    return next(cls for config_cls, cls in ARCHS.values()
                if isinstance(model_config, config_cls))(model_config)


def _check_lengths(corpus, max_len, what):
    if len(corpus.src_lengths) == 0:
        raise ValueError(f"train: the {what} set is empty")
    longest = int(max(corpus.src_lengths.max(), corpus.tgt_lengths.max())) + 1
    if longest > max_len:
        raise ValueError(f"train: the {what} set has a sequence of {longest} tokens (with <eos>), "
                         f"longer than the model's max_len={max_len}; pass --max-len {longest} "
                         "or more")


def make_optimizer(config, model):
    lr = config.lr if config.schedule == "constant" else 0.0
    return nn.optim.Adam(model.parameters(), lr=lr, betas=(config.beta1, config.beta2),
                         eps=config.eps)


def make_schedule(config, optimizer, d_model):
    if config.schedule == "constant":
        return None
    return nn.schedules.TransformerLR(optimizer, d_model=d_model, warmup_steps=config.warmup_steps,
                                      factor=config.lr_factor)


# ---------------------------------------------------------------------------- Ctrl-C

class _StopOnInterrupt:
    """The first Ctrl-C asks training to stop after the current step (and save); a second one
    stops at once. Only the main thread can own the SIGINT handler."""

    def __init__(self, progress):
        self.requested, self.progress, self.previous = False, progress, None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.progress.note("interrupted: saving a checkpoint after this step "
                           "(Ctrl-C again to quit without saving)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


# ---------------------------------------------------------------------------- training

def _versions():
    import numba
    return {"tinygrad_tf": tinygrad_tf.__version__, "numpy": np.__version__,
            "numba": numba.__version__, "python": sys.version.split()[0]}


def read_config(run_dir):
    """The TrainConfig and TransformerConfig saved in RUN/config.json."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{run_dir}: not a run directory (no config.json)")
    try:  # an edited or damaged file: one clear ValueError, never a traceback from the CLI
        with open(path, encoding="utf-8") as file:
            saved = json.load(file)
        config = TrainConfig(**saved["train"])
        config.check()
        return config, ARCHS[config.arch][0](**saved["model"])
    except (OSError, ValueError, TypeError, KeyError) as error:
        reason = f"missing entry {error}" if isinstance(error, KeyError) else error
        raise ValueError(f"{path}: not a valid run config ({reason})") from None


class Trainer:
    """One run: data, model, optimizer and the loop. `Trainer(config).run()` trains."""

    def __init__(self, config, resume=False, out=None):
        config.check()
        self.config, self.out = config, out or sys.stdout
        # Under `mpiexec -n K` (see parallel.py) rank 0 alone writes files and prints.
        distributed.init()
        self.writer = distributed.rank() == 0
        if not self.writer:
            self.out = open(os.devnull, "w")
        distributed.barrier()  # every rank has checked the run directory before rank 0 fills it
        self.run_dir = config.run_dir
        self.checkpoint_dir = os.path.join(self.run_dir, "checkpoints")
        tinygrad_tf.manual_seed(config.seed)
        self.splits = load_splits(config)
        if resume:
            self.tokenizer = load_tokenizer(os.path.join(self.run_dir, "vocab.json"))
        else:
            texts = [text for pair in self.splits.train for text in pair]
            self.tokenizer = build_tokenizer(config.tokenizer, texts, min_freq=config.min_freq,
                                             max_size=config.vocab_size if config.tokenizer == "bpe"
                                             else None)
        self.model_config = model_config(config, len(self.tokenizer.vocab))
        self.corpus = encode_pairs(self.tokenizer, self.splits.train)
        _check_lengths(self.corpus, self.model_config.max_len, "training")
        self.batcher = Batcher(self.corpus, batch_size=config.batch_size,
                               max_tokens=config.max_tokens, seed=config.seed)
        self.model = build_model(self.model_config)
        self.optimizer = make_optimizer(config, self.model)
        self.schedule = make_schedule(config, self.optimizer, self.model_config.d_model)
        self.step, self.epoch, self.batch_index, self.elapsed = 0, 0, 0, 0.0
        self.best = None
        self.history = []
        self._plotted = None  # len(history) when plot.png was last drawn
        self.metrics_path = os.path.join(self.run_dir, "metrics.jsonl")
        self.parallel = None
        if distributed.is_distributed():
            parallel.check_same_run(self)
        if resume:
            self._restore()
        elif self.writer:  # a new run's files, written only once every check above has passed
            os.makedirs(self.checkpoint_dir, exist_ok=True)
            self.tokenizer.save(os.path.join(self.run_dir, "vocab.json"))
            checkpoint.write_json(os.path.join(self.run_dir, "config.json"),
                                  {"train": dataclasses.asdict(config),
                                   "model": dataclasses.asdict(self.model_config),
                                   "versions": _versions()})
            open(self.metrics_path, "w").close()
        if distributed.is_distributed():
            self.parallel = parallel.ShardedStep(self)

    # -- checkpoints

    def _state(self):
        return {"step": self.step, "epoch": self.epoch, "batch_index": self.batch_index,
                "elapsed": self.elapsed, "best": self.best, "rng": tg_random.get_state(),
                "schedule": self.schedule.state_dict() if self.schedule else None,
                "seed": self.config.seed}

    def _check_finite_parameters(self):
        for name, parameter in self.model.named_parameters():
            if not np.isfinite(parameter.array).all():
                raise TrainingDiverged(f"parameter {name} holds NaN/inf at step {self.step}; not "
                                       f"saving it. {self._last_good()}")

    def save(self, path=None, extra=None):
        if not self.writer:
            return None
        self._check_finite_parameters()
        path = path or checkpoint.step_path(self.checkpoint_dir, self.step)
        checkpoint.save(path, self.model.state_dict(), self.optimizer.state_dict(),
                        {**self._state(), **(extra or {})})
        if path.startswith(os.path.join(self.checkpoint_dir, "step_")):
            checkpoint.prune(self.checkpoint_dir,
                             max(self.config.keep_checkpoints, self.config.average_last))
        return path

    def _last_good(self):
        found = checkpoint.step_checkpoints(self.checkpoint_dir)
        if not found:
            return "No checkpoint was saved before it."
        return f"The last good checkpoint is {found[-1][1]} (step {found[-1][0]})."

    def _restore(self):
        path, (model_state, optimizer_state, info) = checkpoint.latest(
            self.checkpoint_dir, warn=lambda text: print(text, file=self.out))
        if distributed.is_distributed():
            parallel.check_same_restore(path, info, model_state, optimizer_state)
        self.model.load_state_dict({k: Tensor(v) for k, v in model_state.items()})
        self.optimizer.load_state_dict(optimizer_state)
        if self.schedule is not None:
            self.schedule.load_state_dict(info["schedule"])
        tg_random.set_state(info["rng"])
        self.step, self.epoch, self.batch_index = info["step"], info["epoch"], info["batch_index"]
        self.elapsed, self.best = info["elapsed"], info["best"]
        if self.writer:
            self.best = checkpoint.forget_after(
                self.run_dir, self.checkpoint_dir, self.step, self.best,
                note=lambda text: print(f"resume: {text}", file=self.out))
        # Forget what was logged after this checkpoint: those steps run again.
        kept = []
        if self.writer and os.path.exists(self.metrics_path):  # others: rank 0 rewrites it now
            with open(self.metrics_path, encoding="utf-8") as file:
                kept = [json.loads(line) for line in file if line.strip()]
        self.history = [record for record in kept if record["step"] <= self.step]
        if self.writer:
            with open(self.metrics_path, "w", encoding="utf-8") as file:
                file.writelines(json.dumps(record) + "\n" for record in self.history)
        print(f"resuming {self.run_dir} from {path} (step {self.step})", file=self.out)

    # -- the loop

    def _plot(self):
        """Draw plot.png, unless it already shows every record: a run that validated at its
        last step drew the same plot there (a draw costs ~0.2 s of CPU, the first ~0.5 s more
        to import matplotlib)."""
        if self._plotted != len(self.history):
            write_plot(self.run_dir, self.history)
            self._plotted = len(self.history)

    def _log(self, record):
        self.history.append(record)
        if not self.writer:
            return
        with open(self.metrics_path, "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")

    def _budget_left(self):
        config = self.config
        if config.steps is not None and self.step >= config.steps:
            return False
        return config.time_budget is None or self.elapsed < config.time_budget

    def validate(self, progress):
        """Rank 0 alone validates (returns None elsewhere); run() shares what it decides."""
        if not self.writer:
            return None
        config = self.config
        result = evaluate_pairs(self.model, self.tokenizer, self.splits.valid,
                                max_tokens=config.max_tokens or 4096,
                                decode_limit=config.eval_decode)
        samples = result.pop("samples")
        record = {"kind": "valid", "step": self.step, "elapsed": round(self.elapsed, 3), **result}
        self._log(record)
        progress.validation(record)
        with open(os.path.join(self.run_dir, "samples.txt"), "w", encoding="utf-8") as file:
            file.write(f"# step {self.step}: validation sources, references and model outputs\n")
            for sample in samples:
                mark = "ok " if sample["output"] == sample["reference"] else "ERR"
                file.write(f"{mark} source:    {sample['source']}\n    reference: "
                           f"{sample['reference']}\n    output:    {sample['output']}\n")
        score = (result["exact_match"], -result["loss"])
        if self.best is None or score > tuple(self.best["score"]):
            self.best = {"score": list(score), "step": self.step, **{
                key: result[key] for key in ("loss", "token_accuracy", "exact_match", "bleu")}}
            self.save(os.path.join(self.checkpoint_dir, "best.safetensors"))
        self._plot()
        return record

    def run(self):
        """Train until the budget is spent; returns a summary dict (status, step, best, paths)."""
        config = self.config
        save_every = config.save_every or config.eval_every
        progress = Progress(self.out, total=config.steps, start=self.step)
        status, last_valid = "finished", None
        window_tokens, window_start = 0, time.perf_counter()
        self.model.train()
        stream = self.batcher.stream(self.epoch, self.batch_index)
        started = time.perf_counter()
        try:
            with _StopOnInterrupt(progress) as interrupt:
                while self._budget_left():
                    epoch, index, batch = next(stream)
                    if self.parallel is None:
                        loss, _ = loss_of(self.model, batch, config.label_smoothing)
                        loss_value = loss.item()
                    else:  # gradients of the global batch, loss agreed by every rank
                        loss_value = self.parallel.loss_and_gradients(batch, self.step)
                    if not math.isfinite(loss_value):
                        raise TrainingDiverged(
                            f"the training loss became {loss_value} at step {self.step + 1}; "
                            f"stopping. {self._last_good()} Try a smaller --lr-factor/--lr, "
                            "more --warmup-steps or --clip-norm 1.0")
                    if self.parallel is None:
                        self.optimizer.zero_grad()
                        loss.backward()
                    if config.clip_norm is not None:
                        nn.utils.clip_grad_norm_(self.model.parameters(), config.clip_norm)
                    lr = self.optimizer.param_groups[0]["lr"]  # the rate of this update
                    self.optimizer.step()
                    if self.schedule is not None:
                        self.schedule.step()  # sets the rate of the next update
                    self.step += 1
                    self.epoch, self.batch_index = epoch, index + 1
                    # Training time: this step and the bookkeeping after the previous one
                    # (log, progress); validation and checkpoints are left out below.
                    now = time.perf_counter()
                    self.elapsed += now - started
                    started = now
                    if self.parallel is not None:
                        self.elapsed, stop = self.parallel.agree(self.elapsed, interrupt.requested)
                        interrupt.requested = interrupt.requested or stop
                    window_tokens += batch.n_tokens
                    self._log({"kind": "train", "step": self.step, "loss": loss_value, "lr": lr,
                               "tokens": batch.n_tokens, "elapsed": round(self.elapsed, 6)})
                    if self.step % config.log_every == 0 or not self._budget_left():
                        now = time.perf_counter()
                        progress.train(self.step, loss_value, window_tokens / (now - window_start),
                                       lr, self.epoch)
                        window_tokens, window_start = 0, now
                    else:
                        progress.tick(self.step)
                    if self.step % config.eval_every == 0:
                        last_valid = self.validate(progress)
                        window_start = started = time.perf_counter()
                        reached = (config.target_exact_match is not None and last_valid is not None
                                   and last_valid["exact_match"] >= config.target_exact_match)
                        if self.parallel is not None:
                            reached = self.parallel.agree_flag(reached)
                        if reached:
                            status = "reached target"
                    if interrupt.requested:
                        status = "interrupted"
                    if self.step % save_every == 0 or status != "finished":
                        self.save()
                        started = time.perf_counter()
                    if status != "finished":
                        break
        finally:
            progress.close()
        if status != "interrupted" and (last_valid is None or last_valid["step"] != self.step):
            last_valid = self.validate(progress)
        if not checkpoint.step_checkpoints(self.checkpoint_dir) or \
                checkpoint.step_checkpoints(self.checkpoint_dir)[-1][0] != self.step:
            self.save()
        final = test = None
        if self.writer:  # the end of the recipe writes files: rank 0 alone
            self._plot()
            final = self.choose_final(progress)
            test = self.test_report(progress)
        distributed.barrier()  # rank 0's files are complete before any rank returns
        last = checkpoint.step_path(self.checkpoint_dir, self.step)
        summary = {"status": status, "step": self.step, "elapsed": self.elapsed,
                   "last_valid": last_valid, "best": self.best, "run_dir": self.run_dir,
                   "checkpoint": os.path.join(self.run_dir, final["path"]) if final else last,
                   "final": final, "test": test,
                   "plot": os.path.join(self.run_dir, "plot.png")}
        if self.writer:
            progress.done(summary)
        return summary

    # -- the end: the paper's recipe by default

    def choose_final(self, progress):
        """Average the last `average_last` step checkpoints, score the average on validation
        as validation scores the best checkpoint, keep the better one as the run's final model
        and record the choice and the scores in RUN/final.json."""
        config, scores, averaged = self.config, {}, None
        if self.best is not None:
            scores["best"] = {key: self.best[key] for key in
                              ("step", "loss", "token_accuracy", "exact_match", "bleu")}
        if config.average_last > 0:
            path = os.path.join(self.checkpoint_dir, "average.safetensors")
            averaged = checkpoint.average(self.checkpoint_dir, config.average_last, path,
                                          warn=progress.note)
            model = build_model(self.model_config)
            model.load_state_dict({k: Tensor(v) for k, v in checkpoint.load(path)[0].items()})
            result = evaluate_pairs(model, self.tokenizer, self.splits.valid,
                                    max_tokens=config.max_tokens or 4096,
                                    decode_limit=config.eval_decode, n_samples=0)
            scores["average"] = {"steps": averaged, **{key: result[key] for key in
                                 ("loss", "token_accuracy", "exact_match", "bleu")}}

        def rank(name):  # validation's order: exact match, then the lower loss
            return (scores[name]["exact_match"], -scores[name]["loss"])

        if "average" in scores and ("best" not in scores or rank("average") >= rank("best")):
            choice = "average"
            reason = (f"the average of the last {len(averaged)} step checkpoints scores "
                      + ("at least as well as the best checkpoint on validation (exact match, "
                         "then loss)" if "best" in scores else "and no validation score exists"))
        elif "best" in scores:
            choice = "best"
            reason = ("averaging is off (--average-last 0)" if "average" not in scores else
                      "the best checkpoint scores higher on validation (exact match, then loss) "
                      "than the average of the last step checkpoints")
        else:
            choice = "last"
            reason = "averaging is off and no validation ran"
        path = (checkpoint.step_checkpoints(self.checkpoint_dir)[-1][1] if choice == "last"
                else os.path.join(self.checkpoint_dir, f"{choice}.safetensors"))
        final = {"checkpoint": choice, "path": os.path.relpath(path, self.run_dir),
                 "reason": reason, "validation": f"greedy decoding of the first "
                 f"{config.eval_decode} validation pairs", "scores": scores}
        checkpoint.write_json(os.path.join(self.run_dir, "final.json"), final)
        shown = ", ".join(f"{name} {value['exact_match']:.2%} exact match, loss "
                          f"{value['loss']:.4f}" for name, value in scores.items())
        progress.note(f"final model: {choice} ({reason}){'; ' + shown if shown else ''}")
        return final

    def test_report(self, progress):
        """The final model's test score, greedy and beam (the paper's 4, alpha 0.6), timed; None
        without a test split. Decodes the first `eval_decode` test pairs, as validation does."""
        pairs = self.splits.test[:self.config.eval_decode]
        if not pairs:
            return None
        model = load_run(self.run_dir, "final")[0]
        report = {"n_pairs": len(pairs)}
        for name, beam in (("greedy", 1), ("beam", BEAM_SIZE)):
            report[name] = score_decoding(model, self.tokenizer, pairs, beam, ALPHA)
            progress.note(f"test, final model, {describe_decoding(beam, ALPHA)}: "
                          + format_decoding_score(report[name]))
        return report


def train(config, resume=False, out=None):
    """Train (or with resume=True continue) the run of `config`; returns the summary dict."""
    return Trainer(config, resume=resume, out=out).run()


# ---------------------------------------------------------------------------- using a run

def final_checkpoint(run_dir):
    """Which checkpoint is the run's final model: RUN/final.json's choice, written at the end
    of training; "best" for runs without one (older, or still training)."""
    path = os.path.join(run_dir, "final.json")
    if not os.path.exists(path):
        return "best"
    with open(path, encoding="utf-8") as file:
        return json.load(file)["checkpoint"]


def load_run(run_dir, which="final"):
    """A trained run's model (in eval mode) and tokenizer: -> (model, tokenizer, config, info).

    which: "final" (the run's final model, see `final_checkpoint`), "best" (best validation
    score), "last" (newest readable step checkpoint), "average" (the average of the last step
    checkpoints, written by `train` or `tinygrad-tf average`), or a checkpoint file's path.
    info["checkpoint"] names the one loaded."""
    config, transformer_config = read_config(run_dir)
    tokenizer = load_tokenizer(os.path.join(run_dir, "vocab.json"))
    directory = os.path.join(run_dir, "checkpoints")
    if which == "final":
        which = final_checkpoint(run_dir)
    if which == "last":
        _, (model_state, _, info) = checkpoint.latest(directory, warn=lambda text: None)
    else:
        path = (os.path.join(directory, f"{which}.safetensors") if which in ("best", "average")
                else which)
        if which == "best" and not os.path.exists(path):
            _, (model_state, _, info) = checkpoint.latest(directory, warn=lambda text: None)
        else:
            model_state, _, info = checkpoint.load(path)
    model = build_model(transformer_config)
    model.load_state_dict({name: Tensor(value) for name, value in model_state.items()})
    model.eval()
    return model, tokenizer, config, {**info, "checkpoint": which}
