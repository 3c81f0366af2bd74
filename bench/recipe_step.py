"""A real short-sequence task through `tinygrad-tf train`, per step, against the same loop in PyTorch.

The task is the built-in `dates` (human-written dates such as "the 1st of April 2038" to ISO
"2038-04-01": 10-29 source and 11 target characters with <eos>), character tokens, batches of
--batch-size sentences (128), length-bucketed, so the source width changes from batch to batch as
in any real run. The model is bench/train_step.py's `short` configuration (d_model 256, 4 heads,
3+3 layers, d_ff 1024, shared embeddings), the recipe the paper's (Adam(0.9, 0.98, 1e-9), warm-up
schedule, label smoothing 0.1, padding ignored).

ours   the command itself, `python -m tinygrad_tf train ...` (tuned as it always is), in its own
       process; each step's time is read from RUN/metrics.jsonl ("elapsed", training seconds:
       fetching and padding the batch, forward, loss, backward, Adam, the schedule, the log line
       and progress; validation and checkpoints are left out). Validation and checkpoints run
       only after the last step, outside the timed steps.
loops  the same run as a plain loop, torch's and ours, each in its own process: the same pairs,
       tokenizer and batches in the same order (the recipe's Batcher with the same seed), the
       same initial weights (torch's copied by tests/models/torch_transformer.py), the same
       recipe, written as a user would (from_numpy on the batch, loss.item() each step); timed
       from fetching the batch to the end of the schedule step. Our command's time minus our
       loop's is what the recipe's bookkeeping adds per step.

Per step: the mean and the median over the steps after --warmup (the widths vary, so the mean
over the same batches is the fair total; the median is shown too). Threads: each library's
defaults, as a new user runs them (ours: OpenBLAS and Numba on every core, adaptive threads on;
torch: one thread per core), unless --threads N sets both (which also fixes ours, no adapting).

    flock /tmp/tgtf-heavy.lock .venv/bin/python bench/recipe_step.py [--steps 40] [--dropout 0.1]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

SHORT = dict(d_model=256, n_heads=4, n_encoder_layers=3, n_decoder_layers=3, d_ff=1024)


def recipe_args(args, run_dir):
    """`tinygrad-tf train` arguments of this benchmark (the torch loop mirrors them)."""
    sizes = [f"--{name.replace('_', '-')}={value}" for name, value in SHORT.items()]
    return ["train", "--run-dir", run_dir, "--task", args.task, "--seed", "0",
            "--n-train", str(args.n_train), "--n-valid", "20", "--n-test", "0",
            "--preset", "none", *sizes, "--dropout", str(args.dropout),
            "--batch-size", str(args.batch_size), "--steps", str(args.steps),
            "--eval-every", str(args.steps), "--eval-decode", "20", "--average-last", "0",
            "--keep-checkpoints", "1"]


def per_step(elapsed, warmup):
    """Seconds per step after `warmup` steps, from cumulative training times."""
    import numpy as np
    return np.diff(np.asarray(elapsed, dtype=float))[warmup - 1:]


def run_ours(args):
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = os.path.join(tmp, "run")
        done = subprocess.run([sys.executable, "-m", "tinygrad_tf", *recipe_args(args, run_dir)],
                              capture_output=True, text=True, env=_env(args))
        if done.returncode:
            sys.exit(f"tinygrad-tf train failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        with open(os.path.join(run_dir, "metrics.jsonl")) as file:
            records = [json.loads(line) for line in file]
    train = [r for r in records if r["kind"] == "train"]
    return [r["elapsed"] for r in train], [r["loss"] for r in train]


def run_loop(args):
    """The same run as a plain loop, in PyTorch (--loop torch) or in ours (--loop ours: what the
    recipe's own bookkeeping adds is the command's time minus this); prints cumulative step
    times and losses as JSON."""
    import math

    if args.loop == "torch":
        import torch  # first, as a user would (a tuned tinygrad_tf sets OMP_WAIT_POLICY)
    import numpy as np

    from tinygrad_tf import Tensor, kernels, manual_seed, nn
    from tinygrad_tf.models import Transformer
    from tinygrad_tf.models.batching import Batcher, encode_pairs
    from tinygrad_tf.models.data import make_task
    from tinygrad_tf.models.tokenizers import Vocab, build_tokenizer
    from tinygrad_tf.models.train import TrainConfig, model_config
    from tinygrad_tf.nn import functional as F

    if args.loop == "ours":
        kernels.tune_process()  # as the command does
    config = TrainConfig(task=args.task, seed=0, n_train=args.n_train, n_valid=20, n_test=0,
                         preset=None, dropout=args.dropout, batch_size=args.batch_size,
                         steps=args.steps, **SHORT)
    manual_seed(config.seed)  # as Trainer does, before the data and the model
    splits = make_task(config.task, seed=config.seed, n_train=config.n_train,
                       n_valid=config.n_valid, n_test=config.n_test)
    tokenizer = build_tokenizer("char", [text for pair in splits.train for text in pair])
    shape = model_config(config, len(tokenizer.vocab))
    corpus = encode_pairs(tokenizer, splits.train)
    batcher = Batcher(corpus, batch_size=config.batch_size, max_tokens=config.max_tokens,
                      seed=config.seed)
    ours = Transformer(shape)
    d, warmup, vocab = shape.d_model, config.warmup_steps, len(tokenizer.vocab)
    rate = lambda step: d ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)  # noqa: E731
    if args.loop == "torch":
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "models"))
        from torch_transformer import from_ours
        if args.threads:
            torch.set_num_threads(args.threads)
        torch.manual_seed(config.seed)
        model = from_ours(ours, dtype=torch.float32).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1.0,
                                     betas=(config.beta1, config.beta2), eps=config.eps)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: rate(step + 1))
        wrap, cross_entropy = torch.from_numpy, torch.nn.functional.cross_entropy
        version = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    else:
        model = ours.train()
        optimizer = nn.optim.Adam(model.parameters(), lr=0.0, betas=(config.beta1, config.beta2),
                                  eps=config.eps)
        schedule = nn.schedules.TransformerLR(optimizer, d_model=d, warmup_steps=warmup)
        wrap, cross_entropy = Tensor.from_numpy, F.cross_entropy
        version = f"ours, kernels {kernels.active()}"
    stream = batcher.stream()
    elapsed, cpu, losses, total, total_cpu = [], [], [], 0.0, 0.0
    for _ in range(config.steps):
        started, started_cpu = time.perf_counter(), time.process_time()
        _, _, batch = next(stream)
        logits = model(wrap(batch.src), wrap(batch.tgt_in))
        loss = cross_entropy(logits.reshape(-1, vocab), wrap(batch.tgt_out.reshape(-1)),
                             ignore_index=Vocab.pad_id, label_smoothing=config.label_smoothing)
        value = loss.item()
        if not math.isfinite(value):
            sys.exit(f"{args.loop}: loss {value} at step {len(losses) + 1}")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        total += time.perf_counter() - started
        total_cpu += time.process_time() - started_cpu
        elapsed.append(total)
        cpu.append(total_cpu)
        losses.append(value)
    print(json.dumps({"elapsed": elapsed, "cpu": cpu, "loss": losses,
                      "version": f"{version}, numpy {np.__version__}"}))


def _env(args):
    if not args.threads:
        return dict(os.environ)
    threads = str(args.threads)
    return dict(os.environ, OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads,
                NUMBA_NUM_THREADS=threads)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="dates", help="a built-in task (dates)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the figures")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=0,
                        help="threads for both libraries (default: each library's own choice)")
    parser.add_argument("--loop", choices=["ours", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loop:
        return run_loop(args)
    import numpy as np

    rows, cpu = {"ours": run_ours(args)}, {}
    for loop in ("ours", "torch"):
        done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--loop", loop],
                              capture_output=True, text=True, env=_env(args))
        if done.returncode:
            sys.exit(f"the {loop} loop failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        rows[f"{loop} loop"] = result["elapsed"], result["loss"]
        cpu[f"{loop} loop"] = per_step(result["cpu"], args.warmup)
        version = result["version"]
    times = {name: per_step(elapsed, args.warmup) for name, (elapsed, _) in rows.items()}
    print(f"`tinygrad-tf train --task {args.task}` vs the same loop in PyTorch: short model "
          f"{SHORT}, dropout {args.dropout}, {args.batch_size} sentences per batch, "
          f"{args.steps} steps, figures over steps {args.warmup + 1}-{args.steps}, "
          f"threads {args.threads or 'default'}; {version}")
    print(f"{'':<22}{'mean ms':>9}{'median ms':>11}{'min ms':>8}{'/torch':>8}"
          f"{'CPU ms':>8}{'/torch':>8}{'first loss':>12}{'last loss':>11}")
    names = {"ours": "ours tinygrad-tf train", "ours loop": "ours plain loop",
             "torch loop": "torch loop"}
    theirs = times["torch loop"].mean()
    for name, (_, losses) in rows.items():
        step = times[name]
        print(f"{names[name]:<22}{1e3 * step.mean():>9.1f}{1e3 * np.median(step):>11.1f}"
              f"{1e3 * step.min():>8.1f}{step.mean() / theirs:>7.2f}x"
              + (f"{1e3 * cpu[name].mean():>8.1f}"
                 f"{cpu[name].mean() / cpu['torch loop'].mean():>7.2f}x" if name in cpu
                 else f"{'-':>8}{'-':>8}")
              + f"{losses[0]:>12.4f}"
              f"{losses[-1]:>11.4f}")
    print("/torch: mean over mean; the command's time minus the plain loop's is what the "
          "recipe adds per step; CPU ms: the process's CPU time per step (all its threads), "
          "which other processes on a shared machine barely move, a fair measure of work at "
          "--threads 1")


if __name__ == "__main__":
    main()
