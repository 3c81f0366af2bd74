"""Data-parallel training on this machine, and a scaling model for 2-64 machines from it.

Measures, on the small model (d_model 128, 4 heads, 2+2 layers, d_ff 512; the `reverse` task,
global batches of --max-tokens padded tokens per side, dropout 0.1, the recipe's step):
    1 rank  x 2 threads   (one process, NUMBA/OpenBLAS threads 2)
    2 ranks x 1 thread    (mpiexec -n 2, threads 1 per rank)
tokens/s (target tokens of the global batches per second of training), the time per step in the
gradient sync (pack + Allreduce + unpack; after a barrier, so it excludes "waiting": rank 0's
time in that barrier, waiting for the slower rank), and the bare Allreduce of a buffer the
gradients' size and of 8 bytes.

The scaling model (strong scaling: the global batch stays fixed, each of P machines computes
1/P of it; a ring Allreduce moves 2 (P-1)/P of the gradient bytes through each machine's link):
    step(P) = compute / P + copies + 2 (P - 1) * latency + 2 (P - 1) / P * bytes / bandwidth
with compute = the measured 1-rank step time, latency and bandwidth from the measured 2-rank
Allreduce (2 ranks: time = 2 latency + bytes / bandwidth), and copies = the measured gradient
sync time per step minus that Allreduce (the gradients into the flat buffer and back). Those
are shared-memory numbers of ONE machine; pass --bandwidth GB/s --latency-us for a network.

    flock /work/cpu.lock .venv/bin/python bench/distributed.py [--steps 20] [--repeats 3]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

SMALL = ["--preset", "none", "--d-model", "128", "--n-heads", "4", "--n-encoder-layers", "2",
         "--n-decoder-layers", "2", "--d-ff", "512"]


def worker(args):
    """Train under this process's world (1 or K ranks); rank 0 prints one JSON line."""
    from tinygrad_tf import distributed, kernels
    from tinygrad_tf.models.cli import _parser, _train_config
    from tinygrad_tf.models.train import Trainer

    kernels.tune_process()  # each rank as the tinygrad-tf command runs (docs/kernels.md)
    distributed.init()
    run_dir = os.path.join(args.tmp, f"run{distributed.world_size()}")
    argv = ["train", "--task", "reverse", "--n-train", "4000", "--n-valid", "16", "--n-test", "16",
            "--eval-every", "100000", "--eval-decode", "16", "--log-every", "100000",
            "--max-tokens", str(args.max_tokens), "--run-dir", run_dir, *SMALL]
    config = _train_config(_parser().parse_args(argv + ["--steps", str(args.warmup)]))
    with open(os.devnull, "w") as quiet:
        trainer = Trainer(config, out=quiet)
        if trainer.parallel:
            trainer.parallel.measure_wait = True
        trainer.run()                                      # warm-up: kernels compiled, caches
        elapsed0 = trainer.elapsed
        seconds0 = trainer.parallel.allreduce_seconds if trainer.parallel else 0.0
        wait0 = trainer.parallel.wait_seconds if trainer.parallel else 0.0
        trainer.config.steps = args.warmup + args.steps
        trainer.run()
    timed = [r for r in trainer.history if r["kind"] == "train" and r["step"] > args.warmup]
    result = {"ranks": distributed.world_size(), "steps": len(timed),
              "tokens": sum(r["tokens"] for r in timed),
              "seconds": trainer.elapsed - elapsed0,
              "allreduce_seconds": (trainer.parallel.allreduce_seconds - seconds0
                                    if trainer.parallel else 0.0),
              "wait_seconds": trainer.parallel.wait_seconds - wait0 if trainer.parallel else 0.0,
              "gradient_bytes": sum(p.array.nbytes for p in trainer.model.parameters())}
    if distributed.is_distributed():
        result.update(_allreduce_times(result["gradient_bytes"]))
    if distributed.rank() == 0:
        print(json.dumps(result))


