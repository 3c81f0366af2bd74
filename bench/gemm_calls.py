"""Every matmul of one training step, with its layout, timed alone against the GEMM roof.

Runs bench/train_step.py's step (its configurations and data), records each `kernels.matmul`
call of one step (operand shapes, strides, C/F-contiguity, dtype, the caller) and then times
each distinct call alone, on fresh operands of the same shapes and strides, with OpenBLAS at the
step's thread count (wall time) and, per core, from one thread's CPU time (a clock that other
processes on a shared machine barely move): OpenBLAS, the Numba GEMM and OpenBLAS computing the
transposed product, each beside its roof (a large float32 GEMM); and cold, right after a pass
that writes 4 MB (more than a Zen 4 core's 1 MB L2) or 64 MB (more than its 32 MB L3) of other
memory, to test whether the calls' in-step loss is cold operands. Also counted: the copies
`np.ascontiguousarray` made of non-contiguous activations during the step (they sit in front of
the GEMMs).

    flock /tmp/tgtf-heavy.lock .venv/bin/python bench/gemm_calls.py [--config small] [--threads 2]
"""
import argparse
import collections
import ctypes
import glob
import os
import sys
import time


def openblas_config(np):
    """numpy's bundled OpenBLAS: its version, build and the kernel it picked for this CPU."""
    libs = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in glob.glob(os.path.join(libs, "*openblas*")):
        lib = ctypes.CDLL(path)  # already loaded by numpy: the same library
        for prefix, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", ""),
                               ("openblas", "64_"), ("openblas", "")):
            config = getattr(lib, f"{prefix}_get_config{suffix}", None)
            core = getattr(lib, f"{prefix}_get_corename{suffix}", None)
            if config is not None and core is not None:
                config.restype = core.restype = ctypes.c_char_p
                return f"{config().decode()}, kernel {core().decode()}"
    return "BLAS: not numpy's bundled OpenBLAS"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small", help="tiny, small, medium or short")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30, help="timings per call (best kept)")
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(__file__))
    from train_step import pin_threads
    pin_threads(args.threads)

    import numpy as np

    from tinygrad_tf import kernels
    from tinygrad_tf.kernels import threads as thread_counts
    kernels.tune_process()

    from train_step import CONFIGS, build_model, make_batch, ours_step

    step = ours_step(build_model(args.config, args.dropout), make_batch(args.config))

    for _ in range(3):
        step()

    calls, copies = [], collections.Counter()
    matmul_entry, original_copy = kernels.matmul, np.ascontiguousarray

    def layout(x):
        flags = "C" if x.flags.c_contiguous else "F" if x.flags.f_contiguous else "-"
        return x.shape, tuple(s // x.itemsize for s in x.strides), flags

    def caller():
        frame = sys._getframe(2)
        while frame and ("kernels" in frame.f_code.co_filename
                         or frame.f_code.co_filename.endswith("xp.py")):
            frame = frame.f_back
        return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_code.co_name}"

    def recording(a, b):
        calls.append((layout(a), layout(b), a.dtype.name, caller()))
        return matmul_impl(a, b)

    def counting_copy(x, *rest, **kw):
        x_arr = np.asarray(x)
        if not x_arr.flags.c_contiguous:
            copies[(caller(), x_arr.shape)] += 1
        return original_copy(x, *rest, **kw)

    matmul_impl = matmul_entry.current
    matmul_entry.current = recording
    np.ascontiguousarray = counting_copy
    try:
        step()
    finally:
        matmul_entry.current = matmul_impl
        np.ascontiguousarray = original_copy

    # The same calls inside real steps, one thread: each call's CPU time where it runs (its
    # operands just written by other kernels), and the whole step's, on the same clock.
    in_step, steps_1 = collections.Counter(), 3
    thread_counts.set_threads(1)

    def timed(a, b):
        started = time.thread_time()
        out = matmul_impl(a, b)
        in_step[(layout(a), layout(b), a.dtype.name, caller())] += time.thread_time() - started
        return out

    step()
    matmul_entry.current = timed
    step_cpu = []
    try:
        for _ in range(steps_1):
            started = time.thread_time()
            step()
            step_cpu.append(time.thread_time() - started)
    finally:
        matmul_entry.current = matmul_impl
        thread_counts.set_threads(args.threads)

    print(f"config {args.config} {CONFIGS[args.config]}, dropout {args.dropout}, "
          f"{args.threads} threads; numpy {np.__version__}; {openblas_config(np)}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}")

    rng = np.random.default_rng(0)

    def operand(shape, strides, dtype):
        # a fresh array with the recorded strides: a view of a larger buffer where needed
        span = 1 + sum((n - 1) * abs(s) for n, s in zip(shape, strides)) if shape else 1
        base = rng.standard_normal(span).astype(dtype)
        return np.lib.stride_tricks.as_strided(
            base, shape, tuple(s * base.itemsize for s in strides))

    def best_after(fn, evict, repeats, clock=time.thread_time):
        # fn timed alone right after a write pass over `evict`: its operands, output and
        # OpenBLAS's packing buffers pushed out of the caches that `evict` overflows
        times = []
        for _ in range(repeats):
            evict += 1
            started = clock()
            fn()
            times.append(clock() - started)
        return min(times)

    def best(fn, repeats, clock=time.perf_counter):
        fn()
        times = []
        for _ in range(repeats):
            started = clock()
            fn()
            times.append(clock() - started)
        return min(times)

    # One thread's CPU time (its own clock) barely moves when other processes take the cores,
    # so on a shared machine the 1-thread columns compare kernels where wall times cannot.
    cpu = time.thread_time
    numba_gemm = kernels.REGISTRY["matmul"].implementations["numba"]
    big = rng.standard_normal((2048, 2048)).astype(np.float32)
    evict_l2, evict_l3 = np.zeros(2 ** 20, np.float32), np.zeros(2 ** 24, np.float32)
    roof = 2 * 2048 ** 3 / best(lambda: np.matmul(big, big), 5) / 1e9
    thread_counts.set_threads(1)  # OpenBLAS's and Numba's counts
    roof_1 = 2 * 2048 ** 3 / best(lambda: np.matmul(big, big), 5, cpu) / 1e9
    thread_counts.set_threads(args.threads)
    print(f"roof: {roof:.0f} GFLOP/s wall at {args.threads} threads, {roof_1:.0f} per core "
          "(one thread's CPU time) (float32 2048^3 np.matmul)")

    grouped = collections.Counter(calls)
    total_time = total_flops = total_1 = total_numba = total_swapped = total_step = 0.0
    total_l2 = total_l3 = 0.0
    print(f"\n{len(calls)} matmul calls in one step, {len(grouped)} distinct. GFLOP/s: wall "
          f"at {args.threads} threads; then per core, from one thread's CPU time: OpenBLAS, "
          "the Numba GEMM, OpenBLAS computing the transposed product (b.T @ a.T).T, and "
          "OpenBLAS inside the step (one thread), alone after a 4 MB and a 64 MB write pass")
    print(f"{'n':>3} {'A shape':>16} {'A strides':>14} {'':1} {'B shape':>13} {'B strides':>12} "
          f"{'':1} {'caller':34} {'wall us':>8} {'GF/s':>5} {'1t us':>7} {'GF/s':>5} "
          f"{'numba':>5} {'swap':>5} {'step':>5} {'4MB':>5} {'64MB':>5}")
    for (la, lb, dtype, where), count in sorted(grouped.items(), key=lambda kv: kv[0][3]):
        a, b = operand(la[0], la[1], dtype), operand(lb[0], lb[1], dtype)
        m, k = la[0][-2], la[0][-1]
        n = lb[0][-1]
        batch = int(np.prod(np.broadcast_shapes(la[0][:-2], lb[0][:-2])))
        flops = 2 * batch * m * n * k
        t = best(lambda: matmul_impl(a, b), args.repeats)
        thread_counts.set_threads(1)
        t1 = best(lambda: matmul_impl(a, b), args.repeats, cpu)
        tn = best(lambda: numba_gemm(a, b), args.repeats, cpu)
        ts = best(lambda: np.swapaxes(matmul_impl(np.swapaxes(b, -1, -2),
                                                  np.swapaxes(a, -1, -2)), -1, -2),
                  args.repeats, cpu)
        t_l2 = best_after(lambda: matmul_impl(a, b), evict_l2, args.repeats)
        t_l3 = best_after(lambda: matmul_impl(a, b), evict_l3, max(3, args.repeats // 5))
        thread_counts.set_threads(args.threads)
        total_l2 += count * t_l2
        total_l3 += count * t_l3
        total_time += count * t
        total_1 += count * t1
        total_numba += count * tn
        total_swapped += count * ts
        t_step = in_step[(la, lb, dtype, where)] / steps_1 / count
        total_step += count * t_step
        total_flops += count * flops
        print(f"{count:>3} {str(la[0]):>16} {str(la[1]):>14} {la[2]:1} {str(lb[0]):>13} "
              f"{str(lb[1]):>12} {lb[2]:1} {where:34} {1e6 * t:8.0f} {flops / t / 1e9:5.0f} "
              f"{1e6 * t1:7.0f} {flops / t1 / 1e9:5.0f} {flops / tn / 1e9:5.0f} "
              f"{flops / ts / 1e9:5.0f} {flops / t_step / 1e9:5.0f} {flops / t_l2 / 1e9:5.0f} "
              f"{flops / t_l3 / 1e9:5.0f}")
    print(f"\nthe step's {total_flops / 1e9:.2f} GFLOP of matmul, each call alone: wall "
          f"{1e3 * total_time:.1f} ms at {args.threads} threads "
          f"({total_flops / total_time / 1e9:.0f} GFLOP/s; the floor at the roof "
          f"{1e3 * total_flops / roof / 1e9:.1f} ms); per core (CPU time, one thread): "
          f"OpenBLAS {total_flops / total_1 / 1e9:.0f} GFLOP/s, Numba GEMM "
          f"{total_flops / total_numba / 1e9:.0f}, transposed products "
          f"{total_flops / total_swapped / 1e9:.0f}, inside the step "
          f"{total_flops / total_step / 1e9:.0f}, alone after a 4 MB write pass "
          f"{total_flops / total_l2 / 1e9:.0f}, after a 64 MB one "
          f"{total_flops / total_l3 / 1e9:.0f} (roof {roof_1:.0f})")
    step_ms, floor_1 = 1e3 * float(np.median(step_cpu)), 1e3 * total_flops / roof_1 / 1e9
    print(f"one thread, CPU time: the step {step_ms:.1f} ms, its matmuls {1e3 * total_step:.1f} ms "
          f"({100 * total_step / step_ms * 1e3:.0f}%), the matmul floor at the per-core roof "
          f"{floor_1:.1f} ms: the step is {step_ms / floor_1:.2f}x its GEMM floor")
    if copies:
        print("\nnp.ascontiguousarray copies of non-contiguous arrays in one step:")
        for (where, shape), count in copies.most_common():
            print(f"{count:>3} {str(shape):>20} {where}")


if __name__ == "__main__":
    main()
