"""torch.nn.modules.activation (ReLU, GELU, Softmax, MultiheadAttention...): the same classes as tinygrad_tf.nn."""
from tinygrad_tf.nn import *  # noqa: F401,F403
