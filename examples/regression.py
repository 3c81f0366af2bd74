"""Tiny regression: fit y = sin(3x) + noise with an MLP, using SGD with momentum and a schedule.

    python examples/regression.py

Shows Sequential, mse_loss, a learning-rate schedule, gradient clipping and a checkpoint saved
and reloaded through nn.state (safetensors).
"""
import os
import tempfile

import numpy as np

import tinygrad_tf as tg
from tinygrad_tf import Tensor, nn
from tinygrad_tf.nn import functional as F


def make_data(n=128, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    y = (np.sin(3 * x) + 0.05 * rng.standard_normal((n, 1))).astype(np.float32)
    return Tensor(x), Tensor(y)


def make_model():
    return nn.Sequential(nn.Linear(1, 32), nn.GELU(), nn.Linear(32, 32), nn.GELU(),
                         nn.Linear(32, 1))


def train(steps=400, seed=0):
    """Returns (model, loss at the start, loss at the end)."""
    tg.manual_seed(seed)
    x, y = make_data()
    model = make_model()
    optimizer = nn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    # Linear warm-up over 20 steps, then constant: LambdaLR multiplies the optimizer's lr.
    scheduler = nn.schedules.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 20))
    with tg.no_grad():
        first = F.mse_loss(model(x), y).item()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
        scheduler.step()
    with tg.no_grad():
        last = F.mse_loss(model(x), y).item()
    return model, first, last


if __name__ == "__main__":
    model, first, last = train()
    print(f"mse: {first:.4f} at the start -> {last:.4f} after training")
    assert last < 0.1 * first, "the loss did not drop tenfold"

    path = os.path.join(tempfile.mkdtemp(), "regression.safetensors")
    nn.state.save(path, model.state_dict())
    restored = make_model()
    restored.load_state_dict(nn.state.load(path))
    x, _ = make_data()
    with tg.no_grad():
        assert np.array_equal(restored(x).numpy(), model(x).numpy())
    print(f"checkpoint round trip through {path}: identical predictions")
