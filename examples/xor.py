"""A small MLP learns XOR: the classic function no single linear layer can represent.

    python examples/xor.py

Two inputs -> 8 hidden units (tanh) -> 2 logits, trained with cross-entropy and Adam. It shows
the whole training loop of tinygrad_tf.nn in a dozen lines: model, loss, backward, step.
"""
import numpy as np

import tinygrad_tf as tg
from tinygrad_tf import Tensor, nn
from tinygrad_tf.nn import functional as F

INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
TARGETS = np.array([0, 1, 1, 0])  # x1 XOR x2, as class ids


class MLP(nn.Module):
    def __init__(self, hidden=8):
        super().__init__()
        self.hidden = nn.Linear(2, hidden)
        self.out = nn.Linear(hidden, 2)

    def forward(self, x):
        return self.out(self.hidden(x).tanh())  # (batch, 2) logits


def train(steps=300, lr=0.05, seed=0):
    """Train the MLP on the four XOR cases; returns (model, final loss)."""
    tg.manual_seed(seed)
    model = MLP()
    optimizer = nn.optim.Adam(model.parameters(), lr=lr)
    x = Tensor(INPUTS)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), TARGETS)
        loss.backward()
        optimizer.step()
    return model, loss.item()


def predict(model, inputs):
    with tg.no_grad():
        return model(Tensor(inputs)).argmax(dim=-1).numpy()


if __name__ == "__main__":
    model, loss = train()
    predictions = predict(model, INPUTS)
    for (a, b), p in zip(INPUTS.astype(int), predictions):
        print(f"{a} XOR {b} -> {p}")
    print(f"final loss {loss:.4f}, {model.num_parameters()} parameters")
    assert (predictions == TARGETS).all(), "the MLP did not learn XOR"
    assert loss < 0.05
