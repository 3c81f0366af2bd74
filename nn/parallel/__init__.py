"""torch.nn.parallel.DistributedDataParallel over tinygrad_tf.distributed's MPI ranks."""
import contextlib

from tinygrad_tf import distributed as _dist
from tinygrad_tf.nn.module import Module


class DistributedDataParallel(Module):
    """torch's DDP: wraps `module` (now `ddp.module`, so state_dict keys start with "module."),
    gives every rank rank 0's parameters at construction, and during backward averages each
    parameter's gradient over the ranks (one in-place Allreduce per parameter, from a gradient
    hook) so `loss.backward(); optimizer.step()` needs nothing more. `no_sync()` skips the
    averaging (gradient accumulation). device_ids/output_device are accepted for the CPU only.

    tinygrad_tf.distributed.DistributedDataParallel is the faster, explicit variant: one
    Allreduce over a flat buffer, called as `ddp.sync_gradients()`."""

    def __init__(self, module, device_ids=None, output_device=None, dim=0,
                 broadcast_buffers=True, process_group=None, bucket_cap_mb=None,
                 find_unused_parameters=False, **kwargs):
        super().__init__()
        for ids in (device_ids or []), [output_device] if output_device is not None else []:
            for d in ids:
                if d not in ("cpu",) and not (hasattr(d, "type") and d.type == "cpu"):
                    raise RuntimeError(f"DistributedDataParallel: device {d!r}: tinygrad_tf runs "
                                       "on the CPU only; leave device_ids=None")
        _dist.init()
        self.module = module
        _dist.broadcast_parameters(module)
        self._syncing = True
        self._unsynced = set()  # ids of parameters with local gradients from no_sync blocks
        self._handles = []
        if _dist.world_size() > 1:
            for p in module.parameters():
                if p.requires_grad:
                    self._handles.append(p.register_hook(self._averager(p)))

    def _averager(self, p):
        def average(grad):
            if not self._syncing:
                self._unsynced.add(id(p))
                return None
            array = grad.array.copy()  # the hook's array may be shared with other gradients
            local = None
            if id(p) in self._unsynced and p.grad is not None:
                # what no_sync accumulated joins this reduction: .grad ends up the average
                local = p.grad.array
                array += local
                self._unsynced.discard(id(p))
            _dist.all_reduce(array, "sum")
            array /= _dist.world_size()
            if local is not None:
                array -= local  # backward adds the returned gradient to .grad
            return type(grad)._wrap(array)
        return average

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Gradients computed inside the block stay local and accumulate; the next backward
        outside it averages the accumulated sum over the ranks, as torch's."""
        self._syncing = False
        try:
            yield
        finally:
            self._syncing = True


class DataParallel(Module):
    def __init__(self, *args, **kwargs):
        raise RuntimeError("nn.DataParallel splits batches over GPUs; tinygrad_tf has none. Use "
                           "the module itself, or DistributedDataParallel over MPI ranks")

__all__ = ["DistributedDataParallel", "DataParallel"]
