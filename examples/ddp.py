"""Data-parallel training with tinygrad_tf.distributed: the same script on one process or K ranks.

    python examples/ddp.py                    # one process
    mpiexec -n 2 python examples/ddp.py       # two ranks, same result within float rounding

Each step every rank draws the same global batch (same seed), keeps the rows rank::K, and
backpropagates its share of the global mean loss; DistributedDataParallel then sums the
gradients over the ranks in one in-place Allreduce, so every rank takes the same optimizer step
as one process on the whole batch. --save writes the final parameters and the losses (the tests
compare a one-process run with a two-rank run this way).
"""
import argparse

import numpy as np

import tinygrad_tf
from tinygrad_tf import Tensor, nn
from tinygrad_tf import distributed as dist


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64, help="global batch rows (64)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--save", help="write parameters and losses to this .npz (rank 0)")
    args = parser.parse_args()
    dtype = np.dtype(args.dtype)

    dist.init()  # 1 rank unless started by mpiexec
    rank, size = dist.rank(), dist.world_size()
    tinygrad_tf.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32, dtype=dtype), nn.Tanh(), nn.Linear(32, 1, dtype=dtype))
    optimizer = nn.optim.Adam(model.parameters(), lr=1e-2)
    # Every rank starts from rank 0's parameters; gradients are reduced in the optimizer's arena.
    ddp = dist.DistributedDataParallel(model, optimizer=optimizer)

    data = np.random.default_rng(1)   # the same stream on every rank: the same global batches
    truth = np.array([[0.5], [-1.0], [0.25], [0.75]])
    losses = []
    for step in range(args.steps):
        x = data.normal(size=(args.batch, 4))
        y = np.sin(x @ truth)
        mine = slice(rank, None, size)                   # this rank's rows of the global batch
        prediction = ddp(Tensor(x[mine].astype(dtype)))
        # The global loss is sum over ALL rows / batch; each rank's share is its rows' sum.
        share = ((prediction - Tensor(y[mine].astype(dtype))) ** 2).sum() / args.batch
        optimizer.zero_grad()
        share.backward()
        ddp.sync_gradients(scale=1.0)   # the shares already add up to the global mean
        optimizer.step()
        loss = dist.all_reduce(np.array([share.item()]), "sum")[0]  # same value on every rank
        losses.append(loss)
        if rank == 0 and (step % 50 == 0 or step == args.steps - 1):
            print(f"step {step:4d}  loss {loss:.6f}  ({size} rank{'s' if size > 1 else ''})")
    if args.save and rank == 0:
        arrays = {name: p.array for name, p in model.named_parameters()}
        np.savez(args.save, losses=np.array(losses), world_size=size, **arrays)
    assert losses[-1] < losses[0] / 4, "the model should fit the batch"


if __name__ == "__main__":
    main()
