"""Optimizers, schedules and clip_grad_norm_: hand-computed steps, convergence, exact resume."""
import math
import tracemalloc

import numpy as np
import pytest

import tinygrad_tf as tg
from tinygrad_tf import Tensor, nn
from tinygrad_tf.nn import functional as F


def run_steps(optimizer_class, grads, start=1.0, **kwargs):
    """Apply `grads` (one per step) to a one-element parameter; the values after each step."""
    p = nn.Parameter(np.array([start]))
    optimizer = optimizer_class([p], **kwargs)
    values = []
    for g in grads:
        p.grad = Tensor(np.array([g]))
        optimizer.step()
        values.append(p.array[0])
    return values


# Each expected value is worked by hand from the update rule in the optimizer's docstring.
@pytest.mark.parametrize("kwargs, expected", [
    (dict(lr=0.1), [0.95, 0.90]),                                   # p -= 0.1 * 0.5
    (dict(lr=0.1, momentum=0.9), [0.95, 0.855]),                    # buf: 0.5, 0.95
    (dict(lr=0.1, momentum=0.9, nesterov=True), [0.905, 0.7695]),   # g + 0.9 buf: 0.95, 1.355
    (dict(lr=0.1, weight_decay=0.1), [0.94, 0.8806]),               # g: 0.6, 0.594
    (dict(lr=0.1, momentum=0.9, dampening=0.5), [0.95, 0.88]),      # buf: 0.5, 0.45 + 0.25
])
def test_sgd_hand_computed(kwargs, expected):
    np.testing.assert_allclose(run_steps(nn.optim.SGD, [0.5, 0.5], **kwargs), expected, rtol=1e-12)


def test_adam_hand_computed():
    values = run_steps(nn.optim.Adam, [0.5, -1.0], lr=0.1)
    # step 1: m = 0.05, v = 0.00025; m_hat = 0.5, v_hat = 0.25 -> p = 1 - 0.1 * 0.5 / (0.5 + eps)
    assert values[0] == pytest.approx(1 - 0.1 * 0.5 / (0.5 + 1e-8), rel=1e-12)
    # step 2: m = 0.045 - 0.1 = -0.055, v = 0.00024975 + 0.001 = 0.00124975
    m_hat, v_hat = -0.055 / (1 - 0.9 ** 2), 0.00124975 / (1 - 0.999 ** 2)
    assert values[1] == pytest.approx(values[0] - 0.1 * m_hat / (math.sqrt(v_hat) + 1e-8),
                                      rel=1e-12)
    # L2 weight decay enters the gradient: g = 0.5 + 0.1 * 1.0 = 0.6, and step 1 moves by lr.
    values = run_steps(nn.optim.Adam, [0.5], lr=0.1, weight_decay=0.1)
    assert values[0] == pytest.approx(1 - 0.1 * 0.6 / (0.6 + 1e-8), rel=1e-12)


def test_adamw_hand_computed():
    # Decoupled decay first: 1.0 * (1 - 0.1 * 0.1) = 0.99, then the Adam step of 0.1.
    values = run_steps(nn.optim.AdamW, [0.5], lr=0.1, weight_decay=0.1)
    assert values[0] == pytest.approx(0.99 - 0.1 * 0.5 / (0.5 + 1e-8), rel=1e-12)
    assert nn.optim.AdamW([nn.Parameter(np.zeros(1))]).defaults["weight_decay"] == 0.01


def least_squares_problem():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 5))
    b = a @ rng.standard_normal((5, 1)) + 0.1 * rng.standard_normal((64, 1))
    solution, *_ = np.linalg.lstsq(np.hstack([a, np.ones((64, 1))]), b, rcond=None)
    best = float(np.mean((np.hstack([a, np.ones((64, 1))]) @ solution - b) ** 2))
    return Tensor(a), Tensor(b), best


@pytest.mark.parametrize("make", [
    lambda ps: nn.optim.SGD(ps, lr=0.05, momentum=0.9),
    lambda ps: nn.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
    lambda ps: nn.optim.Adam(ps, lr=0.05),
    lambda ps: nn.optim.AdamW(ps, lr=0.05, weight_decay=1e-4),
])
def test_convergence_on_least_squares(make):
    a, b, best = least_squares_problem()
    tg.manual_seed(0)
    model = nn.Linear(5, 1).double()
    optimizer = make(model.parameters())
    for _ in range(300):
        optimizer.zero_grad()
        loss = F.mse_loss(model(a), b)
        loss.backward()
        optimizer.step()
    assert loss.item() < best + 1e-3, (loss.item(), best)


def train_steps(model, optimizer, a, b, steps):
    for _ in range(steps):
        optimizer.zero_grad()
        F.mse_loss(model(a), b).backward()
        optimizer.step()


