"""torch.nn.modules.transformer (the Transformer family): the same classes as tinygrad_tf.nn."""
from tinygrad_tf.nn import *  # noqa: F401,F403
