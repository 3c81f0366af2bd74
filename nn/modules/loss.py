"""torch.nn.modules.loss (CrossEntropyLoss, MSELoss... and _Loss): the same classes as tinygrad_tf.nn."""
from tinygrad_tf.nn import *  # noqa: F401,F403
from tinygrad_tf.nn import Module


class _Loss(Module):
    """Base class of torch's losses: keeps `reduction` ('mean', 'sum' or 'none')."""

    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__()
        if size_average is not None or reduce is not None:
            raise TypeError("_Loss: size_average and reduce are deprecated in torch and not "
                            "supported; use reduction=")
        self.reduction = reduction


class _WeightedLoss(_Loss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self.weight = weight
