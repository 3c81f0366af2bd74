"""Batched small matrix products through the Tensor API vs numpy's np.matmul (and torch.matmul).

    flock /tmp/tgtf-heavy.lock .venv/bin/python bench/batched_matmul.py [--repeat 200] [--threads N]

The issue's row is q @ k^T on (128, 32, 32): `a @ b.transpose(-1, -2)` on Tensors without
grad, against np.matmul on the same arrays (the transposed view, no copy) and torch.matmul.
The other rows show where the "auto" kernel set's shape rule (kernels.matmul_auto_path) sends
a product to the batched Numba kernel and where it leaves it on OpenBLAS. Each library runs in
its own subprocess (`--only`), best of --repeat calls after warm-up, float32; ours tuned as the
`tinygrad-tf` command runs (`kernels.tune_process()`). --threads N runs every library on N
threads (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and NUMBA_NUM_THREADS set before anything loads, as
bench/train_step.py does; a count set this way also stops our adaptive thread count); without it
each library takes the environment's.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np

# (batch, rows, inner, cols, right operand transposed): the first is the row.
SHAPES = [(128, 32, 32, 32, True), (128, 32, 32, 32, False), (512, 16, 64, 16, True),
          (32, 64, 64, 64, True), (8, 128, 64, 128, True), (512, 10, 64, 10, True)]


def best_us(fn, repeat):
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e6 * min(times)


def operands(batch, rows, inner, cols, transposed):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((batch, rows, inner)).astype(np.float32)
    b = rng.standard_normal((batch, cols, inner) if transposed else (batch, inner, cols))
    return a, b.astype(np.float32)


def measure(library, repeat):
    rows = []
    if library == "torch":
        import torch
        info = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    elif library == "ours":
        import tinygrad_tf as tg
        tg.kernels.tune_process()
        import numba
        info = f"tinygrad_tf kernels: {tg.kernels.active()}, {numba.get_num_threads()} threads"
    else:
        info = f"numpy {np.__version__}"
    for shape in SHAPES:
        a, b = operands(*shape)
        transposed = shape[-1]
        path = ""
        if library == "torch":
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            fn = (lambda: torch.matmul(ta, tb.transpose(-1, -2))) if transposed else \
                (lambda: torch.matmul(ta, tb))
        elif library == "ours":
            ta, tb = tg.Tensor(a), tg.Tensor(b)
            fn = (lambda: ta @ tb.transpose(-1, -2)) if transposed else (lambda: ta @ tb)
        else:
            right = b.swapaxes(-1, -2) if transposed else b
            fn = lambda: np.matmul(a, right)  # noqa: E731
        spent = best_us(fn, repeat)
        if library == "ours":  # after timing: the thread count adapt() settled on decides
            path = tg.kernels.matmul_auto_path(a, b.swapaxes(-1, -2) if transposed else b)
        rows.append((spent, path))
    return {"info": info, "rows": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every library (default: the environment's)")
    parser.add_argument("--only", choices=["ours", "numpy", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads is not None:  # before any import that starts a thread pool
        sys.path.insert(0, os.path.dirname(__file__))
        from train_step import pin_threads
        pin_threads(args.threads)
    if args.only:
        print(json.dumps(measure(args.only, args.repeat)))
        return
    libraries = ["ours", "numpy"]
    if importlib.util.find_spec("torch") is not None:
        libraries.append("torch")
    results = {}
    for library in libraries:
        done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--only", library],
                              capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{library} failed:\n{done.stderr}")
        results[library] = json.loads(done.stdout.strip().splitlines()[-1])
    print("; ".join(results[lib]["info"] for lib in libraries) +
          f"; best of {args.repeat}; each library in its own process")
    header = f"{'product':<30}{'auto path':>10}{'ours us':>10}{'numpy us':>10}" \
             f"{'numpy/ours':>12}" + (f"{'torch us':>10}{'torch/ours':>12}" if
                                      "torch" in results else "")
    print(header)
    print("-" * len(header))
    for i, (batch, rows, inner, cols, transposed) in enumerate(SHAPES):
        ours, path = results["ours"]["rows"][i]
        numpy_us = results["numpy"]["rows"][i][0]
        right = f"({batch}, {cols}, {inner})^T" if transposed else f"({batch}, {inner}, {cols})"
        line = f"{f'({batch}, {rows}, {inner}) @ {right}':<30}{path:>10}{ours:>10.1f}" \
               f"{numpy_us:>10.1f}{numpy_us / ours:>12.2f}"
        if "torch" in results:
            torch_us = results["torch"]["rows"][i][0]
            line += f"{torch_us:>10.1f}{torch_us / ours:>12.2f}"
        print(line)
    print("numpy/ours, torch/ours above 1: ours is faster")


if __name__ == "__main__":
    main()
