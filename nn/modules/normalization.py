"""torch.nn.modules.normalization (LayerNorm, RMSNorm): the same classes as tinygrad_tf.nn."""
from tinygrad_tf.nn import *  # noqa: F401,F403
