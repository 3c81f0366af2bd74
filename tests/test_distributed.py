"""tinygrad_tf.distributed and `mpiexec -n 2 tinygrad-tf train`.

The first tests run in this process (one rank, no MPI). The `mpi` tests spawn `mpiexec -n 2`
(MPIEXEC_TIMEOUT and a subprocess timeout, so a hang fails instead of blocking the suite) and
compare two ranks with one process on the same global batches; they skip without mpi4py or
mpiexec (`pip install 'tinygrad_tf[mpi]'`, which `make test` does).
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from tinygrad_tf import Tensor, distributed, nn, optim
from tinygrad_tf.models import checkpoint, cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 240  # seconds for one mpiexec run; MPIEXEC_TIMEOUT kills the ranks a little earlier


# ---------------------------------------------------------------------------- one process

def test_without_a_launcher_everything_is_one_rank(monkeypatch):
    for name in distributed._LAUNCHER_VARIABLES + ("TINYGRAD_TF_MPI",):
        monkeypatch.delenv(name, raising=False)
    assert not distributed._launched()
    assert distributed.init() == 1 and distributed.world_size() == 1 and distributed.rank() == 0
    distributed.barrier()
    monkeypatch.setenv("PMI_SIZE", "2")
    assert distributed._launched()
    monkeypatch.setenv("TINYGRAD_TF_MPI", "0")
    assert not distributed._launched()


def test_a_launcher_without_mpi4py_is_an_error_not_k_copies(monkeypatch):
    monkeypatch.setattr(distributed, "_initialised", False)
    monkeypatch.setitem(sys.modules, "mpi4py", None)   # import mpi4py now raises ImportError
    monkeypatch.delenv("TINYGRAD_TF_MPI", raising=False)
    monkeypatch.setenv("PMI_SIZE", "1")
    assert distributed.init() == 1                     # mpiexec -n 1: one process, silently
    monkeypatch.setattr(distributed, "_initialised", False)
    monkeypatch.setenv("PMI_SIZE", "2")
    with pytest.raises(ImportError, match=r"world size 2\) but mpi4py is not installed"):
        distributed.init()


def test_collectives_on_one_rank_are_identities_with_clear_errors():
    array = np.arange(6.0).reshape(2, 3).T        # non-contiguous
    assert distributed.all_reduce(array, "mean") is array
    np.testing.assert_array_equal(array, np.arange(6.0).reshape(2, 3).T)
    tensor = Tensor(np.ones(3))
    assert distributed.all_reduce(tensor) is tensor and distributed.broadcast(tensor) is tensor
    assert distributed.broadcast_object("run") == "run"
    distributed.check_same("the configuration", "abc", np.arange(3))
    with pytest.raises(ValueError, match="op must be one of"):
        distributed.all_reduce(np.ones(2), "prod")
    with pytest.raises(ValueError, match="needs a float array"):
        distributed.all_reduce(np.ones(2, np.int64), "mean")
    with pytest.raises(TypeError, match="all_reduce: expected a Tensor or a numpy array, got list"):
        distributed.all_reduce([1.0])


def test_flat_gradients_pack_zeros_for_missing_grads_and_write_back_in_place():
    a = nn.Parameter(Tensor(np.zeros((2, 3), np.float32)))
    b = nn.Parameter(Tensor(np.zeros(4, np.float64)))
    c = nn.Parameter(Tensor(np.zeros((3, 1), np.float32)))
    a.grad = Tensor(np.arange(6, dtype=np.float32).reshape(3, 2).T)   # non-contiguous
    c.grad = Tensor(np.full((3, 1), 7, np.float32))
    a_grad, c_grad = a.grad, c.grad
    frozen = nn.Parameter(Tensor(np.zeros(2, np.float32)), requires_grad=False)
    flat = distributed._flat_grads([a, frozen, b, c])
    used = flat.used()
    np.testing.assert_array_equal(used, [1, 0, 1])   # a, b, c (frozen never syncs)
    buffers = flat.pack(used)
    assert [buf.dtype for buf in buffers] == [np.float32, np.float64]   # one buffer per dtype
    np.testing.assert_array_equal(buffers[0], [0, 2, 4, 1, 3, 5, 7, 7, 7])
    np.testing.assert_array_equal(buffers[1], np.zeros(4))
    buffers[0] *= 2
    flat.unpack(used)
    np.testing.assert_array_equal(a.grad.array, np.arange(6).reshape(3, 2).T * 2)
    assert a.grad is a_grad and c.grad is c_grad     # written in place, as torch's DDP
    assert b.grad is None and frozen.grad is None    # no gradient on any rank: stays None
    assert not np.shares_memory(c.grad.array, buffers[0]) and c.grad.array.shape == (3, 1)
    flat.unpack(np.array([1, 1, 1], np.uint8))       # b had a gradient on another rank
    np.testing.assert_array_equal(b.grad.array, np.zeros(4))
    assert not np.shares_memory(b.grad.array, buffers[1])
    a.grad.array = np.zeros(6, np.float32)  # `.grad = ` refuses it; the engine's array does not
    with pytest.raises(ValueError, match=r"parameter of shape \(2, 3\) has shape \(6,\)"):
        flat.pack(used)


def test_ddp_with_an_optimizer_reduces_its_arena_in_place():
    model = nn.Sequential(nn.Linear(3, 2, dtype=np.float64), nn.Linear(2, 2, dtype=np.float64))
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    ddp = distributed.DistributedDataParallel(model, optimizer=optimizer)
    (ddp(Tensor(np.ones((4, 3)))) ** 2).sum().backward()
    model[1].bias.grad = None                       # a parameter without a gradient this step
    expected = [None if p.grad is None else p.grad.array.copy() for p in model.parameters()]
    assert len(ddp._flat.pack(ddp._flat.used())) == 1  # one float64 arena buffer, no copy
    ddp.sync_gradients(scale=0.5)
    buffers = list(optimizer.arena.buffers["grad"].values())
    for p, grad in zip(model.parameters(), expected):
        if grad is None:                            # no gradient on any rank: stays None
            assert p.grad is None
            continue
        assert np.shares_memory(p.grad.array, buffers[0])
        np.testing.assert_array_equal(p.grad.array, grad * 0.5)
    extra = nn.Linear(2, 2, dtype=np.float64)
    model.append(extra)                             # added after the optimizer was built
    with pytest.raises(ValueError, match="not in this optimizer"):
        distributed.DistributedDataParallel(model, optimizer=optimizer)


def test_ddp_on_one_rank_keeps_the_gradients():
    model = nn.Linear(3, 2, dtype=np.float64)
    ddp = distributed.DistributedDataParallel(model)
    x = Tensor(np.random.default_rng(0).normal(size=(5, 3)))
    (ddp(x) ** 2).sum().backward()
    expected = [p.grad.array.copy() for p in model.parameters()]
    ddp.sync_gradients()
    for p, grad in zip(model.parameters(), expected):
        np.testing.assert_array_equal(p.grad.array, grad)
    assert ddp.in_features == 3        # other attributes are the module's
    with pytest.raises(AttributeError):
        ddp.no_such_attribute


# ---------------------------------------------------------------------------- two ranks

def _mpiexec():
    here = os.path.dirname(sys.executable)   # the mpich wheel installs it beside python
    return shutil.which("mpiexec", path=here) or shutil.which("mpiexec")


needs_mpi = pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None or _mpiexec() is None,
                               reason="needs mpi4py and mpiexec: pip install 'tinygrad_tf[mpi]'")


def _run(command, ranks=2, cwd=None):
    """Run `command` under `mpiexec -n ranks` (or plainly when ranks is None)."""
    env = dict(os.environ, MPIEXEC_TIMEOUT=str(TIMEOUT - 20))
    if ranks:  # one thread per rank: two ranks already fill two cores
        env["NUMBA_NUM_THREADS"] = "1"
    full = ([_mpiexec(), "-n", str(ranks)] if ranks else []) + command
    started = time.perf_counter()
    done = subprocess.run(full, capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=cwd)
    return done, time.perf_counter() - started


def _ddp_example(tmp_path, ranks, dtype):
    out = tmp_path / f"ddp_{ranks}_{dtype}.npz"
    done, _ = _run([sys.executable, os.path.join(ROOT, "examples", "ddp.py"), "--steps", "60",
                    "--dtype", dtype, "--save", str(out)], ranks)
    assert done.returncode == 0, done.stderr
    return np.load(out)


@pytest.mark.mpi
@pytest.mark.slow
@needs_mpi
@pytest.mark.parametrize("dtype, atol", [("float64", 1e-12), ("float32", 2e-5)])
def test_ddp_two_ranks_equal_one_process(tmp_path, dtype, atol):
    one, two = _ddp_example(tmp_path, None, dtype), _ddp_example(tmp_path, 2, dtype)
    assert int(one["world_size"]) == 1 and int(two["world_size"]) == 2
    assert one["losses"][-1] < one["losses"][0] / 4
    for name in one.files:
        if name != "world_size":
            np.testing.assert_allclose(two[name], one[name], rtol=0, atol=atol, err_msg=name)


# The recipe: a tiny copy model, dropout off (masks depend on the shard), a constant rate so the
# steps move the weights, batches of 16 pairs split 8 + 8.
TRAIN = ["--task", "copy", "--symbols", "6", "--max-length", "6", "--n-train", "96",
         "--n-valid", "8", "--n-test", "8", "--batch-size", "16", "--max-tokens", "100000",
         "--dropout", "0", "--schedule", "constant", "--lr", "1e-3", "--eval-every", "4",
         "--eval-decode", "8", "--log-every", "2"]
CLI = [sys.executable, "-m", "tinygrad_tf.models.cli", "train"]


def _losses(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as file:
        records = [json.loads(line) for line in file]
    return np.array([r["loss"] for r in records if r["kind"] == "train"])


def _weights(run_dir, step):
    model, _, _ = checkpoint.load(checkpoint.step_path(os.path.join(run_dir, "checkpoints"), step))
    return model


def _assert_same_training(run_dir, reference, step, atol):
    np.testing.assert_allclose(_losses(run_dir), _losses(reference), rtol=1e-5)
    ours, theirs = _weights(run_dir, step), _weights(reference, step)
    assert ours.keys() == theirs.keys()
    for name in ours:
        a, b = np.asarray(ours[name]), np.asarray(theirs[name])
        if name.endswith("in_proj.bias"):
            # Rows d..2d are the key bias. Softmax ignores a constant added to every score of a
            # query, so its true gradient is 0; what backward returns is rounding noise, which
            # Adam's m/sqrt(v) turns into steps of size lr that differ between summation orders.
            d = len(a) // 3
            a, b = np.concatenate([a[:d], a[2 * d:]]), np.concatenate([b[:d], b[2 * d:]])
        np.testing.assert_allclose(a, b, rtol=0, atol=atol, err_msg=name)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """One process, 8 steps: what every multi-rank run below must reproduce."""
    run_dir = tmp_path_factory.mktemp("one") / "run"
    with open(os.devnull, "w") as quiet:
        stdout, sys.stdout = sys.stdout, quiet
        try:
            assert cli.main(["train", *TRAIN, "--run-dir", str(run_dir), "--steps", "8"]) == 0
        finally:
            sys.stdout = stdout
    return run_dir


@pytest.mark.mpi
@pytest.mark.slow
@needs_mpi
def test_train_command_two_ranks_equals_one_process(tmp_path, reference_run):
    run_dir = tmp_path / "run"
    done, _ = _run(CLI + TRAIN + ["--run-dir", str(run_dir), "--steps", "8"])
    assert done.returncode == 0, done.stderr
    # Rank 0 alone prints and writes: one summary, one metrics line per step.
    assert done.stdout.count("; run directory ") == 1, done.stdout
    assert len(_losses(run_dir)) == 8
    _assert_same_training(run_dir, reference_run, 8, atol=1e-5)
    assert (run_dir / "checkpoints" / "best.safetensors").exists()


@pytest.mark.mpi
@pytest.mark.slow
@needs_mpi
def test_resume_under_two_ranks_a_run_started_on_one(tmp_path, reference_run):
    run_dir = tmp_path / "run"
    with open(os.devnull, "w") as quiet:
        stdout, sys.stdout = sys.stdout, quiet
        try:
            assert cli.main(["train", *TRAIN, "--run-dir", str(run_dir), "--steps", "4"]) == 0
        finally:
            sys.stdout = stdout
    done, _ = _run(CLI + ["--resume", str(run_dir), "--steps", "8"])
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stdout and "(step 4)" in done.stdout
    _assert_same_training(run_dir, reference_run, 8, atol=1e-5)


@pytest.mark.mpi
@pytest.mark.slow
@needs_mpi
def test_ranks_resuming_from_different_checkpoints_stop_with_a_clear_error(tmp_path):
    # Regression: nothing compared what the ranks restored; rank 1 resumed at step 2 and rank 0
    # at step 4, so they trained different steps and waited in mismatched collectives.
    run_dir = tmp_path / "run"
    with open(os.devnull, "w") as quiet:
        stdout, sys.stdout = sys.stdout, quiet
        try:
            assert cli.main(["train", *TRAIN, "--run-dir", str(run_dir), "--steps", "4",
                             "--save-every", "2"]) == 0
        finally:
            sys.stdout = stdout
    script = ("import sys\n"
              "from tinygrad_tf import distributed\n"
              "from tinygrad_tf.models import checkpoint, cli\n"
              "distributed.init()\n"
              "if distributed.rank() == 1:  # this rank's copy of the run lacks the newest file\n"
              "    def older(directory, warn=print):\n"
              "        path = checkpoint.step_checkpoints(directory)[-2][1]\n"
              "        return path, checkpoint.load(path)\n"
              "    checkpoint.latest = older\n"
              f"sys.exit(cli.main(['train', '--resume', {str(run_dir)!r}, '--steps', '6']))\n")
    done, seconds = _run([sys.executable, "-c", script])
    assert done.returncode != 0
    assert "the ranks resumed from different steps (2 to 4" in done.stderr, done.stderr
    assert seconds < 60, f"the job took {seconds:.1f} s to end"
    assert [s for s, _ in checkpoint.step_checkpoints(str(run_dir / "checkpoints"))] == [2, 4]


@pytest.mark.mpi
@pytest.mark.slow
@needs_mpi
def test_a_raising_rank_ends_the_job_within_seconds():
    script = ("from tinygrad_tf import distributed as d\n"
              "d.init()\n"
              "if d.rank() == 1:\n"
              "    raise RuntimeError('rank 1 fails on purpose')\n"
              "d.barrier()  # rank 0 would wait here forever without Abort\n")
    done, seconds = _run([sys.executable, "-c", script])
    assert done.returncode != 0
    assert "rank 1 fails on purpose" in done.stderr
    assert seconds < 30, f"the job took {seconds:.1f} s to end"


@pytest.mark.mpi
@pytest.mark.slow
@needs_mpi
def test_ranks_with_different_configurations_stop_with_a_clear_error(tmp_path):
    run = [*CLI, *TRAIN, "--run-dir", str(tmp_path / "run"), "--steps", "2"]
    env = dict(os.environ, MPIEXEC_TIMEOUT=str(TIMEOUT - 20))
    # MPMD launch: rank 0 and rank 1 run different commands (seed 0 vs seed 1).
    command = [_mpiexec(), "-n", "1", *run, "--seed", "0", ":", "-n", "1", *run, "--seed", "1"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert done.returncode != 0
    assert "ranks disagree on the configuration" in done.stderr, done.stderr
    assert time.perf_counter() - started < 60
    assert not (tmp_path / "run" / "checkpoints" / "step_00000002.safetensors").exists()


@pytest.mark.mpi
@pytest.mark.slow
@needs_mpi
@pytest.mark.parametrize("stop, last_step", [
    (["--target-exact-match", "0", "--eval-every", "3"], 3),    # decided on rank 0, shared
    (["--time-budget", "1.5", "--eval-every", "1000"], None)])  # rank 0's clock, shared
def test_stopping_rules_end_every_rank_at_the_same_step(tmp_path, stop, last_step):
    run_dir = tmp_path / "run"
    flags = TRAIN[:TRAIN.index("--eval-every")] + TRAIN[TRAIN.index("--eval-every") + 2:]
    done, seconds = _run(CLI + flags + ["--run-dir", str(run_dir), "--steps", "100000", *stop])
    assert done.returncode == 0, done.stderr
    steps = len(_losses(run_dir))
    assert (steps == last_step) if last_step else (1 <= steps < 100000)
    assert f"step_{steps:08d}.safetensors" in os.listdir(run_dir / "checkpoints")


@pytest.mark.mpi
@pytest.mark.slow
@needs_mpi
def test_train_command_failing_on_one_rank_ends_the_job(tmp_path):
    # Rank 1 cannot read its training file; rank 0 can and goes on to the start-up Allreduce.
    (tmp_path / "train.tsv").write_text("".join(f"{'ab' * k}\t{'ba' * k}\n" for k in range(1, 40)))
    run = [*CLI, "--run-dir", str(tmp_path / "run"), "--steps", "2", "--batch-size", "8"]
    command = [_mpiexec(), "-n", "1", *run, "--train-file", str(tmp_path / "train.tsv"), ":",
               "-n", "1", *run, "--train-file", str(tmp_path / "missing.tsv")]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT,
                          env=dict(os.environ, MPIEXEC_TIMEOUT=str(TIMEOUT - 20)))
    assert done.returncode != 0
    assert "[rank 1/2] error:" in done.stderr and "missing.tsv" in done.stderr, done.stderr
    assert time.perf_counter() - started < 60


UNUSED_PARAMETERS = """
import json, sys
import numpy as np
from tinygrad_tf import Tensor, distributed, nn, optim
distributed.init()
rank = distributed.rank()
a, b, c = (nn.Linear(2, 2, dtype=np.float64) for _ in range(3))
model = nn.ModuleList([a, b, c])
optimizer = optim.Adam(model.parameters(), lr=0.1) if sys.argv[1] == "arena" else None
ddp = distributed.DistributedDataParallel(model, optimizer=optimizer)
x = Tensor(np.full((3, 2), rank + 1.0))
loss = a(x).sum() if rank == 0 else (a(x) + b(x)).sum()   # c: no rank; b: rank 1 only
loss.backward()
ddp.sync_gradients()
out = {name: None if p.grad is None else p.grad.numpy().tolist()
       for name, p in model.named_parameters()}
if rank == 0:
    print(json.dumps(out))
"""


@pytest.mark.mpi
@pytest.mark.slow
@needs_mpi
@pytest.mark.parametrize("flat", ["arena", "packed"])
def test_ddp_two_ranks_skip_parameters_no_rank_used(tmp_path, flat):
    # Regression (issue 18, defect 3): sync zero-filled every missing gradient, so Adam moved
    # parameters no rank had used. Now: unused everywhere stays None; used on one rank averages.
    script = tmp_path / "unused.py"
    script.write_text(UNUSED_PARAMETERS)
    done, _ = _run([sys.executable, str(script), flat])
    assert done.returncode == 0, done.stderr
    grads = json.loads(done.stdout.strip().splitlines()[-1])
    assert grads["2.weight"] is None and grads["2.bias"] is None
    np.testing.assert_allclose(grads["1.bias"], [1.5, 1.5])      # (0 + 3) / 2: rank 1's share
    np.testing.assert_allclose(grads["0.weight"], [[4.5, 4.5], [4.5, 4.5]])  # (3 + 6) / 2
