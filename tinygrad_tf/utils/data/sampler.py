"""torch.utils.data.sampler: the same names as tinygrad_tf.utils.data."""
from . import *  # noqa: F401,F403
from . import __all__  # noqa: F401
