"""One training step (forward, loss, backward, Adam) of three model sizes, ours vs PyTorch.

Configurations (no padding; vocabulary 64, batch 32 sequences x 32 source and 32 target tokens
unless stated):
    tiny    the tiny preset (d_model 32, 4 heads, 2+2 layers, d_ff 64)
    small   d_model 128, 4 heads, 2+2 layers, d_ff 512
    medium  d_model 256, 8 heads, 3+3 layers, d_ff 1024
    short   d_model 256, 4 heads, 3+3 layers, d_ff 1024, vocabulary 48, batch 128 sequences x 10
            source and 10 target tokens: real small seq2seq tasks (words, commands, short
            sentences), where per-op overhead and attention's small matrices dominate
each with dropout 0.1 and 0. A step is the recipe's: logits, cross-entropy with label smoothing
0.1 (padding ignored), zero_grad, backward, Adam(0.9, 0.98, 1e-9). PyTorch runs the same
weights (tests/models/torch_transformer.py, built from torch.nn layers); both get --threads threads.

CPU ms: the process's CPU time per step (every thread). It barely moves when other processes take
the cores, so on a shared machine `--threads 1` compares the two libraries' work where wall times
cannot.

Every row runs in its own subprocess, so the two libraries' thread pools never meet and memory is
that row's alone. Memory: the peak resident set size (Linux VmHWM, reset through
/proc/self/clear_refs once the model is built) over the warm-up and timed steps, minus the
resident size at that point: what training adds to the model itself (gradients, Adam's moments,
activations, temporaries, allocator caches) and what each library sets up on its first step
(ours: Numba's JIT, about 41 MB once per process, the compiled kernels' code and the thread
pools' buffers; torch: its lazy first-call set-up). "step MB" is the peak of the timed steps
minus the resident size after the warm-up steps (VmHWM reset again): a warm step's own
activations and temporaries above what training keeps.

The GEMM roof is measured in the same run (a large float32 np.matmul in its own subprocess with
the same threads); each row prints its matmul FLOPs per step (forward + backward, counted from
the shapes) and our time over its floor (FLOPs / roof). --busy-neighbour runs every row beside a
Python spin loop (one busy core) and adds our one-thread step under that load, the ratio issue 10
item 7 bounds (default threads / one thread <= 1.2).

torch rows run under its default OpenMP wait policy and under OMP_WAIT_POLICY=ACTIVE (unless you
set the variable) and the faster counts. Our rows run tuned as `tinygrad-tf train` is
(`kernels.tune_process()`: OMP_WAIT_POLICY=PASSIVE, the allocator setting, adaptive threads);
torch rows do not call it (PASSIVE, read by torch's OpenMP runtime, made torch's small step 1.5x
slower in earlier runs of this benchmark, when importing tinygrad_tf set it). --native-blas unsets OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE for every child (this
machine forces the Haswell kernel on an AVX-512 CPU, which slows numpy's GEMMs, ours and the roof).

    flock /work/cpu.lock .venv/bin/python bench/train_step.py [--steps 20] [--threads 2] \\
        [--busy-neighbour] [--native-blas]
"""
import argparse
import json
import os
import subprocess
import sys
import time

CONFIGS = {
    "tiny": dict(d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64),
    "small": dict(d_model=128, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=512),
    "medium": dict(d_model=256, n_heads=8, n_encoder_layers=3, n_decoder_layers=3, d_ff=1024),
    "short": dict(d_model=256, n_heads=4, n_encoder_layers=3, n_decoder_layers=3, d_ff=1024),
}
VOCAB, BATCH, LENGTH = 64, 32, 32  # the default data shape
SHAPES = {"short": (48, 128, 10, 10)}  # config -> (vocab, batch, source length, target length)


def data_shape(name):
    """(vocab, batch, source length, target length) of a configuration's step."""
    return SHAPES.get(name, (VOCAB, BATCH, LENGTH, LENGTH))


def make_batch(name):
    """The step's vocabulary and int64 ids: (vocab, src, tgt_in, tgt_out flattened)."""
    import numpy as np
    vocab, batch, source, target = data_shape(name)
    rng = np.random.default_rng(0)
    src_ids = rng.integers(4, vocab, (batch, source))
    tgt_ids = rng.integers(4, vocab, (batch, target + 1))
    return vocab, src_ids, tgt_ids[:, :-1], tgt_ids[:, 1:].reshape(-1)


THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS")


def pin_threads(threads):
    """Re-run the calling script with its thread counts in the environment, unless they are
    already there: the libraries read them when they load, so this comes before any import."""
    if any(os.environ.get(name) != str(threads) for name in THREAD_VARIABLES):
        env = dict(os.environ, **{name: str(threads) for name in THREAD_VARIABLES})
        script = os.path.abspath(sys.argv[0])
        os.execve(sys.executable, [sys.executable, script] + sys.argv[1:], env)


