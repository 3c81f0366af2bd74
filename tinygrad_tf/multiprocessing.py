"""torch.multiprocessing: Python's multiprocessing (tensors are numpy arrays and pickle as
such; no shared-memory tensor passing), plus torch's `spawn(fn, args, nprocs)`."""
from multiprocessing import *  # noqa: F401,F403
import multiprocessing as _mp


def spawn(fn, args=(), nprocs=1, join=True, daemon=False, start_method="spawn"):
    """Run fn(i, *args) in `nprocs` processes (i = 0..nprocs-1); with join, wait and raise if
    one failed."""
    context = _mp.get_context(start_method)
    processes = [context.Process(target=fn, args=(i,) + tuple(args), daemon=daemon)
                 for i in range(nprocs)]
    for p in processes:
        p.start()
    if not join:
        return processes
    for p in processes:
        p.join()
    failed = [i for i, p in enumerate(processes) if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"spawn: process {failed[0]} exited with code "
                           f"{processes[failed[0]].exitcode}")
    return None
