"""Data-parallel training over MPI (mpi4py): the same code runs as one process or as K ranks.

    from tinygrad_tf import distributed as dist
    dist.init()                                   # 1 rank without mpi4py or a launcher
    ddp = dist.DistributedDataParallel(model)     # broadcasts rank 0's parameters
    loss = ddp(x_shard, ...)...; loss.backward()
    ddp.sync_gradients()                          # ONE in-place Allreduce, averaged
    optimizer.step()

Launch with `mpiexec -n K python script.py`. MPI is used only when a launcher started us (its
environment variables say so): importing mpi4py initialises MPI, which a plain `python script.py`
should not pay for or be surprised by. Only mpi4py's buffer methods (Allreduce, Bcast) carry
arrays: its lowercase methods pickle, about 17x slower for 20 MB here (docs/distributed.md).

The engine does not import nn/: modules are duck-typed (anything with `.parameters()` yielding
Tensors works).
"""
import hashlib
import os
import sys
import time

import numpy as np

from .tensor import Tensor
from .versions import increment_version

# Variables that MPI launchers set in every rank: MPICH/Intel MPI/Slurm PMI, Open MPI, PMIx.
_LAUNCHER_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")
_OPS = ("sum", "max", "min", "mean")

_comm = None      # mpi4py's COMM_WORLD once init() found a launcher, else None
_MPI = None
_initialised = False


def _launched():
    forced = os.environ.get("TINYGRAD_TF_MPI")
    if forced is not None:
        return forced not in ("", "0")
    return any(name in os.environ for name in _LAUNCHER_VARIABLES)


