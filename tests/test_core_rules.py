"""The core's rules (issue 18): versions on every write path, grad ownership, thread-local grad
mode, and the plug-in table through which optimizers, the profiler and distributed code reach
the core. Each test names the defect it guards; torch 2.13 is the oracle where installed."""
import math
import threading
import weakref

import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import Tensor, nn, optim
from tinygrad_tf.nn import init
from tinygrad_tf.nn.utils import clip_grad_norm_

IN_PLACE_ERROR = "modified by an in-?place operation"


# ---------------------------------------------------------------------------- defect 7: grad mode

def test_grad_mode_is_thread_local():
    """A no_grad block in one thread must not switch recording off in another (torch's grad mode
    is thread-local). The events force the other thread to run inside the no_grad block."""
    inside, recorded = threading.Event(), threading.Event()
    seen = {}

    def other():
        inside.wait(5)
        seen["enabled"] = tg.is_grad_enabled()
        seen["records"] = (Tensor([1.0], requires_grad=True) * 2).requires_grad
        recorded.set()

    thread = threading.Thread(target=other)
    thread.start()
    with tg.no_grad():
        inside.set()
        assert recorded.wait(5)
        assert not tg.is_grad_enabled()
    thread.join()
    assert seen == {"enabled": True, "records": True}
    assert tg.is_grad_enabled()


def test_grad_mode_set_in_a_thread_stays_in_it():
    barrier = threading.Barrier(2, timeout=5)
    seen = []

    def other():
        with tg.no_grad():
            barrier.wait()  # both threads are now inside their blocks
            seen.append(tg.is_grad_enabled())
            barrier.wait()

    thread = threading.Thread(target=other)
    thread.start()
    with tg.enable_grad():
        barrier.wait()
        assert tg.is_grad_enabled()
        barrier.wait()
    thread.join()
    assert seen == [False]


# ---------------------------------------------------------------------------- defect 8: clip

@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("norm_type", [2.0, math.inf, 1.0])
def test_clip_grad_norm_scales_nonfinite_like_torch(bad, norm_type):
    values = [np.array([1.0, bad, 2.0], np.float32), np.array([3.0, -4.0], np.float32)]
    params = []
    for v in values:
        p = nn.Parameter(Tensor(np.zeros_like(v)))
        p.grad = Tensor(v.copy())
        params.append(p)
    total = clip_grad_norm_(params, 1.0, norm_type=norm_type)
    torch = pytest.importorskip("torch")
    tparams = []
    for v in values:
        tp = torch.nn.Parameter(torch.zeros(v.shape))
        tp.grad = torch.tensor(v)
        tparams.append(tp)
    expected = torch.nn.utils.clip_grad_norm_(tparams, 1.0, norm_type=norm_type)
    np.testing.assert_array_equal(total.numpy(), expected.numpy())
    for p, tp in zip(params, tparams):
        np.testing.assert_array_equal(p.grad.numpy(), tp.grad.numpy())


def test_clip_grad_norm_nonfinite_scales_without_torch():
    p = nn.Parameter(Tensor(np.zeros(2, np.float32)))
    p.grad = Tensor(np.array([np.nan, 1.0], np.float32))
    clip_grad_norm_([p], 1.0)
    assert np.isnan(p.grad.numpy()).all()  # torch: NaN * coefficient everywhere


def test_clip_grad_norm_error_if_nonfinite():
    p = nn.Parameter(Tensor(np.zeros(2, np.float32)))
    p.grad = Tensor(np.array([np.inf, 1.0], np.float32))
    with pytest.raises(RuntimeError, match="non-finite|inf"):
        clip_grad_norm_([p], 1.0, error_if_nonfinite=True)


# ---------------------------------------------------------------------------- defect 9: retain_grad

