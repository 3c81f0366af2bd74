"""A GPT-style model written with primitive ops, the way public code writes it: ours vs PyTorch.

    flock /tmp/tgtf-heavy.lock .venv/bin/python bench/primitive_gpt.py [--steps 30]
    .venv/bin/python bench/primitive_gpt.py --profile d64_T16     # cProfile of our step

The model code is ONE function of the library module (`build(torch, nn, F, ...)`), run
unchanged through tinygrad_tf and torch, as an import-swapped program would: attention from
a Linear to 3*d, split, view, transpose, q @ k^T scaled, masked_fill with a causal buffer,
softmax, dropout, @ v, transpose back, contiguous, view; an MLP with minGPT's tanh GELU in
elementwise ops; dropout 0.1 (attention, residuals, embeddings); pre-LayerNorm residual
blocks; no fused modules. One training step = forward, cross_entropy, zero_grad, backward,
AdamW step. Batch 32; the sizes are issue 20's (d 64-128, T 16-64).

Each library runs in its own process (`--only`) with one thread (NUMBA_NUM_THREADS,
OMP_NUM_THREADS, OPENBLAS_NUM_THREADS = 1, torch.set_num_threads(1)), so neither's threads
nor import-time settings touch the other. The time is the median step after warm-up steps.
"""
import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np

CASES = {  # name: (d_model, T, layers, heads)
    "d64_T16": (64, 16, 2, 4),
    "d64_T64": (64, 64, 2, 4),
    "d128_T32": (128, 32, 2, 4),
    "d128_T64": (128, 64, 2, 4),
}
BATCH, VOCAB, DROPOUT = 32, 65, 0.1
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "MKL_NUM_THREADS")


def build(torch, nn, F, d_model, block_size, n_layer, n_head):
    """The model, in the style of minGPT/nanoGPT, for either library."""

    class NewGELU(nn.Module):  # minGPT's: the tanh form, in primitive ops
        def forward(self, x):
            return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi)
                                               * (x + 0.044715 * torch.pow(x, 3.0))))

    class CausalSelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(d_model, 3 * d_model)
            self.c_proj = nn.Linear(d_model, d_model)
            self.attn_dropout = nn.Dropout(DROPOUT)
            self.resid_dropout = nn.Dropout(DROPOUT)
            self.n_head = n_head
            self.register_buffer("bias", torch.tril(torch.ones(block_size, block_size))
                                 .view(1, 1, block_size, block_size))

        def forward(self, x):
            B, T, C = x.size()
            q, k, v = self.c_attn(x).split(d_model, dim=2)
            k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            att = F.softmax(att, dim=-1)
            att = self.attn_dropout(att)
            y = att @ v
            y = y.transpose(1, 2).contiguous().view(B, T, C)
            return self.resid_dropout(self.c_proj(y))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(d_model)
            self.attn = CausalSelfAttention()
            self.ln_2 = nn.LayerNorm(d_model)
            self.c_fc = nn.Linear(d_model, 4 * d_model)
            self.gelu = NewGELU()
            self.c_proj = nn.Linear(4 * d_model, d_model)
            self.dropout = nn.Dropout(DROPOUT)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.dropout(self.c_proj(self.gelu(self.c_fc(self.ln_2(x)))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(VOCAB, d_model)
            self.wpe = nn.Embedding(block_size, d_model)
            self.drop = nn.Dropout(DROPOUT)
            self.h = nn.ModuleList([Block() for _ in range(n_layer)])
            self.ln_f = nn.LayerNorm(d_model)
            self.lm_head = nn.Linear(d_model, VOCAB, bias=False)

        def forward(self, idx, targets):
            b, t = idx.size()
            pos = torch.arange(0, t, dtype=torch.long).unsqueeze(0)
            x = self.drop(self.wte(idx) + self.wpe(pos))
            for block in self.h:
                x = block(x)
            logits = self.lm_head(self.ln_f(x))
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    return GPT()


def setup(library, case):
    d_model, T, layers, heads = CASES[case]
    if library == "torch":
        import torch
        from torch import nn
        from torch.nn import functional as F
        torch.set_num_threads(1)
    else:
        import tinygrad_tf as torch
        from tinygrad_tf import nn
        from tinygrad_tf.nn import functional as F
    torch.manual_seed(0)
    model = build(torch, nn, F, d_model, T, layers, heads)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    data = rng.integers(0, VOCAB, (BATCH, T + 1))
    x, y = torch.tensor(data[:, :-1]), torch.tensor(data[:, 1:])

    def step():
        loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


def measure(library, steps, warmup):
    times = {}
    for case in CASES:
        step = setup(library, case)
        for _ in range(warmup):
            step()
        samples = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            samples.append(time.perf_counter() - start)
        times[case] = statistics.median(samples) * 1e3
    return times


def profile(case, steps):
    import cProfile
    import pstats
    step = setup("ours", case)
    for _ in range(3):
        step()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        step()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(35)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per case")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--profile", choices=list(CASES), help="cProfile our step instead")
    parser.add_argument("--only", choices=["ours", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.profile:
        profile(args.profile, args.steps)
        return
    if args.only:
        print(json.dumps(measure(args.only, args.steps, args.warmup)))
        return
    env = dict(os.environ, **{name: "1" for name in THREAD_VARIABLES})
    results = {}
    libraries = ["ours"] + (["torch"] if importlib.util.find_spec("torch") else [])
    for library in libraries:
        done = subprocess.run([sys.executable, __file__, "--only", library, "--steps",
                               str(args.steps), "--warmup", str(args.warmup)],
                              capture_output=True, text=True, env=env)
        if done.returncode:
            sys.exit(f"{library} failed:\n{done.stderr}")
        results[library] = json.loads(done.stdout.strip().splitlines()[-1])
    header = f"{'ms per step (batch 32, 2 layers, 4 heads)':<44}{'ours':>10}"
    header += f"{'torch':>10}{'ours/torch':>12}" if "torch" in results else ""
    print(header)
    print("-" * len(header))
    for case, (d, T, _, _) in CASES.items():
        line = f"{f'd_model {d}, T {T}':<44}{results['ours'][case]:>10.2f}"
        if "torch" in results:
            t = results["torch"][case]
            line += f"{t:>10.2f}{results['ours'][case] / t:>12.2f}"
        print(line)


if __name__ == "__main__":
    main()
