"""One thread pool or two: the 2-thread step with OpenBLAS's own workers vs its GEMMs split over
Numba's OpenMP pool (kernels.threads.one_pool, kernels/matmul.py matmul_pool).

Each child process runs one GOMP_SPINCOUNT (libgomp reads it once, when it loads) and, inside,
alternates the two schemes step by step (`one_pool(False)`: OpenBLAS at 2 threads, as before;
`one_pool(True)`: OpenBLAS at 1 thread, each 2-D GEMM split in Numba's prange), timing the step's
wall and CPU time and each kernel family (kernels.matmul and every Numba kernel). With --gemms it
first times the step's GEMM shapes alone, back to back, under both schemes. The parent runs one
child per (spin count, configuration), the spin counts rotated per round, and prints their
lines; "unset" means the process as `tune_process()` left it before this change (PASSIVE, no spin:
the OpenMP threads sleep at once).

--variants compares spin counts inside ONE process instead (the fairer test on a VM whose speed
moves between processes): libgomp reads GOMP_SPINCOUNT once, but keeps it in a variable that its
waiting threads read each time; the child starts with a marker count (10007), finds that variable
in libgomp's writable data (Linux, /proc/self/maps) and sets it before each step. Variants:
`main` (OpenBLAS's own 2 threads, no spin: the tree before the pool), `poolN` (the pool, spin N),
`blasN` (OpenBLAS's 2 threads, spin N); each round runs one step of each, rotated.

    flock /tmp/tgtf-cpu.lock .venv/bin/python bench/one_pool.py [--configs small,short] \\
        [--spins unset,10000] [--rounds 2] [--steps 10] [--gemms] [--dropout 0]
    flock /tmp/tgtf-cpu.lock .venv/bin/python bench/one_pool.py --variants main,pool10000 \\
        [--steps 30]
"""
import argparse
import collections
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

# The step's 2-D GEMMs (bench/gemm_calls.py's census): (a shape, a layout, b shape, b layout),
# "F" a transposed view. Forward rows @ W.T, input gradients grad @ W, weight gradients grad.T @ x.
GEMMS = [((1024, 128), "C", (128, 128), "F"), ((128, 1024), "F", (1024, 128), "C"),
         ((1024, 128), "C", (128, 512), "F"), ((1024, 512), "C", (512, 128), "C"),
         ((128, 1024), "F", (1024, 512), "C"), ((1280, 256), "C", (256, 256), "F"),
         ((256, 1280), "F", (1280, 256), "C"), ((1280, 256), "C", (256, 1024), "F"),
         ((1280, 1024), "C", (1024, 256), "C"), ((1024, 1280), "F", (1280, 256), "C")]


def time_gemms(np, kernels, threads, rounds=4, calls=20):
    """Each GEMM alone, back to back, both schemes alternated per round: median us per call."""
    rng = np.random.default_rng(0)

    def operand(shape, layout):
        x = rng.standard_normal(shape[::-1] if layout == "F" else shape).astype(np.float32)
        return x.T if layout == "F" else x
    pairs = [(operand(*g[:2]), operand(*g[2:])) for g in GEMMS]
    times = collections.defaultdict(list)
    for r in range(rounds):
        for pool in ((False, True) if r % 2 == 0 else (True, False)):
            threads.one_pool(pool)
            for i, (a, b) in enumerate(pairs):
                kernels.matmul(a, b)
                for _ in range(calls):
                    started = time.perf_counter()
                    kernels.matmul(a, b)
                    times[pool, i].append(time.perf_counter() - started)
    for i, g in enumerate(GEMMS):
        (m, k), n = g[0], g[2][1]
        two, one = (1e6 * float(np.median(times[p, i])) for p in (False, True))
        print(f"    gemm {m}x{k}x{n} {g[1]}{g[3]}: OpenBLAS 2 threads {two:7.1f} us, "
              f"pool {one:7.1f} us ({one / two:.2f}x; {2e-3 * m * k * n / one:.0f} GFLOP/s)")


MARKER = 10007  # the GOMP_SPINCOUNT a --variants child starts with, to find libgomp's variable


def spin_count_variable():
    """libgomp's spin-count variable (a ctypes c_ulonglong over it), found by MARKER."""
    import ctypes
    import re
    found = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and "libgomp" in fields[5] and fields[1].startswith("rw"):
                low, high = (int(x, 16) for x in fields[0].split("-"))
                data = ctypes.string_at(low, high - low)
                found += [low + m.start() for m in re.finditer(
                    re.escape(MARKER.to_bytes(8, "little")), data) if m.start() % 8 == 0]
    if len(found) != 1:
        raise RuntimeError(f"libgomp's spin count: {len(found)} candidates, expected one")
    return ctypes.c_ulonglong.from_address(found[0])


