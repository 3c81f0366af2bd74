"""Where a Hessian-vector product of a Transformer spends its time: phases, nodes, GEMM FLOPs.

bench/second_order.py's HVP (its configurations, batch, loss and v), split into its phases:
  forward    the loss (the graph the first gradient walks)
  grad+graph autograd.grad(loss, params, create_graph=True): the first backward, recorded
  <g, v>     the scalar sum(g * v)
  second     autograd.grad(<g, v>, params): the plain walk over everything above
For each phase: the median time, the ops recorded (Function.apply calls, by type), the ops a
plain backward walked, and the matmul FLOPs (2 m n k per kernels.matmul call: the fused
attention kernel's own products are not counted); beside them one plain gradient's. Then a
cProfile of --profiled HVPs (the Python functions with the most self time; Numba kernels'
time can land on the Python line that follows them).

    flock /tmp/tgtf-heavy.lock .venv/bin/python bench/profile_hvp.py [--config tiny]
"""
import argparse
import collections
import cProfile
import os
import pstats
import sys
import time


class _Counter:
    """A plugins.profiler / kernel_profiler stand-in: counts ops and matmul FLOPs, no timing."""

    def __init__(self, plugins):
        self.plugins = plugins
        self.ops, self.flops, self.walked = collections.Counter(), 0, 0

    def apply(self, cls, inputs, kwargs):
        self.ops[cls.__name__] += 1
        self.plugins.profiler = None
        try:
            return cls.apply(*inputs, **kwargs)
        finally:
            self.plugins.profiler = self

    def backward(self, ctx, grad):  # the plain walk's backwards count as ops walked
        self.walked += 1
        return ctx.backward(ctx, grad)

    def begin(self, name, kind):
        pass

    def end(self):
        pass

    def kernel(self, name, function, args, kwargs):
        if name == "matmul":
            a, b = args[0], args[1]
            m = a.shape[-2] if a.ndim > 1 else 1
            n = b.shape[-1] if b.ndim > 1 else 1
            batch = max(a[..., 0, 0].size if a.ndim > 2 else 1,
                        b[..., 0, 0].size if b.ndim > 2 else 1)
            self.flops += 2 * batch * m * n * a.shape[-1]
        return function(*args, **kwargs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--steps", type=int, default=10, help="timed repeats of each phase")
    parser.add_argument("--profiled", type=int, default=5, help="HVPs inside cProfile")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(__file__))
    from train_step import pin_threads
    pin_threads(args.threads)

    import numpy as np

    from tinygrad_tf import Tensor, kernels, plugins
    kernels.tune_process()
    from tinygrad_tf.autograd import grad
    from tinygrad_tf.nn import functional as F

    from train_step import CONFIGS, build_model, make_batch

    vocab, src_ids, tgt_in, tgt_out = make_batch(args.config)
    model = build_model(args.config, 0.0)
    params = list(model.parameters())
    rng = np.random.default_rng(1)
    v = [Tensor(rng.standard_normal(p.shape).astype(np.float32)) for p in params]
    src, tgt_in_t, tgt_out_t = Tensor(src_ids), Tensor(tgt_in), Tensor(tgt_out)

    def loss():
        logits = model(src, tgt_in_t)
        return F.cross_entropy(logits.reshape(-1, vocab), tgt_out_t, ignore_index=0,
                               label_smoothing=0.1)

    def phases(counted=None, plain=True):
        """One HVP, phase by phase, then one plain gradient: [(name, seconds)]."""
        out, state = [], {}
        steps = [("forward", lambda: loss()),
                 ("grad+graph", lambda: grad(state["forward"], params, create_graph=True)),
                 ("<g, v>", lambda: sum((g * d).sum() for g, d in zip(state["grad+graph"], v))),
                 ("second", lambda: grad(state["<g, v>"], params, allow_unused=True)),
                 ("plain fwd", lambda: loss()),
                 ("plain grad", lambda: grad(state["plain fwd"], params))][:6 if plain else 4]
        for name, step in steps:
            if counted is not None:
                counted[name] = _Counter(plugins)
                plugins.profiler = plugins.kernel_profiler = counted[name]
            started = time.perf_counter()
            state[name] = step()
            out.append((name, time.perf_counter() - started))
            plugins.profiler = plugins.kernel_profiler = None
        return out

    for _ in range(2):
        phases()
    times = collections.defaultdict(list)
    for _ in range(args.steps):
        for name, seconds in phases():
            times[name].append(seconds)
    counted = {}
    phases(counted)

    ms = {name: 1e3 * float(np.median(t)) for name, t in times.items()}
    hvp = sum(ms[n] for n in ("forward", "grad+graph", "<g, v>", "second"))
    gradient = ms["plain fwd"] + ms["plain grad"]
    print(f"HVP phases: {args.config} {CONFIGS[args.config]}, float32, {args.threads} threads, "
          f"medians of {args.steps}")
    print(f"{'phase':12} {'ms':>8} {'walked':>6} {'ops':>6} {'GFLOP':>7}  top ops recorded")
    for name in ms:
        c = counted[name]
        top = ", ".join(f"{k} {n}" for k, n in c.ops.most_common(8))
        print(f"{name:12} {ms[name]:8.2f} {c.walked:6d} {sum(c.ops.values()):6d} {c.flops / 1e9:7.3f}  {top}")
    print(f"HVP {hvp:.2f} ms (sum of phases), gradient {gradient:.2f} ms: ratio "
          f"{hvp / gradient:.2f}")

    profile = cProfile.Profile()
    profile.enable()
    for _ in range(args.profiled):
        phases(plain=False)
    profile.disable()
    print(f"\ncProfile of {args.profiled} HVPs (self time):")
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.rows)


if __name__ == "__main__":
    main()
