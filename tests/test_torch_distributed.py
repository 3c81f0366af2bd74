"""torch.distributed's names over our MPI layer, nn.parallel.DistributedDataParallel at torch's
path (gradients averaged during backward, no sync call) and the DistributedSampler: a
torch-style DDP script gives the same weights on 2 ranks as on one process."""
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import distributed as dist
from tinygrad_tf import nn

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import tinygrad_tf as torch
    import tinygrad_tf.distributed as dist
    import tinygrad_tf.nn as nn
    from tinygrad_tf.nn.parallel import DistributedDataParallel as DDP
    from tinygrad_tf.utils.data import DataLoader, DistributedSampler, TensorDataset

    dist.init_process_group(backend="gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    x = torch.tensor(np.random.default_rng(0).standard_normal((32, 3)))
    y = x.sum(dim=1, keepdim=True) * 2
    model = DDP(nn.Linear(3, 1).double())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sampler = DistributedSampler(TensorDataset(x, y), shuffle=False)
    loader = DataLoader(TensorDataset(x, y), batch_size=8 // world, sampler=sampler)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for xb, yb in loader:
            opt.zero_grad()
            loss = ((model(xb) - yb) ** 2).mean()
            loss.backward()
            opt.step()
    total = torch.tensor([float(rank)])
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    dist.barrier()
    if rank == 0:
        np.savez(sys.argv[1], w=model.module.weight.numpy(), b=model.module.bias.numpy(),
                 total=total.numpy(), world=world)
    dist.destroy_process_group()
""")


def test_names_on_one_rank():
    dist.init_process_group("gloo")
    assert dist.is_initialized() and dist.get_rank() == 0 and dist.get_world_size() == 1
    t = tg.tensor([1.0, 2.0])
    assert dist.all_reduce(t, op=dist.ReduceOp.SUM) is t and t.tolist() == [1.0, 2.0]
    out = [tg.zeros(2)]
    dist.all_gather(out, t)
    assert out[0].tolist() == [1.0, 2.0]
    with pytest.raises(RuntimeError, match="nccl"):
        dist.init_process_group("nccl")
    with pytest.raises(RuntimeError, match="mpiexec"):
        dist.init_process_group("gloo", world_size=4, rank=0)
    with pytest.raises(NotImplementedError, match="async_op"):
        dist.all_reduce(t, async_op=True)


def test_torch_path_ddp_no_sync_on_one_rank():
    from tinygrad_tf.nn.parallel import DistributedDataParallel
    model = DistributedDataParallel(nn.Linear(2, 1))
    with model.no_sync():
        model(tg.ones(3, 2)).sum().backward()
    model(tg.ones(3, 2)).sum().backward()
    np.testing.assert_allclose(model.module.bias.grad.numpy(), [6.0])
    with pytest.raises(RuntimeError, match="CPU only"):
        DistributedDataParallel(nn.Linear(2, 1), device_ids=[0])


def _mpiexec():
    here = os.path.dirname(sys.executable)
    return shutil.which("mpiexec", path=here) or shutil.which("mpiexec")


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None or _mpiexec() is None,
                    reason="needs mpi4py and mpiexec: pip install 'tinygrad_tf[mpi]'")
def test_torch_style_ddp_script_two_ranks_equal_one(tmp_path):
    script = tmp_path / "ddp_script.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, NUMBA_NUM_THREADS="1", MPIEXEC_TIMEOUT="200")
    results = []
    for ranks in (None, 2):
        out = tmp_path / f"out{ranks}.npz"
        command = ([_mpiexec(), "-n", str(ranks)] if ranks else []) + [sys.executable,
                                                                       str(script), str(out)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=220, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        results.append(np.load(out))
    one, two = results
    assert int(one["world"]) == 1 and int(two["world"]) == 2 and two["total"][0] == 1.0
    np.testing.assert_allclose(two["w"], one["w"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(two["b"], one["b"], rtol=0, atol=1e-12)
