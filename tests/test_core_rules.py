"""The core's rules (issue 18): versions on every write path, grad ownership, thread-local grad
mode, and the plug-in table through which optimizers, the profiler and distributed code reach
the core. Each test names the defect it guards; torch 2.13 is the oracle where installed."""
import math
import threading

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
    "reset_parameters": lambda layer: layer.reset_parameters(),
}


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
