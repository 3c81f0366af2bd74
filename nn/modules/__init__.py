"""torch.nn.modules and its submodules (`torch.nn.modules.loss`, `.linear`, `.rnn`...), so
imports by torch's full paths work: each submodule holds every tinygrad_tf.nn layer (a superset
of torch's split), plus the base classes code subclasses (`loss._Loss`, `module.Module`)."""
from tinygrad_tf.nn import *  # noqa: F401,F403
from tinygrad_tf.nn import __all__ as _nn_names
from . import (activation, container, dropout, flatten, linear, loss, module, normalization,  # noqa: F401
               rnn, sparse, transformer)

__all__ = list(_nn_names)
