"""Wall-clock time to 99% exact match: the same model, data and recipe in ours and in PyTorch.

The small model (d_model 128, 4 heads, 2+2 layers, d_ff 512, dropout 0.1, shared embeddings)
learns the built-in `reverse` task (strings of 1-10 symbols from 10) with the paper's recipe:
Adam(0.9, 0.98, 1e-9), the warm-up schedule (--warmup steps), label smoothing 0.1. Both start
from the same weights (PyTorch's copy made by tests/models/torch_transformer.py) and see the same
batches in the same order (models/batching.py, about --max-tokens tokens per side). Every
--eval-every steps both decode the validation sources greedily and stop once exact match reaches
--target; the test split is then scored once. Ours decodes with its key/value cache, PyTorch with
the plain loop most code uses (re-running the decoder on the prefix), so training time and
validation time are reported apart. Each library runs in its own subprocess.

    flock /tmp/tgtf-cpu.lock env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        .venv/bin/python bench/time_to_accuracy.py [--threads 2]
"""
import argparse
import json
import os
import subprocess
import sys
import time

SMALL = dict(d_model=128, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=512)


def _setup(args):
    from tinygrad_tf import manual_seed
    from tinygrad_tf.models import Transformer, TransformerConfig
    from tinygrad_tf.models.batching import Batcher, encode_pairs
    from tinygrad_tf.models.data import make_task
    from tinygrad_tf.models.tokenizers import build_tokenizer

    splits = make_task("reverse", seed=args.seed, n_train=args.n_train, n_valid=args.n_valid,
                       n_test=args.n_valid)
    tokenizer = build_tokenizer("char", [text for pair in splits.train for text in pair])
    vocab = len(tokenizer.vocab)
    manual_seed(args.seed)
    model = Transformer(TransformerConfig(vocab, vocab, dropout=0.1, share_embeddings=True,
                                          max_len=128, **SMALL))
    batcher = Batcher(encode_pairs(tokenizer, splits.train), max_tokens=args.max_tokens,
                      seed=args.seed)
    return splits, tokenizer, model, batcher


def _exact(decode, tokenizer, pairs):
    """Greedy-decode the sources in batches of 100; the fraction equal to the targets."""
    from tinygrad_tf.models.batching import encode_pairs, make_batch
    corpus = encode_pairs(tokenizer, pairs)
    right = 0
    for start in range(0, len(pairs), 100):
        batch = make_batch(corpus, range(start, min(start + 100, len(pairs))))
        for row, (_, target) in zip(decode(batch.src), pairs[start:start + 100]):
            right += tokenizer.decode(row) == target
    return right / len(pairs)