def build_model(name, dropout):
    """The configuration's Transformer as every row builds it (seeded, tied embeddings)."""
    from tinygrad_tf import manual_seed
    from tinygrad_tf.models import Transformer, TransformerConfig
    manual_seed(0)
    vocab = data_shape(name)[0]
    return Transformer(TransformerConfig(vocab, vocab, dropout=dropout, share_embeddings=True,
                                         max_len=64, **CONFIGS[name]))


def ours_step(model, batch, record=None):
    """Our training step as the benchmarks here time it: forward, cross-entropy with label
    smoothing 0.1 (id 0 ignored), zero_grad, backward, Adam(0.9, 0.98, 1e-9). `batch` is
    make_batch's; `record(name)`, a context manager such as profiler.record, wraps the
    optimizer's two calls. Returns step(), which returns the loss."""
    import contextlib

    from tinygrad_tf import Tensor, nn
    from tinygrad_tf.nn import functional as F
    record = record or (lambda name: contextlib.nullcontext())
    vocab, src_ids, tgt_in_ids, tgt_out_ids = batch
    optimizer = nn.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
    src, tgt_in, tgt_out = Tensor(src_ids), Tensor(tgt_in_ids), Tensor(tgt_out_ids)

    def step():
        logits = model(src, tgt_in)
        loss = F.cross_entropy(logits.reshape(-1, vocab), tgt_out, ignore_index=0,
                               label_smoothing=0.1)
        with record("Optimizer.zero_grad"):
            optimizer.zero_grad()
        loss.backward()
        with record("Optimizer.step"):
            optimizer.step()
        return loss.item()
    return step


def _status_bytes(field):
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss():
    """Start a new peak-RSS measurement (Linux >= 4.0: writing 5 to clear_refs resets VmHWM)."""
    import gc
    gc.collect()
    with open("/proc/self/clear_refs", "w") as file:
        file.write("5")
    return _status_bytes("VmRSS")


def step_flops(name):
    """Matmul FLOPs (2 m n k per product) of one training step: forward, plus two products of
    the same size per forward product in backward (the gradients of both operands)."""
    c = CONFIGS[name]
    vocab, batch, source, target = data_shape(name)
    d, ff = c["d_model"], c["d_ff"]

    def attention_products(length, keys):  # q k^T and weights @ v, all heads
        return 2 * 2 * batch * length * keys * d

    def self_attention(tokens, length):
        return 2 * tokens * d * 3 * d + 2 * tokens * d * d + attention_products(length, length)

    def feed_forward(tokens):
        return 2 * 2 * tokens * d * ff

    src_tokens, tgt_tokens = batch * source, batch * target
    cross_attention = (2 * tgt_tokens * d * d * 2 + 2 * src_tokens * d * 2 * d  # q, W^O; k+v
                       + attention_products(target, source))
    forward = (c["n_encoder_layers"] * (self_attention(src_tokens, source)
                                        + feed_forward(src_tokens))
               + c["n_decoder_layers"] * (self_attention(tgt_tokens, target) + cross_attention
                                          + feed_forward(tgt_tokens))
               + 2 * tgt_tokens * d * vocab)  # the generator
    return 3 * forward


def gemm_roof(size=2048, repeats=7):
    """GFLOP/s of a large float32 np.matmul (the best of `repeats`): the floor's rate."""
    import numpy as np
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size)).astype(np.float32) for _ in range(2))
    np.matmul(a, b)
    best = min(_timed(lambda: np.matmul(a, b)) for _ in range(repeats))
    print(json.dumps({"gflops": 2 * size ** 3 / best / 1e9}))


