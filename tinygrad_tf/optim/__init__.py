"""tinygrad_tf.optim: torch.optim's optimizers and schedules, over a flat parameter arena.

    from tinygrad_tf import optim
    optimizer = optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=1000)

Each optimizer packs its parameters, their gradients and its state into a few flat buffers
(`arena.py`) and updates a whole parameter group with one fused kernel call
(`tinygrad_tf/kernels/optim.py`). It depends on the engine alone (Tensor, autograd, kernels), so
it lives in the engine's package; `tinygrad_tf.nn.optim` and `nn.schedules` re-export it.
"""
from . import lr_scheduler
from .arena import Arena
from .optimizer import Optimizer
from .optimizers import SGD, Adagrad, Adam, AdamW, RMSprop

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Arena", "lr_scheduler"]
