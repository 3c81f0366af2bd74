"""Second derivatives in practice (docs/autograd.md, section 11): curvature of a Transformer's
loss, and a gradient penalty.

    .venv/bin/python examples/curvature.py

1. Hessian-vector products of the tiny Transformer's loss (float64): H v is the gradient of
   <grad L, v>, two backward passes, never the Hessian itself. Power iteration on H v finds the
   largest-magnitude eigenvalue of the Hessian (the loss's sharpest curvature, the one a
   learning rate must stay under: lr < 2 / lambda_max for gradient descent on a quadratic),
   and a few Newton-CG steps (conjugate gradients on H d = -g, one HVP per CG step) on a
   logistic regression.
2. A WGAN-GP critic on a small MLP: the penalty (||grad_x D(x_hat)|| - 1)^2 needs the gradient
   of a gradient with respect to the weights, which `create_graph=True` records.
"""
import numpy as np

import tinygrad_tf as tg
from tinygrad_tf import Tensor, nn
from tinygrad_tf.autograd import grad
from tinygrad_tf.models import Transformer, TransformerConfig
from tinygrad_tf.nn import functional as F


def hvp(loss_fn, params, vectors):
    """H v for the loss at params: the gradient of <grad L, v> (grad L recorded with
    create_graph=True, so it can be differentiated again)."""
    grads = grad(loss_fn(), params, create_graph=True)
    dot = sum((g * Tensor(v)).sum() for g, v in zip(grads, vectors))
    return [h.array for h in grad(dot, params, allow_unused=True)]


def top_eigenvalue(loss_fn, params, iterations=15, seed=0):
    rng = np.random.default_rng(seed)
    v = [rng.standard_normal(p.shape) for p in params]
    eigenvalue = 0.0
    for i in range(iterations):
        norm = np.sqrt(sum((x * x).sum() for x in v))
        v = [x / norm for x in v]
        hv = hvp(loss_fn, params, v)
        eigenvalue = sum((a * b).sum() for a, b in zip(v, hv))  # Rayleigh quotient v^T H v
        v = hv
        print(f"  power iteration {i + 1:2d}: lambda ~ {eigenvalue:.6f}")
    return eigenvalue


def transformer_curvature():
    print("1a. the Hessian's largest eigenvalue for a tiny Transformer (power iteration on H v)")
    tg.manual_seed(0)
    config = TransformerConfig(src_vocab_size=12, tgt_vocab_size=12, d_model=16, n_heads=2,
                               n_encoder_layers=1, n_decoder_layers=1, d_ff=32, dropout=0.0,
                               max_len=16, pad_id=0)
    model = Transformer(config).double()
    rng = np.random.default_rng(1)
    src = rng.integers(3, 12, size=(8, 6))
    tgt = np.concatenate([np.ones((8, 1), np.int64), src[:, ::-1]], axis=1)  # reverse the input
    params = list(model.parameters())

    def loss():
        logits = model(Tensor(src), Tensor(tgt[:, :-1]))
        return F.cross_entropy(logits.reshape(-1, 12), Tensor(tgt[:, 1:].reshape(-1)))

    print(f"  {sum(p.numel() for p in params)} parameters, loss {loss().item():.4f} at init")
    optimizer = tg.optim.Adam(params, lr=3e-3)
    for _ in range(150):  # near a minimum the Hessian's largest eigenvalues are positive
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    print(f"  after 150 Adam steps: loss {loss().item():.4f}")
    lam = top_eigenvalue(loss, params)
    print(f"  largest |eigenvalue| ~ {lam:.4f}" + (
        f": plain gradient descent is stable only for lr < 2 / lambda = {2 / lam:.3f}"
        if lam > 0 else " (negative: the loss curves down along it)"))
    return lam


def newton_cg(steps=7, cg_steps=10):
    print("1b. Newton-CG on a logistic regression (each CG step is one Hessian-vector product)")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 5))
    y = (x @ rng.standard_normal(5) + rng.standard_normal(300) > 0) * 1.0
    w = Tensor(np.zeros(5)).requires_grad_()

    def loss():
        return F.binary_cross_entropy_with_logits(Tensor(x) @ w, Tensor(y)) + 1e-3 * (w * w).sum()

    for step in range(steps):
        (g,) = grad(loss(), w)
        g = g.array
        d, r = np.zeros(5), -g  # conjugate gradients on H d = -g, from d = 0
        p = r.copy()
        for _ in range(cg_steps):
            (hp,) = hvp(loss, [w], [p])
            alpha = (r @ r) / (p @ hp)
            d, r_new = d + alpha * p, r - alpha * hp
            if np.linalg.norm(r_new) < 1e-12:
                break
            p, r = r_new + (r_new @ r_new) / (r @ r) * p, r_new
        with tg.no_grad():
            w += Tensor(d)
        print(f"  step {step + 1}: loss {loss().item():.10f}, |grad| before the step "
              f"{np.abs(g).max():.2e}")
    return np.abs(g).max()


def wgan_gp(steps=30):
    print("2. WGAN-GP: a critic trained with the gradient penalty (||grad_x D(x_hat)|| - 1)^2")
    tg.manual_seed(3)
    critic = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 1)).double()
    optimizer = tg.optim.Adam(critic.parameters(), lr=1e-2, betas=(0.5, 0.9))
    rng = np.random.default_rng(4)
    penalties = []
    for step in range(steps):
        real = rng.standard_normal((64, 2)) * 0.5 + [2.0, 0.0]
        fake = rng.standard_normal((64, 2))
        alpha = rng.uniform(size=(64, 1))
        mixed = Tensor(alpha * real + (1 - alpha) * fake).requires_grad_()
        (slopes,) = grad(critic(mixed).sum(), mixed, create_graph=True)
        penalty = ((slopes.norm(2, dim=1) - 1) ** 2).mean()
        wasserstein = critic(Tensor(fake)).mean() - critic(Tensor(real)).mean()
        loss = wasserstein + 10 * penalty
        optimizer.zero_grad()
        loss.backward()  # through the penalty's gradient: second derivatives of the critic
        optimizer.step()
        penalties.append(penalty.item())
        if step % 10 == 0 or step == steps - 1:
            print(f"  step {step:2d}: critic loss {loss.item():+.4f}, W estimate "
                  f"{-wasserstein.item():.4f}, penalty {penalty.item():.4f}")
    return penalties


if __name__ == "__main__":
    assert transformer_curvature() > 0
    assert newton_cg() < 1e-6  # quadratic convergence at the end
    penalties = wgan_gp()
    assert penalties[-1] < penalties[0] / 10
