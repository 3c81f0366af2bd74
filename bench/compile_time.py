"""Cold and warm start: `import tinygrad_tf` plus the first training steps of a small model.

Cold = an empty Numba cache (every kernel compiles); warm = the cache that the cold run left
(kernels load from disk). Each measurement runs in a fresh interpreter. The "model" uses engine
ops only (one attention block and an output projection, float32), so it exercises the same
kernels as the Transformer: 2-D linears, batched q @ k^T and attn @ v, softmax, log-softmax and
their backward passes. Target (kernels issue): warm import + first step under 3 s.

    flock /tmp/tgtf-cpu.lock .venv/bin/python bench/compile_time.py [--sets auto numpy]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, time
start = time.perf_counter()
import tinygrad_tf as tg
from tinygrad_tf import Tensor, kernels
imported = time.perf_counter()

tg.manual_seed(0)
B, T, D, H, V = 8, 32, 64, 4, 100   # batch, tokens, model width, heads, vocabulary
f32 = tg.float32
x = Tensor.randn(B, T, D, dtype=f32)
weights = [Tensor.randn(D, D, dtype=f32, requires_grad=True) for _ in range(3)]
w_out = Tensor.randn(D, V, dtype=f32, requires_grad=True)

def step():
    q, k, v = [(x @ w * 0.1).reshape(B, T, H, D // H).permute(0, 2, 1, 3) for w in weights]
    attention = (q @ k.transpose(-1, -2) * (D // H) ** -0.5).softmax(-1)   # (B, H, T, T)
    mixed = (attention @ v).permute(0, 2, 1, 3).reshape(B, T, D)
    loss = -(mixed @ w_out).log_softmax(-1).mean()
    loss.backward()
    return float(loss.array)

times = []
for _ in range(3):
    t = time.perf_counter()
    step()
    times.append(time.perf_counter() - t)
print(json.dumps({"import": imported - start, "steps": times, "set": kernels.active(),
                  "compiled": kernels.info()["compiled"]}))
"""


def run_child(kernel_set, cache_dir):
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir, "TINYGRAD_TF_KERNELS": kernel_set}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"compile_time: the {kernel_set} child failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", default=["auto", "numba", "numpy"])
    args = parser.parse_args()
    print("| kernel set | cache | import s | first step s | import + first step s | "
          "next steps s | Numba kernels compiled / loaded |")
    print("|---|---|---:|---:|---:|---:|---|")
    for kernel_set in args.sets:
        with tempfile.TemporaryDirectory(prefix="tgtf-numba-cache-") as cache_dir:
            for label in ("cold", "warm"):
                result = run_child(kernel_set, cache_dir)
                first, rest = result["steps"][0], result["steps"][1:]
                loaded = [f"{name}/{dtype}: {entry['source']} {entry['seconds']:.2f}s"
                          for name, by_dtype in result["compiled"].items()
                          for dtype, entry in by_dtype.items()]
                print(f"| {kernel_set} | {label} | {result['import']:.2f} | {first:.2f} | "
                      f"{result['import'] + first:.2f} | "
                      f"{' / '.join(f'{t:.3f}' for t in rest)} | {'; '.join(loaded) or '-'} |")


if __name__ == "__main__":
    main()