def _timed(fn):
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run_row(framework, name, dropout, steps, threads):
    """Time `steps` training steps in this process; print one JSON line."""
    if framework == "torch":
        # This row builds our model only to copy its weights into torch's.
        import torch  # noqa: F401
    import numpy as np

    from tinygrad_tf import kernels
    if framework == "ours":
        kernels.tune_process()  # as `tinygrad-tf train` runs: before the first kernel

    batch = make_batch(name)
    vocab, src_ids, tgt_in, tgt_out = batch
    model = build_model(name, dropout)

    if framework == "ours":
        step = ours_step(model, batch)
        version = f"kernels {kernels.active()}"
    else:
        import torch
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "models"))
        from torch_transformer import from_ours
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        reference = from_ours(model, dtype=torch.float32).train()
        del model
        optimizer = torch.optim.Adam(reference.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
        src, tgt_in_t = torch.from_numpy(src_ids), torch.from_numpy(tgt_in)
        tgt_out_t = torch.from_numpy(tgt_out)

        def step():
            logits = reference(src, tgt_in_t)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), tgt_out_t,
                                                     ignore_index=0, label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return loss.item()
        version = f"torch {torch.__version__}, {torch.get_num_threads()} threads"

    before = _reset_peak_rss()  # model built; gradients and Adam's moments not yet
    jit_mb = None
    if framework == "ours":
        # Loading the first kernel from Numba's cache begins by setting up Numba's CPU target,
        # once per process (numba.core.caching's load_overload); done here, inside the window,
        # so its share of "ours MB" shows.
        from numba.core.registry import cpu_target
        cpu_target.target_context.refresh()
        jit_mb = (_status_bytes("VmRSS") - before) / 2**20
    for _ in range(3):  # warm-up: first-call allocations, kernel compiles, optimizer state
        step()
    first_peak = _status_bytes("VmHWM")
    warm = _reset_peak_rss()  # a warm step's own peak from here
    times, cpu_times = [], []
    for _ in range(steps):
        started, cpu_started = time.perf_counter(), time.process_time()
        loss = step()
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
    peak = max(first_peak, _status_bytes("VmHWM"))
    step_peak = _status_bytes("VmHWM")
    if framework == "ours":  # what kernels/threads.py settled on (None: never changed)
        version += f", adaptive threads at the end: {kernels.threads.current()}"
    print(json.dumps({"ms": 1e3 * float(np.median(times)), "ms_min": 1e3 * min(times),
                      "cpu_ms": 1e3 * float(np.median(cpu_times)),
                      "mem_mb": max(0, peak - before) / 2**20,
                      "step_mb": max(0, step_peak - warm) / 2**20, "jit_mb": jit_mb,
                      "loss": loss, "version": version}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per row (median)")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads for both: torch.set_num_threads, and OPENBLAS_NUM_THREADS / "
                        "NUMBA_NUM_THREADS for ours (2, this machine's cores)")
    parser.add_argument("--configs", default="tiny,small,medium,short")
    parser.add_argument("--busy-neighbour", action="store_true",
                        help="run every row beside a Python spin loop, and add our one-thread "
                        "step under that load")
    parser.add_argument("--native-blas", action="store_true",
                        help="unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE in every child: where "
                        "this machine forces an older OpenBLAS kernel (Haswell) on an AVX-512 CPU, "
                        "numpy's GEMMs (ours and the roof) run on the CPU's own kernel")
    parser.add_argument("--row", nargs=3, metavar=("FRAMEWORK", "CONFIG", "DROPOUT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--roof", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.roof:
        return gemm_roof()
    if args.row:
        framework, name, dropout = args.row
        return run_row(framework, name, float(dropout), args.steps, args.threads)

    try:
        import torch  # noqa: F401
        frameworks = ["ours", "torch"]
    except ImportError:
        frameworks = ["ours"]
    import numpy as np

    unset = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if args.native_blas else ()
    coretype = None if args.native_blas else os.environ.get("OPENBLAS_CORETYPE")

    def child(extra, threads, **more_env):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                   NUMBA_NUM_THREADS=str(threads), **more_env)
        for name in unset:
            env.pop(name, None)
        command = [sys.executable, __file__, *extra, "--steps", str(args.steps),
                   "--threads", str(threads)]
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode:
            sys.exit(f"{' '.join(extra)} failed:\n{done.stderr}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    spinner = None
    if args.busy_neighbour:  # one busy core: a pure-Python spin loop, as issue 10 describes
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        roof = child(["--roof"], args.threads)["gflops"]
        rows, versions = {}, {}
        for name in args.configs.split(","):
            for dropout in (0.1, 0.0):
                for framework in frameworks:
                    row = ["--row", framework, name, str(dropout)]
                    result = child(row, args.threads)
                    if framework == "torch" and "OMP_WAIT_POLICY" not in os.environ:
                        # Compare with torch at the faster of its default OpenMP wait policy
                        # and ACTIVE (a user may set either).
                        result["policy"] = "default"
                        active = child(row, args.threads, OMP_WAIT_POLICY="ACTIVE")
                        if active["ms"] < result["ms"]:
                            result = dict(active, policy="ACTIVE")
                    rows[framework, name, dropout] = result
                    versions[framework] = result["version"]
                if args.busy_neighbour:
                    rows["ours1", name, dropout] = child(["--row", "ours", name, str(dropout)], 1)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()

    print(f"training step: vocab {VOCAB}, batch {BATCH} x {LENGTH} source + {LENGTH} target "
          f"tokens (short: vocab {SHAPES['short'][0]}, batch {SHAPES['short'][1]} x "
          f"{SHAPES['short'][2]} + {SHAPES['short'][3]}), float32, median of {args.steps} steps "
          "after 3 warm-up steps")
    print(f"ours: numpy {np.__version__}, {versions['ours']}, OpenBLAS and Numba threads "
          f"{args.threads}; "
          + (versions.get("torch", "torch not installed")))
    print("OpenBLAS kernel: " + (f"OPENBLAS_CORETYPE={coretype} forced (see --native-blas)"
                                 if coretype else "the CPU's own (OPENBLAS_CORETYPE unset)"))
    policies = sorted({r.get("policy") for k, r in rows.items() if k[0] == "torch"} - {None})
    if policies:
        print("torch: the faster of its default OpenMP wait policy and OMP_WAIT_POLICY=ACTIVE per "
              f"row (used: {', '.join(policies)})")
    print(f"GEMM roof: {roof:.0f} GFLOP/s (float32 2048^3 np.matmul, {args.threads} threads)"
          + ("; every row beside a busy Python spin loop" if args.busy_neighbour else ""))
    header = (f"{'config':<8}{'dropout':>8}{'GFLOP':>7}{'floor ms':>9}{'ours ms':>9}"
              f"{'/floor':>7}{'torch ms':>10}{'ours/torch':>11}"
              f"{'min ours':>10}{'min torch':>10}"
              f"{'ours tok/s':>12}{'torch tok/s':>12}{'ours MB':>9}{'torch MB':>10}"
              f"{'ours step MB':>13}{'torch step MB':>14}"
              + (f"{'ours 1T ms':>11}{'ours/1T':>8}" if args.busy_neighbour else ""))
    print(header)
    print("-" * len(header))
    for name in args.configs.split(","):
        for dropout in (0.1, 0.0):
            ours = rows["ours", name, dropout]
            tokens = data_shape(name)[1] * data_shape(name)[3]
            flops = step_flops(name)
            floor_ms = flops / roof / 1e6
            line = (f"{name:<8}{dropout:>8}{flops / 1e9:>7.2f}{floor_ms:>9.1f}{ours['ms']:>9.1f}"
                    f"{ours['ms'] / floor_ms:>6.2f}x")
            theirs = rows.get(("torch", name, dropout))
            if theirs:
                line += f"{theirs['ms']:>10.1f}{ours['ms'] / theirs['ms']:>10.2f}x"
                line += f"{ours['ms_min']:>10.1f}{theirs['ms_min']:>10.1f}"
            else:
                line += f"{'-':>10}{'-':>11}{ours['ms_min']:>10.1f}{'-':>10}"
            line += f"{tokens / ours['ms'] * 1e3:>12,.0f}"
            line += f"{tokens / theirs['ms'] * 1e3:>12,.0f}" if theirs else f"{'-':>12}"
            line += f"{ours['mem_mb']:>9.1f}" + (f"{theirs['mem_mb']:>10.1f}" if theirs else
                                                 f"{'-':>10}")
            line += f"{ours['step_mb']:>13.1f}" + (f"{theirs['step_mb']:>14.1f}" if theirs else "")
            if args.busy_neighbour:
                one = rows["ours1", name, dropout]
                line += f"{one['ms']:>11.1f}{ours['ms'] / one['ms']:>7.2f}x"
            print(line)
    # CPU seconds (all the process's threads) barely move when other processes take the cores:
    # at --threads 1 they compare the two libraries' work where wall times on a shared machine
    # cannot (at more threads they include threads waiting for each other).
    cpu = []
    for name in args.configs.split(","):
        for dropout in (0.1, 0.0):
            ours, theirs = rows["ours", name, dropout], rows.get(("torch", name, dropout))
            cpu.append(f"{name} {dropout}: ours {ours['cpu_ms']:.1f}" + (
                f", torch {theirs['cpu_ms']:.1f}, ours/torch "
                f"{ours['cpu_ms'] / theirs['cpu_ms']:.2f}x" if theirs else ""))
    print("CPU ms per step (median; every thread of the row's process): " + "; ".join(cpu))
    print("ours MB includes Numba's one-time CPU-target set-up (its first kernel load): "
          + ", ".join(f"{name} {dropout}: {rows['ours', name, dropout]['jit_mb']:.1f} MB"
                      for name in args.configs.split(",") for dropout in (0.1, 0.0)))
    print("GFLOP: matmul work per step; floor: that work at the roof; /floor: ours over it; "
          "ours 1T: our step on one thread (same load)")
    print("ms: median wall time of one step (min: the fastest step); ours/torch < 1 means ours "
          "is faster; tok/s: target "
          "tokens per second; MB: peak RSS during the steps minus RSS after building the model "
          "(VmHWM reset via /proc/self/clear_refs; each row in its own subprocess; includes "
          "first-call runtime set-up: ours Numba's JIT and kernel code, torch's lazy init); step "
          "MB: peak RSS of the timed (warm) steps minus RSS after the warm-up steps")


if __name__ == "__main__":
    main()
