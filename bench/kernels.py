"""Kernel benchmark: numpy twin vs Numba kernel vs PyTorch (if installed), side by side, one run.

Run it alone on the machine (other jobs on the cores make parallel kernels collapse), holding the
shared CPU lock, and without the OpenBLAS overrides that slow a current numpy:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE flock /tmp/tgtf-cpu.lock \
        .venv/bin/python bench/kernels.py [--repeats 15] [--quick] [--threads N]

--threads 1 compares the kernels themselves (one core each, robust when the machine is shared);
the default (all cores) is what the targets are about.

Every case times numpy and Numba round-robin, `repeats` times, and reports medians, so a burst
of load elsewhere hits both alike; torch's medians come from its own process (below). float32
throughout (the training dtype).
Columns: times in ms; GFLOP/s (matmul) or GB/s (softmax: bytes read + written) of the Numba
kernel; speedup = numpy time / Numba time; vs torch = torch time / Numba time (>1: Numba
faster); `auto` = the path the default kernel set takes for that shape. The torch column comes
from a subprocess (`--only torch`) that imports torch before tinygrad_tf, under the caller's
environment: ours runs tuned (`kernels.tune_process()`, as the `tinygrad-tf` command), which sets
OMP_WAIT_POLICY=PASSIVE, which torch's OpenMP runtime reads when it loads.
"""
import argparse
import importlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="fewer shapes, for a smoke run")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for OpenBLAS, Numba and torch alike (default: all cores)")
    parser.add_argument("--only", choices=["torch"], help=argparse.SUPPRESS)
    return parser.parse_args()


ARGS = parse_args()
if ARGS.threads is not None:  # OpenBLAS reads this once, when numpy loads it
    os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
USER_ENV = dict(os.environ)  # for the torch subprocess: before tinygrad_tf's import changes it
HAVE_TORCH = importlib.util.find_spec("torch") is not None
if ARGS.only == "torch":
    import torch  # noqa: E402  (first: see the docstring)
else:
    torch = None  # only the --only torch subprocess times torch

import numpy as np  # noqa: E402  (after the thread settings above)

import tinygrad_tf  # noqa: E402
from tinygrad_tf import kernels  # noqa: E402

if ARGS.only != "torch":
    kernels.tune_process()  # as the tinygrad-tf command runs (docs/kernels.md)

mm = importlib.import_module("tinygrad_tf.kernels.matmul")
sm = importlib.import_module("tinygrad_tf.kernels.softmax")

TOKENS = 1024
# Targets from the kernels issue: Numba time vs numpy / torch time for each table.
TARGETS = {"linear": ("speedup", 0.9), "attention": ("speedup", 1.5),
           "softmax": ("speedup", 5.0), "backward": ("speedup", 8.0)}


