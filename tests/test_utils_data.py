"""tinygrad_tf.utils.data (issue 20): datasets, samplers, DataLoader, random_split and the
DistributedSampler, as torch.utils.data's; compared with torch where both are deterministic."""
import collections

import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf.utils import data
from tinygrad_tf.utils.data import (BatchSampler, DataLoader, Dataset, DistributedSampler,
                                    IterableDataset, RandomSampler, SequentialSampler,
                                    TensorDataset, default_collate, random_split)


class Squares(Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        return {"x": np.full(2, i, np.float32), "y": i * i}


class Stream(IterableDataset):
    def __iter__(self):
        return iter(range(7))


def test_tensor_dataset_and_loader_batches():
    x, y = tg.arange(10).float().reshape(10, 1), tg.arange(10)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and [b[1].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7],
                                                                     [8, 9]]
    assert batches[0][0].shape == (4, 1) and batches[0][0].dtype == np.float32
    assert len(DataLoader(TensorDataset(x, y), batch_size=4, drop_last=True)) == 2
    with pytest.raises(ValueError, match="size mismatch"):
        TensorDataset(x, tg.arange(3))


def test_shuffle_with_a_generator_is_reproducible_and_a_permutation():
    ds = TensorDataset(tg.arange(20))

    def order(seed):
        loader = DataLoader(ds, batch_size=6, shuffle=True, generator=tg.Generator().manual_seed(seed))
        return [i for (b,) in loader for i in b.tolist()]
    assert order(1) == order(1) != order(2)
    assert sorted(order(1)) == list(range(20))
    tg.manual_seed(0)
    first = [b[0].tolist() for b in DataLoader(ds, batch_size=20, shuffle=True)]
    tg.manual_seed(0)
    assert first == [b[0].tolist() for b in DataLoader(ds, batch_size=20, shuffle=True)]


def test_dict_samples_collate_and_custom_collate_fn():
    batch = next(iter(DataLoader(Squares(), batch_size=3)))
    assert batch["x"].shape == (3, 2) and batch["y"].tolist() == [0, 1, 4]
    assert batch["y"].dtype == np.int64
    lengths = DataLoader(Squares(), batch_size=4, collate_fn=len)
    assert list(lengths) == [4, 4, 2]


def test_sampler_batch_sampler_and_no_batching():
    ds = TensorDataset(tg.arange(6))
    loader = DataLoader(ds, sampler=[5, 0, 3], batch_size=2)
    assert [b[0].tolist() for b in loader] == [[5, 0], [3]]
    bs = BatchSampler(SequentialSampler(range(5)), 2, drop_last=False)
    assert list(bs) == [[0, 1], [2, 3], [4]] and len(bs) == 3
    assert [b[0].tolist() for b in DataLoader(ds, batch_sampler=[[1, 2], [0]])] == [[1, 2], [0]]
    single = list(DataLoader(range(3), batch_size=None))
    assert single == [0, 1, 2]
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(ds, sampler=[0], shuffle=True)
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(ds, batch_sampler=[[0]], batch_size=2)


