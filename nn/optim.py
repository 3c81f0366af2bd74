"""nn.optim: the optimizers of tinygrad_tf.optim under their older name (kept for existing code).

They have torch's update rules, hyper-parameters and state_dict format, and update a flat
parameter arena with one fused kernel per parameter group (see tinygrad_tf/optim/).
"""
from tinygrad_tf.optim import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad"]
