"""Per-op overhead: a small op (a 32x32 float32 add) in numpy, tinygrad_tf and PyTorch.

    flock /tmp/tgtf-cpu.lock .venv/bin/python bench/overhead.py [--number 20000]

On a 32x32 add the arithmetic is a few hundred nanoseconds, so the time is almost all framework
overhead: building the result, promoting dtypes, recording the graph, walking it backward. That
cost is paid by every op of every training step. Rows:

- forward: `a + b`, neither input requires grad (nothing is recorded).
- forward, recording: `a + b` with `a` requiring grad (a graph node is built, then dropped).
- forward + backward: a chain of CHAIN adds on a leaf, then backward; time per op. numpy's
  column does the arithmetic such an engine must do (one add forward, one add to accumulate).

Times are the best of --repeat runs of --number calls (the least disturbed by other processes).
numpy and ours run in one subprocess, torch in another (`--only ours|torch`): ours runs tuned
(`kernels.tune_process()`, as the `tinygrad-tf` command), which sets OMP_WAIT_POLICY=PASSIVE,
which torch's OpenMP runtime would read if loaded after it.
Target (issue 3): no more than PyTorch's time per op, forward and with backward.
"""
import argparse
import importlib.util
import json
import subprocess
import sys
import timeit

import numpy as np

CHAIN = 50
ROWS = [("forward", "add 32x32, no grad"), ("recording", "add 32x32, recording the graph"),
        ("backward", f"add 32x32, forward + backward (per op, {CHAIN}-op chain)")]


def best_us(fn, number, repeat):
    fn()  # warm-up
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def numpy_cases(a, b):
    def chain():
        y, grad = a, np.zeros_like(a)
        for _ in range(CHAIN):
            y = y + b
        for _ in range(CHAIN):
            grad = grad + b  # stands in for passing and accumulating one gradient per op
        return y, grad
    return {"forward": lambda: a + b, "recording": lambda: a + b, "backward": chain}


def our_cases(a, b):
    from tinygrad_tf import Tensor, kernels
    kernels.tune_process()  # as the tinygrad-tf command runs (docs/kernels.md)
    x, y = Tensor(a), Tensor(b)
    leaf = Tensor(a.copy(), requires_grad=True)
    upstream = np.ones_like(a)

    def chain():
        out = leaf
        for _ in range(CHAIN):
            out = out + y
        out.backward(upstream)
        leaf.grad = None
    return {"forward": lambda: x + y, "recording": lambda: leaf + y, "backward": chain}


def torch_cases(a, b):
    import torch
    torch.set_num_threads(2)
    x, y = torch.from_numpy(a), torch.from_numpy(b)
    leaf = torch.from_numpy(a.copy()).requires_grad_()
    upstream = torch.ones_like(x)

    def chain():
        out = leaf
        for _ in range(CHAIN):
            out = out + y
        out.backward(upstream)
        leaf.grad = None
    return {"forward": lambda: x + y, "recording": lambda: leaf + y, "backward": chain}


def measure(only, args):
    """us per op of each row for numpy and ours (only="ours") or torch: {framework: {row: us}}."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 32, 32)).astype(np.float32)
    frameworks = ({"torch": torch_cases(a, b)} if only == "torch" else
                  {"numpy": numpy_cases(a, b), "tinygrad_tf": our_cases(a, b)})
    times = {}
    for name, cases in frameworks.items():
        times[name] = {}
        for key, _ in ROWS:
            per_op = CHAIN if key == "backward" else 1
            number = max(args.number // per_op, 10)
            times[name][key] = best_us(cases[key], number, args.repeat) / per_op
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--number", type=int, default=20000, help="calls per timing run")
    parser.add_argument("--repeat", type=int, default=7, help="timing runs; the best is kept")
    parser.add_argument("--only", choices=["ours", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        print(json.dumps(measure(args.only, args)))
        return

    times = {}
    has_torch = importlib.util.find_spec("torch") is not None
    for only in ("ours", "torch") if has_torch else ("ours",):
        done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--only", only],
                              capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{only} failed:\n{done.stderr}")
        times.update(json.loads(done.stdout.strip().splitlines()[-1]))

    header = f"{'us per op':<48}" + "".join(f"{name:>12}" for name in times)
    header += f"{'ours/numpy':>12}" + (f"{'ours/torch':>12}" if has_torch else "")
    print(header)
    print("-" * len(header))
    for key, label in ROWS:
        line = f"{label:<48}" + "".join(f"{t[key]:>12.2f}" for t in times.values())
        line += f"{times['tinygrad_tf'][key] / times['numpy'][key]:>12.2f}"
        if has_torch:
            line += f"{times['tinygrad_tf'][key] / times['torch'][key]:>12.2f}"
        print(line)
    if not has_torch:
        print("(torch is not installed: no PyTorch column)")


if __name__ == "__main__":
    main()
