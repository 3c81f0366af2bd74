"""A Hessian-vector product over one gradient, ours and PyTorch's, on Transformers.

One gradient: forward, cross-entropy (label smoothing 0.1, padding ignored), the parameters'
gradient (autograd.grad). One HVP: the same with create_graph=True, then the gradient of
<grad, v> for a fixed random v: H v. The configurations are bench/train_step.py's (float32,
dropout 0, same batch; torch's attention on its math backend, as its flash kernel has no
double backward); each library runs in its own subprocess (threads set by --threads for
both), the times are medians over --steps after warm-up. Issue 19's targets: HVP <= 4x one
gradient, and our HVP/gradient ratio <= 1.5x torch's. --clock process times each call by the
process's CPU time instead of the wall clock: with --threads 1 on a machine that other jobs
share, that counts our own work, not the time spent waiting for a core.

    flock /tmp/tgtf-heavy.lock .venv/bin/python bench/second_order.py [--steps 10] \\
        [--configs tiny,small] [--threads 2] [--clock wall|process]
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from train_step import CONFIGS, make_batch  # noqa: E402


def run_row(framework, name, steps, threads, clock="wall"):
    """Time gradients and HVPs in this process; print one JSON line."""
    if framework == "torch":
        import torch  # noqa: F401 (before tinygrad_tf, which only builds the weights here)
    import numpy as np

    from tinygrad_tf import Tensor, kernels, manual_seed
    if framework == "ours":
        kernels.tune_process()
    from tinygrad_tf.autograd import grad
    from tinygrad_tf.models import Transformer, TransformerConfig
    from tinygrad_tf.nn import functional as F

    manual_seed(0)
    vocab, src_ids, tgt_in, tgt_out = make_batch(name)
    config = TransformerConfig(vocab, vocab, dropout=0.0, share_embeddings=True, max_len=64,
                               **CONFIGS[name])
    model = Transformer(config)
    rng = np.random.default_rng(1)

    if framework == "ours":
        params = list(model.parameters())
        v = [Tensor(rng.standard_normal(p.shape).astype(np.float32)) for p in params]
        src, tgt_in_t, tgt_out_t = Tensor(src_ids), Tensor(tgt_in), Tensor(tgt_out)

        def loss():
            logits = model(src, tgt_in_t)
            return F.cross_entropy(logits.reshape(-1, vocab), tgt_out_t, ignore_index=0,
                                   label_smoothing=0.1)

        def gradient():
            return grad(loss(), params)

        def hvp():
            grads = grad(loss(), params, create_graph=True)
            return grad(sum((g * d).sum() for g, d in zip(grads, v)), params, allow_unused=True)
        version = f"kernels {kernels.active()}"
    else:
        import torch
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "models"))
        from torch_transformer import from_ours
        torch.set_num_threads(threads)
        reference = from_ours(model, dtype=torch.float32).train()
        del model
        params = list(reference.parameters())
        v = [torch.from_numpy(rng.standard_normal(tuple(p.shape)).astype(np.float32))
             for p in params]
        src, tgt_in_t = torch.from_numpy(src_ids), torch.from_numpy(tgt_in)
        tgt_out_t = torch.from_numpy(tgt_out)

        def loss():
            logits = reference(src, tgt_in_t)
            return torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), tgt_out_t,
                                                     ignore_index=0, label_smoothing=0.1)

        # torch's flash attention has no double backward: both use the math backend
        from torch.nn.attention import SDPBackend, sdpa_kernel

        def gradient():
            with sdpa_kernel(SDPBackend.MATH):
                return torch.autograd.grad(loss(), params)

        def hvp():
            with sdpa_kernel(SDPBackend.MATH):
                grads = torch.autograd.grad(loss(), params, create_graph=True)
                return torch.autograd.grad(sum((g * d).sum() for g, d in zip(grads, v)),
                                           params, allow_unused=True)
        version = f"torch {torch.__version__}, {torch.get_num_threads()} threads"

    now = time.perf_counter if clock == "wall" else time.process_time

    def median_ms(fn):
        for _ in range(2):
            fn()
        times = []
        for _ in range(steps):
            started = now()
            fn()
            times.append(now() - started)
        return 1e3 * float(np.median(times))

    grad_ms, hvp_ms = median_ms(gradient), median_ms(hvp)
    print(json.dumps({"grad_ms": grad_ms, "hvp_ms": hvp_ms, "version": version}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", default="tiny,small")
    parser.add_argument("--clock", default="wall", choices=("wall", "process"))
    parser.add_argument("--row", nargs=2, metavar=("FRAMEWORK", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        return run_row(*args.row, args.steps, args.threads, args.clock)
    try:
        import torch  # noqa: F401
        frameworks = ["ours", "torch"]
    except ImportError:
        frameworks = ["ours"]
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads),
               OMP_NUM_THREADS=str(args.threads), NUMBA_NUM_THREADS=str(args.threads))
    print(f"{'config':8} {'library':8} {'gradient ms':>12} {'HVP ms':>9} {'HVP/grad':>9}")
    for name in args.configs.split(","):
        ratios = {}
        for framework in frameworks:
            command = [sys.executable, __file__, "--row", framework, name, "--steps",
                       str(args.steps), "--threads", str(args.threads), "--clock", args.clock]
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode:
                sys.exit(f"{framework} {name} failed:\n{done.stderr}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            ratios[framework] = row["hvp_ms"] / row["grad_ms"]
            print(f"{name:8} {framework:8} {row['grad_ms']:12.1f} {row['hvp_ms']:9.1f} "
                  f"{ratios[framework]:9.2f}   ({row['version']})")
        if "torch" in ratios:
            print(f"{name:8} ours' HVP/grad ratio over torch's: "
                  f"{ratios['ours'] / ratios['torch']:.2f}")


if __name__ == "__main__":
    main()