def test_retain_grad_accumulates_across_backward_calls():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x * 3
    y.retain_grad()
    z = (y * y).sum()
    z.backward(retain_graph=True)
    kept = y.grad
    z.backward()
    np.testing.assert_allclose(y.grad.numpy(), 2 * 2 * y.numpy())  # 2y, twice
    np.testing.assert_allclose(kept.numpy(), 2 * y.numpy())  # a new tensor, as torch's
    np.testing.assert_allclose(x.grad.numpy(), 2 * 3 * 2 * y.numpy())
    torch = pytest.importorskip("torch")
    tx = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    ty = tx * 3
    ty.retain_grad()
    tz = (ty * ty).sum()
    tz.backward(retain_graph=True)
    tz.backward()
    np.testing.assert_allclose(y.grad.numpy(), ty.grad.numpy())


# ---------------------------------------------------------------------------- defect 1: versions

def _saved_weight_graph():
    layer = nn.Linear(3, 2)
    x = Tensor(np.random.randn(4, 3).astype(np.float32), requires_grad=True)
    return layer, (layer(x) ** 2).sum()  # the matmul saved the weight for x's gradient


WRITES = {
    "load_state_dict": lambda layer: layer.load_state_dict(
        {k: Tensor(v.numpy() + 1) for k, v in layer.state_dict().items()}),
    "uniform_": lambda layer: init.uniform_(layer.weight),
    "normal_": lambda layer: init.normal_(layer.weight),
    "constant_": lambda layer: init.constant_(layer.weight, 0.5),
    "zeros_": lambda layer: init.zeros_(layer.weight),
    "ones_": lambda layer: init.ones_(layer.weight),
    "xavier_uniform_": lambda layer: init.xavier_uniform_(layer.weight),
    "xavier_normal_": lambda layer: init.xavier_normal_(layer.weight),
    "kaiming_uniform_": lambda layer: init.kaiming_uniform_(layer.weight),
    "kaiming_normal_": lambda layer: init.kaiming_normal_(layer.weight),
    "trunc_normal_": lambda layer: init.trunc_normal_(layer.weight),
    "orthogonal_": lambda layer: init.orthogonal_(layer.weight),
    "eye_": lambda layer: init.eye_(layer.weight),
    "dirac_": lambda layer: init.dirac_(layer.weight.view(*layer.weight.shape, 1)),  # a view
    "reset_parameters": lambda layer: layer.reset_parameters(),
}


def test_every_nn_init_function_is_covered():
    fills = {name for name in dir(init) if name.endswith("_") and not name.startswith("_")}
    assert fills <= set(WRITES), f"add {sorted(fills - set(WRITES))} to WRITES"


@pytest.mark.parametrize("write", sorted(WRITES))
def test_writes_into_parameters_bump_the_version(write):
    layer, loss = _saved_weight_graph()
    before = layer.weight._version
    with tg.no_grad():
        WRITES[write](layer)
    assert layer.weight._version > before
    with pytest.raises(RuntimeError, match=IN_PLACE_ERROR):
        loss.backward()


def test_embedding_padding_row_write_bumps_the_version():
    emb = nn.Embedding(5, 3, padding_idx=0)
    before = emb.weight._version
    emb.reset_parameters()
    assert emb.weight._version > before


def test_torch_also_raises_after_load_state_dict():
    torch = pytest.importorskip("torch")
    layer = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3, requires_grad=True)
    loss = (layer(x) ** 2).sum()
    layer.load_state_dict({k: v + 1 for k, v in layer.state_dict().items()})
    with pytest.raises(RuntimeError, match=IN_PLACE_ERROR):
        loss.backward()


# ---------------------------------------------------------------------------- defect 2: kept grads