def _allreduce_times(nbytes, repeats=50):
    from tinygrad_tf import distributed
    times = {}
    for name, size in (("big", nbytes // 4), ("small", 2)):
        buffer = np.ones(size, np.float32)
        distributed.all_reduce(buffer)
        distributed.barrier()
        started = time.perf_counter()
        for _ in range(repeats):
            distributed.all_reduce(buffer)
        times[f"allreduce_{name}_seconds"] = (time.perf_counter() - started) / repeats
    return times


def _launch(command, threads, ranks):
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), MPIEXEC_TIMEOUT="900")
    if ranks > 1:
        mpiexec = (shutil.which("mpiexec", path=os.path.dirname(sys.executable))
                   or shutil.which("mpiexec"))
        if mpiexec is None:
            sys.exit("bench/distributed.py: needs mpiexec: pip install 'tinygrad_tf[mpi]'")
        command = [mpiexec, "-n", str(ranks)] + command
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1200)
    if done.returncode != 0:
        sys.exit(f"bench/distributed.py: {ranks} rank(s) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def scaling_table(step_seconds, nbytes, latency, bandwidth, copies):
    """Rows (P, step ms, sync ms, tokens/s speed-up over 1 machine, efficiency)."""
    rows = []
    for machines in (1, 2, 4, 8, 16, 32, 64):
        ring = (copies + 2 * (machines - 1) * latency
                + 2 * (machines - 1) / machines * nbytes / bandwidth) if machines > 1 else 0.0
        step = step_seconds / machines + ring
        speedup = step_seconds / step
        rows.append((machines, step * 1e3, ring * 1e3, speedup, speedup / machines))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps (20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (3)")
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each layout (3)")
    parser.add_argument("--bandwidth", type=float, help="GB/s for the model (default: measured)")
    parser.add_argument("--latency-us", type=float, help="us for the model (default: measured)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    with tempfile.TemporaryDirectory() as tmp:
        def command(attempt):  # a fresh run directory each time
            return [sys.executable, os.path.abspath(__file__), "--worker",
                    "--tmp", os.path.join(tmp, str(attempt)), "--steps", str(args.steps),
                    "--warmup", str(args.warmup), "--max-tokens", str(args.max_tokens)]
        # Alternate the layouts and keep each one's fastest run: other load on a shared
        # machine only ever slows a run down.
        ones, twos = [], []
        for attempt in range(args.repeats):
            ones.append(_launch(command(attempt), threads=2, ranks=1))
            twos.append(_launch(command(attempt), threads=1, ranks=2))
    one = min(ones, key=lambda run: run["seconds"] / run["tokens"])
    two = min(twos, key=lambda run: run["seconds"] / run["tokens"])
    for key in ("allreduce_big_seconds", "allreduce_small_seconds"):
        two[key] = min(run[key] for run in twos)   # the same rule for the bare Allreduce
    for name, runs in (("1 rank x 2 threads", ones), ("2 ranks x 1 thread", twos)):
        print(f"{name}: tokens/s of each run: "
              + ", ".join(f"{run['tokens'] / run['seconds']:,.0f}" for run in runs))

    print(f"small model, global batches of <= {args.max_tokens} tokens per side, "
          f"{args.steps} timed steps after {args.warmup}, best of {args.repeats}; gradients "
          f"{one['gradient_bytes'] / 1e6:.2f} MB")
    print(f"{'layout':22s} {'tokens/s':>10s} {'ms/step':>9s} {'grad sync ms/step':>18s} "
          f"{'waiting ms/step':>16s}")
    for name, run in (("1 rank x 2 threads", one), ("2 ranks x 1 thread", two)):
        print(f"{name:22s} {run['tokens'] / run['seconds']:10,.0f} "
              f"{run['seconds'] / run['steps'] * 1e3:9.1f} "
              f"{run['allreduce_seconds'] / run['steps'] * 1e3:18.2f} "
              f"{run['wait_seconds'] / run['steps'] * 1e3:16.2f}")
    nbytes = one["gradient_bytes"]
    measured_latency = two["allreduce_small_seconds"] / 2
    measured_bandwidth = nbytes / max(two["allreduce_big_seconds"] - 2 * measured_latency, 1e-9)
    print(f"Allreduce between 2 ranks: {two['allreduce_big_seconds'] * 1e3:.3f} ms for "
          f"{nbytes / 1e6:.2f} MB, {two['allreduce_small_seconds'] * 1e6:.1f} us for 8 bytes "
          f"-> latency {measured_latency * 1e6:.1f} us, bandwidth {measured_bandwidth / 1e9:.2f} "
          "GB/s (shared memory)")
    latency = measured_latency if args.latency_us is None else args.latency_us * 1e-6
    bandwidth = measured_bandwidth if args.bandwidth is None else args.bandwidth * 1e9
    step = one["seconds"] / one["steps"]
    copies = max(two["allreduce_seconds"] / two["steps"] - two["allreduce_big_seconds"], 0.0)
    print(f"\nscaling model: 1-machine step {step * 1e3:.1f} ms, latency {latency * 1e6:.1f} us, "
          f"bandwidth {bandwidth / 1e9:.2f} GB/s, copies {copies * 1e3:.2f} ms, fixed global batch")
    print(f"{'machines':>8s} {'ms/step':>9s} {'sync ms':>13s} {'speed-up':>9s} "
          f"{'efficiency':>11s}")
    for machines, ms, ring_ms, speedup, efficiency in scaling_table(step, nbytes, latency,
                                                                    bandwidth, copies):
        print(f"{machines:8d} {ms:9.2f} {ring_ms:13.3f} {speedup:8.2f}x {efficiency:10.0%}")


if __name__ == "__main__":
    main()
