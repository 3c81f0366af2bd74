"""Attention: the packed-head kernels against their numpy twin and np.matmul, and in a step.

Part 1 times kernels.attention's forward and backward (numpy twin vs the fused Numba kernel) on
the small model's float32 blocks (B 32, T = S 32, h 4, d_k 32, causal mask), and one np.matmul of
the same (32, 4, 32, 32) @ (32, 4, 32, 32) shape for scale. Part 2 runs small-model training steps
(dropout 0) in one process, switching between three variants step by step so machine noise hits
all of them alike: the packed path on the twin, the packed path on the Numba kernel, and the
plain split-heads path (MultiHeadAttention.attention).

    flock /work/cpu.lock env OPENBLAS_NUM_THREADS=2 NUMBA_NUM_THREADS=2 \\
        .venv/bin/python bench/attention.py [--calls 200] [--rounds 7]
"""
import argparse
import time

import numpy as np

from tinygrad_tf import Tensor, kernels, manual_seed, nn
from tinygrad_tf.kernels import attention as ka
from tinygrad_tf.models import Transformer, TransformerConfig
from tinygrad_tf.models import transformer as tm
from tinygrad_tf.nn import functional as F


def median_us(fn, calls):
    fn()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1e6 * float(np.median(times))


def kernel_table(calls):
    rng = np.random.default_rng(0)
    B, T, H, E = 32, 32, 4, 32
    qkv = rng.standard_normal((B, T, 3, H, E)).astype(np.float32)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    fill = np.triu(np.ones((T, T), bool), 1)[None, None]
    grad = rng.standard_normal((B, T, H, E)).astype(np.float32)
    scale = 1 / np.sqrt(E)
    print(f"kernels.attention, float32 (B {B}, T = S {T}, h {H}, d_k {E}), causal, median of "
          f"{calls} calls")
    for name, forward, backward in (
            ("numpy twin", ka.attention_forward_numpy, ka.attention_backward_numpy),
            ("fused kernel", ka.attention_forward_fused, ka.attention_backward_fused)):
        _, weights = forward(q, k, v, fill, scale)
        grads = [np.empty_like(x) for x in (q, k, v)]
        f_us = median_us(lambda: forward(q, k, v, fill, scale), calls)
        b_us = median_us(lambda: backward(q, k, v, weights, grad, scale, *grads), calls)
        print(f"  {name:<14} forward {f_us:8.0f} us   backward {b_us:8.0f} us")
    a = np.ascontiguousarray(q.transpose(0, 2, 1, 3))
    b = np.ascontiguousarray(k.transpose(0, 2, 3, 1))
    print(f"  one np.matmul {a.shape} @ {b.shape}: {median_us(lambda: np.matmul(a, b), calls):.0f}"
          " us")


def step_table(rounds):
    manual_seed(0)
    config = TransformerConfig(64, 64, dropout=0.0, share_embeddings=True, max_len=64,
                               d_model=128, n_heads=4, n_encoder_layers=2, n_decoder_layers=2,
                               d_ff=512)
    model = Transformer(config)
    optimizer = nn.optim.Adam(model.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    src, tgt = Tensor(rng.integers(4, 64, (32, 32))), rng.integers(4, 64, (32, 33))
    tgt_in, tgt_out = Tensor(tgt[:, :-1]), Tensor(tgt[:, 1:].reshape(-1))

    def step():
        logits = model(src, tgt_in)
        loss = F.cross_entropy(logits.reshape(-1, 64), tgt_out, ignore_index=0,
                               label_smoothing=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    packed = tm.MultiHeadAttention.forward

    def plain(self, query, key, value, mask=None, kv=None):
        return self.w_o(self.attention(query, key, value, mask, kv))

    variants = {
        "packed path, numpy twin": (packed, ka.attention_forward_numpy,
                                    ka.attention_backward_numpy),
        "packed path, fused kernel": (packed, ka.attention_forward_fused,
                                      ka.attention_backward_fused),
        "plain split-heads path": (plain, ka.attention_forward_numpy,
                                   ka.attention_backward_numpy),
    }
    times = {name: [] for name in variants}
    saved = kernels.attention_forward, kernels.attention_backward
    try:
        for round_ in range(rounds + 1):
            for name, (forward, attention_forward, attention_backward) in variants.items():
                tm.MultiHeadAttention.forward = forward
                kernels.attention_forward = attention_forward
                kernels.attention_backward = attention_backward
                for _ in range(3 if round_ else 2):
                    started = time.perf_counter()
                    step()
                    if round_:  # round 0 warms every variant up
                        times[name].append(time.perf_counter() - started)
    finally:
        tm.MultiHeadAttention.forward = packed
        kernels.attention_forward, kernels.attention_backward = saved
    print(f"small model training step (dropout 0), variants interleaved, median of "
          f"{3 * rounds} steps each")
    for name, values in times.items():
        print(f"  {name:<28} {1e3 * float(np.median(values)):7.1f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    kernels.tune_process()  # as the tinygrad-tf command runs (docs/kernels.md)
    kernel_table(args.calls)
    step_table(args.rounds)


if __name__ == "__main__":
    main()
