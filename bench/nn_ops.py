"""Fused nn ops vs PyTorch on Transformer-sized shapes: forward, and forward + backward.

    flock /tmp/tgtf-heavy.lock .venv/bin/python bench/nn_ops.py [--repeat 30] [--threads N]

Each time is the best of --repeat runs after warm-up (the least disturbed by other processes on
a shared machine), forward and forward + backward measured in alternation, in float32, on
whatever kernel set `tinygrad_tf.kernels` has active (TINYGRAD_TF_KERNELS). Ours and torch run
one after the other, each in its own subprocess (`--only ours|torch`): ours runs tuned
(`kernels.tune_process()`, as the `tinygrad-tf` command), which sets OMP_WAIT_POLICY=PASSIVE,
which torch's OpenMP runtime would read if loaded after it.
--threads N runs both libraries on N threads (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and
NUMBA_NUM_THREADS set before anything loads, and torch.set_num_threads, as bench/train_step.py
does; a count set this way also stops our adaptive thread count); without it each takes the
environment's. --torch-threads sets torch's intra-op threads alone (default: --threads, else
torch's own choice). Without torch only our columns print.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np


def best_ms(fns, repeat):
    """Best time in ms of each function in `fns`, run in alternation so load spikes hit all."""
    for fn in fns:  # warm-up (compiles, caches, first-touch allocations)
        fn()
        fn()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, record in zip(fns, times):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    return [1000 * min(record) for record in times]


def cases(library):
    """(name, shape text, forward) for `library` ("ours" or "torch"): each forward builds its
    leaves and returns the output, so forward+backward timing includes a fresh graph each run."""
    if library == "torch":
        import torch
        import torch.nn.functional as F
        leaf, tensor = lambda a: torch.tensor(a, requires_grad=True), torch.tensor
    else:
        from tinygrad_tf import Tensor
        from tinygrad_tf.nn import functional as F
        # Tensor() copies its data, as torch.tensor does: one copy each (a.copy() first made two)
        leaf, tensor = lambda a: Tensor(a, requires_grad=True), lambda a: a
    rng = np.random.default_rng(0)
    f32 = np.float32
    for d_model in (128, 256):
        x = rng.standard_normal((1024, d_model)).astype(f32)
        w, b = np.ones(d_model, f32), np.zeros(d_model, f32)
        yield ("layer_norm", f"(1024, {d_model})",
               lambda x=x, w=w, b=b: F.layer_norm(leaf(x), (x.shape[1],), leaf(w), leaf(b)))
    for vocab in (64, 1000):
        logits = rng.standard_normal((32, 32, vocab)).astype(f32)
        target = rng.integers(0, vocab, (32, 32))
        target[:, 28:] = 0  # padding positions, ignored
        yield ("cross_entropy", f"(32, 32, {vocab}) ls=0.1",
               lambda z=logits, t=target: F.cross_entropy(
                   leaf(z.reshape(-1, z.shape[-1])), tensor(t.reshape(-1)), ignore_index=0,
                   label_smoothing=0.1))
    q, k, v = (rng.standard_normal((32, 4, 32, 32)).astype(f32) for _ in range(3))
    pad = np.ones((32, 1, 1, 32), dtype=bool)
    pad[:, :, :, 28:] = False  # True = take part (torch's convention)
    for label, mask, causal in (("padding mask", pad, False), ("causal", None, True)):
        yield ("sdpa", f"(32, 4, 32, 32) {label}",
               lambda m=mask, c=causal: F.scaled_dot_product_attention(
                   leaf(q), leaf(k), leaf(v), attn_mask=None if m is None else tensor(m),
                   is_causal=c))
    ids = rng.integers(0, 1000, (32, 32))
    table = rng.standard_normal((1000, 256)).astype(f32)
    yield ("embedding", "(32, 32) ids, (1000, 256)",
           lambda: F.embedding(tensor(ids), leaf(table)))
    for shape in ((1024, 256), (1024, 1024)):
        x = rng.standard_normal(shape).astype(f32)
        yield ("dropout p=0.1", str(shape), lambda x=x: F.dropout(leaf(x), 0.1))


def forward_backward(forward, ones, backward):
    def run():
        out = forward()
        backward(out, ones(out))
    return run


def measure(library, args):
    """[(name, shape, fwd ms, fwd+bwd ms)] for one library, and a line about its version."""
    if library == "torch":
        import torch  # first: tinygrad_tf is never imported in this process
        torch.manual_seed(0)
        if args.torch_threads or args.threads:
            torch.set_num_threads(args.torch_threads or args.threads)
        info = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
        ones = torch.ones_like
    else:
        import tinygrad_tf as tg
        tg.kernels.tune_process()  # as the tinygrad-tf command runs (docs/kernels.md)
        tg.manual_seed(0)
        info = f"tinygrad_tf kernels: {tg.kernels.active()}"
        ones = lambda out: np.ones(out.shape, out.dtype)  # noqa: E731
    run_backward = lambda out, g: out.backward(g if out.ndim else None)  # noqa: E731
    rows = [(name, shape, *best_ms([forward, forward_backward(forward, ones, run_backward)],
                                   args.repeat))
            for name, shape, forward in cases(library)]
    return {"info": info, "rows": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both libraries (default: the environment's)")
    parser.add_argument("--torch-threads", type=int, default=None)
    parser.add_argument("--only", choices=["ours", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads is not None:  # before any import that starts a thread pool
        sys.path.insert(0, os.path.dirname(__file__))
        from train_step import pin_threads
        pin_threads(args.threads)
    if args.only:
        print(json.dumps(measure(args.only, args)))
        return
    results = {}
    has_torch = importlib.util.find_spec("torch") is not None
    for library in ("ours", "torch") if has_torch else ("ours",):
        done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--only", library],
                              capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{library} failed:\n{done.stderr}")
        results[library] = json.loads(done.stdout.strip().splitlines()[-1])
    ours = results["ours"]
    if has_torch:
        print(f"{results['torch']['info']}; {ours['info']}; best of {args.repeat}; "
              "each library in its own process")
    else:
        print(f"torch not installed; {ours['info']}")
    header = f"{'op':<15}{'shape':<30}{'fwd ms':>9}{'torch':>9}{'ratio':>7}" \
             f"{'fwd+bwd ms':>12}{'torch':>9}{'ratio':>7}"
    print(header)
    print("-" * len(header))
    for i, (name, shape, ours_fwd, ours_both) in enumerate(ours["rows"]):
        if not has_torch:
            print(f"{name:<15}{shape:<30}{ours_fwd:>9.3f}{'-':>16}{ours_both:>12.3f}")
            continue
        _, _, torch_fwd, torch_both = results["torch"]["rows"][i]
        print(f"{name:<15}{shape:<30}{ours_fwd:>9.3f}{torch_fwd:>9.3f}"
              f"{ours_fwd / torch_fwd:>7.2f}{ours_both:>12.3f}{torch_both:>9.3f}"
              f"{ours_both / torch_both:>7.2f}")
    print("ratio = ours / torch (below 1: ours is faster)")


if __name__ == "__main__":
    main()
