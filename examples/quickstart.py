"""Quick start: fit y = 3x - 1 with a hand-written linear model and check a gradient."""
import numpy as np

import tinygrad_tf as tg
from tinygrad_tf import Tensor

tg.manual_seed(0)
x = Tensor.randn(64, 1)
y = 3 * x - 1
w = Tensor.zeros(1, 1, requires_grad=True)
b = Tensor.zeros(1, requires_grad=True)
for step in range(200):
    loss = ((x @ w + b - y) ** 2).mean()
    w.grad = b.grad = None
    loss.backward()
    with tg.no_grad():
        w -= 0.1 * w.grad  # in place, allowed under no_grad; bumps w's version
        b -= 0.1 * b.grad
print(f"fitted w={w.item():.4f} b={b.item():.4f} loss={loss.item():.2e}")
assert abs(w.item() - 3) < 1e-3 and abs(b.item() + 1) < 1e-3

q = Tensor(np.random.default_rng(0).standard_normal((2, 3)), requires_grad=True)
assert tg.gradcheck(lambda t: (t.softmax(-1) * t).sum(-1).tanh(), q)
print("gradcheck of a softmax expression: ok")