def run(args):
    if args.run == "torch":
        # First, as a user would: a tuned tinygrad_tf sets OMP_WAIT_POLICY=PASSIVE, which torch's
        # OpenMP runtime would read if it loaded later (torch's small step: 77 ms instead of 49).
        import torch  # noqa: F401
    else:
        from tinygrad_tf import kernels
        kernels.tune_process()  # as the tinygrad-tf command runs (docs/kernels.md)
    import numpy as np

    from tinygrad_tf.models.tokenizers import Vocab
    splits, tokenizer, model, batcher = _setup(args)
    vocab, pad = len(tokenizer.vocab), Vocab.pad_id
    lr = lambda step: args.lr_factor * 128 ** -0.5 * min(step ** -0.5, step * args.warmup ** -1.5)

    if args.run == "ours":
        from tinygrad_tf import Tensor, kernels, nn
        from tinygrad_tf.models import greedy_decode
        from tinygrad_tf.nn import functional as F
        optimizer = nn.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
        schedule = nn.schedules.TransformerLR(optimizer, 128, args.warmup, args.lr_factor)

        def train_step(batch):
            logits = model(Tensor(batch.src), Tensor(batch.tgt_in))
            loss = F.cross_entropy(logits.reshape(-1, vocab), Tensor(batch.tgt_out.reshape(-1)),
                                   ignore_index=pad, label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            return loss.item()

        def decode(src):
            model.eval()
            out = greedy_decode(model, Tensor(src), Vocab.bos_id, Vocab.eos_id).array
            model.train()
            return out
        version = f"numpy {np.__version__}, kernels {kernels.active()}"
    else:
        import torch
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "models"))
        from torch_transformer import from_ours
        torch.set_num_threads(args.threads)
        torch.manual_seed(args.seed)
        reference = from_ours(model, dtype=torch.float32).train()
        optimizer = torch.optim.Adam(reference.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr(step + 1))

        def train_step(batch):
            logits = reference(torch.from_numpy(batch.src), torch.from_numpy(batch.tgt_in))
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, vocab), torch.from_numpy(batch.tgt_out.reshape(-1)),
                ignore_index=pad, label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            return loss.item()

        def decode(src):
            reference.eval()
            src = torch.from_numpy(src)
            limit = int((src != pad).sum(1).max()) + 50
            with torch.inference_mode():
                memory = reference.encode(src)
                ys = torch.full((src.shape[0], 1), Vocab.bos_id, dtype=torch.long)
                done = torch.zeros(src.shape[0], dtype=torch.bool)
                for _ in range(limit):
                    token = reference.decode(memory, src, ys, last_only=True)[:, -1].argmax(-1)
                    token = torch.where(done, torch.full_like(token, pad), token)
                    ys = torch.cat([ys, token[:, None]], dim=1)
                    done |= token == Vocab.eos_id
                    if bool(done.all()):
                        break
            reference.train()
            return ys[:, 1:].numpy()
        version = f"torch {torch.__version__}, {torch.get_num_threads()} threads"

    train_seconds = eval_seconds = 0.0
    step, exact, history = 0, 0.0, []
    stream = batcher.stream()
    while step < args.max_steps and exact < args.target:
        started = time.perf_counter()
        for _ in range(args.eval_every):
            _, _, batch = next(stream)
            loss = train_step(batch)
            step += 1
        train_seconds += time.perf_counter() - started
        started = time.perf_counter()
        exact = _exact(decode, tokenizer, splits.valid)
        eval_seconds += time.perf_counter() - started
        history.append((step, round(loss, 4), exact))
        print(json.dumps({"step": step, "loss": loss, "valid_exact": exact,
                          "train_s": train_seconds}), file=sys.stderr, flush=True)
    test_exact = _exact(decode, tokenizer, splits.test)
    print(json.dumps({"steps": step, "reached": exact >= args.target, "train_s": train_seconds,
                      "eval_s": eval_seconds, "valid_exact": exact, "test_exact": test_exact,
                      "history": history, "version": version}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--max-tokens", type=int, default=2048)
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--lr-factor", type=float, default=1.0)
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--n-valid", type=int, default=500)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--max-steps", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=2,
                        help="threads for both: torch.set_num_threads, and OPENBLAS_NUM_THREADS / "
                        "NUMBA_NUM_THREADS for ours (2, this machine's cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", choices=["ours", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        return run(args)

    results = {}
    passed = sys.argv[1:]
    for name in ("ours", "torch"):
        if name == "torch":
            try:
                import torch  # noqa: F401
            except ImportError:
                break
        started = time.perf_counter()
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads),
                   OMP_NUM_THREADS=str(args.threads), NUMBA_NUM_THREADS=str(args.threads))
        done = subprocess.run([sys.executable, __file__, *passed, "--run", name],
                              stdout=subprocess.PIPE, text=True, env=env)
        if done.returncode:
            sys.exit(f"{name} failed")
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        results[name]["wall_s"] = time.perf_counter() - started

    print(f"time to {args.target:.0%} validation exact match on 'reverse' (vocab 10, lengths "
          f"1-10, {args.n_train} training pairs), small model, batches of ~{args.max_tokens} "
          f"tokens, warm-up {args.warmup}, validation every {args.eval_every} steps on "
          f"{args.n_valid} pairs")
    for name, result in results.items():
        print(f"  {name}: {result['version']}")
    header = (f"{'library':<8}{'reached':>8}{'steps':>7}{'train s':>9}{'valid s':>9}"
              f"{'wall s':>8}{'ms/step':>9}{'valid EM':>10}{'test EM':>9}")
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        print(f"{name:<8}{str(r['reached']):>8}{r['steps']:>7}{r['train_s']:>9.1f}"
              f"{r['eval_s']:>9.1f}{r['wall_s']:>8.1f}{1e3 * r['train_s'] / r['steps']:>9.1f}"
              f"{r['valid_exact']:>10.3f}{r['test_exact']:>9.3f}")
    if len(results) == 2:
        ours, theirs = results["ours"], results["torch"]
        print(f"training time ours/torch: {ours['train_s'] / theirs['train_s']:.2f}x; "
              f"wall time (with validation decoding and start-up) ours/torch: "
              f"{ours['wall_s'] / theirs['wall_s']:.2f}x")
    print("train s: time in training steps only; valid s: greedy decoding of the validation set "
          "at each check (ours cached, torch's plain loop); wall s: the whole subprocess")


if __name__ == "__main__":
    main()
