"""torch.utils: `tinygrad_tf.utils.data` (datasets, samplers, DataLoader)."""
from . import data  # noqa: F401