def median_times(fns, repeats):
    """Median seconds of each function, timed round-robin after one untimed call each."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


def as_torch(*arrays):
    return [torch.from_numpy(np.ascontiguousarray(a)) if not a.flags.writeable else
            torch.from_numpy(a) for a in arrays]


def matmul_case(a, b):
    fns = [lambda: mm.matmul_numpy(a, b), lambda: mm.matmul_numba(a, b)]
    if torch is not None:
        ta, tb = as_torch(a, b)
        fns.append(lambda: torch.matmul(ta, tb))
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    work = 2 * int(np.prod(batch)) * a.shape[-2] * a.shape[-1] * b.shape[-1]
    return fns, work / 1e9, "GFLOP/s", kernels.matmul_auto_path(a, b)


def softmax_case(name, x, grad):
    numpy_fn, numba_fn = getattr(sm, name + "_numpy"), getattr(sm, name + "_numba")
    if name.endswith("_backward"):
        y = getattr(sm, name.replace("_backward", "") + "_numpy")(x, -1)
        args, nbytes = (y, grad, -1), 3 * x.nbytes
    else:
        args, nbytes = (x, -1), 2 * x.nbytes
    fns = [lambda: numpy_fn(*args), lambda: numba_fn(*args)]
    if torch is not None:
        tx, tg, ty = as_torch(x, grad, args[0])
        torch_fn = {
            "softmax": lambda: torch.softmax(tx, -1),
            "log_softmax": lambda: torch.log_softmax(tx, -1),
            "softmax_backward": lambda: torch._softmax_backward_data(tg, ty, -1, ty.dtype),
            "log_softmax_backward":
                lambda: torch._log_softmax_backward_data(tg, ty, -1, ty.dtype),
        }[name]
        fns.append(torch_fn)
    return fns, nbytes / 1e9, "GB/s", "numba"


def print_table(title, rows, target):
    print(f"\n## {title}\n")
    torch_cols = " torch ms | vs torch |" if HAVE_TORCH else ""
    torch_rule = "---:|---:|" if HAVE_TORCH else ""
    print(f"| case | numpy ms | numba ms |{torch_cols} numba rate | speedup | auto |")
    print(f"|---|---:|---:|{torch_rule}---:|---:|---|")
    for label, times, amount, unit, auto in rows:
        t_numpy, t_numba = times[0], times[1]
        cells = [label, f"{t_numpy * 1e3:.3f}", f"{t_numba * 1e3:.3f}"]
        if HAVE_TORCH:
            cells += [f"{times[2] * 1e3:.3f}", f"{times[2] / t_numba:.2f}x"]
        cells += [f"{amount / t_numba:.1f} {unit}", f"{t_numpy / t_numba:.2f}x", auto]
        print("| " + " | ".join(cells) + " |")
    kind, bound = target
    speedups = [times[0] / times[1] for _, times, *_ in rows]
    verdict = "met" if min(speedups) >= bound else "NOT met"
    print(f"\ntarget: numba >= {bound}x numpy on every row: {verdict} "
          f"(min {min(speedups):.2f}x, max {max(speedups):.2f}x)")
    if HAVE_TORCH and title.startswith("softmax"):
        vs_torch = [times[2] / times[1] for _, times, *_ in rows]
        within = "met" if min(vs_torch) >= 1 / 1.2 else "NOT met"
        print(f"target: numba within 1.2x of torch's time: {within} "
              f"(worst: numba takes {1 / min(vs_torch):.2f}x torch's time)")


def tables(args):
    """[(title, target, [(label, case)])]: the same shapes and data (seed 0) in both processes."""
    rng = np.random.default_rng(0)

    def randn(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    d_models = (128,) if args.quick else (128, 256)
    linear = []
    for d in d_models:
        for n in (d, 4 * d, 1000):
            linear.append((f"({TOKENS}x{d}) @ ({d}x{n})", randn(TOKENS, d), randn(d, n)))
        x, g = randn(TOKENS, d), randn(TOKENS, 4 * d)
        w = randn(d, 4 * d)
        linear.append((f"grad_x ({TOKENS}x{4 * d}) @ W^T view", g, w.T))
        linear.append((f"grad_W x^T view @ ({TOKENS}x{4 * d})", x.T, g))
    attention = []
    for bh, t, dk in ((128, 32, 32), (64, 64, 32)) if args.quick else (
            (128, 32, 32), (64, 64, 32), (32, 128, 32), (16, 128, 64)):
        q, k, v, p = randn(bh, t, dk), randn(bh, t, dk), randn(bh, t, dk), randn(bh, t, t)
        k_t = np.ascontiguousarray(k.swapaxes(-1, -2))
        attention += [(f"({bh},{t},{dk}) @ ({bh},{dk},{t})", q, k_t),
                      (f"({bh},{t},{dk}) @ k^T view", q, k.swapaxes(-1, -2)),
                      (f"({bh},{t},{t}) @ ({bh},{t},{dk})", p, v)]
    soft_shapes = [(64, 64, 64), (32, 128, 128), (TOKENS, 1000)]
    if not args.quick:
        soft_shapes += [(16, 256, 256), (256, 8000)]

    out = [("matmul, 2-D (Transformer linears, forward and backward)", TARGETS["linear"],
            [(label, matmul_case(a, b)) for label, a, b in linear]),
           ("matmul, batched attention shapes", TARGETS["attention"],
            [(label, matmul_case(a, b)) for label, a, b in attention])]
    for names, title, target in ((("softmax", "log_softmax"), "softmax forward", "softmax"),
                                 (("softmax_backward", "log_softmax_backward"),
                                  "softmax backward", "backward")):
        cases = []
        for shape in soft_shapes:
            x, grad = randn(*shape) * 3, randn(*shape)
            cases += [(f"{name} {shape}", softmax_case(name, x, grad)) for name in names]
        out.append((title, TARGETS[target], cases))
    return out


def torch_times(args):
    """Median seconds of every case's torch function, in order: run in a fresh interpreter with
    --only torch, under the caller's environment (OMP_WAIT_POLICY as the user had it)."""
    if args.only == "torch":
        torch.set_num_threads(args.threads or os.cpu_count())
        times = [median_times(case[0][2:], args.repeats)[0]
                 for _, _, cases in tables(args) for _, case in cases]
        return {"version": torch.__version__, "times": times}
    done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--only", "torch"],
                          capture_output=True, text=True, env=USER_ENV)
    if done.returncode:
        sys.exit(f"torch subprocess failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    args = ARGS
    if args.only:
        print(json.dumps(torch_times(args)))
        return
    theirs = torch_times(args) if HAVE_TORCH else None  # before our thread pools start
    threads = args.threads or os.cpu_count()
    import numba
    numba.set_num_threads(threads)
    warm = kernels.warmup(dtypes=("float32",))
    print("# tinygrad_tf kernel benchmark\n")
    print(f"- numpy {np.__version__}, tinygrad_tf {tinygrad_tf.__version__}, "
          f"torch {theirs['version'] if theirs else 'not installed'}"
          f"{' (in its own process)' if theirs else ''}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus")
    info = kernels.info()
    print(f"- numba {info['numba_version']}: {info['numba_threads']} threads, layer "
          f"{info['threading_layer']}; BLAS threads: {info['blas_threads']}")
    print("- OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s" % (
        os.environ.get("OPENBLAS_CORETYPE", "unset"), os.environ.get("OPENBLAS_L2_SIZE", "unset")))
    print(f"- kernel warmup (compile or cache load): {warm['total_seconds']:.2f} s; "
          f"median of {args.repeats} round-robin repeats per cell")

    torch_seconds = iter(theirs["times"] if theirs else [])
    for title, target, cases in tables(args):
        rows = []
        for label, case in cases:
            times, amount, unit, auto = _timed(case, args.repeats)
            times += [next(torch_seconds)] if theirs else []
            rows.append((label, times, amount, unit, auto))
        print_table(title, rows, target)
    mixed_step_table(args.repeats)


MIXED_STEP = r"""
import statistics, sys, time
import tinygrad_tf as tg
from tinygrad_tf import Tensor, kernels
tg.manual_seed(0)
B, T, D, H, V = 8, 32, 128, 4, 1000   # one attention block, a 4x MLP, a 1000-way output
x = Tensor.randn(B, T, D, dtype=tg.float32)
ws = [Tensor.randn(D, D, dtype=tg.float32, requires_grad=True) for _ in range(3)]
w1 = Tensor.randn(D, 4 * D, dtype=tg.float32, requires_grad=True)
w_out = Tensor.randn(D, V, dtype=tg.float32, requires_grad=True)

def step():
    q, k, v = [(x @ w * 0.1).reshape(B, T, H, D // H).permute(0, 2, 1, 3) for w in ws]
    attention = (q @ k.transpose(-1, -2) * (D // H) ** -0.5).softmax(-1)
    mixed = (attention @ v).permute(0, 2, 1, 3).reshape(B, T, D)
    hidden = (mixed @ w1).relu() @ w1.transpose(0, 1)
    (-(hidden @ w_out).log_softmax(-1).mean()).backward()

step()
times = []
for _ in range(int(sys.argv[1])):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
print(kernels.info()["threading_layer"], statistics.median(times))
"""

MIXED_SETTINGS = [  # (kernel set, extra environment)
    ("numpy", {}), ("numba", {}), ("auto", {}),
    ("auto", {"OMP_WAIT_POLICY": "ACTIVE"}),
    ("auto", {"NUMBA_THREADING_LAYER": "workqueue", "OMP_WAIT_POLICY": "ACTIVE"}),
]


def mixed_step_table(repeats):
    """A small training step that alternates OpenBLAS and Numba, per kernel set and thread
    setting, each in a fresh interpreter (the OpenMP wait policy is read at startup)."""
    import subprocess
    import sys
    print("\n## mixed training step (OpenBLAS and Numba alternating)\n")
    print("| kernel set | environment | threading layer | median step ms |")
    print("|---|---|---|---:|")
    for kernel_set, extra in MIXED_SETTINGS:
        env = {**os.environ, "TINYGRAD_TF_KERNELS": kernel_set, "TINYGRAD_TF_TUNE": "1", **extra}
        if "OMP_WAIT_POLICY" not in extra:
            env.pop("OMP_WAIT_POLICY", None)  # the tuned default (PASSIVE)
        out = subprocess.run([sys.executable, "-c", MIXED_STEP, str(repeats)], env=env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"mixed step failed for {kernel_set} {extra}:\n{out.stderr}")
        layer, seconds = out.stdout.split()[-2:]
        settings = " ".join(f"{k}={v}" for k, v in extra.items()) or "default"
        print(f"| {kernel_set} | {settings} | {layer} | {float(seconds) * 1e3:.2f} |")


def _timed(case, repeats):
    fns, amount, unit, auto = case
    return median_times(fns, repeats), amount, unit, auto


if __name__ == "__main__":
    main()