def init():
    """Join the MPI job if a launcher started this process; returns the world size.

    Without mpiexec (or without mpi4py) this is one process of rank 0, silently. TINYGRAD_TF_MPI=1
    forces MPI on (e.g. a launcher we do not recognise), =0 forces it off. Under K > 1 ranks an
    uncaught exception aborts the whole job, so a failing rank never leaves the others waiting in
    a collective. Calling init() again does nothing."""
    global _comm, _MPI, _initialised
    if _initialised:
        return world_size()
    _initialised = True
    if not _launched():
        return 1
    try:
        from mpi4py import MPI
    except ImportError:
        # K copies of a one-process run would all write the same files: refuse.
        size = max(int(os.environ.get(name, "1") or 1)
                   for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"))
        if size > 1 or os.environ.get("TINYGRAD_TF_MPI") not in (None, "", "0"):
            raise ImportError(f"distributed.init: started by an MPI launcher (world size "
                              f"{size}) but mpi4py is not installed; pip install "
                              "'tinygrad_tf[mpi]'") from None
        return 1
    _MPI, _comm = MPI, MPI.COMM_WORLD
    if _comm.Get_size() > 1:
        _install_abort_hook()
    return world_size()


def rank():
    """This process's rank, 0..world_size()-1 (0 without MPI)."""
    return _comm.Get_rank() if _comm is not None else 0


def world_size():
    """The number of ranks (1 without MPI)."""
    return _comm.Get_size() if _comm is not None else 1


def is_distributed():
    return world_size() > 1


def barrier():
    """Wait until every rank gets here."""
    if _comm is not None:
        _comm.Barrier()


def abort(code=1):
    """End every rank of the job now with exit status `code` (a plain exit without MPI)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if _comm is not None and _comm.Get_size() > 1:
        # Give the launcher's I/O forwarding a moment: Abort tears the job down at once, and
        # a CI run lost the failing rank's traceback (empty stderr) without this pause.
        time.sleep(0.5)
        _comm.Abort(code)
    raise SystemExit(code)


def _install_abort_hook():
    previous = sys.excepthook

    def hook(kind, value, trace):
        # The default hook prints, then the interpreter's exit waits in MPI_Finalize for ranks
        # that wait for us in a collective: a hang. Abort ends them all within seconds.
        previous(kind, value, trace)
        abort(1)

    sys.excepthook = hook


# ---------------------------------------------------------------------------- collectives

def _array_of(value, op_name):
    if isinstance(value, Tensor):
        return value.array
    if isinstance(value, np.ndarray):
        return value
    raise TypeError(f"{op_name}: expected a Tensor or a numpy array, got {type(value).__name__}")


def _reduce_in_place(array, op):
    """Allreduce `array` in place (a contiguous copy is reduced and written back if needed)."""
    if op not in _OPS:
        raise ValueError(f"all_reduce: op must be one of {', '.join(_OPS)}, not {op!r}")
    if _comm is None or _comm.Get_size() == 1:
        return array
    if not array.flags.writeable:
        raise ValueError(f"all_reduce: the array of shape {array.shape} is read-only; the "
                         "reduction is written in place")
    contiguous = array if array.flags.c_contiguous else np.ascontiguousarray(array)
    mpi_op = {"sum": _MPI.SUM, "mean": _MPI.SUM, "max": _MPI.MAX, "min": _MPI.MIN}[op]
    _comm.Allreduce(_MPI.IN_PLACE, contiguous, op=mpi_op)
    if op == "mean":
        contiguous /= _comm.Get_size()
    if contiguous is not array:
        array[...] = contiguous
    increment_version(array)  # written in place: a backward that saved it must raise
    return array


def all_reduce(value, op="sum", group=None, async_op=False):
    """Reduce a Tensor's data or a numpy array over all ranks, in place; returns `value`.

    op: "sum", "mean", "max" or "min" (or torch's ReduceOp.SUM/AVG/MAX/MIN). Integer arrays
    with "mean" are rejected (the mean would not fit in place). group and async_op are torch's
    arguments, accepted at their defaults only."""
    if group is not None or async_op:
        raise NotImplementedError("all_reduce: process groups and async_op are not supported; "
                                  "every call reduces over all ranks, synchronously")
    array = _array_of(value, "all_reduce")
    if op == "mean" and not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"all_reduce: op='mean' needs a float array, got {array.dtype}")
    _reduce_in_place(array, op)
    return value


def broadcast(value, root=0, src=None, group=None, async_op=False):
    """Overwrite a Tensor's data or a numpy array, in place, with rank `root`'s (torch's
    keyword: `src`); returns it."""
    if src is not None:
        root = src
    array = _array_of(value, "broadcast")
    if _comm is None or _comm.Get_size() == 1:
        return value
    contiguous = array if array.flags.c_contiguous else np.ascontiguousarray(array)
    _comm.Bcast(contiguous, root=root)
    if contiguous is not array:
        array[...] = contiguous
    increment_version(array)
    return value


def broadcast_object(value, root=0):
    """Rank `root`'s small Python value (a run name, a flag) on every rank. Pickles: never use it
    for arrays of any size, use broadcast()."""
    if _comm is None or _comm.Get_size() == 1:
        return value
    return _comm.bcast(value, root=root)


def broadcast_parameters(module, root=0):
    """Give every rank rank `root`'s parameters (and buffers), in place, one Bcast per tensor."""
    tensors = list(module.parameters())
    if hasattr(module, "buffers"):
        tensors += [b for b in module.buffers() if np.issubdtype(b.array.dtype, np.number)]
    for tensor in tensors:
        broadcast(tensor, root=root)


def check_same(what, *parts):
    """Raise on every rank if the ranks disagree on `parts` (strings, bytes or numpy arrays).

    Compares a 63-bit hash by one Allreduce of (min, -max): every rank sees the same result, so
    every rank raises the same error instead of some waiting forever."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            part = np.ascontiguousarray(part).tobytes()
        elif isinstance(part, str):
            part = part.encode("utf-8")
        digest.update(part)
        digest.update(b"\0")
    value = int.from_bytes(digest.digest()[:8], "little") >> 1
    extremes = np.array([value, -value], dtype=np.int64)
    _reduce_in_place(extremes, "min")
    if extremes[0] != -extremes[1]:
        raise ValueError(f"distributed: the {world_size()} ranks disagree on {what} (rank "
                         f"{rank()} has hash {value:016x}); every rank must run the same command "
                         "on the same files")


# ---------------------------------------------------------------------------- gradients

class _FlatGradients:
    """One preallocated contiguous buffer per dtype holding every parameter's gradient, in
    `parameters()` order, so each dtype costs ONE Allreduce. Gradients are copied in (zeros for
    a parameter without one, so every rank's layout is the same) and the reduced values copied
    back into each .grad in place (a new .grad for a parameter only other ranks had one for)."""

    def __init__(self, parameters):
        self.parameters = [p for p in parameters if p.requires_grad]  # frozen ones never sync
        sizes = {}
        self.slots = []   # (parameter, dtype, start, stop)
        for p in self.parameters:
            dtype = p.array.dtype
            start = sizes.get(dtype, 0)
            sizes[dtype] = start + p.array.size
            self.slots.append((p, dtype, start, sizes[dtype]))
        self.buffers = {dtype: np.zeros(size, dtype) for dtype, size in sizes.items()}

    def used(self):
        return np.array([p.grad is not None for p, *_ in self.slots], np.uint8)

    def pack(self, used):
        for p, dtype, start, stop in self.slots:
            target = self.buffers[dtype][start:stop]
            if p.grad is None:
                target.fill(0)
            elif p.grad.array.shape != p.array.shape:
                raise ValueError(f"DistributedDataParallel: the gradient of a parameter of shape "
                                 f"{p.array.shape} has shape {p.grad.array.shape}")
            else:
                target.reshape(p.array.shape)[...] = p.grad.array
        return list(self.buffers.values())

    def unpack(self, used):
        for (p, dtype, start, stop), somewhere in zip(self.slots, used):
            if not somewhere:
                continue  # no rank had a gradient: it stays None, and optimizers skip it
            values = self.buffers[dtype][start:stop].reshape(p.array.shape)
            if p.grad is None:
                p.grad = Tensor(values)  # a copy: the buffer is reused next step
            else:
                p.grad.array[...] = values
                increment_version(p.grad)


class _ArenaGradients:
    """The optimizer's flat arena gradient buffers (tinygrad_tf.optim): backward already wrote
    the gradients into them, so nothing is copied; a parameter without a gradient here but with
    one on another rank gets a zero-filled slot as its .grad."""

    def __init__(self, optimizer, module):
        self.optimizer, self.module = optimizer, module
        optimizer.flat_grads(zero_fill=False, model=module)  # every parameter held: check now

    def used(self):
        return np.array([p.grad is not None for p in self.optimizer.layout_params()], np.uint8)

    def pack(self, used):
        return list(self.optimizer.flat_grads(model=self.module, used=used).values())

    def unpack(self, used):
        self.optimizer.scatter_flat_grads()  # into any .grad that is not a view of the buffers


def _flat_grads(parameters, optimizer=None, module=None):
    """THE place that decides how gradients become flat buffers: the optimizer's arena when
    there is one (no copies), else one packed buffer per dtype (_FlatGradients)."""
    if optimizer is not None and hasattr(optimizer, "flat_grads"):
        return _ArenaGradients(optimizer, module)
    return _FlatGradients(parameters)


class DistributedDataParallel:
    """(torch's hook-driven DDP, with no sync call, is tinygrad_tf.nn.parallel's.) Wrap a module for data-parallel training: rank 0's parameters are broadcast at
    construction; after backward, `sync_gradients()` sums every parameter's gradient over the
    ranks in ONE in-place Allreduce per dtype and multiplies by `scale` (default 1/world_size,
    the mean, as torch's DDP; pass scale=1.0 if each rank's loss is already its share of the
    global loss). Pass the module's `optimizer` (tinygrad_tf.optim) to reduce its flat gradient
    arena in place, with no packing copies. Calling the wrapper calls the module; other
    attributes are the module's."""

    def __init__(self, module, root=0, optimizer=None):
        init()
        self.module = module
        broadcast_parameters(module, root=root)
        # With the module's optimizer, the Allreduce runs on its flat gradient arena in place.
        self._flat = _flat_grads(module.parameters(), optimizer, module)

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def __getattr__(self, name):
        # Only reached for names the wrapper lacks; a typo still raises AttributeError.
        if name == "module":
            raise AttributeError(name)
        return getattr(self.module, name)

    def sync_gradients(self, scale=None):
        """All-reduce (sum) the gradients, then multiply them by `scale` once."""
        if scale is None:
            scale = 1.0 / world_size()
        # Which parameters have a gradient on some rank (one small Allreduce): the others keep
        # None, as with torch's find_unused_parameters=True, so optimizers skip them.
        used = self._flat.used()
        _reduce_in_place(used, "max")
        buffers = self._flat.pack(used)
        for buffer in buffers:
            _reduce_in_place(buffer, "sum")
            if scale != 1.0:
                buffer *= scale
        self._flat.unpack(used)


def rank_prefix():
    """"[rank r/K] " under several ranks, "" otherwise: for messages every rank prints."""
    return f"[rank {rank()}/{world_size()}] " if is_distributed() else ""


# ---------------------------------------------------------------------------- torch's names

class ReduceOp:
    """torch.distributed.ReduceOp: the op names all_reduce takes."""
    SUM, AVG, MAX, MIN = "sum", "mean", "max", "min"


_BACKENDS = ("mpi", "gloo", "nccl")


def init_process_group(backend=None, init_method=None, timeout=None, world_size=-1, rank=-1,
                       store=None, group_name="", pg_options=None, device_id=None):
    """torch.distributed.init_process_group: joins the MPI job (`init()`). Backends 'mpi' and
    'gloo' both mean MPI here (start the ranks with mpiexec, not torchrun); 'nccl' needs GPUs.
    A world_size or rank that disagrees with the launcher's raises."""
    name = str(backend or "mpi").split(":")[0].lower()
    if name == "nccl":
        raise RuntimeError("init_process_group: backend 'nccl' needs CUDA GPUs; tinygrad_tf runs "
                           "on the CPU: use backend='gloo' or 'mpi' (both MPI here, launched "
                           "with mpiexec -n K)")
    if name not in _BACKENDS:
        raise ValueError(f"init_process_group: unknown backend {backend!r}; expected 'mpi' or "
                         "'gloo'")
    init()
    for asked, actual, what in ((world_size, globals()["world_size"](), "world_size"),
                                (rank, globals()["rank"](), "rank")):
        if asked not in (-1, None) and int(asked) != actual:
            raise RuntimeError(f"init_process_group: {what}={asked}, but the MPI launcher gave "
                               f"{actual}; start the job with mpiexec -n K (not torchrun)")


def is_available():
    return True


def is_initialized():
    return _initialised


def is_mpi_available():
    return True


def get_rank(group=None):
    return rank()


def get_world_size(group=None):
    return world_size()


def get_backend(group=None):
    return "mpi"


def destroy_process_group(group=None):
    """Leave the process group; MPI itself finishes when the process exits."""
    global _initialised
    barrier()
    _initialised = False


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """torch's all_gather: tensor_list[r] gets rank r's `tensor` (same shape on every rank)."""
    array = np.ascontiguousarray(_array_of(tensor, "all_gather"))
    if len(tensor_list) != world_size():
        raise ValueError(f"all_gather: tensor_list has {len(tensor_list)} entries for "
                         f"{world_size()} ranks")
    if _comm is None or _comm.Get_size() == 1:
        gathered = array[None]
    else:
        gathered = np.empty((world_size(),) + array.shape, array.dtype)
        _comm.Allgather(array, gathered)
    for target, part in zip(tensor_list, gathered):
        _array_of(target, "all_gather")[...] = part
