"""torch.backends flags: accepted and kept (so `torch.backends.cudnn.benchmark = True` runs),
with no effect on a CPU-only framework. `mps` and `cuda` report not available."""
import types

cudnn = types.SimpleNamespace(enabled=False, benchmark=False, deterministic=False,
                              allow_tf32=False, is_available=lambda: False)
cuda = types.SimpleNamespace(
    matmul=types.SimpleNamespace(allow_tf32=False, allow_fp16_reduced_precision_reduction=False),
    is_built=lambda: False)
mps = types.SimpleNamespace(is_available=lambda: False, is_built=lambda: False)
mkldnn = types.SimpleNamespace(enabled=False, is_available=lambda: False)
openmp = types.SimpleNamespace(is_available=lambda: True)