@pytest.mark.parametrize("make", [
    lambda ps: nn.optim.SGD(ps, lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda ps: nn.optim.Adam(ps, lr=0.01, weight_decay=0.01),
    lambda ps: nn.optim.AdamW(ps, lr=0.01),
])
def test_resume_through_a_file_gives_the_identical_next_step(make, tmp_path):
    a, b, _ = least_squares_problem()
    a, b = Tensor(a.array.astype(np.float32)), Tensor(b.array.astype(np.float32))
    tg.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.GELU(), nn.Linear(8, 1))
    optimizer = make(model.parameters())
    train_steps(model, optimizer, a, b, 5)
    path = tmp_path / "checkpoint.safetensors"
    nn.state.save(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict()})
    train_steps(model, optimizer, a, b, 2)

    tg.manual_seed(123)  # a different init: everything must come from the checkpoint
    resumed = nn.Sequential(nn.Linear(5, 8), nn.GELU(), nn.Linear(8, 1))
    resumed_optimizer = make(resumed.parameters())
    checkpoint = nn.state.load(path)
    resumed.load_state_dict(checkpoint["model"])
    resumed_optimizer.load_state_dict(checkpoint["optimizer"])
    train_steps(resumed, resumed_optimizer, a, b, 2)
    for p, q in zip(model.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(p.array, q.array)


def test_parameter_groups_have_their_own_learning_rate():
    p, q = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    optimizer = nn.optim.SGD([{"params": [p]}, {"params": [q], "lr": 0.5}], lr=0.1)
    p.grad, q.grad = Tensor(np.ones(2)), Tensor(np.ones(2))
    optimizer.step()
    np.testing.assert_allclose(p.array, 0.9)
    np.testing.assert_allclose(q.array, 0.5)
    with pytest.raises(ValueError, match="more than one group"):
        nn.optim.SGD([{"params": [p]}, {"params": [p]}])
    with pytest.raises(TypeError, match="only optimize leaf Tensors.*computed by an op"):
        nn.optim.SGD([p * 2])
    with pytest.raises(ValueError, match="2 parameter groups, this optimizer 1"):
        nn.optim.SGD([p]).load_state_dict(optimizer.state_dict())


def test_zero_grad_and_missing_grads():
    p, q = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    optimizer = nn.optim.Adam([p, q], lr=0.1)
    p.grad = Tensor(np.ones(2))
    optimizer.step()  # q has no grad: left alone, no state
    np.testing.assert_array_equal(q.array, 1)
    assert list(optimizer.state_dict()["state"]) == [0]
    optimizer.zero_grad()
    assert p.grad is None


def test_step_allocates_nothing_after_the_first():
    params = [nn.Parameter(np.zeros(100_000, dtype=np.float32)) for _ in range(3)]
    for p in params:
        p.grad = Tensor(np.full(100_000, 0.5, dtype=np.float32))
    for optimizer in (nn.optim.Adam(params, weight_decay=0.1), nn.optim.AdamW(params),
                      nn.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)):
        optimizer.step()  # creates state and scratch buffers
        tracemalloc.start()
        optimizer.step()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 20_000, f"{type(optimizer).__name__}.step allocated {peak} bytes"  # one
        # parameter is 400 kB: any temporary array would show


# ---------------------------------------------------------------------------- schedules

def test_lambda_lr():
    p = nn.Parameter(np.zeros(1))
    optimizer = nn.optim.SGD([p], lr=0.5)
    scheduler = nn.schedules.LambdaLR(optimizer, lambda step: 1 / (step + 1))
    lrs = []
    for _ in range(3):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == [0.5, 0.25, 0.5 / 3]
    assert scheduler.get_last_lr() == [0.125]


def test_transformer_lr_follows_the_paper():
    p = nn.Parameter(np.zeros(1))
    optimizer = nn.optim.Adam([p], lr=123.0, betas=(0.9, 0.98), eps=1e-9)
    scheduler = nn.schedules.TransformerLR(optimizer, d_model=512, warmup_steps=4000)
    seen = []
    for _ in range(8000):
        seen.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    # lrate = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5), step = 1, 2, ...
    assert seen[0] == pytest.approx(512 ** -0.5 * 4000 ** -1.5)
    assert seen[3999] == pytest.approx(512 ** -0.5 * 4000 ** -0.5)  # the peak, at step 4000
    assert int(np.argmax(seen)) == 3999
    assert seen[7999] == pytest.approx(512 ** -0.5 * 8000 ** -0.5)
    state = scheduler.state_dict()
    other = nn.schedules.TransformerLR(nn.optim.Adam([p]), d_model=512, warmup_steps=4000)
    other.load_state_dict(state)
    assert other.get_last_lr() == scheduler.get_last_lr()


# ---------------------------------------------------------------------------- clipping

def test_clip_grad_norm():
    p, q = nn.Parameter(np.zeros(2)), nn.Parameter(np.zeros(1))
    p.grad, q.grad = Tensor(np.array([3.0, 0.0])), Tensor(np.array([4.0]))
    total = nn.utils.clip_grad_norm_([p, q], max_norm=1.0)
    assert total.item() == pytest.approx(5.0)
    np.testing.assert_allclose(np.concatenate([p.grad.array, q.grad.array]),
                               [0.6, 0.0, 0.8], rtol=1e-5)
    total = nn.utils.clip_grad_norm_([p, q], max_norm=10.0)  # below the limit: unchanged
    assert total.item() == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(p.grad.array, [0.6, 0.0], rtol=1e-5)
    assert nn.utils.clip_grad_norm_([p, q], 10.0, norm_type=math.inf).item() == \
        pytest.approx(0.8, rel=1e-5)
    p.grad.array[0] = np.nan
    with pytest.raises(RuntimeError, match="clip_grad_norm_: the total norm"):
        nn.utils.clip_grad_norm_([p, q], 1.0, error_if_nonfinite=True)
