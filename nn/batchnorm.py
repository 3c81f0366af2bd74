"""Batch normalization (Ioffe & Szegedy, 2015), torch's BatchNorm1d/2d/3d and
functional.batch_norm, composed of Tensor ops: in training the batch's statistics normalise (and
are differentiated through) and update the running ones; in eval the running ones normalise.
"""
import numpy as np

from tinygrad_tf import no_grad
from tinygrad_tf.device import check as _check_device

from . import init
from .module import Module, Parameter


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """(x - mean) / sqrt(var + eps) * weight + bias per channel (dim 1). With training=True (or
    no running statistics) mean and var are the batch's, over every dim but 1 (var biased), and
    running_mean/var move towards them by `momentum` (var unbiased there, as torch's)."""
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expects (N, C, ...) input, got shape {input.shape}")
    dims = (0,) + tuple(range(2, input.ndim))
    channel_shape = (1, -1) + (1,) * (input.ndim - 2)
    if training or running_mean is None:
        count = input.numel() // input.shape[1]
        if training and count <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, "
                             f"got input of shape {input.shape}")
        mean = input.mean(dims, keepdim=True)
        centered = input - mean
        var = (centered * centered).mean(dims, keepdim=True)
        if training and running_mean is not None:
            with no_grad():
                running_mean.mul_(1 - momentum).add_(mean.detach().reshape(-1) * momentum)
                unbiased = var.detach().reshape(-1) * (count / max(count - 1, 1))
                running_var.mul_(1 - momentum).add_(unbiased * momentum)
    else:
        centered = input - running_mean.reshape(*channel_shape)
        var = running_var.reshape(*channel_shape)
    out = centered / (var + eps).sqrt()
    if weight is not None:
        out = out * weight.reshape(*channel_shape)
    if bias is not None:
        out = out + bias.reshape(*channel_shape)
    return out


class _BatchNorm(Module):
    """The layer behind BatchNorm1d/2d/3d (which differ only in the input dims they accept)."""
    _dims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, device=None, dtype=None, *, bias=True):
        super().__init__()
        _check_device(device, type(self).__name__)
        dtype = np.dtype(np.float32 if dtype is None else dtype)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Parameter(np.ones(num_features, dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype)) if affine and bias else None
        for name in ("weight", "bias"):
            if getattr(self, name) is None:
                self.register_parameter(name, None)
        if track_running_stats:
            from tinygrad_tf import tensor
            self.register_buffer("running_mean", tensor(np.zeros(num_features, dtype)))
            self.register_buffer("running_var", tensor(np.ones(num_features, dtype)))
            self.register_buffer("num_batches_tracked", tensor(np.array(0, np.int64)))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def reset_running_stats(self):
        if self.track_running_stats:
            with no_grad():
                self.running_mean.zero_()
                self.running_var.fill_(1)
                self.num_batches_tracked.zero_()

    def reset_parameters(self):
        self.reset_running_stats()
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input):
        if input.ndim not in self._dims:
            raise ValueError(f"{type(self).__name__}: expected {' or '.join(map(str, self._dims))}"
                             f"-D input, got shape {input.shape}")
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            with no_grad():
                self.num_batches_tracked.add_(1)
            if self.momentum is None:  # a cumulative moving average
                momentum = 1.0 / int(self.num_batches_tracked.item())
        # without running statistics (track_running_stats=False) the batch's normalise in eval too
        return batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                          self.training, momentum, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None or not self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L) inputs."""
    _dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) inputs."""
    _dims = (4,)


class BatchNorm3d(_BatchNorm):
    """Batch norm over (N, C, D, H, W) inputs."""
    _dims = (5,)