def child(config, steps, gemms, variants=None, dropout=0.0):
    from train_step import build_model, make_batch, ours_step, pin_threads
    pin_threads(2)
    import numpy as np

    from tinygrad_tf import kernels
    from tinygrad_tf.kernels import _jit, threads
    tuned = kernels.tune_process()
    if gemms:
        time_gemms(np, kernels, threads)
    spin = None
    if variants:
        kernels._matmul.matmul_numba(np.ones((64, 64), np.float32), np.ones((64, 64), np.float32))
        spin = spin_count_variable()  # libgomp is loaded by the first parallel kernel

    spent = collections.defaultdict(float)  # kernel family -> seconds in the current step
    lazy_call, matmul_call = _jit.LazyKernel.__call__, kernels.matmul.current

    def timed_lazy(self, *args, work):
        started = time.perf_counter()
        try:
            return lazy_call(self, *args, work=work)
        finally:
            spent[self.name] += time.perf_counter() - started

    def timed_matmul(a, b):  # the whole kernels.matmul call, the pool's kernel inside it too
        started = time.perf_counter()
        try:
            return matmul_call(a, b)
        finally:
            spent["kernels.matmul"] += time.perf_counter() - started
    _jit.LazyKernel.__call__ = timed_lazy
    kernels.matmul.current = timed_matmul

    step = ours_step(build_model(config, dropout), make_batch(config))
    if variants:
        return alternate(np, threads, step, spin, spent, config, dropout, steps, variants)
    for pool in (False, True):
        threads.one_pool(pool)
        step(), step()
    wall, cpu = collections.defaultdict(list), collections.defaultdict(list)
    per = {p: collections.defaultdict(list) for p in (False, True)}
    for r in range(steps):
        for pool in ((False, True) if r % 2 == 0 else (True, False)):
            threads.one_pool(pool)
            spent.clear()
            started, cpu_started = time.perf_counter(), time.process_time()
            step()
            wall[pool].append(time.perf_counter() - started)
            cpu[pool].append(time.process_time() - cpu_started)
            for name, seconds in spent.items():
                per[pool][name].append(seconds)
    ms = {p: 1e3 * float(np.median(wall[p])) for p in (False, True)}
    faster = float(np.mean(np.array(wall[True]) < np.array(wall[False])))
    print(f"{tuned['omp_spin_count'] or 'unset':>7} {config:6} step ms: OpenBLAS 2 threads "
          f"{ms[False]:7.2f} (CPU {1e3 * np.median(cpu[False]):7.2f}), pool {ms[True]:7.2f} "
          f"(CPU {1e3 * np.median(cpu[True]):7.2f}): {ms[True] / ms[False]:.3f}x, pool faster "
          f"in {faster:.0%} of steps", flush=True)
    names = sorted(per[False], key=lambda n: -np.median(per[False][n]))[:8]
    print("        " + ", ".join(f"{n.lstrip('_')[:22]} {1e3 * np.median(per[False][n]):.2f}/"
                                 f"{1e3 * np.median(per[True][n] or [0]):.2f}" for n in names))


def alternate(np, threads, step, spin, spent, config, dropout, rounds, variants):
    """One step per variant per round (rotated), libgomp's spin count set before each."""
    def settings(variant):  # (pool on, spin count)
        if variant == "main":
            return False, 0
        kind = "pool" if variant.startswith("pool") else "blas"
        return kind == "pool", int(float(variant[4:] or 0))
    for variant in variants:
        threads.one_pool(settings(variant)[0])
        spin.value = settings(variant)[1]
        step(), step()
    wall, cpu = collections.defaultdict(list), collections.defaultdict(list)
    per = {v: collections.defaultdict(list) for v in variants}
    for r in range(rounds):
        for variant in variants[r % len(variants):] + variants[:r % len(variants)]:
            pool, count = settings(variant)
            threads.one_pool(pool)
            spin.value = count
            spent.clear()
            started, cpu_started = time.perf_counter(), time.process_time()
            step()
            wall[variant].append(time.perf_counter() - started)
            cpu[variant].append(time.process_time() - cpu_started)
            for name, seconds in spent.items():
                per[variant][name].append(seconds)
    base = variants[0]
    print(f"{config}, dropout {dropout}, {rounds} rounds: median ms per step (CPU ms), ratio to "
          f"{base}, share of rounds faster than {base}")
    for v in variants:
        ms = 1e3 * float(np.median(wall[v]))
        faster = float(np.mean(np.array(wall[v]) < np.array(wall[base])))
        print(f"  {v:12} {ms:8.2f} ({1e3 * np.median(cpu[v]):8.2f})  "
              f"{ms / (1e3 * np.median(wall[base])):.3f}x  {faster:.0%}")
    names = sorted(per[base], key=lambda n: -np.median(per[base][n]))[:8]
    print("  per kernel: " + "; ".join(n.lstrip("_")[:22] + " " + "/".join(
        f"{1e3 * np.median(per[v][n] or [0]):.2f}" for v in variants) for n in names))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="small,short")
    parser.add_argument("--spins", default="unset,10000",
                        help="GOMP_SPINCOUNT per child process; unset: no spin (PASSIVE)")
    parser.add_argument("--rounds", type=int, default=2, help="child processes per cell")
    parser.add_argument("--steps", type=int, default=10, help="steps per scheme per child")
    parser.add_argument("--gemms", action="store_true", help="time the GEMMs alone first")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--variants", help="main,poolN,blasN,... alternated in one process "
                        "per configuration (see above); --steps is then the rounds")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    variants = args.variants.split(",") if args.variants else None
    if args.child:
        return child(args.child, args.steps, args.gemms, variants, args.dropout)
    if variants:
        for config in args.configs.split(","):
            env = dict(os.environ, GOMP_SPINCOUNT=str(MARKER))
            subprocess.run([sys.executable, __file__, "--child", config, "--steps",
                            str(args.steps), "--variants", args.variants, "--dropout",
                            str(args.dropout)], env=env, check=True)
        return
    spins = args.spins.split(",")
    for r in range(args.rounds):
        for spin in spins[r % len(spins):] + spins[:r % len(spins)]:
            for config in args.configs.split(","):
                env = dict(os.environ)
                env.pop("GOMP_SPINCOUNT", None)
                if spin == "unset":
                    env["GOMP_SPINCOUNT"] = "0"  # tune_process keeps a count of the user's
                else:
                    env["GOMP_SPINCOUNT"] = spin
                subprocess.run([sys.executable, __file__, "--child", config, "--steps",
                                str(args.steps), "--dropout", str(args.dropout)]
                               + (["--gemms"] if args.gemms else []), env=env, check=True)


if __name__ == "__main__":
    main()
