"""Optimizer step time on a Transformer's parameters: per-parameter numpy loop vs the flat arena.

For the small and medium configurations of bench/train_step.py (float32, shared embeddings),
every parameter gets a random gradient and we time optimizer.step() alone (median of --steps):

    numpy loop    the pre-arena implementation: per parameter tensor, about 10 numpy calls with
                  out= buffers (Adam), written out below as `numpy_loop_adam` / `_sgd`
    arena numpy   tinygrad_tf.optim with kernels.use("numpy"): the numpy twins over each flat
                  group (a few whole-arena numpy calls)
    arena fused   tinygrad_tf.optim as shipped: one parallel Numba kernel per group
    torch         torch.optim (default for-loop, foreach=True, fused=True) in its own process

plus clip_grad_norm_ (per-parameter vdot loop vs the arena's one pass) and zero_grad.

    flock /work/cpu.lock .venv/bin/python bench/optim.py [--steps 50] [--threads 2]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

CONFIGS = {
    "small": dict(d_model=128, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=512),
    "medium": dict(d_model=256, n_heads=8, n_encoder_layers=3, n_decoder_layers=3, d_ff=1024),
}
VOCAB = 64
ADAM = dict(lr=1e-4, betas=(0.9, 0.98), eps=1e-9)


def parameter_shapes(name):
    from tinygrad_tf.models import Transformer, TransformerConfig
    config = TransformerConfig(VOCAB, VOCAB, share_embeddings=True, max_len=64, **CONFIGS[name])
    return [p.shape for p in Transformer(config).parameters()]


def median_ms(fn, steps):
    import numpy as np
    for _ in range(3):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def numpy_loop_adam(params, grads, state, step, lr, betas, eps):
    """Adam as the pre-arena code ran it: per tensor, in place, one scratch buffer."""
    import numpy as np
    beta1, beta2 = betas
    for p, g, (m, v, s) in zip(params, grads, state):
        np.subtract(g, m, out=s)
        s *= 1 - beta1
        m += s
        v *= beta2
        np.multiply(g, g, out=s)
        s *= 1 - beta2
        v += s
        np.sqrt(v, out=s)
        s /= math.sqrt(1 - beta2 ** step)
        s += eps
        np.divide(m, s, out=s)
        s *= lr / (1 - beta1 ** step)
        p -= s


def numpy_loop_sgd(params, grads, bufs, lr, momentum):
    for p, g, b in zip(params, grads, bufs):
        b *= momentum
        b += g
        p -= lr * b


def run_ours(name, steps):
    import numpy as np

    from tinygrad_tf import Tensor, kernels, nn, optim
    kernels.tune_process()  # as the tinygrad-tf command runs (docs/kernels.md)

    rng = np.random.default_rng(0)
    shapes = parameter_shapes(name)
    values = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) * 1e-2 for s in shapes]
    rows = {"tensors": len(shapes), "elements": int(sum(v.size for v in values))}

    params = [v.copy() for v in values]
    state = [(np.zeros_like(v), np.zeros_like(v), np.empty_like(v)) for v in values]
    counter = iter(range(1, 10**9))
    rows["adam numpy loop"] = median_ms(
        lambda: numpy_loop_adam(params, grads, state, next(counter), **ADAM), steps)
    bufs = [np.zeros_like(v) for v in values]
    rows["sgd numpy loop"] = median_ms(lambda: numpy_loop_sgd(params, grads, bufs, 0.1, 0.9),
                                       steps)
    rows["clip numpy loop"] = median_ms(
        lambda: math.sqrt(sum(float(np.vdot(g, g)) for g in grads)), steps)

    for kernel_set in ("numpy", "auto"):
        label = "arena numpy" if kernel_set == "numpy" else "arena fused"
        with kernels.use(kernel_set):
            for opt_name, make in (("adam", lambda ps: optim.Adam(ps, **ADAM)),
                                   ("adamw", lambda ps: optim.AdamW(ps, **ADAM)),
                                   ("sgd", lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9))):
                ps = [nn.Parameter(v.copy()) for v in values]
                optimizer = make(ps)
                for p, g in zip(ps, grads):
                    p.grad = Tensor(g.copy())
                optimizer.flat_grads()  # the gradients into the arena, as backward puts them
                rows[f"{opt_name} {label}"] = median_ms(optimizer.step, steps)
            if kernel_set == "auto":
                rows["clip arena fused"] = median_ms(
                    lambda: nn.utils.clip_grad_norm_(ps, 1e9), steps)
                rows["zero_grad(set_to_none=False) arena"] = median_ms(
                    lambda: optimizer.zero_grad(set_to_none=False), steps)
    return rows


def run_torch(name, steps, threads):
    import numpy as np
    import torch  # first, as a user would (parameter_shapes imports tinygrad_tf)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    shapes = parameter_shapes(name)
    rows = {"version": torch.__version__}
    for label, extra in (("adam torch for-loop", {"foreach": False}),
                         ("adam torch foreach", {"foreach": True}),
                         ("adam torch fused", {"fused": True}),
                         ("adamw torch foreach", {"foreach": True, "cls": "AdamW"}),
                         ("sgd torch foreach", {"foreach": True, "cls": "SGD"})):
        extra = dict(extra)
        cls = getattr(torch.optim, extra.pop("cls", "Adam"))
        ps = [torch.nn.Parameter(torch.tensor(rng.standard_normal(s).astype(np.float32)))
              for s in shapes]
        for p in ps:
            p.grad = torch.randn_like(p) * 1e-2
        kwargs = dict(lr=0.1, momentum=0.9) if cls is torch.optim.SGD else dict(ADAM)
        optimizer = cls(ps, **kwargs, **extra)
        rows[label] = median_ms(optimizer.step, steps)
    ps_grads = [p for p in ps]
    rows["clip torch"] = median_ms(lambda: torch.nn.utils.clip_grad_norm_(ps_grads, 1e9), steps)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", default="small,medium")
    parser.add_argument("--row", nargs=2, metavar=("FRAMEWORK", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        framework, name = args.row
        rows = run_ours(name, args.steps) if framework == "ours" else \
            run_torch(name, args.steps, args.threads)
        print(json.dumps(rows))
        return
    try:
        import torch  # noqa: F401
        frameworks = ["ours", "torch"]
    except ImportError:
        frameworks = ["ours"]
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads),
               OMP_NUM_THREADS=str(args.threads), NUMBA_NUM_THREADS=str(args.threads))
    print(f"optimizer step on a Transformer's float32 parameters, median of {args.steps} steps, "
          f"{args.threads} threads, each library in its own process")
    for name in args.configs.split(","):
        rows = {}
        for framework in frameworks:
            done = subprocess.run([sys.executable, __file__, "--row", framework, name, "--steps",
                                   str(args.steps), "--threads", str(args.threads)],
                                  capture_output=True, text=True, env=env)
            if done.returncode:
                sys.exit(f"{framework} {name} failed:\n{done.stderr}")
            rows.update(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"\n{name}: {rows.pop('tensors')} tensors, {rows.pop('elements'):,} elements"
              + (f", torch {rows.pop('version')}" if "version" in rows else ""))
        for label, ms in rows.items():
            print(f"  {label:<40}{ms:>8.3f} ms")


if __name__ == "__main__":
    main()