def _mlp(seed=0):
    tg.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def _loss(model, seed):
    rng = np.random.default_rng(seed)
    x = Tensor(rng.standard_normal((5, 3)).astype(np.float32))
    return (model(x) ** 2).mean()


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: optim.Adam(ps, lr=0.01)])
@pytest.mark.parametrize("keep", ["tensor", "array", "view"])
def test_a_kept_grad_keeps_its_values_after_the_next_backward_and_step(make, keep):
    model = _mlp()
    optimizer = make(model.parameters())
    weight = model[0].weight
    _loss(model, 0).backward()
    kept = {"tensor": lambda: weight.grad, "array": lambda: weight.grad.numpy(),
            "view": lambda: weight.grad.view(-1)}[keep]()
    values = np.array(kept.numpy() if isinstance(kept, Tensor) else kept, copy=True)
    for step in range(3):
        optimizer.step()
        optimizer.zero_grad()
        _loss(model, step + 1).backward()
        assert weight.grad is not kept
        now = kept.numpy() if isinstance(kept, Tensor) else kept
        np.testing.assert_array_equal(now, values)


def test_training_is_the_same_whether_or_not_grads_are_kept():
    runs = []
    for keep in (False, True):
        model = _mlp()
        optimizer = optim.Adam(model.parameters(), lr=0.01)
        kept = []
        for step in range(4):
            optimizer.zero_grad()
            _loss(model, step).backward()
            if keep:
                kept.append([p.grad for p in model.parameters()])
            optimizer.step()
        runs.append([p.numpy().copy() for p in model.parameters()])
        if keep:  # each step's kept grads are that step's, all different
            first, last = kept[0][0].numpy(), kept[-1][0].numpy()
            assert not np.array_equal(first, last)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_grad_accumulation_and_zeroing_in_place_follow_torch():
    torch = pytest.importorskip("torch")
    model = _mlp()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    reference = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    with torch.no_grad():
        for p, q in zip(model.parameters(), reference.parameters()):
            q.copy_(torch.from_numpy(p.numpy().copy()))
    t_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)

    def t_loss(seed):
        rng = np.random.default_rng(seed)
        return (reference(torch.from_numpy(rng.standard_normal((5, 3)).astype(np.float32))) ** 2
                ).mean()
    _loss(model, 0).backward()
    t_loss(0).backward()
    ours, theirs = model[0].weight.grad, reference[0].weight.grad
    _loss(model, 1).backward()  # no zero_grad: accumulates into the kept .grad, in place
    t_loss(1).backward()
    assert model[0].weight.grad is ours
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6)
    optimizer.step()
    t_optimizer.step()
    optimizer.zero_grad(set_to_none=False)  # zeros in place: the kept tensor sees them
    t_optimizer.zero_grad(set_to_none=False)
    assert not ours.numpy().any() and not theirs.numpy().any()
    _loss(model, 2).backward()
    t_loss(2).backward()
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6)
    optimizer.zero_grad()  # set_to_none: the next backward makes a new tensor
    t_optimizer.zero_grad()
    before = ours.numpy().copy()
    _loss(model, 3).backward()
    t_loss(3).backward()
    assert model[0].weight.grad is not ours
    np.testing.assert_array_equal(ours.numpy(), before)
    for p, q in zip(model.parameters(), reference.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(p.numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_a_grad_the_user_set_keeps_its_identity_through_step():
    p = nn.Parameter(Tensor(np.ones(3, np.float32)))
    optimizer = optim.SGD([p], lr=0.5)
    mine = Tensor(np.array([1.0, 2.0, 3.0], np.float32))
    p.grad = mine
    optimizer.step()
    assert p.grad is mine
    np.testing.assert_allclose(p.numpy(), [0.5, 0.0, -0.5])
    np.testing.assert_array_equal(mine.numpy(), [1.0, 2.0, 3.0])


BAD_GRADS = ["shape", "broadcastable", "dtype", "ndarray", "itself"]


def _assign_bad_grad(lib, tensor, bad):
    tensor.grad = {"shape": lambda: lib.ones(1, 3), "broadcastable": lambda: lib.ones(1),
                   "dtype": lambda: lib.ones(3, dtype=lib.float64),
                   "ndarray": lambda: np.ones(3, np.float32), "itself": lambda: tensor}[bad]()


@pytest.mark.parametrize("bad", BAD_GRADS)
def test_a_grad_that_does_not_fit_is_refused_when_assigned(bad):
    # Accepted, a float64 .grad went into a float32 parameter's update, a (1, 3) one took a
    # backward's (3,) gradient by broadcasting, and an ndarray failed later inside the engine.
    p = nn.Parameter(Tensor(np.ones(3, np.float32)))
    with pytest.raises(TypeError if bad == "ndarray" else RuntimeError, match="grad"):
        _assign_bad_grad(tg, p, bad)
    assert p.grad is None


@pytest.mark.parametrize("bad", BAD_GRADS)
def test_torch_refuses_the_same_grads(bad):
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError if bad == "ndarray" else RuntimeError, match="grad"):
        _assign_bad_grad(torch, torch.nn.Parameter(torch.ones(3)), bad)


def test_fresh_arena_lends_and_takes_memory_without_copies():
    # The fast path stays the normal path: a plain model's parameters are packed, and after
    # the first step every new .grad is written straight into the arena.
    from tinygrad_tf import distributed
    model = _mlp()
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    ddp = distributed.DistributedDataParallel(model, optimizer=optimizer)
    arena = optimizer.arena
    assert not any(slot.loose for slot in arena.slots.values())
    # (Only a weak reference: holding the buffer would be holding the arena's memory.)
    flat = weakref.ref(arena.buffers["grad"][np.dtype(np.float32)])
    for step in range(3):  # the recipe's step: backward, sync, clip, update
        optimizer.zero_grad()
        _loss(model, step).backward()
        ddp.sync_gradients()
        clip_grad_norm_(model.parameters(), 0.01)
        optimizer.step()
        assert all(np.shares_memory(p.grad.array, flat()) for p in model.parameters())
    assert arena.buffers["grad"][np.dtype(np.float32)] is flat()  # never re-allocated


def test_the_transformer_is_packed_whole():
    from tinygrad_tf.models import Transformer, TransformerConfig
    model = Transformer(TransformerConfig.tiny(vocab_size=12))
    optimizer = optim.AdamW(model.parameters(), lr=1e-3)
    assert not any(slot.loose for slot in optimizer.arena.slots.values())


# ---------------------------------------------------------------------------- defect 3: DDP

def test_ddp_leaves_parameters_without_gradients_alone():
    from tinygrad_tf import distributed
    model = _mlp()
    unused = nn.Linear(2, 2)
    model.append(unused)  # never called: no gradient on any rank
    for with_optimizer in (True, False):
        optimizer = optim.Adam(model.parameters(), lr=0.1)
        ddp = distributed.DistributedDataParallel(
            model, optimizer=optimizer if with_optimizer else None)
        before = [p.numpy().copy() for p in unused.parameters()]
        for step in range(2):
            optimizer.zero_grad()
            x = Tensor(np.random.default_rng(step).standard_normal((5, 3)).astype(np.float32))
            (model[2](model[1](model[0](x))) ** 2).mean().backward()
            ddp.sync_gradients()
            assert all(p.grad is None for p in unused.parameters())
            assert all(p.grad is not None for p in model[0].parameters())
            optimizer.step()
        for p, b in zip(unused.parameters(), before):
            np.testing.assert_array_equal(p.numpy(), b)
            assert id(p) not in optimizer.state


# ---------------------------------------------------------------------------- defect 4: shared memory

def test_an_optimizer_keeps_parameters_that_share_memory_shared():
    base = nn.Parameter(Tensor(np.arange(6, dtype=np.float64)))
    head = nn.Parameter(Tensor.from_numpy(base.numpy()[:2]))  # a view of base's memory
    alias = nn.Parameter(base)                                # the same array, another Parameter
    optimizer = optim.SGD([base, head, alias], lr=0.5, momentum=0.9)
    assert np.shares_memory(base.numpy(), head.numpy()) and base.numpy() is alias.numpy()
    for step in range(2):
        base.grad = Tensor(np.ones(6))
        head.grad = Tensor(np.full(2, 2.0))
        alias.grad = Tensor(np.full(6, 0.5))
        optimizer.step()
    assert np.shares_memory(base.numpy(), head.numpy()) and base.numpy() is alias.numpy()
    torch = pytest.importorskip("torch")
    t_base = torch.nn.Parameter(torch.arange(6, dtype=torch.float64))
    t_head = torch.nn.Parameter(t_base.data[:2])
    t_alias = torch.nn.Parameter(t_base.data)
    t_optimizer = torch.optim.SGD([t_base, t_head, t_alias], lr=0.5, momentum=0.9)
    for step in range(2):
        t_base.grad, t_head.grad = torch.ones(6, dtype=torch.float64), torch.full((2,), 2.0,
                                                                                  dtype=torch.float64)
        t_alias.grad = torch.full((6,), 0.5, dtype=torch.float64)
        t_optimizer.step()
    np.testing.assert_allclose(base.numpy(), t_base.detach().numpy())


def test_an_optimizer_updates_a_parameter_whose_array_someone_holds_in_place():
    p = nn.Parameter(Tensor(np.zeros(3, np.float32)))
    held = p.numpy()
    optimizer = optim.SGD([p], lr=1.0)
    p.grad = Tensor(np.ones(3, np.float32))
    optimizer.step()
    np.testing.assert_array_equal(held, [-1, -1, -1])  # torch: p's memory, updated in place


# ---------------------------------------------------------------------------- the plug-in table

def test_the_core_checks_what_a_plug_in_lends(monkeypatch):
    from tinygrad_tf import plugins
    lent = {"wrong shape": np.zeros(5), "wrong dtype": np.zeros(3, np.float32),
            "read-only": np.broadcast_to(np.zeros(1), (3,))}
    for name, buffer in lent.items():
        monkeypatch.setattr(plugins, "grad_buffer", lambda tensor, buffer=buffer: buffer)
        x = Tensor(np.ones(3), requires_grad=True)
        (x * 2).sum().backward()
        np.testing.assert_array_equal(x.grad.numpy(), [2, 2, 2])
        assert not np.shares_memory(x.grad.numpy(), buffer), name


def test_kept_grads_and_versions_hold_under_the_profiler():
    from tinygrad_tf import profiler
    model = _mlp()
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    with profiler.profile():
        _loss(model, 0).backward()
        kept = model[0].weight.grad
        values = kept.numpy().copy()
        optimizer.step()
        optimizer.zero_grad()
        loss = _loss(model, 1)
        loss.backward(retain_graph=True)
        optimizer.step()
        with pytest.raises(RuntimeError, match=IN_PLACE_ERROR):
            loss.backward()  # the step wrote weights this graph saved
    np.testing.assert_array_equal(kept.numpy(), values)


def test_the_grad_ownership_example_in_the_docs_runs():
    from pathlib import Path
    text = (Path(__file__).parents[1] / "docs" / "autograd.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    example = next(b for b in blocks if "keep this step's gradient" in b)
    exec(compile(example, "docs/autograd.md", "exec"), {})  # asserts inside


@pytest.mark.parametrize("write", ["clip_grad_norm_", "clip_grad_value_", "zero_grad",
                                   "accumulate"])
def test_writes_into_grads_bump_their_version(write):
    model = _mlp()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    _loss(model, 0).backward()
    grad = model[0].weight.grad
    before = grad._version
    {"clip_grad_norm_": lambda: clip_grad_norm_(model.parameters(), 1e-3),
     "clip_grad_value_": lambda: nn.utils.clip_grad_value_(model.parameters(), 1e-3),
     "zero_grad": lambda: optimizer.zero_grad(set_to_none=False),
     "accumulate": lambda: _loss(model, 1).backward()}[write]()
    assert model[0].weight.grad is grad and grad._version > before
