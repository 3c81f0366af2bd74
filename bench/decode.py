"""Decoding speed: greedy (cached and uncached) and beam-4 vs PyTorch's plain greedy loop.

A small Transformer (d_model 128, 4 heads, 2+2 layers, d_ff 512) decodes 32 source sequences of
32 tokens into exactly 32 new tokens each (EOS never fires). Printed: milliseconds per token step
(one step = one new token for the whole batch), how the step time grows along the output (four
quarters), and ratios against PyTorch running the same weights in a plain uncached greedy loop
(encode once, re-run the decoder over the whole prefix every step, project only the last
position to the vocabulary), as most tutorials do.
Each figure is the median over `--repeats` runs, so a busy machine disturbs it less. Each library
runs in its own subprocess (`--only ours|torch`): ours runs tuned (`kernels.tune_process()`, as the
`tinygrad-tf` command), which sets OMP_WAIT_POLICY=PASSIVE, which torch's OpenMP runtime
would read if it loaded later in the same process (torch took
51 instead of 7.0 ms per step that way here), and the two libraries' thread pools never meet.

    flock /tmp/tgtf-cpu.lock env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        .venv/bin/python bench/decode.py [--threads 1]
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for OpenBLAS, Numba and torch alike (default: each "
                             "library's own)")
    parser.add_argument("--only", choices=["ours", "torch"], help=argparse.SUPPRESS)
    return parser.parse_args()


ARGS = parse_args()
if ARGS.threads is not None:  # OpenBLAS and Numba read these once, when first imported
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[variable] = str(ARGS.threads)

import numpy as np  # noqa: E402  (after the thread setting above)

BOS, NEVER = 1, -1  # EOS = -1 is never produced, so every run makes exactly `new_tokens` steps


def timed_steps(obj, name, run):
    """Run `run()` with obj.<name> wrapped to record each call's wall and CPU time (s); return
    them as an array (calls, 2) and run's result."""
    original = getattr(obj, name)
    durations = []

    def wrapper(*args, **kwargs):
        start, cpu_start = time.perf_counter(), time.process_time()
        out = original(*args, **kwargs)
        durations.append((time.perf_counter() - start, time.process_time() - cpu_start))
        return out

    setattr(obj, name, wrapper)
    try:
        result = run()
    finally:
        delattr(obj, name)  # back to the class's method
    return np.array(durations), result


def median_steps(runs):
    return np.median(np.stack(runs), axis=0)


def torch_greedy(reference, src, new_tokens):
    import torch

    with torch.inference_mode():
        memory = reference.encode(src)
        ys = torch.full((src.shape[0], 1), BOS, dtype=torch.long)
        for _ in range(new_tokens):
            next_token = reference.decode(memory, src, ys, last_only=True)[:, -1].argmax(-1)
            ys = torch.cat([ys, next_token[:, None]], dim=1)
    return ys[:, 1:].numpy()


def build(args):
    """The model (seed 0) and the source ids: the same weights in both processes."""
    from tinygrad_tf import manual_seed
    from tinygrad_tf.models import Transformer, TransformerConfig

    manual_seed(0)
    config = TransformerConfig(args.vocab, args.vocab, d_model=128, n_heads=4, n_encoder_layers=2,
                               n_decoder_layers=2, d_ff=512, dropout=0.0, share_embeddings=True,
                               max_len=max(256, 2 * args.new_tokens + 2))
    src_ids = np.random.default_rng(0).integers(3, args.vocab, size=(args.batch, args.new_tokens))
    return Transformer(config).eval(), src_ids


def run_ours(args):
    from tinygrad_tf import Tensor, kernels
    from tinygrad_tf.models import beam_search, greedy_decode
    kernels.tune_process()  # as the tinygrad-tf command runs (docs/kernels.md)

    model, src_ids = build(args)
    src = Tensor(src_ids)  # no padding: the output limit is N + max_extra_len = N new tokens
    kwargs = dict(bos_id=BOS, eos_id=NEVER, max_extra_len=0)
    runs = {"ours greedy, cached": lambda: greedy_decode(model, src, **kwargs),
            "ours greedy, uncached": lambda: greedy_decode(model, src, use_cache=False, **kwargs),
            "ours beam 4, cached": lambda: beam_search(model, src, beam_size=4, **kwargs)}
    steps, tokens = {}, {}
    greedy_decode(model, src, **kwargs)  # warm up (first-call allocations, imports)
    for name, run in runs.items():
        results = [timed_steps(model, "decode", run) for _ in range(args.repeats)]
        steps[name] = median_steps([r[0] for r in results]).tolist()
        tokens[name] = results[0][1].array.tolist()
    return {"steps": steps, "tokens": tokens, "info": f"kernels {kernels.active()!r}"}


