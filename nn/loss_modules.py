"""The losses as Modules, with torch.nn's names and constructor arguments (in torch's order, so
positional calls port unchanged). Class weights are buffers, as torch's."""
import numpy as np

from tinygrad_tf import Tensor

from . import losses
from .module import Module


def _check_legacy(name, size_average, reduce):
    # torch's deprecated pair; accepting and ignoring them would silently change the reduction
    if size_average is not None or reduce is not None:
        raise ValueError(f"{name}: size_average and reduce are deprecated in torch and not "
                         "supported here; use reduction='mean' | 'sum' | 'none'")


class _WeightedLoss(Module):
    def __init__(self, weight, size_average, reduce, reduction):
        super().__init__()
        _check_legacy(type(self).__name__, size_average, reduce)
        if weight is not None and not isinstance(weight, Tensor):
            weight = Tensor(np.asarray(weight))
        self.register_buffer("weight", weight)
        self.reduction = reduction

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class CrossEntropyLoss(_WeightedLoss):
    """Module form of functional.cross_entropy (torch's layout: classes at dim 1)."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean", label_smoothing=0.0):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, input, target):
        return losses.cross_entropy(input, target, self.weight, self.ignore_index,
                                    self.reduction, self.label_smoothing)

    def extra_repr(self):
        return (f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
                f"label_smoothing={self.label_smoothing}")


class NLLLoss(_WeightedLoss):
    """Module form of functional.nll_loss."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean"):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return losses.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class BCELoss(_WeightedLoss):
    """Module form of functional.binary_cross_entropy."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(weight, size_average, reduce, reduction)

    def forward(self, input, target):
        return losses.binary_cross_entropy(input, target, self.weight, self.reduction)


class BCEWithLogitsLoss(_WeightedLoss):
    """Module form of functional.binary_cross_entropy_with_logits."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean",
                 pos_weight=None):
        super().__init__(weight, size_average, reduce, reduction)
        if pos_weight is not None and not isinstance(pos_weight, Tensor):
            pos_weight = Tensor(np.asarray(pos_weight))
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input, target):
        return losses.binary_cross_entropy_with_logits(input, target, self.weight,
                                                       self.reduction, self.pos_weight)


class _Loss(Module):
    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__()
        _check_legacy(type(self).__name__, size_average, reduce)
        self.reduction = reduction

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class MSELoss(_Loss):
    """Module form of functional.mse_loss."""

    def forward(self, input, target):
        return losses.mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    """Module form of functional.l1_loss."""

    def forward(self, input, target):
        return losses.l1_loss(input, target, self.reduction)


class SmoothL1Loss(_Loss):
    """Module form of functional.smooth_l1_loss."""

    def __init__(self, size_average=None, reduce=None, reduction="mean", beta=1.0):
        super().__init__(size_average, reduce, reduction)
        self.beta = beta

    def forward(self, input, target):
        return losses.smooth_l1_loss(input, target, self.reduction, self.beta)


class HuberLoss(_Loss):
    """Module form of functional.huber_loss."""

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(None, None, reduction)
        self.delta = delta

    def forward(self, input, target):
        return losses.huber_loss(input, target, self.reduction, self.delta)


class KLDivLoss(_Loss):
    """Module form of functional.kl_div."""

    def __init__(self, size_average=None, reduce=None, reduction="mean", log_target=False):
        super().__init__(size_average, reduce, reduction)
        self.log_target = log_target

    def forward(self, input, target):
        return losses.kl_div(input, target, self.reduction, self.log_target)
