"""Learning-rate schedules under their older name: tinygrad_tf.optim.lr_scheduler re-exported.

`LambdaLR` is torch's: lr = base_lr * lr_lambda(n) for the n-th scheduler step (n = 0 at
construction). `TransformerLR` is the warm-up schedule of "Attention Is All You Need" (section
5.3): the learning rate rises linearly for `warmup_steps` steps, then decays as 1/sqrt(step).
"""
from tinygrad_tf.optim.lr_scheduler import (CosineAnnealingLR, LambdaLR, LinearLR, LRScheduler,
                                            OneCycleLR, StepLR, TransformerLR, transformer_lr)

__all__ = ["LRScheduler", "LambdaLR", "StepLR", "CosineAnnealingLR", "LinearLR", "OneCycleLR",
           "TransformerLR", "transformer_lr"]
