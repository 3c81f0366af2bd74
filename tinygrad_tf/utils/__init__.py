"""torch.utils: `tinygrad_tf.utils.data` (datasets, samplers, DataLoader) and `utils.checkpoint`."""
from . import data  # noqa: F401
from . import checkpoint  # noqa: F401,E402