def test_iterable_dataset():
    assert [b.tolist() for b in DataLoader(Stream(), batch_size=3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert len(list(DataLoader(Stream(), batch_size=3, drop_last=True))) == 2
    with pytest.raises(ValueError, match="IterableDataset"):
        DataLoader(Stream(), shuffle=True)


def test_num_workers_warns_once_and_loads_in_process(recwarn):
    data._warned_workers = False
    a = [b[0].tolist() for b in DataLoader(TensorDataset(tg.arange(4)), batch_size=2, num_workers=2)]
    DataLoader(TensorDataset(tg.arange(4)), num_workers=3)
    assert a == [[0, 1], [2, 3]]
    assert len([w for w in recwarn if "num_workers" in str(w.message)]) == 1


def test_random_split_lengths_and_fractions():
    parts = random_split(range(10), [3, 7], generator=tg.Generator().manual_seed(0))
    assert [len(p) for p in parts] == [3, 7]
    assert sorted(list(parts[0]) + list(parts[1])) == list(range(10))
    assert [len(p) for p in random_split(range(11), [0.5, 0.5])] == [6, 5]
    with pytest.raises(ValueError, match="sum to"):
        random_split(range(10), [3, 3])


def test_random_sampler_replacement_and_num_samples():
    s = RandomSampler(range(5), num_samples=12, generator=tg.Generator().manual_seed(0))
    drawn = list(s)
    assert len(drawn) == len(s) == 12 and sorted(drawn[:10]) == sorted(list(range(5)) * 2)
    assert len(list(RandomSampler(range(5), replacement=True, num_samples=3))) == 3


def test_distributed_sampler_partitions_the_dataset():
    shards = [list(DistributedSampler(range(10), num_replicas=3, rank=r, seed=4))
              for r in range(3)]
    assert all(len(s) == 4 for s in shards)
    assert set(i for s in shards for i in s) == set(range(10))  # two padded repeats
    sampler = DistributedSampler(range(10), num_replicas=3, rank=0, drop_last=True)
    assert len(list(sampler)) == 3
    before = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != before
    single = DistributedSampler(range(5), shuffle=False)  # one rank without mpiexec
    assert list(single) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="invalid rank"):
        DistributedSampler(range(5), num_replicas=2, rank=2)


def test_collate_types_without_torch():
    Point = collections.namedtuple("Point", "x y")
    out = default_collate([Point(1, 2.0), Point(3, 4.0)])
    assert isinstance(out, Point) and out.x.dtype == np.int64 and out.y.dtype == np.float64
    with pytest.raises(RuntimeError, match="different shapes"):
        default_collate([tg.zeros(2), tg.zeros(3)])
    with pytest.raises(TypeError, match="cannot batch"):
        default_collate([object()])


def test_against_torch():
    torch = pytest.importorskip("torch")
    from torch.utils import data as tdata
    samples = [(1, 2.0, "a", True, np.ones(2, np.float32)), (3, 4.0, "b", False, np.zeros(2, np.float32))]
    ours, theirs = default_collate(samples), tdata.default_collate(samples)
    for a, b in zip(ours, theirs):
        if isinstance(b, torch.Tensor):
            assert a.numpy().dtype == b.numpy().dtype and np.array_equal(a.numpy(), b.numpy())
        else:
            assert list(a) == list(b)
    for n, lengths in ((10, [0.3, 0.7]), (11, [0.5, 0.5]), (7, [0.2, 0.2, 0.6])):
        assert [len(p) for p in random_split(range(n), lengths)] == \
            [len(p) for p in tdata.random_split(range(n), lengths)]
    for drop_last in (False, True):
        for r in range(3):
            ours = DistributedSampler(range(10), num_replicas=3, rank=r, shuffle=False,
                                      drop_last=drop_last)
            theirs = tdata.DistributedSampler(range(10), num_replicas=3, rank=r, shuffle=False,
                                              drop_last=drop_last)
            assert list(ours) == list(theirs) and len(ours) == len(theirs)
    for n, bs, dl in ((10, 4, False), (10, 4, True), (8, 4, True)):
        assert list(BatchSampler(range(n), bs, dl)) == list(tdata.BatchSampler(range(n), bs, dl))
        assert len(DataLoader(range(n), batch_size=bs, drop_last=dl)) == \
            len(tdata.DataLoader(range(n), batch_size=bs, drop_last=dl))


def test_an_endless_random_sampler_draws_lazily():
    sampler = RandomSampler(range(5), replacement=True, num_samples=int(1e10))
    first = [i for _, i in zip(range(3000), sampler)]
    assert len(first) == 3000 and set(first) <= set(range(5))
    no_replacement = iter(RandomSampler(range(4), num_samples=int(1e12)))
    assert sorted(next(no_replacement) for _ in range(4)) == [0, 1, 2, 3]


def test_torch_submodule_paths_and_tensorboard(tmp_path):
    from tinygrad_tf.utils.data.dataloader import DataLoader as Loader
    from tinygrad_tf.utils.data.sampler import BatchSampler as Batches
    from tinygrad_tf.utils.data.dataset import Dataset as Base
    from tinygrad_tf.utils.tensorboard import SummaryWriter
    assert Loader is DataLoader and Batches is BatchSampler and Base is Dataset
    assert tg.utils.data.DataLoader is DataLoader
    with SummaryWriter(log_dir=str(tmp_path)) as writer:
        writer.add_scalar("Loss/train", tg.tensor(2.5), 10)
        writer.add_histogram("w", tg.zeros(3), 10)  # accepted, dropped
    import json
    lines = [json.loads(line) for line in (tmp_path / "scalars.jsonl").read_text().splitlines()]
    assert lines[0]["tag"] == "Loss/train" and lines[0]["value"] == 2.5 and lines[0]["step"] == 10