def run_torch(args):
    # First, as a user would (tinygrad_tf is imported only to build the same weights).
    import torch

    model, src_ids = build(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "models"))
    from torch_transformer import from_ours

    reference = from_ours(model, dtype=torch.float32).eval()
    del model
    torch_src = torch.from_numpy(src_ids)
    torch_greedy(reference, torch_src, 2)  # warm up
    results = [timed_steps(reference, "decode",
                           lambda: torch_greedy(reference, torch_src, args.new_tokens))
               for _ in range(args.repeats)]
    name = "torch greedy, uncached"
    return {"steps": {name: median_steps([r[0] for r in results]).tolist()},
            "tokens": {name: results[0][1].tolist()},
            "info": f"{torch.__version__} ({torch.get_num_threads()} threads)"}


def child(library):
    """Run this script with --only `library` in a fresh interpreter; its JSON result."""
    done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--only", library],
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{library} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    args = ARGS
    if args.only:
        print(json.dumps(run_ours(args) if args.only == "ours" else run_torch(args)))
        return
    B, N = args.batch, args.new_tokens
    ours = child("ours")
    theirs = child("torch") if importlib.util.find_spec("torch") else None
    steps = {name: np.array(s) for r in (ours, theirs) if r for name, s in r["steps"].items()}
    tokens = {name: np.array(t) for r in (ours, theirs) if r for name, t in r["tokens"].items()}

    threads = os.environ.get("OPENBLAS_NUM_THREADS", "library defaults")
    print(f"decode bench: d_model 128, 4 heads, 2+2 layers, d_ff 512, vocab {args.vocab}, "
          f"{B} sequences x {N} new tokens, float32, median of {args.repeats} runs, each library "
          f"in its own process")
    print(f"{ours['info']}; numpy {np.__version__} (BLAS/Numba threads: "
          f"{threads}); torch {theirs['info'] if theirs else 'absent'}")
    quarters = np.array_split(np.arange(N), 4)
    header = (f"{'method':<24}{'ms/step':>9}{'cpu ms':>8}" + "".join(
        f"{f'steps {q[0] + 1}-{q[-1] + 1}':>13}" for q in quarters) + f"{'last/first':>12}"
        + (f"{'vs torch':>10}" if theirs else ""))
    print(header)
    print("-" * len(header))
    base = steps.get("torch greedy, uncached")
    for name, s in steps.items():
        ms, cpu_ms = s[:, 0] * 1e3, s[:, 1] * 1e3
        per_quarter = [ms[q].mean() for q in quarters]
        line = f"{name:<24}{ms.mean():>9.2f}{cpu_ms.mean():>8.2f}"
        line += "".join(f"{v:>13.2f}" for v in per_quarter)
        line += f"{per_quarter[-1] / per_quarter[0]:>12.2f}"
        if base is not None:
            line += f"{base[:, 0].mean() / s[:, 0].mean():>9.2f}x"
        print(line)
    if theirs:
        agree = (tokens["ours greedy, cached"] == tokens["torch greedy, uncached"]).mean()
        print(f"greedy tokens equal to torch's: {agree:.1%} (float32 ties may differ)")
    same = (tokens["ours greedy, cached"] == tokens["ours greedy, uncached"]).mean()
    print(f"cached vs uncached greedy tokens equal: {same:.1%}")
    print("ms/step: mean wall time of one decoder call (one new token for all sequences); cpu ms:"
          " the same in process CPU time; steps a-b: wall ms/step over that stretch of the "
          "output; 'vs torch': torch's ms/step divided by this row's (higher is faster).")


if __name__ == "__main__":
    main()
