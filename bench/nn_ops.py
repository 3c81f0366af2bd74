"""Fused nn ops vs PyTorch on Transformer-sized shapes: forward, and forward + backward.

    flock /tmp/tgtf-cpu.lock .venv/bin/python bench/nn_ops.py [--repeat 30]

Each time is the best of --repeat runs after warm-up (the least disturbed by other processes on
a shared machine), ours and torch's measured in alternation, in float32, on whatever kernel set
`tinygrad_tf.kernels` has active (TINYGRAD_TF_KERNELS). --torch-threads sets torch's intra-op
threads (default: torch's own choice). Without torch only our columns print.
"""
import argparse
import time

import numpy as np

import tinygrad_tf as tg
from tinygrad_tf import Tensor, kernels
from tinygrad_tf.nn import functional as F

try:
    import torch
    import torch.nn.functional as TF
except ImportError:
    torch = None


def best_ms(fns, repeat):
    """Best time in ms of each function in `fns`, run in alternation so load spikes hit all."""
    for fn in fns:  # warm-up (compiles, caches, first-touch allocations)
        fn()
        fn()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, record in zip(fns, times):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    return [1000 * min(record) for record in times]


def leaf(array):
    return Tensor(array.copy(), requires_grad=True)


def torch_leaf(array):
    return torch.tensor(array, requires_grad=True)


def cases():
    """(name, shape text, our forward, torch forward): each forward builds its leaves and
    returns the output, so forward+backward timing includes a fresh graph each run."""
    rng = np.random.default_rng(0)
    f32 = np.float32
    for d_model in (128, 256):
        x = rng.standard_normal((1024, d_model)).astype(f32)
        w, b = np.ones(d_model, f32), np.zeros(d_model, f32)
        yield ("layer_norm", f"(1024, {d_model})",
               lambda x=x, w=w, b=b: F.layer_norm(leaf(x), (x.shape[1],), leaf(w), leaf(b)),
               lambda x=x, w=w, b=b: TF.layer_norm(torch_leaf(x), (x.shape[1],), torch_leaf(w),
                                                   torch_leaf(b)))
    for vocab in (64, 1000):
        logits = rng.standard_normal((32, 32, vocab)).astype(f32)
        target = rng.integers(0, vocab, (32, 32))
        target[:, 28:] = 0  # padding positions, ignored
        yield ("cross_entropy", f"(32, 32, {vocab}) ls=0.1",
               lambda z=logits, t=target: F.cross_entropy(leaf(z.reshape(-1, z.shape[-1])),
                                                          t.reshape(-1), ignore_index=0,
                                                          label_smoothing=0.1),
               lambda z=logits, t=target: TF.cross_entropy(
                   torch_leaf(z).reshape(-1, z.shape[-1]), torch.tensor(t).reshape(-1),
                   ignore_index=0, label_smoothing=0.1))
    q, k, v = (rng.standard_normal((32, 4, 32, 32)).astype(f32) for _ in range(3))
    pad = np.ones((32, 1, 1, 32), dtype=bool)
    pad[:, :, :, 28:] = False  # True = take part (torch's convention)
    for label, mask, causal in (("padding mask", pad, False), ("causal", None, True)):
        yield ("sdpa", f"(32, 4, 32, 32) {label}",
               lambda m=mask, c=causal: F.scaled_dot_product_attention(
                   leaf(q), leaf(k), leaf(v), attn_mask=m, is_causal=c),
               lambda m=mask, c=causal: TF.scaled_dot_product_attention(
                   torch_leaf(q), torch_leaf(k), torch_leaf(v),
                   attn_mask=None if m is None else torch.tensor(m), is_causal=c))
    ids = rng.integers(0, 1000, (32, 32))
    table = rng.standard_normal((1000, 256)).astype(f32)
    yield ("embedding", "(32, 32) ids, (1000, 256)",
           lambda: F.embedding(ids, leaf(table)),
           lambda: TF.embedding(torch.tensor(ids), torch_leaf(table)))
    for shape in ((1024, 256), (1024, 1024)):
        x = rng.standard_normal(shape).astype(f32)
        yield ("dropout p=0.1", str(shape),
               lambda x=x: F.dropout(leaf(x), 0.1),
               lambda x=x: TF.dropout(torch_leaf(x), 0.1))


def forward_backward(forward, ones, backward):
    def run():
        out = forward()
        backward(out, ones(out))
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--torch-threads", type=int, default=None)
    args = parser.parse_args()
    tg.manual_seed(0)
    if torch is not None:
        torch.manual_seed(0)
        if args.torch_threads:
            torch.set_num_threads(args.torch_threads)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
              f"tinygrad_tf kernels: {kernels.active()}; best of {args.repeat}")
    else:
        print(f"torch not installed; tinygrad_tf kernels: {kernels.active()}")
    header = f"{'op':<15}{'shape':<30}{'fwd ms':>9}{'torch':>9}{'ratio':>7}" \
             f"{'fwd+bwd ms':>12}{'torch':>9}{'ratio':>7}"
    print(header)
    print("-" * len(header))
    ours_grad = lambda out: np.ones(out.shape, out.dtype)  # noqa: E731
    run_backward = lambda out, g: out.backward(g if out.ndim else None)  # noqa: E731
    for name, shape, ours, theirs in cases():
        ours_both = forward_backward(ours, ours_grad, run_backward)
        if torch is None:
            ours_fwd, ours_both = best_ms([ours, ours_both], args.repeat)
            print(f"{name:<15}{shape:<30}{ours_fwd:>9.3f}{'-':>16}{ours_both:>12.3f}")
            continue
        theirs_both = forward_backward(theirs, lambda out: torch.ones_like(out), run_backward)
        ours_fwd, torch_fwd, ours_both, torch_both = best_ms(
            [ours, theirs, ours_both, theirs_both], args.repeat)
        print(f"{name:<15}{shape:<30}{ours_fwd:>9.3f}{torch_fwd:>9.3f}"
              f"{ours_fwd / torch_fwd:>7.2f}{ours_both:>12.3f}{torch_both:>9.3f}"
              f"{ours_both / torch_both:>7.2f}")
    print("ratio = ours / torch (below 1: ours is faster)")


if __name__ == "__main__":
    main()
