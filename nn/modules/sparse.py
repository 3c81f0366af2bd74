"""torch.nn.modules.sparse (Embedding): the same classes as tinygrad_tf.nn."""
from tinygrad_tf.nn import *  # noqa: F401,F403
