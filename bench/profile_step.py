"""Where one training step of a Transformer spends its time: tinygrad_tf.profiler's table.

The step is bench/train_step.py's (its configurations and data shapes: vocabulary 64, batch 32 x
32 source and 32 target tokens, or short's 128 x 10 + 10 tokens, vocabulary 48; cross-entropy with label smoothing 0.1, zero_grad, backward, Adam). After 3 warm-up steps,
--steps steps run inside one profile; the table shows per-step figures (times and call counts
divided by the number of steps). A plain timed step without the profiler is printed first, so
the profiler's own cost is visible (the profiled wall time minus the plain one).

    flock /work/cpu.lock .venv/bin/python bench/profile_step.py [--config small] [--dropout 0.1]
"""
import argparse
import os
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small", help="tiny, small, medium or short")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=5, help="steps inside the profile")
    parser.add_argument("--threads", type=int, default=2, help="OpenBLAS and Numba threads")
    parser.add_argument("--sort", default="self", help="self, total, count or name")
    parser.add_argument("--rows", type=int, default=40, help="rows of the table to print")
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(__file__))
    from train_step import pin_threads
    pin_threads(args.threads)

    import numpy as np

    from tinygrad_tf import kernels, profiler
    kernels.tune_process()  # profile the step as `tinygrad-tf train` runs it

    from train_step import CONFIGS, build_model, data_shape, make_batch, ours_step

    step = ours_step(build_model(args.config, args.dropout), make_batch(args.config),
                     record=profiler.record)

    for _ in range(3):  # warm-up: kernel compiles, first allocations, Adam's state
        step()
    plain = []
    for _ in range(args.steps):
        started = time.perf_counter()
        step()
        plain.append(time.perf_counter() - started)
    with profiler.profile() as prof:
        for _ in range(args.steps):
            step()
    vocab, batch, source, target = data_shape(args.config)
    print(f"profile of one training step: {args.config} {CONFIGS[args.config]}, dropout "
          f"{args.dropout}, batch {batch} x {source}+{target} tokens, vocab {vocab}, float32, "
          f"kernels {kernels.active()!r}, {args.threads} threads")
    print(f"plain step (no profiler): median {1e3 * float(np.median(plain)):.2f} ms of "
          f"{args.steps}; profiled step: {1e3 * prof.wall / args.steps:.2f} ms")
    print(prof.table(sort_by=args.sort, row_limit=args.rows, per=args.steps))


if __name__ == "__main__":
    main()
