"""Numba and OpenBLAS thread counts compared step by step inside one training process.

Two-thread step times on a shared 2-vCPU VM differ between processes (the same row measured 58
and 74 ms), so this compares variants step by step inside one process: each round runs one step
per variant in turn (Numba's thread count set with numba.set_num_threads before the step), and
every Numba kernel call is timed per kernel family. Prints the median step wall and CPU time
per variant and each family's median milliseconds per step.

    flock /tmp/tgtf-heavy.lock .venv/bin/python bench/numba_threads_in_step.py --config small
"""
import argparse
import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small")
    parser.add_argument("--threads", type=int, default=2, help="OpenBLAS (and Numba's maximum)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--variants", default="n2b2,n1b2",
                        help="variants to alternate: nNbB = Numba on N threads, OpenBLAS on B; "
                             "nNbBtT also restarts OpenBLAS's pool with OPENBLAS_THREAD_TIMEOUT=T "
                             "(its idle workers spin about 2**T cycles; OpenBLAS's default is 28)")
    args = parser.parse_args()
    from train_step import build_model, make_batch, ours_step, pin_threads
    pin_threads(args.threads)
    import numba
    import numpy as np

    from tinygrad_tf import kernels
    from tinygrad_tf.kernels import _jit
    kernels.tune_process()

    spent = collections.defaultdict(float)  # kernel name -> seconds in the current step
    call = _jit.LazyKernel.__call__

    def timed_call(self, *a, work):
        started = time.perf_counter()
        try:
            return call(self, *a, work=work)
        finally:
            spent[self.name] += time.perf_counter() - started
    _jit.LazyKernel.__call__ = timed_call

    step = ours_step(build_model(args.config, 0.0), make_batch(args.config))

    variants = args.variants.split(",")
    counts = {v: tuple(int(c) for c in v[1:].replace("t", "b").split("b")) for v in variants}
    blas_set = kernels.threads._blas()[0]
    openblas = kernels.threads._openblas_library()
    for _ in range(3):
        step()
    walls = {v: [] for v in variants}
    cpus = {v: [] for v in variants}
    per_kernel = {v: collections.defaultdict(list) for v in variants}
    for _ in range(args.rounds):
        for v in variants:
            numba.set_num_threads(counts[v][0])
            blas_set(counts[v][1])
            if len(counts[v]) > 2:  # the pool restarts at the next GEMM, reading the timeout
                os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(counts[v][2])
                openblas.openblas_read_env()
                openblas.blas_thread_shutdown_()
            spent.clear()
            started, cpu_started = time.perf_counter(), time.process_time()
            step()
            walls[v].append(time.perf_counter() - started)
            cpus[v].append(time.process_time() - cpu_started)
            for name, seconds in spent.items():
                per_kernel[v][name].append(seconds)
    print(f"{args.config}: {args.threads} threads at most, {args.rounds} rounds, median ms")
    print("variant                 " + "  ".join(f"{v:>9}" for v in variants))
    print("step wall               " + "  ".join(f"{1e3 * np.median(walls[v]):9.2f}" for v in variants))
    print("step cpu                " + "  ".join(f"{1e3 * np.median(cpus[v]):9.2f}" for v in variants))
    names = sorted(per_kernel[variants[0]], key=lambda n: -np.median(per_kernel[variants[0]][n]))
    for name in names:
        print(f"{name[:24]:24}" + "  ".join(
            f"{1e3 * np.median(per_kernel[v][name] or [0]):9.3f}" for v in variants))


if __name__ == "__main__":
    main()
