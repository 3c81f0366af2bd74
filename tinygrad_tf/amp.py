"""torch.amp (and torch.cuda.amp): mixed precision. There is none here, so `autocast` runs its
block in the tensors' own dtypes and `GradScaler` passes losses and steps straight through, as
torch's do when disabled (torch also disables a CUDA GradScaler when CUDA is missing)."""
import contextlib
import warnings

_warned = set()


def _warn_once(message):
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, stacklevel=3)


class autocast(contextlib.ContextDecorator):
    """`with autocast(device_type, dtype=..., enabled=...):` -- runs the block unchanged (every
    op in the inputs' dtype); enabled=True warns once that no lower precision is used."""

    def __init__(self, device_type="cpu", dtype=None, enabled=True, cache_enabled=None):
        if enabled:
            _warn_once("autocast: tinygrad_tf has no mixed precision; the block runs in the "
                       "tensors' own dtypes (float32)")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class GradScaler:
    """torch's GradScaler with scaling off: scale(loss) is loss, step(optimizer) steps,
    unscale_ and update do nothing. enabled=True warns once (as torch's does without CUDA)."""

    def __init__(self, device="cuda", init_scale=2.0 ** 16, growth_factor=2.0,
                 backoff_factor=0.5, growth_interval=2000, enabled=True):
        if enabled:
            _warn_once("GradScaler is enabled, but tinygrad_tf has no mixed precision; "
                       "disabling (losses are not scaled)")

    def is_enabled(self):
        return False

    def scale(self, outputs):
        return outputs

    def unscale_(self, optimizer):
        pass

    def step(self, optimizer, *args, **kwargs):
        return optimizer.step(*args, **kwargs)

    def update(self, new_scale=None):
        pass

    def get_scale(self):
        return 1.0

    def state_dict(self):
        return {}

    def load_state_dict(self, state_dict):
        pass
